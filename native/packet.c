/*
 * packet.c: the packet engine's senders, one AF_PACKET TX ring each.
 *
 * Vocabulary:
 *   ring     a TPACKET_V2 TX ring (PACKET_TX_RING), mmapped: slots of one
 *            frame each. A slot is AVAILABLE (ours), SEND_REQUEST (filled,
 *            for the kernel to take), or SENDING (taken, its skb alive).
 *   fill     write the due datagrams into the next AVAILABLE slots, in ring
 *            order, and mark them SEND_REQUEST.
 *   kick     one send(fd, NULL, 0, MSG_DONTWAIT): the kernel takes every
 *            SEND_REQUEST slot from its head on, in order, and transmits it.
 *   reap     walk the filled slots oldest first; those no longer
 *            SEND_REQUEST were taken: they are "sent", and tallied (tally.h).
 *            The kernel takes slots in order, so the taken ones are a prefix.
 *
 * Frames are built once per slot from the caller's template (struct
 * lg_packet_config); per datagram only the flow's UDP source port (each flow
 * its own, so RSS spreads the flows), the datagram header (pkt.h: the same
 * payload the socket senders write, so every loadgen receiver counts it) and
 * the UDP checksum change (rawsend.h, which also runs the sender's loop).
 *
 * Every frame starts with a virtio_net_hdr (PACKET_VNET_HDR) whose hdr_len is
 * the whole frame: the kernel then copies the frame into the skb instead of
 * pointing the skb at the ring's pages. Without it a slot turns AVAILABLE when
 * its skb is orphaned, which local delivery (veth, lo) does in ip_rcv, long
 * before the receiving socket reads the payload: the next lap would rewrite a
 * datagram still queued at the receiver.
 *
 * Pacing and accounting are the socket senders' (pace.h, tally.h), in the
 * loop rawsend.h shares with the xdp engine. PACKET_LOSS keeps the ring
 * moving past a frame the kernel refuses (one the caller checked cannot be:
 * the template's length fits the device's MTU). The kernel sends only when
 * kicked, so a slot never holds a frame it will send unasked (held: 0).
 *
 * Echo mode: the returns come back to the flows' UDP sockets (echo.h), drained
 * by the shared loop (rawsend.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include "clock.h"
#include "echo.h"
#include "hdr.h"
#include "pace.h"
#include "packet.h"
#include "rawsend.h"
#include "run.h"

/* A TPACKET_V2 TX frame's data starts here, unless PACKET_TX_HAS_OFF
 * (net/packet/af_packet.c, tpacket_parse_header). */
#define SLOT_DATA_OFFSET (TPACKET2_HDRLEN - sizeof(struct sockaddr_ll))
#define VNET_BYTES sizeof(struct virtio_net_hdr)
/* A ring of large frames gets fewer slots: at most this much memory per sender. */
#define RING_MAX_BYTES (16u << 20)
#define RING_MIN_FRAMES 64u
/* A sender whose ring is full waits this long at most before it looks again. */
#define RING_BLOCKED_MAX_NS 1000000L

struct ring {
	int fd;
	unsigned char *map;
	size_t map_bytes;
	uint32_t frame_size, frames_per_block, block_size, frame_nr;
	uint32_t frame_bytes;	/* the template's length */
	uint32_t prod;		/* the next slot to fill */
	uint32_t pending;	/* slots filled, not yet taken: the ones before prod */
	int64_t *sched_ns;	/* per slot: its datagram's scheduled and actual send time, */
	int64_t *send_ns;	/* tallied when the kernel takes it */
};

int packet_check(const struct lg_net_config *cfg)
{
	const struct lg_packet_config *pc = cfg->packet;
	int xdp = cfg->engine == LG_NET_ENGINE_XDP;

	if (!pc || (xdp ? !pc->xsks : !pc->fds) || !pc->frame || !pc->src_ports || !pc->csum_base ||
	    pc->frame_bytes > (xdp ? LG_XDP_MAX_FRAME_BYTES : LG_PACKET_MAX_FRAME_BYTES) || pc->udp_offset < 14 ||
	    pc->udp_offset + 8 + (uint64_t)cfg->size_bytes != pc->frame_bytes ||
	    pc->udp_offset % 2 || (pc->ring_frames & (pc->ring_frames - 1)) || (xdp && cfg->echo))
		return -EINVAL;
	if (xdp)
		for (uint32_t i = 0; i < cfg->senders; i++)
			if (!pc->xsks[i])
				return -EINVAL;
	return 0;
}

size_t packet_copy_bytes(const struct lg_net_config *cfg)
{
	const struct lg_packet_config *pc = cfg->packet;

	return sizeof(*pc) + cfg->senders * sizeof(struct lg_xsk *) + cfg->senders * sizeof(int32_t) +
	       cfg->flows * 2 * sizeof(uint16_t) + pc->frame_bytes;
}

