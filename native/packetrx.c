/*
 * packetrx.c: the packet engine's receivers, one AF_PACKET RX ring each.
 *
 * Vocabulary:
 *   ring     a TPACKET_V3 RX ring (PACKET_RX_RING), mmapped: blocks of
 *            frames of any length. A block is the kernel's until it sets
 *            TP_STATUS_USER (full, or LG_PACKET_RX_RETIRE_MS after its first
 *            frame); the receiver walks its frames and hands it back.
 *   group    the run's receivers' sockets share one PACKET_FANOUT_HASH group:
 *            the kernel sends each frame to one of them by its flow hash, so
 *            a flow always reaches the same receiver and its sequence
 *            numbers are tracked in one place (as SO_REUSEPORT does for the
 *            socket receivers). IPv4 fragments are reassembled first
 *            (PACKET_FANOUT_FLAG_DEFRAG). The group's id is the kernel's
 *            choice (PACKET_FANOUT_FLAG_UNIQUEID, Linux >= 4.12): never
 *            another run's group.
 *   filter   the caller's classic BPF program (loadgen/net/packetrx.py)
 *            keeps only UDP to the run's address and port; everything else
 *            never reaches the ring.
 *
 * The sockets are SOCK_DGRAM: a frame's data starts at its IP header, for
 * any link type. Each frame's UDP payload is counted by arrival.h, the same
 * accounting as the socket receivers': loss, reordering, duplicates and
 * one-way delay, timed by the kernel's receive stamp (tp_sec, tp_nsec, as
 * SO_TIMESTAMPNS times the sockets'). The ring's own drops (full, the
 * receiver behind) are read with PACKET_STATISTICS into socket_drops.
 *
 * The UDP checksum is not verified: the kernel's UDP layer checks it for the
 * socket receivers, here the frame is taken before it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_packet.h>
#include "arrival.h"
#include "clock.h"
#include "packetrx.h"
#include "run.h"

/* V3 frames are variable length; tp_frame_size only has to divide the block. */
#define RX_FRAME_BYTES 2048u
/* A receiver with nothing to read looks at the stop at least this often. */
#define RX_WAIT_MS 50

int packet_rx_check(const struct lg_net_config *cfg)
{
	const struct lg_packet_rx_config *rx = cfg->packet_rx;
	long page = sysconf(_SC_PAGESIZE);

	if (!rx || rx->blocks == 0 || rx->block_bytes < (uint32_t)page || rx->block_bytes < RX_FRAME_BYTES ||
	    (rx->block_bytes & (rx->block_bytes - 1)) || (uint64_t)rx->block_bytes * rx->blocks > (1ULL << 31) ||
	    cfg->echo)
		return -EINVAL;
	return 0;
}

int lg_packet_rx_open(int fd, int32_t ifindex, uint32_t protocol, const struct lg_packet_rx_config *rx,
		      int32_t fanout_id)
{
	struct lg_net_config probe = { .packet_rx = rx };
	struct tpacket_req3 req;
	struct sockaddr_ll sll;
	int version = TPACKET_V3, on = 1, arg;
	socklen_t len = sizeof(arg);
	uint32_t flags = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG;

	if (packet_rx_check(&probe) || fanout_id > 0xffff || protocol > 0xffff)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	req.tp_block_size = rx->block_bytes;
	req.tp_block_nr = rx->blocks;
	req.tp_frame_size = RX_FRAME_BYTES;
	req.tp_frame_nr = rx->block_bytes / RX_FRAME_BYTES * rx->blocks;
	req.tp_retire_blk_tov = LG_PACKET_RX_RETIRE_MS;
	/* The version comes before the ring, and the ring before bind: no frame
	 * is queued the old way in between. */
	if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) ||
	    setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)))
		return -errno;
	/* Best effort (Linux >= 4.20): a socket bound to one protocol sees no
	 * outgoing frames anyway; the receiver skips any that come. */
	setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &on, sizeof(on));
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons((uint16_t)protocol);
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)))
		return -errno;
	/* A group is joined once bound (the kernel says EINVAL before). */
	if (fanout_id < 0)
		arg = (int)((flags | PACKET_FANOUT_FLAG_UNIQUEID) << 16);
	else
		arg = (int)(flags << 16) | fanout_id;
	if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof(arg)) ||
	    getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &arg, &len))
		return -errno;
	return arg & 0xffff;
}

/* The UDP payload of an IP datagram of caplen captured bytes: its start, and
 * in *len its length (the UDP header's, or what was captured of it when that
 * is less than a datagram header); NULL for anything but UDP. */
