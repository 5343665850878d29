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
 * the UDP checksum change. The checksum is computed incrementally, for IPv4
 * and IPv6 alike: the flow's precomputed sum of everything constant, plus the
 * header's 16 words. The IP header never changes (no ports in it, DF set and
 * ID 0), so its checksum is the template's.
 *
 * Every frame starts with a virtio_net_hdr (PACKET_VNET_HDR) whose hdr_len is
 * the whole frame: the kernel then copies the frame into the skb instead of
 * pointing the skb at the ring's pages. Without it a slot turns AVAILABLE when
 * its skb is orphaned, which local delivery (veth, lo) does in ip_rcv, long
 * before the receiving socket reads the payload: the next lap would rewrite a
 * datagram still queued at the receiver.
 *
 * Pacing and accounting are the socket senders' (pace.h, tally.h): flow f is
 * sender f % senders's, datagram k of flow f is due at
 * start_ns + (k * flows + f) * 1e9 / rate_pps; a sender fills its flows round
 * robin, which is their due order, every datagram due within the window (at
 * most batch per kick), each with its own scheduled time; one that falls
 * behind sends its backlog at full speed and never skips. Unpaced ("max"), it
 * fills up to batch slots and kicks, again and again. PACKET_LOSS keeps the
 * ring moving past a frame the kernel refuses (one the caller checked cannot
 * be: the template's length fits the device's MTU).
 *
 * Echo mode: each frame's source is its flow's UDP socket, so the returns
 * arrive there; every pass drains them and the sender sleeps in a poll that
 * wakes for them (echo.h, net.c's echo timing), with the tolerance as its
 * window, and waits grace_ns for the last ones after sending.
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
#include "pkt.h"
#include "run.h"
#include "tally.h"

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
	uint32_t prod;		/* the next slot to fill */
	uint32_t pending;	/* slots filled, not yet taken: the ones before prod */
	int64_t *sched_ns;	/* per slot: its datagram's scheduled and actual send time, */
	int64_t *send_ns;	/* tallied when the kernel takes it */
};

struct packet_flow {
	uint32_t slot;		/* this host's flow number: its place in the schedule */
	uint32_t id;		/* on the wire: flow_base + slot */
	uint16_t src_port;
	uint16_t csum_base;
	struct pace_cursor next;	/* next datagram to fill; next.k is its index */
};

int packet_check(const struct lg_net_config *cfg)
{
	const struct lg_packet_config *pc = cfg->packet;

	if (!pc || !pc->fds || !pc->frame || !pc->src_ports || !pc->csum_base ||
	    pc->frame_bytes > LG_PACKET_MAX_FRAME_BYTES || pc->udp_offset < 14 ||
	    pc->udp_offset + 8 + (uint64_t)cfg->size_bytes != pc->frame_bytes ||
	    pc->udp_offset % 2 || (pc->ring_frames & (pc->ring_frames - 1)))
		return -EINVAL;
	return 0;
}

size_t packet_copy_bytes(const struct lg_net_config *cfg)
{
	const struct lg_packet_config *pc = cfg->packet;

	return sizeof(*pc) + cfg->senders * sizeof(int32_t) + cfg->flows * 2 * sizeof(uint16_t) +
	       pc->frame_bytes;
}

const struct lg_packet_config *packet_copy(const struct lg_net_config *cfg, void *mem)
{
	struct lg_packet_config *copy = mem;
	int32_t *fds = (int32_t *)(copy + 1);
	uint16_t *ports = (uint16_t *)(fds + cfg->senders), *bases = ports + cfg->flows;
	uint8_t *frame = (uint8_t *)(bases + cfg->flows);

	*copy = *cfg->packet;
	memcpy(fds, cfg->packet->fds, cfg->senders * sizeof(*fds));
	memcpy(ports, cfg->packet->src_ports, cfg->flows * sizeof(*ports));
	memcpy(bases, cfg->packet->csum_base, cfg->flows * sizeof(*bases));
	memcpy(frame, cfg->packet->frame, cfg->packet->frame_bytes);
	copy->fds = fds;
	copy->src_ports = ports;
	copy->csum_base = bases;
	copy->frame = frame;
	return copy;
}