const struct lg_packet_config *packet_copy(const struct lg_net_config *cfg, void *mem)
{
	struct lg_packet_config *copy = mem;
	struct lg_xsk **xsks = (struct lg_xsk **)(copy + 1);
	int32_t *fds = (int32_t *)(xsks + cfg->senders);
	uint16_t *ports = (uint16_t *)(fds + cfg->senders), *bases = ports + cfg->flows;
	uint8_t *frame = (uint8_t *)(bases + cfg->flows);

	*copy = *cfg->packet;
	/* one engine's array is NULL: packet has fds, xdp has sockets (packet_check) */
	if (cfg->packet->xsks)
		memcpy(xsks, cfg->packet->xsks, cfg->senders * sizeof(*xsks));
	if (cfg->packet->fds)
		memcpy(fds, cfg->packet->fds, cfg->senders * sizeof(*fds));
	memcpy(ports, cfg->packet->src_ports, cfg->flows * sizeof(*ports));
	memcpy(bases, cfg->packet->csum_base, cfg->flows * sizeof(*bases));
	memcpy(frame, cfg->packet->frame, cfg->packet->frame_bytes);
	copy->xsks = cfg->packet->xsks ? xsks : NULL;
	copy->fds = cfg->packet->fds ? fds : NULL;
	copy->src_ports = ports;
	copy->csum_base = bases;
	copy->frame = frame;
	return copy;
}

static inline struct tpacket2_hdr *ring_slot(const struct ring *r, uint32_t i)
{
	return (struct tpacket2_hdr *)(r->map + (size_t)(i / r->frames_per_block) * r->block_size +
				       (size_t)(i % r->frames_per_block) * r->frame_size);
}

static inline uint32_t slot_status(const struct tpacket2_hdr *h)
{
	/* acquire: once AVAILABLE, the kernel is done with the slot's data before we write it */
	return __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
}

static void ring_close(struct ring *r)
{
	if (r->map && r->map != MAP_FAILED)
		munmap(r->map, r->map_bytes);
	free(r->sched_ns);
	free(r->send_ns);
	memset(r, 0, sizeof(*r));
}

/* Set up fd's TX ring for frames of frame_bytes and copy the template into
 * every slot, behind its virtio_net_hdr; 0 or -errno. */
static int ring_open(struct ring *r, int fd, const struct lg_packet_config *pc)
{
	long page = sysconf(_SC_PAGESIZE);
	uint32_t need = (uint32_t)(SLOT_DATA_OFFSET + VNET_BYTES + pc->frame_bytes), want;
	int version = TPACKET_V2, on = 1;
	struct tpacket_req req;
	struct virtio_net_hdr vnet;

	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->frame_bytes = pc->frame_bytes;
	r->frame_size = 64;
	while (r->frame_size < need)
		r->frame_size <<= 1;
	r->block_size = r->frame_size > (uint32_t)page ? r->frame_size : (uint32_t)page;
	r->frames_per_block = r->block_size / r->frame_size;
	want = pc->ring_frames ? pc->ring_frames : LG_PACKET_RING_FRAMES;
	while (want > RING_MIN_FRAMES && (uint64_t)want * r->frame_size > RING_MAX_BYTES)
		want >>= 1;
	if (want < r->frames_per_block)
		want = r->frames_per_block;
	r->frame_nr = want;
	req.tp_block_size = r->block_size;
	req.tp_block_nr = r->frame_nr / r->frames_per_block;
	req.tp_frame_size = r->frame_size;
	req.tp_frame_nr = r->frame_nr;
	/* The version and the vnet header come before the ring (the kernel says EBUSY after). */
	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_LOSS, &on, sizeof(on)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)))
		return -errno;
	r->map_bytes = (size_t)req.tp_block_size * req.tp_block_nr;
	r->map = mmap(NULL, r->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (r->map == MAP_FAILED) {
		int err = -errno;

		r->map = NULL;
		return err;
	}
	r->sched_ns = calloc(r->frame_nr, sizeof(*r->sched_ns));
	r->send_ns = calloc(r->frame_nr, sizeof(*r->send_ns));
	if (!r->sched_ns || !r->send_ns)
		return -ENOMEM;
	/* No offload asked: the checksums are ours. hdr_len: the whole frame is
	 * copied into the skb (see the top of this file); virtio16 is
	 * little-endian for packet sockets, as loadgen's hosts are. */
	memset(&vnet, 0, sizeof(vnet));
	vnet.gso_type = VIRTIO_NET_HDR_GSO_NONE;
	vnet.hdr_len = (uint16_t)pc->frame_bytes;
	for (uint32_t i = 0; i < r->frame_nr; i++) {
		unsigned char *data = (unsigned char *)ring_slot(r, i) + SLOT_DATA_OFFSET;

		memcpy(data, &vnet, VNET_BYTES);
		memcpy(data + VNET_BYTES, pc->frame, pc->frame_bytes);
	}
	return 0;
}

