/* run.c: worker threads, pinning, stop and join, shared by every engine. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include "clock.h"
#include "hdr.h"
#include "run.h"

static const char *const counter_names[LG_CTR_COUNT] = {
	[LG_CTR_OPS_READ] = "ops_read",
	[LG_CTR_OPS_WRITE] = "ops_write",
	[LG_CTR_BYTES_READ] = "bytes_read",
	[LG_CTR_BYTES_WRITE] = "bytes_write",
	[LG_CTR_ERRORS] = "errors",
	[LG_CTR_WARMUP_OPS] = "warmup_ops",
	[LG_CTR_LATE_OPS] = "late_ops",
	[LG_CTR_LAG_MAX_NS] = "lag_max_ns",
	[LG_CTR_LAG_SUM_NS] = "lag_sum_ns",
	[LG_CTR_STATE] = "state",
	[LG_CTR_SETUP_ERRNO] = "setup_errno",
	[LG_CTR_SENT] = "sent",
	[LG_CTR_SENT_BYTES] = "sent_bytes",
	[LG_CTR_REFUSED] = "refused",
	[LG_CTR_RECEIVED] = "received",
	[LG_CTR_RECEIVED_BYTES] = "received_bytes",
	[LG_CTR_DUPLICATED] = "duplicated",
	[LG_CTR_REORDERED] = "reordered",
	[LG_CTR_TOO_OLD] = "too_old",
	[LG_CTR_FOREIGN] = "foreign",
	[LG_CTR_LATE] = "late",
	[LG_CTR_SKIPPED] = "skipped",
	[LG_CTR_UNSENT] = "unsent",
	[LG_CTR_PACE_TOLERANCE_NS] = "pace_tolerance_ns",
	[LG_CTR_BUSY_POLL] = "busy_poll",
	[LG_CTR_CPU] = "cpu",
	[LG_CTR_PACE_WINDOW_NS] = "pace_window_ns",
	[LG_CTR_EARLY_MAX_NS] = "early_max_ns",
	[LG_CTR_EARLY_SUM_NS] = "early_sum_ns",
	[LG_CTR_KERNEL_STAMPED] = "kernel_stamped",
	[LG_CTR_GSO_SENT] = "gso_sent",
	[LG_CTR_SOCKET_DROPS] = "socket_drops",
	[LG_CTR_DRAINED_OPS] = "drained_ops",
	[LG_CTR_VERIFY_CHECKED] = "verify_checked",
	[LG_CTR_VERIFY_BAD] = "verify_bad",
	[LG_CTR_VERIFY_UNCHECKED] = "verify_unchecked",
	[LG_CTR_ENTERS] = "enters",
	[LG_CTR_RING_FLAGS] = "ring_flags",
	[LG_CTR_RING_REGISTERED] = "ring_registered",
	[LG_CTR_SQ_TID] = "sq_tid",
	[LG_CTR_SQ_LAST_CPU] = "sq_last_cpu",
	[LG_CTR_SQ_CPU_NS] = "sq_cpu_ns",
	[LG_CTR_RING_FEATURES] = "ring_features",
	[LG_CTR_BATCH_WAITS] = "batch_waits",
	[LG_CTR_BATCH_WAIT_SUM_NS] = "batch_wait_sum_ns",
};

static const char *const hist_names[LG_HIST_COUNT] = {
	[LG_HIST_LATENCY_READ] = "latency_read",
	[LG_HIST_LATENCY_WRITE] = "latency_write",
	[LG_HIST_SERVICE_READ] = "service_read",
	[LG_HIST_SERVICE_WRITE] = "service_write",
	[LG_HIST_LATENCY_PACKET] = "latency_packet",
	[LG_HIST_SERVICE_PACKET] = "service_packet",
	[LG_HIST_KERNEL_RTT_PACKET] = "kernel_rtt_packet",
	[LG_HIST_USER_DELAY_PACKET] = "user_delay_packet",
};

int lg_abi_version(void) { return LG_ABI_VERSION; }

int lg_struct_size(const char *name)
{
	if (!strcmp(name, "lg_disk_config"))
		return (int)sizeof(struct lg_disk_config);
	if (!strcmp(name, "lg_net_config"))
		return (int)sizeof(struct lg_net_config);
	if (!strcmp(name, "lg_packet_config"))
		return (int)sizeof(struct lg_packet_config);
	if (!strcmp(name, "lg_packet_rx_config"))
		return (int)sizeof(struct lg_packet_rx_config);
	if (!strcmp(name, "lg_sweep_config"))
		return (int)sizeof(struct lg_sweep_config);
	if (!strcmp(name, "lg_worker_stats"))
		return (int)sizeof(struct lg_worker_stats);
	return -EINVAL;
}

int64_t lg_limit(const char *name)
{
	static const struct {
		const char *name;
		int64_t value;
	} limits[] = {
		{ "max_qd", LG_MAX_QD },
		{ "max_flows", LG_MAX_FLOWS },
		{ "max_batch", LG_MAX_BATCH },
		{ "max_batch_wait_ns", LG_MAX_BATCH_WAIT_NS },
		{ "pkt_header_bytes", LG_PKT_HEADER_BYTES },
		{ "pkt_max_bytes", LG_PKT_MAX_BYTES },
		{ "pkt_magic", LG_PKT_MAGIC },
		{ "packet_max_frame_bytes", LG_PACKET_MAX_FRAME_BYTES },
		{ "packet_ring_frames", LG_PACKET_RING_FRAMES },
		{ "xdp_max_frame_bytes", LG_XDP_MAX_FRAME_BYTES },
		{ "packet_rx_block_bytes", LG_PACKET_RX_BLOCK_BYTES },
		{ "packet_rx_blocks", LG_PACKET_RX_BLOCKS },
		{ "verify_magic", LG_VERIFY_MAGIC },
		{ "verify_kept", LG_VERIFY_KEPT },
		{ "verify_mismatch_bytes", sizeof(struct lg_verify_mismatch) },
		{ "verify_max_blocks", LG_VERIFY_MAX_BLOCKS },
		{ "block_header_bytes", sizeof(struct lg_block_header) },
	};

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (!strcmp(name, limits[i].name))
			return limits[i].value;
	return -EINVAL;
}

int lg_counter_count(void) { return LG_CTR_COUNT; }
int lg_hist_count(void) { return LG_HIST_COUNT; }
int lg_errno_slots(void) { return LG_ERRNO_SLOTS; }

const char *lg_counter_name(int counter)
{
	return counter >= 0 && counter < LG_CTR_COUNT ? counter_names[counter] : NULL;
}

const char *lg_hist_name(int hist)
{
	return hist >= 0 && hist < LG_HIST_COUNT ? hist_names[hist] : NULL;
}

int run_alloc(int n, struct lg_run **out)
{
	struct lg_run *run;
	int i;

	if (n <= 0)
		return -EINVAL;
	run = calloc(1, sizeof(*run));
	if (!run)
		return -ENOMEM;
	run->n_workers = n;
	run->stop_ns = INT64_MAX;
	/* aligned: struct worker's lines must be the cache's lines */
	if (posix_memalign((void **)&run->workers, 64, n * sizeof(*run->workers))) {
		free(run);
		return -ENOMEM;
	}
	memset(run->workers, 0, n * sizeof(*run->workers));
	for (i = 0; i < n; i++) {
		/* mmap: zeroed, page-aligned, and far from the other workers' lines;
		 * the published copy sits right after the live record. */
		void *p = mmap(NULL, 2 * sizeof(struct lg_worker_stats), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			run->n_workers = i;
			lg_run_free(run);
			return -ENOMEM;
		}
		run->workers[i].stats = p;
		run->workers[i].published = (struct lg_worker_stats *)p + 1;
		run->workers[i].run = run;
		run->workers[i].index = i;
		run->workers[i].cpu = -1;
	}
	*out = run;
	return 0;
}

