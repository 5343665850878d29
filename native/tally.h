/*
 * tally.h: a sender's schedule accounting, shared by the socket sender (net.c)
 * and the packet sender (packet.c), so both count sent, lag, early and unsent
 * by the same rules.
 *
 * Vocabulary:
 *   window   a datagram counts when its scheduled time is in [ramp_end_ns, end):
 *            senders and receivers decide it from the same header field, so
 *            lost = sent - (received - duplicated) holds exactly.
 *   tally    a batch's figures, added up as the batch is built and published
 *            once with tally_publish: those are the hot path's stores.
 *   unsent   datagrams of the window never handed to the kernel: the sender
 *            fell too far behind, or the run stopped first.
 *
 * Rules: no I/O; the caller brackets tally_publish with stats_begin/stats_end.
 */
#ifndef LG_TALLY_H
#define LG_TALLY_H

#include <stdint.h>
#include "hdr.h"
#include "loadgen.h"
#include "pace.h"

/* A batch's schedule figures, tallied as it is built and published once. */
struct send_tally {
	uint64_t in_window, lag_sum, lag_max, late, early_sum, early_max;
};

/* Count one datagram scheduled at sched_ns and sent at now_ns, if it falls in the window. */
static inline void tally_add(struct send_tally *t, const struct lg_net_config *cfg, int64_t now_ns,
			     int64_t sched_ns, int64_t slot_ns)
{
	uint64_t lag, early;

	if (sched_ns < cfg->ramp_end_ns)
		return;
	lag = pace_lag_ns(now_ns, sched_ns);
	early = pace_early_ns(now_ns, sched_ns);
	t->in_window++;
	t->lag_sum += lag;
	t->lag_max = lag > t->lag_max ? lag : t->lag_max;
	t->late += lag > (uint64_t)slot_ns;
	t->early_sum += early;
	t->early_max = early > t->early_max ? early : t->early_max;
}

/* Add a tally to the worker's counters: sent and its bytes, and when paced the schedule's figures. */
static inline void tally_publish(struct lg_worker_stats *st, const struct lg_net_config *cfg,
				 const struct send_tally *t)
{
	if (cfg->rate_pps) {
		counter_add(&st->counters[LG_CTR_LAG_SUM_NS], t->lag_sum);
		counter_max(&st->counters[LG_CTR_LAG_MAX_NS], t->lag_max);
		counter_add(&st->counters[LG_CTR_LATE_OPS], t->late);
		counter_add(&st->counters[LG_CTR_EARLY_SUM_NS], t->early_sum);
		counter_max(&st->counters[LG_CTR_EARLY_MAX_NS], t->early_max);
	}
	counter_add(&st->counters[LG_CTR_SENT], t->in_window);
	counter_add(&st->counters[LG_CTR_SENT_BYTES], t->in_window * cfg->size_bytes);
}

/* Datagrams of the window that a flow never got out: its schedule slot is
 * slot, next_k the index of its first datagram not handed to the kernel. */
static inline uint64_t tally_unsent(const struct lg_net_config *cfg, uint32_t slot, uint64_t next_k,
				    int64_t deadline_ns)
{
	uint64_t end = pace_count_by(cfg->start_ns, cfg->rate_pps, cfg->flows, slot, deadline_ns - 1);
	/* the index of the first datagram in the window */
	uint64_t first = pace_count_by(cfg->start_ns, cfg->rate_pps, cfg->flows, slot, cfg->ramp_end_ns - 1);
	uint64_t from = next_k > first ? next_k : first;

	return end > from ? end - from : 0;
}

#endif