/* Hand the filled slots to the kernel; transient refusals leave them filled for the next kick. */
static void ring_kick(void *ring, struct lg_worker_stats *st)
{
	struct ring *r = ring;

	if (send(r->fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != ENOBUFS && errno != EINTR)
		pace_count_errno(st, errno);
}

/* Tally the filled slots the kernel has taken, oldest first; returns how many. */
static unsigned ring_reap(void *ring, const struct lg_net_config *cfg, struct send_tally *t, int64_t slot_ns)
{
	struct ring *r = ring;
	unsigned taken = 0;

	while (r->pending) {
		uint32_t i = (r->prod - r->pending) % r->frame_nr;

		if (slot_status(ring_slot(r, i)) & TP_STATUS_SEND_REQUEST)
			break;
		tally_add(t, cfg, r->send_ns[i], r->sched_ns[i], slot_ns);
		r->pending--;
		taken++;
	}
	return taken;
}

/* Wait until the ring may have room (POLLOUT), at most RING_BLOCKED_MAX_NS and never past until_ns. */
static void ring_wait(void *ring, int64_t until_ns)
{
	struct pollfd pfd = { .fd = ((struct ring *)ring)->fd, .events = POLLOUT };
	int64_t left = until_ns - clock_now_ns();
	struct timespec ts = { 0, RING_BLOCKED_MAX_NS };

	if (left < RING_BLOCKED_MAX_NS)
		ts.tv_nsec = left > 0 ? left : 0;
	ppoll(&pfd, 1, &ts, NULL);
}

/* raw_ops over a struct ring (rawsend.h). */
static unsigned char *ops_slot(void *ring)
{
	struct ring *r = ring;
	struct tpacket2_hdr *h = ring_slot(r, r->prod % r->frame_nr);

	/* not AVAILABLE: the ring is full, this slot's last frame is still in flight */
	return slot_status(h) == TP_STATUS_AVAILABLE ? (unsigned char *)h + SLOT_DATA_OFFSET + VNET_BYTES : NULL;
}

static void ops_commit(void *ring, int64_t sched_ns, int64_t send_ns)
{
	struct ring *r = ring;
	uint32_t i = r->prod % r->frame_nr;
	struct tpacket2_hdr *h = ring_slot(r, i);

	h->tp_len = (uint32_t)(VNET_BYTES + r->frame_bytes);
	r->sched_ns[i] = sched_ns;
	r->send_ns[i] = send_ns;
	/* release: the frame and its length are visible before the kernel may take the slot */
	__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
	r->prod++;
	r->pending++;
}

static uint32_t ops_pending(const void *ring)
{
	return ((const struct ring *)ring)->pending;
}

static uint32_t ops_held(const void *ring)
{
	(void)ring;
	return 0;	/* AF_PACKET takes a slot only when kicked */
}

static uint64_t ops_unsent(const void *ring, int64_t ramp_end_ns)
{
	const struct ring *r = ring;
	uint64_t unsent = 0;

	/* Filled but never taken: scheduled, not sent. */
	for (uint32_t p = r->pending; p; p--)
		unsent += r->sched_ns[(r->prod - p) % r->frame_nr] >= ramp_end_ns;
	return unsent;
}

static const struct raw_ops packet_ops = {
	.slot = ops_slot, .commit = ops_commit, .kick = ring_kick, .reap = ring_reap,
	.pending = ops_pending, .held = ops_held, .wait = ring_wait, .unsent = ops_unsent,
};

void packet_sender_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct raw_flow *flows = raw_flows_alloc(cfg);
	struct ring ring;
	struct echo_rx *echo = NULL;
	int err;

	memset(&ring, 0, sizeof(ring));
	if (flows && cfg->echo)
		echo = echo_rx_open(cfg, w->index);
	err = flows && (echo || !cfg->echo) ? ring_open(&ring, cfg->packet->fds[w->index], cfg->packet) : -ENOMEM;
	if (err)
		worker_set_state(w, LG_STATE_FAILED, -err);
	else
		raw_sender_run(&packet_ops, &ring, w, flows, echo);
	echo_rx_close(echo);
	ring_close(&ring);
	free(flows);
}

int lg_packet_frame(const struct lg_net_config *cfg, uint32_t flow, uint32_t seq, int64_t sched_ns,
		    int64_t send_ns, void *out)
{
	const struct lg_packet_config *pc;

	if (!cfg || cfg->engine == LG_NET_ENGINE_SOCKET || packet_check(cfg) || flow >= cfg->flows || !out)
		return -EINVAL;
	pc = cfg->packet;
	memcpy(out, pc->frame, pc->frame_bytes);
	raw_frame_patch(pc, out, cfg->flow_base + flow, pc->src_ports[flow], pc->csum_base[flow], seq, cfg->run_tag,
		    sched_ns, send_ns);
	return (int)pc->frame_bytes;
}