void worker_name(const char *role, int index)
{
	char name[16];	/* the kernel keeps 15 characters */

	snprintf(name, sizeof(name), "%s-%d", role, index);
	pthread_setname_np(pthread_self(), name);
}

void worker_pin(struct worker *w)
{
	cpu_set_t set;

	if (w->cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	/* Best effort: a cpuset that forbids the CPU leaves the thread unpinned. */
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

void worker_set_state(struct worker *w, int state, int err)
{
	counter_set(&w->stats->counters[LG_CTR_SETUP_ERRNO], (uint64_t)err);
	/* release: whoever sees the state also sees the errno stored before it */
	__atomic_store_n(&w->stats->counters[LG_CTR_STATE], (uint64_t)state, __ATOMIC_RELEASE);
	__atomic_store_n(&w->state, (uint64_t)state, __ATOMIC_RELEASE);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	/* Timer slack defaults to 50 us, which would wake a paced worker late by
	 * that much; 1 ns asks for the precise wake-ups pacing needs (prctl(2)). */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	w->fn(w);	/* the engine pins itself (worker_pin) once its setup allows */
	if (__atomic_load_n(&w->stats->counters[LG_CTR_STATE], __ATOMIC_ACQUIRE) != LG_STATE_FAILED)
		worker_set_state(w, LG_STATE_DONE, 0);
	return NULL;
}

int run_start(struct lg_run *run, worker_fn fn, const void *config, const int32_t *cpus)
{
	int i, err;

	for (i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];

		w->fn = fn;
		w->config = config;
		w->cpu = cpus ? cpus[i] : -1;
		err = pthread_create(&w->thread, NULL, worker_main, w);
		if (err) {
			lg_run_stop(run, 0);
			lg_run_join(run);
			return -err;
		}
		w->started = 1;
	}
	return 0;
}

void worker_publish_slow(struct worker *w, uint64_t req)
{
	memcpy(w->published, w->stats, sizeof(*w->published));
	/* release: the copy is complete before the controller sees the ack */
	__atomic_store_n(&w->publish_ack, req, __ATOMIC_RELEASE);
}

static int worker_exited(const struct worker *w)
{
	uint64_t s = __atomic_load_n(&w->stats->counters[LG_CTR_STATE], __ATOMIC_ACQUIRE);

	return !w->started || s == LG_STATE_DONE || s == LG_STATE_FAILED;
}

/* A seqlock read of the live record; 1 if the copy is consistent. */
static int copy_live(const struct worker *w, struct lg_worker_stats *out)
{
	for (int tries = 0; tries < 64; tries++) {
		uint64_t s1 = __atomic_load_n(&w->seq, __ATOMIC_ACQUIRE);

		if (s1 & 1)
			continue;
		memcpy(out, w->stats, sizeof(*out));
		/* acquire: the copy's loads complete before seq is read again */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&w->seq, __ATOMIC_RELAXED) == s1)
			return 1;
	}
	memcpy(out, w->stats, sizeof(*out));
	return 0;
}

