/*
 * rawsend.h: the raw engines' sender loop, shared by packet.c (AF_PACKET TX
 * ring) and xdp.c (AF_XDP TX ring and UMEM), so both patch frames, pace and
 * count by the same code.
 *
 * Vocabulary:
 *   ring     an engine's TX ring, seen through struct raw_ops: slots of one
 *            frame each, filled by the sender and taken by the kernel.
 *   fill     write the due datagrams into the next free slots, one frame
 *            each: a copy of the caller's template (struct lg_packet_config)
 *            with the flow's source port, the datagram header (pkt.h) and the
 *            UDP checksum patched in (raw_frame_patch).
 *   kick     ask the kernel to send what is filled.
 *   reap     tally (tally.h) the slots the kernel is done with: "sent".
 *   held     slots the kernel holds and will send whether or not it is asked
 *            again (AF_XDP's descriptors, once on the ring); at the end the
 *            sender waits for them, for at most grace_ns, so that nothing
 *            goes out uncounted.
 *
 * Pacing and accounting are the socket senders' (pace.h, tally.h): flow f is
 * sender f % senders's, datagram k of flow f is due at
 * start_ns + (k * flows + f) * 1e9 / rate_pps; a sender fills its flows round
 * robin, which is their due order, every datagram due within the window (at
 * most batch per kick), each with its own scheduled time; one that falls
 * behind sends its backlog at full speed and never skips. Unpaced ("max"), it
 * fills up to batch slots and kicks, again and again.
 *
 * The UDP checksum is computed incrementally, for IPv4 and IPv6 alike: the
 * flow's precomputed sum of everything constant, plus the header's 16 words.
 * The IP header never changes (no ports in it, DF set and ID 0), so its
 * checksum is the template's.
 *
 * Echo mode (packet engine): each frame's source is its flow's UDP socket, so
 * the returns arrive there (echo.h); every pass drains them, the sender sleeps
 * in a poll that wakes for them with the tolerance as its window, and waits
 * grace_ns for the last ones after sending.
 *
 * raw_sender_run is static inline and each engine passes a constant raw_ops,
 * so the compiler can call the engine's functions directly.
 */
#ifndef LG_RAWSEND_H
#define LG_RAWSEND_H

#include <stdlib.h>
#include "clock.h"
#include "echo.h"
#include "loadgen.h"
#include "pace.h"
#include "pkt.h"
#include "run.h"
#include "tally.h"

struct raw_flow {
	uint32_t slot;		/* this host's flow number: its place in the schedule */
	uint32_t id;		/* on the wire: flow_base + slot */
	uint16_t src_port;
	uint16_t csum_base;
	struct pace_cursor next;	/* next datagram to fill; next.k is its index */
};

/* What the loop needs of an engine's ring. */
struct raw_ops {
	/* The next free slot's frame (the template copied in once), or NULL when every slot is in flight. */
	unsigned char *(*slot)(void *ring);
	/* Hand the slot slot() returned to the kernel's side of the ring, its datagram
	 * scheduled at sched_ns and patched at send_ns. */
	void (*commit)(void *ring, int64_t sched_ns, int64_t send_ns);
	/* Make what commit handed over visible and ask the kernel to send it. */
	void (*kick)(void *ring, struct lg_worker_stats *st);
	/* Tally the slots the kernel is done with; returns how many. */
	unsigned (*reap)(void *ring, const struct lg_net_config *cfg, struct send_tally *t, int64_t slot_ns);
	/* Slots committed and not yet reaped. */
	uint32_t (*pending)(const void *ring);
	/* Slots the kernel will send without another kick (see held above). */
	uint32_t (*held)(const void *ring);
	/* Wait until a slot may be free, never past until_ns. */
	void (*wait)(void *ring, int64_t until_ns);
	/* Of the slots still pending, those scheduled at or after ramp_end_ns: never sent. */
	uint64_t (*unsent)(const void *ring, int64_t ramp_end_ns);
};