static const unsigned char *udp_payload(const unsigned char *ip, uint32_t caplen, uint32_t *len)
{
	uint32_t ihl, udp_len, captured;

	if (caplen < 1)
		return NULL;
	if ((ip[0] >> 4) == 4) {
		ihl = (uint32_t)(ip[0] & 0xf) * 4;
		if (ihl < 20 || caplen < ihl + 8 || ip[9] != IPPROTO_UDP)
			return NULL;
	} else if ((ip[0] >> 4) == 6) {
		ihl = 40;	/* the filter passes no extension header */
		if (caplen < ihl + 8 || ip[6] != IPPROTO_UDP)
			return NULL;
	} else {
		return NULL;
	}
	udp_len = (uint32_t)ip[ihl + 4] << 8 | ip[ihl + 5];
	if (udp_len < 8)
		return NULL;
	*len = udp_len - 8;
	captured = caplen - ihl - 8;
	if (captured < *len && captured < LG_PKT_HEADER_BYTES)
		*len = captured;	/* too short to read: foreign */
	return ip + ihl + 8;
}

/* Count a block's frames; real_to_mono moves their stamps to CLOCK_MONOTONIC.
 * Returns how many frames it held; *stamped: those timed by the kernel's stamp. */
static uint32_t block_count(const struct lg_net_config *cfg, struct lg_worker_stats *st, struct flow_slot *tab,
			    uint32_t cap, const struct tpacket_block_desc *b, int64_t now_ns, int64_t real_to_mono,
			    uint64_t *stamped)
{
	uint32_t n = b->hdr.bh1.num_pkts;
	const unsigned char *p = (const unsigned char *)b + b->hdr.bh1.offset_to_first_pkt;

	for (uint32_t i = 0; i < n; i++) {
		const struct tpacket3_hdr *h = (const struct tpacket3_hdr *)p;
		const struct sockaddr_ll *sll = (const struct sockaddr_ll *)(p + TPACKET_ALIGN(sizeof(*h)));
		const unsigned char *payload;
		uint32_t len;

		if (sll->sll_pkttype != PACKET_OUTGOING) {
			int64_t krx = (int64_t)h->tp_sec * 1000000000LL + h->tp_nsec + real_to_mono;
			/* a stamp after our read: the clocks were stepped between; use the read */
			int by_stamp = h->tp_sec && krx <= now_ns;

			payload = udp_payload(p + h->tp_net, h->tp_snaplen, &len);
			if (!payload)
				counter_add(&st->counters[LG_CTR_FOREIGN], 1);
			else if (arrival_count(cfg, st, tab, cap, payload, len, by_stamp ? krx : now_ns))
				*stamped += (uint64_t)by_stamp;
		}
		p += h->tp_next_offset;
	}
	return n;
}

void packet_receiver_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	const struct lg_packet_rx_config *rx = cfg->packet_rx;
	struct lg_worker_stats *st = w->stats;
	int fd = cfg->recv_fds[w->index - (int)cfg->senders];
	uint32_t cap = flow_table_slots(cfg), cur = 0;
	size_t map_bytes = (size_t)rx->block_bytes * rx->blocks;
	struct flow_slot *flows = calloc(cap, sizeof(*flows));
	unsigned char *map = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (!flows || map == MAP_FAILED) {
		worker_set_state(w, LG_STATE_FAILED, map == MAP_FAILED ? errno : ENOMEM);
		if (map != MAP_FAILED)
			munmap(map, map_bytes);
		free(flows);
		return;
	}
	pace_record_mode(st, 0, 0);	/* receivers block in poll */
	counter_set(&st->counters[LG_CTR_PACE_WINDOW_NS], 0);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	for (;;) {
		struct tpacket_block_desc *b = (struct tpacket_block_desc *)(map + (size_t)cur * rx->block_bytes);
		struct tpacket_stats_v3 ring_stats;
		socklen_t len = sizeof(ring_stats);
		uint64_t stamped = 0;
		uint32_t got = 0;
		int64_t now;
		/* acquire: a block the kernel handed over has its frames written */
		int ready = __atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER;

		if (!ready) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLERR };

			poll(&pfd, 1, RX_WAIT_MS);
			ready = __atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER;
		}
		now = clock_now_ns();
		worker_publish(w);
		stats_begin(w);
		if (ready) {
			got = block_count(cfg, st, flows, cap, b, now, real_to_mono_ns(), &stamped);
			counter_add(&st->counters[LG_CTR_KERNEL_STAMPED], stamped);
			/* release: done reading the block before the kernel may refill it */
			__atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
			cur = (cur + 1) % rx->blocks;
		}
		/* The kernel's count since the last read: frames the full ring dropped. */
		if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ring_stats, &len) == 0)
			counter_add(&st->counters[LG_CTR_SOCKET_DROPS], ring_stats.tp_drops);
		stats_end(w);
		if (receiver_may_stop(w, cfg, now, (int)got))
			break;
	}
	munmap(map, map_bytes);
	free(flows);
}