/* Patch one frame (a copy of the template) for datagram seq of a flow. */
static inline void frame_patch(const struct lg_packet_config *pc, unsigned char *frame, uint32_t flow_id,
			       uint16_t src_port, uint16_t csum_base, uint32_t seq, uint32_t run_tag,
			       int64_t sched_ns, int64_t send_ns)
{
	unsigned char *udp = frame + pc->udp_offset, *payload = udp + 8;
	uint32_t sum = csum_base;
	uint16_t csum;

	header_write(payload, flow_id, seq, run_tag, sched_ns, send_ns);
	udp[0] = (unsigned char)(src_port >> 8);
	udp[1] = (unsigned char)src_port;
	/* RFC 1071: the ones' complement sum, in network order word by word */
	for (int i = 0; i < LG_PKT_HEADER_BYTES; i += 2)
		sum += (uint32_t)payload[i] << 8 | payload[i + 1];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	csum = (uint16_t)~sum;
	/* RFC 768: a computed 0 goes out as all ones (0 means "no checksum", not allowed over IPv6) */
	if (csum == 0)
		csum = 0xffff;
	udp[6] = (unsigned char)(csum >> 8);
	udp[7] = (unsigned char)csum;
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
static void ring_kick(struct ring *r, struct lg_worker_stats *st)
{
	if (send(r->fd, NULL, 0, MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != ENOBUFS && errno != EINTR)
		pace_count_errno(st, errno);
}

/* Tally the filled slots the kernel has taken, oldest first; returns how many. */
static unsigned ring_reap(struct ring *r, const struct lg_net_config *cfg, struct send_tally *t, int64_t slot_ns)
{
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

/* Fill up to max slots with what of the flows is due by horizon_ns (unpaced:
 * max datagrams), round robin from *rr; returns how many. */
static unsigned ring_fill(struct ring *r, const struct lg_net_config *cfg, struct packet_flow *flows,
			  unsigned n_flows, unsigned *rr, unsigned max, int64_t now_ns, int64_t horizon_ns)
{
	const struct lg_packet_config *pc = cfg->packet;
	unsigned n;

	for (n = 0; n < max; n++) {
		struct packet_flow *f = &flows[*rr];
		struct tpacket2_hdr *h = ring_slot(r, r->prod % r->frame_nr);
		int64_t sched = cfg->rate_pps ? pace_due_ns(&f->next) : now_ns;

		if (cfg->rate_pps && sched > horizon_ns)
			break;
		if (slot_status(h) != TP_STATUS_AVAILABLE)
			break;	/* the ring is full: this slot's last frame is still in flight */
		frame_patch(pc, (unsigned char *)h + SLOT_DATA_OFFSET + VNET_BYTES, f->id, f->src_port,
			    f->csum_base, cfg->first_seq + (uint32_t)f->next.k, cfg->run_tag,
			    sched - cfg->start_ns, now_ns - cfg->start_ns);
		h->tp_len = (uint32_t)(VNET_BYTES + pc->frame_bytes);
		r->sched_ns[r->prod % r->frame_nr] = sched;
		r->send_ns[r->prod % r->frame_nr] = now_ns;
		/* release: the frame and its length are visible before the kernel may take the slot */
		__atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
		r->prod++;
		r->pending++;
		pace_next(&f->next);
		*rr = *rr + 1 == n_flows ? 0 : *rr + 1;
	}
	return n;
}

/* Wait until the ring may have room (POLLOUT), at most RING_BLOCKED_MAX_NS and never past until_ns. */
static void ring_wait(const struct ring *r, int64_t until_ns)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLOUT };
	int64_t left = until_ns - clock_now_ns();
	struct timespec ts = { 0, RING_BLOCKED_MAX_NS };

	if (left < RING_BLOCKED_MAX_NS)
		ts.tv_nsec = left > 0 ? left : 0;
	ppoll(&pfd, 1, &ts, NULL);
}

void packet_sender_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	const struct lg_packet_config *pc = cfg->packet;
	struct lg_worker_stats *st = w->stats;
	unsigned n_flows = 0, rr = 0;
	struct packet_flow *flows;
	struct ring ring;
	struct echo_rx *echo = NULL;
	int64_t slot_ns = 0, deadline, tolerance_ns = 0, window_ns = 0;
	int err;

	memset(&ring, 0, sizeof(ring));
	flows = calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(*flows));
	if (flows && cfg->echo)
		echo = echo_rx_open(cfg, w->index);
	err = flows && (echo || !cfg->echo) ? ring_open(&ring, pc->fds[w->index], pc) : -ENOMEM;
	if (err) {
		worker_set_state(w, LG_STATE_FAILED, -err);
		ring_close(&ring);
		echo_rx_close(echo);
		free(flows);
		return;
	}
	for (uint32_t f = (uint32_t)w->index; f < cfg->flows; f += cfg->senders) {
		struct packet_flow *fs = &flows[n_flows++];

		fs->slot = f;
		fs->id = cfg->flow_base + f;
		fs->src_port = pc->src_ports[f];
		fs->csum_base = pc->csum_base[f];
		pace_cursor_init(&fs->next, cfg->start_ns, cfg->rate_pps, cfg->flows, f, 0);
	}
	if (cfg->rate_pps) {
		slot_ns = (int64_t)(1000000000ULL * cfg->flows / cfg->rate_pps);
		if (!cfg->busy_poll) {
			struct pace_wake_cost cost = pace_measure_wake();

			tolerance_ns = pace_tolerance_ns(cost);
			/* Echo keeps to the tolerance, as net.c's senders do. */
			window_ns = echo ? tolerance_ns : pace_window_ns(cost, tolerance_ns);
		}
	}
	pace_record_mode(st, tolerance_ns, (int)cfg->busy_poll);
	counter_set(&st->counters[LG_CTR_PACE_WINDOW_NS], (uint64_t)window_ns);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	if (cfg->start_ns > clock_now_ns())
		pace_sleep_until(cfg->start_ns);
	for (;;) {
		int64_t now = clock_now_ns(), horizon, wake, next_due;
		struct send_tally tally = { 0 };
		unsigned filled, taken;
		/* Past the deadline, passes go on while they make progress on what fell
		 * due before it, for at most grace_ns; what is left is counted unsent. */
		int final = now >= (deadline = pace_deadline_ns(w->run, cfg->end_ns));

		if (final && !cfg->rate_pps)
			break;
		horizon = now + window_ns < deadline ? now + window_ns : deadline - 1;
		worker_publish(w);
		stats_begin(w);
		filled = ring_fill(&ring, cfg, flows, n_flows, &rr, cfg->batch, now, horizon);
		if (ring.pending)
			ring_kick(&ring, st);
		taken = ring_reap(&ring, cfg, &tally, slot_ns);
		tally_publish(st, cfg, &tally);
		if (echo)
			echo_rx_drain(echo, cfg, st);
		stats_end(w);
		if (final && ((!filled && !taken) || now >= deadline + cfg->grace_ns))
			break;
		if (!cfg->rate_pps) {
			if (!filled && !taken)
				ring_wait(&ring, deadline);
			continue;
		}
		next_due = pace_due_ns(&flows[rr].next);
		wake = next_due < deadline ? next_due - tolerance_ns : deadline;
		if (ring.pending && !taken) {
			/* The kernel took none of what is filled (its queue is full): wait for room. */
			ring_wait(&ring, final ? deadline + cfg->grace_ns : deadline);
		} else if (cfg->busy_poll) {
			if (!echo)
				pace_spin_until(wake);	/* echo: each pass drains the returns */
		} else if (wake > clock_now_ns()) {
			if (echo)
				echo_rx_idle(echo, wake);
			else
				pace_sleep_until(wake);
		} else if (!filled && !final) {
			/* Due but not filled: every slot is in flight. */
			ring_wait(&ring, deadline);
		}
	}
	if (cfg->rate_pps) {
		uint64_t unsent = 0;

		/* Filled but never taken: scheduled, not sent. */
		for (uint32_t p = ring.pending; p; p--) {
			uint32_t i = (ring.prod - p) % ring.frame_nr;

			unsent += ring.sched_ns[i] >= cfg->ramp_end_ns;
		}
		for (unsigned i = 0; i < n_flows; i++)
			unsent += tally_unsent(cfg, flows[i].slot, flows[i].next.k, deadline);
		stats_begin(w);
		counter_add(&st->counters[LG_CTR_UNSENT], unsent);
		stats_end(w);
	}
	/* Echo mode: wait up to the timeout for returns still on their way. */
	if (echo) {
		int64_t until = clock_now_ns() + cfg->grace_ns;

		while (clock_now_ns() < until) {
			worker_publish(w);
			stats_begin(w);
			echo_rx_drain(echo, cfg, st);
			stats_end(w);
			echo_rx_idle(echo, until);
		}
		echo_rx_close(echo);
	}
	ring_close(&ring);
	free(flows);
}

int lg_packet_frame(const struct lg_net_config *cfg, uint32_t flow, uint32_t seq, int64_t sched_ns,
		    int64_t send_ns, void *out)
{
	const struct lg_packet_config *pc;

	if (!cfg || cfg->engine != LG_NET_ENGINE_PACKET || packet_check(cfg) || flow >= cfg->flows || !out)
		return -EINVAL;
	pc = cfg->packet;
	memcpy(out, pc->frame, pc->frame_bytes);
	frame_patch(pc, out, cfg->flow_base + flow, pc->src_ports[flow], pc->csum_base[flow], seq, cfg->run_tag,
		    sched_ns, send_ns);
	return (int)pc->frame_bytes;
}
