/*
 * arrival.h: a receiver's accounting of each arriving datagram, shared by the
 * socket receivers and echo-timing senders (net.c) and the packet receivers
 * (packetrx.c), so every receiver counts loss, reordering, duplicates and
 * one-way delay by the same rules whatever read the datagram.
 *
 * Vocabulary:
 *   flow table  a receiver's flows, keyed by (run_tag, flow id): runs that
 *               share a server, and their flow ids, never disturb each
 *               other's sequence numbers (seq.h tracks each).
 *   arrival     when the datagram arrived in CLOCK_MONOTONIC: the kernel's
 *               receive stamp where there is one (moved from CLOCK_REALTIME
 *               by real_to_mono_ns), else loadgen's read.
 *   window      a datagram counts when its scheduled time is in
 *               [ramp_end_ns, end), decided from its header as the sender
 *               decides it, so lost = sent - (received - duplicated) exactly.
 *
 * Rules: no I/O; the caller brackets the updates with stats_begin/stats_end.
 */
#ifndef LG_ARRIVAL_H
#define LG_ARRIVAL_H

#include <stdint.h>
#include <time.h>
#include "hdr.h"
#include "loadgen.h"
#include "pace.h"
#include "pkt.h"
#include "run.h"
#include "seq.h"

struct flow_slot {
	uint32_t used;
	uint32_t tag;
	uint32_t flow;
	struct seq_tracker t;
};

/* A receiver's table: twice cfg->flows slots keeps linear probing short. */
static inline uint32_t flow_table_slots(const struct lg_net_config *cfg)
{
	return 2 * cfg->flows;
}

static inline struct seq_tracker *flow_lookup(struct flow_slot *tab, uint32_t cap, uint32_t tag, uint32_t flow,
					      uint32_t first_seq)
{
	uint32_t h = (tag * 2654435761u) ^ (flow * 40503u);

	for (uint32_t i = 0; i < cap; i++) {
		struct flow_slot *e = &tab[(h + i) % cap];

		if (!e->used) {
			e->used = 1;
			e->tag = tag;
			e->flow = flow;
			seq_init(&e->t, first_seq);
			return &e->t;
		}
		if (e->tag == tag && e->flow == flow)
			return &e->t;
	}
	return NULL;	/* more flows than the table holds: counted foreign */
}

/* Account one arriving datagram at a receiver, or an echo at a sender, that
 * arrived at now_ns; kernel_rx_ns: an echo's kernel receive stamp in
 * CLOCK_MONOTONIC, or 0 if none. Returns 1 if it was timed, else 0. */
static inline int track_arrival(const struct lg_net_config *cfg, struct lg_worker_stats *st,
				struct seq_tracker *t, const struct pkt_header *h, size_t len,
				int64_t now_ns, int is_echo, int64_t kernel_rx_ns)
{
	uint64_t skipped;
	enum seq_verdict v = seq_track(t, h->seq, &skipped);
	uint64_t *c = st->counters;
	int64_t sched = cfg->start_ns + h->sched_ns, sent = cfg->start_ns + h->send_ns;

	if (sched < cfg->ramp_end_ns)
		return 0;
	if (is_echo && cfg->grace_ns && now_ns - sent > cfg->grace_ns) {
		counter_add(&c[LG_CTR_LATE], 1);	/* past the timeout: lost, not timed */
		return 0;
	}
	counter_add(&c[LG_CTR_RECEIVED], 1);
	counter_add(&c[LG_CTR_RECEIVED_BYTES], len);
	switch (v) {
	case SEQ_DUPLICATED:
		counter_add(&c[LG_CTR_DUPLICATED], 1);
		return 0;	/* a copy is not timed twice */
	case SEQ_REORDERED:
		counter_add(&c[LG_CTR_REORDERED], 1);
		break;
	case SEQ_TOO_OLD:
		counter_add(&c[LG_CTR_TOO_OLD], 1);
		break;
	case SEQ_AHEAD:
		counter_add(&c[LG_CTR_SKIPPED], skipped);
		break;
	default:
		break;
	}
	/* from the schedule, or from the send when it went early (within the tolerance) */
	hdr_record(st->hist[LG_HIST_LATENCY_PACKET], now_ns - (sched < sent ? sched : sent));
	hdr_record(st->hist[LG_HIST_SERVICE_PACKET], now_ns - sent);
	if (kernel_rx_ns) {
		hdr_record(st->hist[LG_HIST_KERNEL_RTT_PACKET], kernel_rx_ns - sent);
		hdr_record(st->hist[LG_HIST_USER_DELAY_PACKET], now_ns - kernel_rx_ns);
	}
	return 1;
}

/* A receiver's one datagram: payload (len bytes, the UDP payload) arrived at
 * arrival_ns. Foreign (not this run's, or past the flow table) is counted as
 * such; the rest are tracked by flow. Returns 1 if it was timed, else 0. */
static inline int arrival_count(const struct lg_net_config *cfg, struct lg_worker_stats *st,
				struct flow_slot *tab, uint32_t cap, const void *payload, size_t len,
				int64_t arrival_ns)
{
	struct pkt_header h;
	struct seq_tracker *t = NULL;

	if (header_read(payload, len, cfg->run_tag, &h))
		t = flow_lookup(tab, cap, h.run_tag, h.flow, cfg->first_seq);
	if (!t) {
		counter_add(&st->counters[LG_CTR_FOREIGN], 1);
		return 0;
	}
	return track_arrival(cfg, st, t, &h, len, arrival_ns, 0, 0);
}

/* CLOCK_MONOTONIC minus CLOCK_REALTIME now: added to a kernel receive stamp,
 * which is CLOCK_REALTIME. The realtime read is bracketed by two monotonic
 * reads and set against their midpoint; a pair split by a preemption (which
 * would move every stamp of the batch earlier by its length, to before the
 * send) is read again, keeping the narrowest of up to four. */
static inline int64_t real_to_mono_ns(void)
{
	int64_t best = 0, best_width = INT64_MAX;

	for (int i = 0; i < 4 && best_width > 2000; i++) {
		struct timespec ts;
		int64_t before = clock_now_ns(), real, after;

		clock_gettime(CLOCK_REALTIME, &ts);
		after = clock_now_ns();
		real = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
		if (after - before < best_width) {
			best_width = after - before;
			best = before + (after - before) / 2 - real;
		}
	}
	return best;
}

/* Receivers beside senders in one run stop once every sender has finished
 * and the last wait found nothing (received <= 0); alone (a remote peer, a
 * server), grace_ns after the end. */
static inline int receiver_may_stop(struct worker *w, const struct lg_net_config *cfg, int64_t now_ns, int received)
{
	int64_t end = pace_deadline_ns(w->run, cfg->end_ns);

	if (cfg->senders == 0)
		return now_ns >= end + cfg->grace_ns;
	/* Senders run at least to the end: until then their state is not read. */
	if (now_ns < end)
		return 0;
	/* A bound for datagrams that never stop coming (another process's). Senders
	 * may pass the deadline by grace_ns for the backlog, then by grace_ns for echoes. */
	if (now_ns >= end + 2 * cfg->grace_ns + 1000000000LL)
		return 1;
	for (uint32_t i = 0; i < cfg->senders; i++)
		if (!worker_finished(&w->run->workers[i]))
			return 0;
	return received <= 0;	/* the last wait timed out: nothing is left in flight */
}

#endif