int lg_run_snapshot(struct lg_run *run, struct lg_worker_stats *out, int64_t wait_ns)
{
	int64_t deadline = clock_now_ns() + wait_ns;
	uint64_t *req = calloc(run->n_workers, sizeof(*req));
	int torn = 0, pending;

	if (!req)
		return -ENOMEM;
	for (int i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];

		req[i] = __atomic_load_n(&w->publish_req, __ATOMIC_RELAXED) + 1;
		/* release: pairs with the worker's acquire in worker_publish */
		__atomic_store_n(&w->publish_req, req[i], __ATOMIC_RELEASE);
	}
	do {
		pending = 0;
		for (int i = 0; i < run->n_workers; i++) {
			struct worker *w = &run->workers[i];

			if (req[i] == 0)
				continue;
			if (__atomic_load_n(&w->publish_ack, __ATOMIC_ACQUIRE) == req[i]) {
				memcpy(&out[i], w->published, sizeof(out[i]));
				req[i] = 0;
			} else if (worker_exited(w)) {
				memcpy(&out[i], w->stats, sizeof(out[i]));
				req[i] = 0;
			} else {
				pending++;
			}
		}
		if (pending) {
			struct timespec pause = { 0, 20000 };

			nanosleep(&pause, NULL);
		}
	} while (pending && clock_now_ns() < deadline);
	/* A worker that did not answer is blocked or asleep: between batches, so
	 * a seqlock read of its live record is consistent. */
	for (int i = 0; i < run->n_workers; i++)
		if (req[i] && !copy_live(&run->workers[i], &out[i]))
			torn++;
	free(req);
	return torn;
}

void lg_run_stop(struct lg_run *run, int64_t stop_ns)
{
	__atomic_store_n(&run->stop_ns, stop_ns, __ATOMIC_RELEASE);
}

int lg_run_workers(const struct lg_run *run)
{
	return run->n_workers;
}

int lg_run_done(const struct lg_run *run)
{
	int i;

	for (i = 0; i < run->n_workers; i++) {
		uint64_t s = __atomic_load_n(&run->workers[i].stats->counters[LG_CTR_STATE],
					     __ATOMIC_ACQUIRE);
		if (run->workers[i].started && s != LG_STATE_DONE && s != LG_STATE_FAILED)
			return 0;
	}
	return 1;
}

int lg_run_join(struct lg_run *run)
{
	int i, first_err = 0;

	for (i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];

		if (!w->started)
			continue;
		pthread_join(w->thread, NULL);
		w->started = 0;
		if (!first_err && w->stats->counters[LG_CTR_SETUP_ERRNO])
			first_err = -(int)w->stats->counters[LG_CTR_SETUP_ERRNO];
	}
	return first_err;
}

void lg_run_free(struct lg_run *run)
{
	int i;

	if (!run)
		return;
	lg_run_stop(run, 0);
	lg_run_join(run);
	for (i = 0; i < run->n_workers; i++)
		munmap(run->workers[i].stats, 2 * sizeof(struct lg_worker_stats));
	free(run->workers);
	free(run->config_copy);
	free(run);
}
