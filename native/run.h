/* run.h: a run is N worker threads, each pinned and owning one stats record. */
#ifndef LG_RUN_H
#define LG_RUN_H

#include <pthread.h>
#include <stdint.h>
#include "loadgen.h"

struct worker;
typedef void (*worker_fn)(struct worker *w);

/*
 * Cache lines: the first holds what the worker writes every batch (seq) or on
 * a snapshot (publish_ack) and what it only reads; publish_req, written by the
 * controller, and state, read by other workers (a receiver waiting for its
 * senders), each have their own line, so neither read nor write of them
 * bounces the line a busy worker is writing.
 */
struct worker {
	/* Snapshot hand-off (see lg_run_snapshot): seq is odd while the worker
	 * updates its stats; the controller bumps publish_req and the worker, at
	 * its next batch boundary, copies its stats to published and sets
	 * publish_ack. Neither side ever waits for the other. */
	uint64_t seq;
	uint64_t publish_ack;
	struct lg_worker_stats *published;
	struct lg_run *run;
	int index;
	int cpu;			/* -1: not pinned */
	pthread_t thread;
	int started;
	struct lg_worker_stats *stats;	/* page-aligned, owned by the run */
	const void *config;		/* the engine's config, shared read-only */
	worker_fn fn;
	uint64_t publish_req __attribute__((aligned(64)));
	/* enum lg_state, the same as stats->counters[LG_CTR_STATE] */
	uint64_t state __attribute__((aligned(64)));
} __attribute__((aligned(64)));

struct lg_run {
	int n_workers;
	int64_t stop_ns;		/* INT64_MAX until lg_run_stop */
	void *config_copy;		/* the engine's config, freed with the run */
	struct worker *workers;
};

/* Allocate a run with n zeroed stats records; 0 or -errno. */
int run_alloc(int n, struct lg_run **out);
/* Start every worker's thread on fn; 0 or -errno (workers started so far are stopped). */
int run_start(struct lg_run *run, worker_fn fn, const void *config, const int32_t *cpus);

/* The time after which a worker stops: its own end, or the controller's stop. */
static inline int64_t run_stop_ns(const struct lg_run *run)
{
	return __atomic_load_n(&run->stop_ns, __ATOMIC_ACQUIRE);
}

void worker_set_state(struct worker *w, int state, int err);

/* 1 once worker w has finished (done or failed); reads only w's own state line. */
static inline int worker_finished(const struct worker *w)
{
	uint64_t s = __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);

	return s == LG_STATE_DONE || s == LG_STATE_FAILED;
}
/* Pin the calling worker to its CPU; engines call it once their setup allows. */
/* Name the calling worker thread ROLE-INDEX (lg-disk-0, lg-send-1), so top -H,
 * perf and the result's thread census tell loadgen's threads apart. */
void worker_name(const char *role, int index);
void worker_pin(struct worker *w);

/* Bracket a batch of stats updates (a seqlock's write side). */
static inline void stats_begin(struct worker *w)
{
	__atomic_store_n(&w->seq, w->seq + 1, __ATOMIC_RELAXED);
	/* release: the odd seq is visible before any update that follows */
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void stats_end(struct worker *w)
{
	/* release: every update is visible before the even seq */
	__atomic_store_n(&w->seq, w->seq + 1, __ATOMIC_RELEASE);
}

void worker_publish_slow(struct worker *w, uint64_t req);

/* At a batch boundary: hand the controller a consistent copy if it asked. */
static inline void worker_publish(struct worker *w)
{
	/* acquire: pairs with the controller's release of publish_req */
	uint64_t req = __atomic_load_n(&w->publish_req, __ATOMIC_ACQUIRE);

	if (req != __atomic_load_n(&w->publish_ack, __ATOMIC_RELAXED))
		worker_publish_slow(w, req);
}

#endif