/* Patch one frame (a copy of the template) for datagram seq of a flow. */
static inline void raw_frame_patch(const struct lg_packet_config *pc, unsigned char *frame, uint32_t flow_id,
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

/* Fill up to max slots with what of the flows is due by horizon_ns (unpaced:
 * max datagrams), round robin from *rr; returns how many. */
static inline __attribute__((always_inline)) unsigned
raw_fill(const struct raw_ops *ops, void *ring, const struct lg_net_config *cfg, struct raw_flow *flows,
	 unsigned n_flows, unsigned *rr, unsigned max, int64_t now_ns, int64_t horizon_ns)
{
	unsigned n;

	for (n = 0; n < max; n++) {
		struct raw_flow *f = &flows[*rr];
		int64_t sched = cfg->rate_pps ? pace_due_ns(&f->next) : now_ns;
		unsigned char *frame;

		if (cfg->rate_pps && sched > horizon_ns)
			break;
		frame = ops->slot(ring);
		if (!frame)
			break;	/* the ring is full: every slot is in flight */
		raw_frame_patch(cfg->packet, frame, f->id, f->src_port, f->csum_base, cfg->first_seq + (uint32_t)f->next.k,
				cfg->run_tag, sched - cfg->start_ns, now_ns - cfg->start_ns);
		ops->commit(ring, sched, now_ns);
		pace_next(&f->next);
		*rr = *rr + 1 == n_flows ? 0 : *rr + 1;
	}
	return n;
}

/* Sender w's flows (f = w->index, + senders, ...) into flows; returns how many. */
static inline unsigned raw_flows_init(const struct lg_net_config *cfg, int index, struct raw_flow *flows)
{
	const struct lg_packet_config *pc = cfg->packet;
	unsigned n = 0;

	for (uint32_t f = (uint32_t)index; f < cfg->flows; f += cfg->senders) {
		struct raw_flow *fs = &flows[n++];

		fs->slot = f;
		fs->id = cfg->flow_base + f;
		fs->src_port = pc->src_ports[f];
		fs->csum_base = pc->csum_base[f];
		pace_cursor_init(&fs->next, cfg->start_ns, cfg->rate_pps, cfg->flows, f, 0);
	}
	return n;
}

/* Kick, reap and publish once; returns how many slots were reaped. */
static inline __attribute__((always_inline)) unsigned
raw_kick_reap(const struct raw_ops *ops, void *ring, struct worker *w, const struct lg_net_config *cfg,
	      int64_t slot_ns)
{
	struct send_tally tally = { 0 };
	unsigned taken;

	if (ops->pending(ring))
		ops->kick(ring, w->stats);
	taken = ops->reap(ring, cfg, &tally, slot_ns);
	tally_publish(w->stats, cfg, &tally);
	return taken;
}

/* Run sender w on ring until the run ends (the caller opened the ring and
 * closes it); flows has room for the sender's share of cfg->flows; echo, when
 * not NULL, takes the returns (the caller opens and closes it). */
static inline __attribute__((always_inline)) void
raw_sender_run(const struct raw_ops *ops, void *ring, struct worker *w, struct raw_flow *flows,
	       struct echo_rx *echo)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_worker_stats *st = w->stats;
	unsigned n_flows = raw_flows_init(cfg, w->index, flows), rr = 0;
	int64_t slot_ns = 0, deadline, tolerance_ns = 0, window_ns = 0;

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
		unsigned filled, taken;
		/* Past the deadline, passes go on while they make progress on what fell
		 * due before it, for at most grace_ns; what is left is counted unsent. */
		int final = now >= (deadline = pace_deadline_ns(w->run, cfg->end_ns));

		if (final && !cfg->rate_pps)
			break;
		horizon = now + window_ns < deadline ? now + window_ns : deadline - 1;
		worker_publish(w);
		stats_begin(w);
		filled = raw_fill(ops, ring, cfg, flows, n_flows, &rr, cfg->batch, now, horizon);
		taken = raw_kick_reap(ops, ring, w, cfg, slot_ns);
		if (echo)
			echo_rx_drain(echo, cfg, st);
		stats_end(w);
		if (final && ((!filled && !taken) || now >= deadline + cfg->grace_ns))
			break;
		if (!cfg->rate_pps) {
			if (!filled && !taken)
				ops->wait(ring, deadline);
			continue;
		}
		next_due = pace_due_ns(&flows[rr].next);
		wake = next_due < deadline ? next_due - tolerance_ns : deadline;
		if (ops->pending(ring) && !taken) {
			/* The kernel took none of what is filled (its queue is full): wait for room. */
			ops->wait(ring, final ? deadline + cfg->grace_ns : deadline);
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
			ops->wait(ring, deadline);
		}
	}
	/* What the kernel holds goes out whatever happens: wait for it to be counted. */
	while (ops->held(ring) && clock_now_ns() < deadline + cfg->grace_ns) {
		worker_publish(w);
		stats_begin(w);
		if (!raw_kick_reap(ops, ring, w, cfg, slot_ns)) {
			stats_end(w);
			ops->wait(ring, deadline + cfg->grace_ns);
			continue;
		}
		stats_end(w);
	}
	if (cfg->rate_pps) {
		uint64_t unsent = ops->unsent(ring, cfg->ramp_end_ns);

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
	}
}

/* The flows array raw_sender_run needs for one sender, or NULL. */
static inline struct raw_flow *raw_flows_alloc(const struct lg_net_config *cfg)
{
	return calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(struct raw_flow));
}

#endif
