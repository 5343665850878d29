/*
 * disk.c: the disk workers. One thread per core keeps qd I/Os in flight on
 * an io_uring (registered file and buffers, one io_uring_enter per batch), or,
 * where io_uring is forbidden, issues pread/pwrite one at a time (psync).
 *
 * Open loop: op k of worker i of W is scheduled at
 *     start_ns + (k * W + i) * 1e9 / rate_ops_per_s,
 * so the workers interleave into one evenly spaced stream. A worker that falls
 * behind submits its backlog as fast as qd allows and never skips an op.
 * latency_ns = completion - scheduled; service_ns = completion - submission.
 * An op submitted early, within the pacing tolerance, is timed from its
 * submission: latency is never less than service.
 * Closed loop (rate 0): scheduled = submitted, so latency equals service.
 *
 * Timestamps are taken once per batch: every SQE of one enter shares its
 * submission time, every CQE reaped after one enter shares its completion time.
 *
 * Waiting (pace.h): every op due within the tolerance of now is submitted in
 * one batch, and then one io_uring_enter waits for a completion or for the
 * next due time (less the tolerance), whichever comes first, so a paced worker
 * sleeps in the kernel until there is work. busy_poll spins instead.
 *
 * Closed loop, with the io-wq helpers on CPUs of their own: the worker polls
 * for completions while they keep coming (REAP_POLL_NS after the last one),
 * and sleeps only when the device goes quiet; paced, it polls only while it
 * catches up (behind, queue full), which is closed loop by another name. Sleeping on every completion
 * makes the helper that completes the I/O wake the worker's idle CPU each
 * time (an IPI, and a VM exit under a hypervisor), which on zram cost a
 * fifth of closed-loop IOPS. The CPU it polls on has no other work of the run.
 *
 * Batches (closed loop, as fio's iodepth_batch_submit and
 * iodepth_batch_complete_min): SQEs are queued once batch_submit slots are
 * free, and one enter submits them and waits for batch_complete completions
 * (or more, if that many are needed to free batch_submit slots), so a worker
 * makes about one io_uring_enter per batch rather than one per I/O. With
 * DEFER_TASKRUN the kernel wakes the waiter only when that many are ready:
 * one wake-up per batch. A batch of completions above 1 replaces the polling
 * above (polling enters once per pass). Paced runs ignore both: ops are
 * submitted as they fall due, and a wait never outlasts the next op's due time
 * (see ring_wait_nr), so batching adds no latency to the schedule.
 *
 * The batch wait (closed loop, Linux 6.12's IORING_FEAT_MIN_TIMEOUT): that
 * wake-up is still sent by whoever posts the batch's last completion. When the
 * io-wq helpers run on CPUs of their own, that is a helper, and its CPU, the one
 * that holds the rate, pays the IPI (on zram a tenth of its time). So a wait
 * instead asks for every I/O in flight and is cut short by the kernel's own
 * timer after the batch wait, with whatever has completed by then: the worker
 * wakes on its own CPU, and the helper never wakes anyone. Automatic, the batch
 * wait is batch_complete times the smoothed time per completion, so a wait still
 * ends with about a batch, and the queue keeps qd - batch_complete I/Os for the
 * device while the worker refills it (ring_batch_wait_ns). Paced runs have
 * none.
 *
 * IOPOLL (poll): completions are found by polling the device inside enter,
 * which ignores a wait's timeout; paced, the worker therefore polls without
 * waiting while I/O is in flight, and sleeps to the next due time when none is.
 * SQPOLL (sqpoll): a kernel thread (iou-sqp-TID) takes the SQEs; the worker
 * enters only to wake it or to wait for completions. At the end of the
 * measured window the worker reads that thread's CPU time and last CPU from
 * /proc, as it exits with the ring.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "hdr.h"
#include "nvme.h"
#include "pace.h"
#include "run.h"
#include "uring.h"
#include "verify.h"

#define MAX_QD LG_MAX_QD
#define BUF_ALIGN 4096
#define REAP_POLL_NS 50000	/* closed loop: poll this long after a completion */
#define BATCH_WAIT_MAX_NS 1000000	/* the automatic batch wait's bound */

struct op_slot {
	int64_t sched_ns;
	int64_t submit_ns;
	uint64_t off;
	uint32_t is_write;
};

struct disk_worker {
	const struct lg_disk_config *cfg;
	struct lg_worker_stats *stats;
	uint64_t rng;
	struct pace_cursor next;	/* this worker's next op in the schedule */
	int64_t tolerance_ns;		/* ops due this close to now go in one batch */
	uint64_t n_blocks;		/* of bs_bytes each in this worker's range */
	uint64_t first_block;
	uint64_t seq_block;
	int64_t slot_ns;		/* per-worker spacing: late means behind by more */
	int index;
	int n_workers;
	struct op_slot peek;		/* the next op, drawn but not yet issued (peeked) */
	int peeked;
	struct verify v;		/* --verify: v.gen is the map, else NULL */
};

static inline uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t next_offset(struct disk_worker *d)
{
	uint64_t block;

	if (d->cfg->sequential) {
		block = d->first_block + d->seq_block;
		if (++d->seq_block >= d->n_blocks)
			d->seq_block = 0;
	} else {
		/* Lemire's multiply-shift: uniform over [0, n_blocks) without a divide. */
		block = d->first_block +
			(uint64_t)(((unsigned __int128)splitmix64(&d->rng) * d->n_blocks) >> 64);
	}
	return block * d->cfg->bs_bytes;
}

static int next_is_write(struct disk_worker *d)
{
	if (d->cfg->read_pct >= 100)
		return 0;
	if (d->cfg->read_pct == 0)
		return 1;
	return splitmix64(&d->rng) % 100 >= d->cfg->read_pct;
}

/* The next op's side and offset, drawn once and kept until taken; NULL while
 * --verify holds it back because its block has an I/O in flight. */
static const struct op_slot *peek_op(struct disk_worker *d)
{
	if (!d->peeked) {
		d->peek.is_write = (uint32_t)next_is_write(d);
		d->peek.off = next_offset(d);
		d->peeked = 1;
	}
	return d->v.gen && verify_busy(&d->v, d->peek.off) ? NULL : &d->peek;
}

/* 1 while the next op waits for its block's I/O in flight (--verify): only a completion frees it. */
static int op_held(const struct disk_worker *d)
{
	return d->peeked && d->v.gen && verify_busy(&d->v, d->peek.off);
}

static void disk_worker_init(struct disk_worker *d, const struct lg_disk_config *cfg,
			     struct lg_worker_stats *stats, int index)
{
	uint64_t total_blocks = cfg->span_bytes / cfg->bs_bytes;

	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	d->stats = stats;
	d->index = index;
	d->n_workers = (int)cfg->workers;
	d->rng = cfg->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(index + 1));
	if (cfg->sequential || cfg->verify) {
		/* Each worker walks its own slice, so the stream per worker is sequential;
		 * under --verify, random or not, so each block has one writer that knows it. */
		d->first_block = total_blocks * index / d->n_workers;
		d->n_blocks = total_blocks * (index + 1) / d->n_workers - d->first_block;
		if (d->n_blocks == 0) {
			d->first_block = 0;
			d->n_blocks = total_blocks;
		}
	} else {
		d->n_blocks = total_blocks;
	}
	pace_cursor_init(&d->next, cfg->start_ns, cfg->rate_ops_per_s, (uint64_t)d->n_workers,
			 (uint64_t)index, 0);
	if (cfg->rate_ops_per_s)
		d->slot_ns = (int64_t)(1000000000ULL * d->n_workers / cfg->rate_ops_per_s);
}

/* Measure the wake-up cost (paced, sleeping workers only) and record the mode. */
static void disk_worker_pace(struct disk_worker *d)
{
	if (d->cfg->rate_ops_per_s && !d->cfg->busy_poll)
		d->tolerance_ns = pace_measure_tolerance_ns();
	pace_record_mode(d->stats, d->tolerance_ns, (int)d->cfg->busy_poll);
}

/* The latest due time that goes in the batch being built at now_ns. */
static int64_t batch_horizon_ns(const struct disk_worker *d, int64_t now_ns, int64_t deadline_ns)
{
	int64_t h = now_ns + d->tolerance_ns;

	return h < deadline_ns ? h : deadline_ns - 1;
}

/* Account one finished op; only completions inside [ramp_end, stop) count.
 * The others are counted apart (warm-up, drained), so that every I/O the
 * device saw is one loadgen counted: /sys/block/X/stat can be checked exactly. */
static void complete_op(struct disk_worker *d, const struct op_slot *s, int res,
			int64_t done_ns, int64_t stop_ns)
{
	uint64_t *c = d->stats->counters;
	int64_t lag_ns, from_ns;

	if (done_ns >= stop_ns) {
		counter_add(&c[LG_CTR_DRAINED_OPS], 1);
		return;
	}
	if (done_ns < d->cfg->ramp_end_ns) {
		counter_add(&c[LG_CTR_WARMUP_OPS], 1);
		return;
	}
	if (res < 0) {
		pace_count_errno(d->stats, -res);
		return;
	}
	lag_ns = (int64_t)pace_lag_ns(s->submit_ns, s->sched_ns);
	/* latency counts from the schedule, or from the submission when it went
	 * early (within the tolerance): never less than service */
	from_ns = s->sched_ns < s->submit_ns ? s->sched_ns : s->submit_ns;
	if (d->slot_ns) {
		counter_add(&c[LG_CTR_LAG_SUM_NS], (uint64_t)lag_ns);
		counter_max(&c[LG_CTR_LAG_MAX_NS], (uint64_t)lag_ns);
		if (lag_ns > d->slot_ns)
			counter_add(&c[LG_CTR_LATE_OPS], 1);
	}
	if (s->is_write) {
		counter_add(&c[LG_CTR_OPS_WRITE], 1);
		counter_add(&c[LG_CTR_BYTES_WRITE], (uint64_t)res);
		hdr_record(d->stats->hist[LG_HIST_LATENCY_WRITE], done_ns - from_ns);
		hdr_record(d->stats->hist[LG_HIST_SERVICE_WRITE], done_ns - s->submit_ns);
	} else {
		counter_add(&c[LG_CTR_OPS_READ], 1);
		counter_add(&c[LG_CTR_BYTES_READ], (uint64_t)res);
		hdr_record(d->stats->hist[LG_HIST_LATENCY_READ], done_ns - from_ns);
		hdr_record(d->stats->hist[LG_HIST_SERVICE_READ], done_ns - s->submit_ns);
	}
}

/* Paced and between ops: wait for t_ns, asleep, or spinning under busy_poll. */
static void idle_until(const struct disk_worker *d, int64_t t_ns)
{
	if (d->cfg->busy_poll)
		pace_spin_until(t_ns);
	else
		pace_sleep_until(t_ns);
}

static void *alloc_buffers(size_t n, size_t bs)
{
	void *p;

	if (posix_memalign(&p, BUF_ALIGN, n * bs))
		return NULL;
	/* A non-zero pattern, so writes never send zero pages a device could elide. */
	for (size_t i = 0; i < n * bs; i++)
		((unsigned char *)p)[i] = (unsigned char)(0x5a ^ (i * 131));
	return p;
}

/*
 * I/O the kernel cannot issue without blocking (a bio-based device such as
 * zram, a buffered read that misses the page cache) is handed to io-wq helper
 * threads. Left alone they inherit the worker's one-CPU mask, and the
 * scheduler keeps them there even when allowed elsewhere, so the device's work
 * queues behind the worker on one core. When some of the process's CPUs carry
 * no worker of the job (of any target's run: job_cpus), the helpers get those,
 * as a hardware queue completes on its own interrupt path; when every CPU has a
 * worker, moving them only adds contention.
 * The kernel takes only a subset of the caller's mask: call before pinning.
 */
static int iowq_free_cpus(struct uring *r, const struct lg_disk_config *cfg)
{
	const int32_t *cpus = cfg->job_cpus ? cfg->job_cpus : cfg->cpus;
	uint32_t n = cfg->job_cpus ? cfg->n_job_cpus : cfg->workers;
	cpu_set_t set;

	if (sched_getaffinity(getpid(), sizeof(set), &set) != 0 || !cpus)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE)
			CPU_CLR(cpus[i], &set);
	return CPU_COUNT(&set) > 0 && uring_register_iowq_affinity(r, &set, sizeof(set)) == 0;
}

/* One io_uring worker's state: its ring, its op slots and its buffers. */
struct ring_worker {
	struct disk_worker d;
	struct uring r;
	struct op_slot *slots;
	uint32_t *free_slots;		/* a stack of unused slot numbers */
	unsigned char *bufs;		/* qd read buffers, then one shared write buffer */
	struct iovec *iov;
	unsigned qd, n_free, inflight;
	int fixed_file, fixed_bufs, fd;
	int nvme;			/* LG_ENGINE_NVME: passthrough commands (nvme.h) */
	int helpers_apart;		/* io-wq helpers run on CPUs without a worker */
	int64_t poll_until_ns;		/* closed loop: poll until this long after a completion */
	unsigned batch_submit, batch_complete;	/* closed loop; 1 and 1 when paced */
	uint64_t enters_seen;		/* r.enters already counted or left out (warm-up) */
	int64_t batch_wait_ns;		/* closed loop: fixed, LG_BATCH_WAIT_AUTO, or 0: none */
	int64_t ns_per_op;		/* closed loop: smoothed time per completion, 0 until known */
	int64_t last_reap_ns;		/* when completions were last reaped */
	uint64_t batch_waits, batch_wait_sum_ns;	/* since the last reap, not yet counted */
};

/* Ring, slots and buffers, registered where the kernel allows; 0 or -errno. */
static int ring_setup(struct ring_worker *rw, const struct lg_disk_config *cfg)
{
	unsigned qd = cfg->qd;
	int nvme = cfg->engine == LG_ENGINE_NVME;
	/* passthrough commands need the big SQEs and CQEs */
	unsigned required = (nvme ? IORING_SETUP_SQE128 | IORING_SETUP_CQE32 : 0) |
			    (cfg->poll ? IORING_SETUP_IOPOLL : 0) | (cfg->sqpoll ? IORING_SETUP_SQPOLL : 0);
	/* one SQ slot beyond qd for the timeout SQE of kernels without EXT_ARG */
	int err = uring_init_sq(&rw->r, qd + 1, required, cfg->sq_cpu, cfg->sq_idle_ms);

	if (err)
		return err;
	rw->qd = qd;
	rw->batch_submit = rw->batch_complete = 1;
	if (!cfg->rate_ops_per_s) {
		rw->batch_submit = cfg->batch_submit ? cfg->batch_submit : 1;
		rw->batch_complete = cfg->batch_complete ? cfg->batch_complete : 1;
	}
	rw->slots = calloc(qd, sizeof(*rw->slots));
	rw->free_slots = calloc(qd, sizeof(*rw->free_slots));
	rw->iov = calloc(qd + 1, sizeof(*rw->iov));
	/* qd read buffers and one shared write buffer that keeps its pattern */
	rw->bufs = alloc_buffers(qd + 1, cfg->bs_bytes);
	if (!rw->slots || !rw->free_slots || !rw->iov || !rw->bufs)
		return -ENOMEM;
	for (unsigned i = 0; i <= qd; i++) {
		rw->iov[i].iov_base = rw->bufs + (size_t)i * cfg->bs_bytes;
		rw->iov[i].iov_len = cfg->bs_bytes;
	}
	for (rw->n_free = 0; rw->n_free < qd; rw->n_free++)
		rw->free_slots[rw->n_free] = qd - 1 - rw->n_free;
	/* Registration is an optimisation: without it (RLIMIT_MEMLOCK on old kernels) we still run. */
	rw->fixed_file = uring_register_file(&rw->r, cfg->fd) == 0;
	rw->fixed_bufs = (!nvme || nvme_cmd_fixed_supported()) &&
			 uring_register_buffers(&rw->r, rw->iov, qd + 1) == 0;
	rw->nvme = nvme;
	if (cfg->register_ring)
		uring_register_ring_fd(&rw->r);
	rw->helpers_apart = iowq_free_cpus(&rw->r, cfg);
	rw->fd = rw->fixed_file ? 0 : cfg->fd;
	/* paced waits end at the next due time; IOPOLL's polling ignores a wait's timers */
	if (!cfg->rate_ops_per_s && !cfg->busy_poll && !cfg->poll && uring_has_min_wait(&rw->r))
		rw->batch_wait_ns = cfg->batch_wait_ns != LG_BATCH_WAIT_AUTO ? cfg->batch_wait_ns
				    : rw->helpers_apart ? LG_BATCH_WAIT_AUTO : 0;
	return 0;
}

static void ring_teardown(struct ring_worker *rw)
{
	verify_free(&rw->d.v);
	uring_exit(&rw->r);
	free(rw->bufs);
	free(rw->iov);
	free(rw->free_slots);
	free(rw->slots);
}

/* Queue every op due by horizon_ns (closed loop: as many as qd allows), each
 * with its own scheduled time; returns how many were queued. */
static unsigned ring_submit(struct ring_worker *rw, int64_t now_ns, int64_t horizon_ns)
{
	const struct lg_disk_config *cfg = rw->d.cfg;
	struct disk_worker *d = &rw->d;
	unsigned queued = 0;

	/* closed loop: a batch at a time (paced, batch_submit is 1) */
	if (rw->inflight && rw->n_free < rw->batch_submit)
		return 0;
	while (rw->inflight < rw->qd) {
		struct io_uring_sqe *sqe;
		struct op_slot *s;
		uint32_t slot;
		int64_t due = now_ns;

		uint32_t buf;

		if (cfg->rate_ops_per_s) {
			due = pace_due_ns(&d->next);
			if (due > horizon_ns)
				break;
		}
		if (!peek_op(d))
			break;	/* --verify: its block has an I/O in flight, wait for it */
		sqe = uring_get_sqe(&rw->r);
		if (!sqe)
			break;
		slot = rw->free_slots[--rw->n_free];
		s = &rw->slots[slot];
		*s = d->peek;
		d->peeked = 0;
		s->sched_ns = due;
		s->submit_ns = now_ns;
		/* writes share one buffer, but a verified write carries its own header */
		buf = s->is_write && !d->v.gen ? rw->qd : slot;
		if (d->v.gen)
			verify_begin(&d->v, rw->iov[buf].iov_base, s->off, (int)s->is_write);
		if (rw->nvme) {
			nvme_prep_rw(sqe, rw->fd, rw->fixed_file, rw->fixed_bufs ? (int)buf : -1, (int)s->is_write,
				     cfg->nvme_nsid, cfg->nvme_lba_shift, s->off, cfg->bs_bytes,
				     rw->iov[buf].iov_base);
		} else if (rw->fixed_bufs) {
			sqe->opcode = s->is_write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
			sqe->buf_index = (uint16_t)buf;
		} else {
			sqe->opcode = s->is_write ? IORING_OP_WRITE : IORING_OP_READ;
		}
		if (!rw->nvme) {
			sqe->flags = rw->fixed_file ? IOSQE_FIXED_FILE : 0;
			sqe->fd = rw->fd;
			sqe->addr = (uint64_t)(uintptr_t)rw->iov[buf].iov_base;
			sqe->len = cfg->bs_bytes;
			sqe->off = s->off;
		}
		sqe->user_data = slot;
		pace_next(&d->next);
		rw->inflight++;
		queued++;
	}
	return queued;
}

/* The next space-separated field of a /proc stat line, or NULL. */
static const char *next_field(const char *p)
{
	p = p ? strchr(p, ' ') : NULL;
	return p ? p + 1 : NULL;
}

/* A thread of this process named prefix followed by the calling thread's TID,
 * as io_uring names the threads it makes for a ring (iou-sqp-TID, iou-wrk-TID):
 * its TID, with buf holding its stat line from field 3 (state) on; 0: none. */
static unsigned long io_thread_stat(const char *prefix, char *buf, size_t size)
{
	char want[40], path[300];
	unsigned long tid = 0;
	struct dirent *e;
	DIR *dir;

	snprintf(want, sizeof(want), "(%s%d) ", prefix, (int)gettid());
	dir = opendir("/proc/self/task");
	if (!dir)
		return 0;
	while (!tid && (e = readdir(dir))) {
		const char *p;
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, size - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = 0;
		/* "TID (NAME) S ...": a kernel thread's name has no parentheses of its own */
		p = strstr(buf, want);
		if (!p)
			continue;
		memmove(buf, p + strlen(want), strlen(p + strlen(want)) + 1);
		tid = strtoul(e->d_name, NULL, 10);
	}
	closedir(dir);
	return tid;
}

/* The automatic batch wait's measure: the time per completion between reaps
 * of n > 0, smoothed (1/8 per reap). Closed loop keeps the queue full, so it is
 * the device's time per I/O, stalls included.
 * With the first measure the worker looks for its ring's io-wq helpers
 * (iou-wrk-TID), which the kernel starts at the first I/O it cannot issue
 * without blocking. Where there are none, completions come from the device's
 * interrupts: the device's time per I/O is its latency over the queue, and
 * holding completions for a batch wait would only shrink the queue (on a
 * virtio disk, 10% fewer IOPS). Then the batch wait stays off. */
static void ring_note_rate(struct ring_worker *rw, int64_t done_ns, unsigned n)
{
	char buf[512];

	if (rw->batch_wait_ns != LG_BATCH_WAIT_AUTO || !n)
		return;
	if (rw->last_reap_ns && done_ns > rw->last_reap_ns) {
		int64_t sample = (done_ns - rw->last_reap_ns) / n;

		if (!rw->ns_per_op && !io_thread_stat("iou-wrk-", buf, sizeof(buf))) {
			rw->batch_wait_ns = 0;
			return;
		}
		rw->ns_per_op = rw->ns_per_op ? rw->ns_per_op + (sample - rw->ns_per_op) / 8 : sample;
	}
	rw->last_reap_ns = done_ns;
}

/* The batch wait of the next wait, 0: none (see the top). Automatic, it is off
 * until the time per completion is known. */
static int64_t ring_batch_wait_ns(const struct ring_worker *rw)
{
	int64_t t;

	if (rw->batch_wait_ns != LG_BATCH_WAIT_AUTO)
		return rw->batch_wait_ns;
	t = (int64_t)rw->batch_complete * rw->ns_per_op;
	return t < BATCH_WAIT_MAX_NS ? t : BATCH_WAIT_MAX_NS;
}

/* Account every completion the ring holds, all at done_ns; frees their slots. */
static void ring_reap(struct ring_worker *rw, struct worker *w, int64_t done_ns, int64_t stop_ns)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	if (rw->helpers_apart && *rw->r.cq_head != __atomic_load_n(rw->r.cq_tail, __ATOMIC_ACQUIRE))
		rw->poll_until_ns = done_ns + REAP_POLL_NS;
	stats_begin(w);
	/* enters (and batch waits) made since the last reap count when they end inside the window */
	if (done_ns >= rw->d.cfg->ramp_end_ns && done_ns < stop_ns) {
		counter_add(&w->stats->counters[LG_CTR_ENTERS], rw->r.enters - rw->enters_seen);
		counter_add(&w->stats->counters[LG_CTR_BATCH_WAITS], rw->batch_waits);
		counter_add(&w->stats->counters[LG_CTR_BATCH_WAIT_SUM_NS], rw->batch_wait_sum_ns);
	}
	rw->enters_seen = rw->r.enters;
	rw->batch_waits = rw->batch_wait_sum_ns = 0;
	uring_for_each_cqe(&rw->r, head, cqe) {
		uint32_t slot;
		int res;

		if (cqe->user_data == URING_TIMEOUT_USER_DATA)
			continue;	/* the fallback's timer, not an op */
		slot = (uint32_t)cqe->user_data;
		res = rw->nvme ? nvme_cqe_res(cqe, rw->d.cfg->bs_bytes) : cqe->res;
		complete_op(&rw->d, &rw->slots[slot], res, done_ns, stop_ns);
		if (rw->d.v.gen)
			verify_done(&rw->d.v, rw->iov[slot].iov_base, rw->slots[slot].off,
				    (int)rw->slots[slot].is_write, res);
		rw->free_slots[rw->n_free++] = slot;
		rw->inflight--;
		n++;
	}
	stats_end(w);
	uring_cq_advance_to(&rw->r, head);
	ring_note_rate(rw, done_ns, n);
}

/* After the end: wait out every I/O still in flight, since the kernel may
 * write into the buffers until it completes. 0, or -errno when the ring
 * failed and the buffers must be leaked rather than freed. */
static int ring_drain(struct ring_worker *rw, struct worker *w, int64_t stop_ns)
{
	while (rw->inflight) {
		int err = uring_submit_and_wait(&rw->r, 1, 0);

		if (err == -EAGAIN || err == -EBUSY)
			continue;
		if (err < 0)
			return err;
		ring_reap(rw, w, clock_now_ns(), stop_ns);
	}
	return 0;
}

/* Whether to poll for completions rather than sleep: only with the helpers on
 * CPUs of their own, in closed loop while completions keep coming, and paced
 * while the schedule is behind with the queue full (catching up is closed loop). */
static int ring_polls(const struct ring_worker *rw, int64_t now_ns)
{
	if (!rw->helpers_apart)
		return 0;
	if (!rw->d.cfg->rate_ops_per_s)
		return rw->batch_complete == 1 && now_ns < rw->poll_until_ns;
	return rw->inflight == rw->qd && pace_due_ns(&rw->d.next) <= now_ns;
}

/* How long the worker may wait in the kernel at now_ns: until the next op is
 * due (less the tolerance) or the deadline, and for a completion either way.
 * 0: nothing to wait for but the next pass (busy_poll, completions still
 * coming in closed loop, or work is due). An op held back by --verify waits
 * for a completion, however late it is. */
static int64_t ring_wait_ns(const struct ring_worker *rw, int64_t now_ns, int64_t deadline_ns)
{
	const struct disk_worker *d = &rw->d;
	int64_t wake = deadline_ns;

	if (d->cfg->busy_poll || ring_polls(rw, now_ns))
		return 0;
	/* IOPOLL ignores a wait's timeout: paced, poll while I/O is in flight */
	if (d->cfg->rate_ops_per_s && (rw->r.flags & IORING_SETUP_IOPOLL) && rw->inflight)
		return 0;
	if (d->cfg->rate_ops_per_s && rw->inflight < rw->qd && !op_held(d)) {
		int64_t due = pace_due_ns(&d->next) - d->tolerance_ns;

		if (due < wake)
			wake = due;
	}
	return wake > now_ns ? wake - now_ns : 0;
}

/* How many completions a wait asks for. Paced, with room in the queue, nothing
 * is due before the wait's timeout: wait for every I/O in flight, so a batch
 * costs one wake-up rather than one per completion (each wake-up of an idle
 * CPU costs an IPI, and under a hypervisor a VM exit). The batch's early
 * completions are then stamped with its last one's time, as every CQE reaped
 * by one enter already is. With the queue full, or the next op held back by
 * --verify, any completion frees what is due: wait for one. */
static unsigned ring_wait_nr(const struct ring_worker *rw)
{
	unsigned n;

	if (rw->d.cfg->rate_ops_per_s)
		return rw->inflight && rw->inflight < rw->qd && !op_held(&rw->d) ? rw->inflight : 1;
	/* closed loop, with a batch wait: all in flight, the wait's timer ends it */
	if (ring_batch_wait_ns(rw))
		return rw->inflight ? rw->inflight : 1;
	/* else a batch of completions, and enough to free batch_submit slots */
	n = rw->batch_complete;
	if (rw->batch_submit > rw->n_free && rw->batch_submit - rw->n_free > n)
		n = rw->batch_submit - rw->n_free;
	return n < rw->inflight ? n : (rw->inflight ? rw->inflight : 1);
}

/* The ring's SQ thread, iou-sqp-TID of the worker that made it: its CPU time
 * (utime + stime, ns) and last CPU (field 39 of stat) into the stats. */
static void sq_thread_record(struct worker *w)
{
	char buf[1024];
	long tick = sysconf(_SC_CLK_TCK);
	unsigned long long utime, stime;
	unsigned long tid = io_thread_stat("iou-sqp-", buf, sizeof(buf));
	const char *p = tid ? buf : NULL;
	int cpu, field;

	/* p is at field 3 (state): utime is 14, stime 15, processor 39 */
	for (field = 3; field < 14 && p; field++)
		p = next_field(p);
	if (!p || sscanf(p, "%llu %llu", &utime, &stime) != 2)
		return;
	for (; field < 39 && p; field++)
		p = next_field(p);
	if (!p || sscanf(p, "%d", &cpu) != 1)
		return;
	stats_begin(w);
	counter_set(&w->stats->counters[LG_CTR_SQ_TID], tid);
	counter_set(&w->stats->counters[LG_CTR_SQ_LAST_CPU], (uint64_t)cpu);
	counter_set(&w->stats->counters[LG_CTR_SQ_CPU_NS],
		    (utime + stime) * (1000000000ULL / (unsigned long long)(tick > 0 ? tick : 100)));
	stats_end(w);
}

/* What the kernel granted at setup: the ring's flags and what was registered. */
static void ring_record_setup(const struct ring_worker *rw, struct worker *w)
{
	uint64_t registered = (rw->r.enter_flags & IORING_ENTER_REGISTERED_RING ? LG_REGISTERED_RING : 0) |
			      (rw->fixed_file ? LG_REGISTERED_FILE : 0) |
			      (rw->fixed_bufs ? LG_REGISTERED_BUFFERS : 0);

	stats_begin(w);
	counter_set(&w->stats->counters[LG_CTR_RING_FLAGS], rw->r.flags);
	counter_set(&w->stats->counters[LG_CTR_RING_REGISTERED], registered);
	counter_set(&w->stats->counters[LG_CTR_RING_FEATURES], rw->r.features);
	stats_end(w);
}

static void uring_worker(struct worker *w)
{
	const struct lg_disk_config *cfg = w->config;
	struct ring_worker rw;
	int err;

	memset(&rw, 0, sizeof(rw));
	worker_name("lg-disk", w->index);
	disk_worker_init(&rw.d, cfg, w->stats, w->index);
	err = ring_setup(&rw, cfg);
	if (!err && cfg->verify)
		err = verify_init(&rw.d.v, cfg, w->stats, rw.d.first_block, rw.d.n_blocks);
	if (err) {
		worker_set_state(w, LG_STATE_FAILED, -err);
		ring_teardown(&rw);
		return;
	}
	worker_pin(w);
	disk_worker_pace(&rw.d);
	ring_record_setup(&rw, w);
	worker_set_state(w, LG_STATE_RUNNING, 0);

	for (;;) {
		int64_t now = clock_now_ns(), deadline, wait_ns;
		unsigned queued;

		worker_publish(w);
		deadline = pace_deadline_ns(w->run, cfg->end_ns);
		if (now >= deadline)
			break;
		queued = ring_submit(&rw, now, batch_horizon_ns(&rw.d, now, deadline));
		wait_ns = ring_wait_ns(&rw, now, deadline);
		if (!queued && !rw.inflight && wait_ns && (rw.r.flags & IORING_SETUP_IOPOLL)) {
			/* IOPOLL: nothing in flight, nothing due: an enter would not sleep */
			idle_until(&rw.d, now + wait_ns);
			continue;
		}
		/* Enter when there is something to submit, reap or wait for. With I/O in
		 * flight always enter: without DEFER_TASKRUN (kernels before 6.1)
		 * COOP_TASKRUN posts completions only when we enter the kernel. */
		if (queued || rw.inflight || wait_ns) {
			unsigned wait_nr = wait_ns ? ring_wait_nr(&rw) : 0;
			int64_t cut_ns = wait_nr > 1 ? ring_batch_wait_ns(&rw) : 0;

			err = uring_submit_and_wait_min(&rw.r, wait_nr, wait_ns, cut_ns);
			if (err < 0 && err != -EAGAIN && err != -EBUSY) {
				worker_set_state(w, LG_STATE_FAILED, -err);
				break;
			}
			if (cut_ns && cut_ns < wait_ns) {
				rw.batch_waits++;
				rw.batch_wait_sum_ns += (uint64_t)cut_ns;
			}
		}
		/* a stop may have come while we waited */
		ring_reap(&rw, w, clock_now_ns(), pace_deadline_ns(w->run, cfg->end_ns));
	}
	if (rw.r.flags & IORING_SETUP_SQPOLL)
		sq_thread_record(w);
	err = ring_drain(&rw, w, pace_deadline_ns(w->run, cfg->end_ns));
	/* a write-only --verify run reads back every block it knows */
	if (!err && rw.d.v.gen && cfg->read_pct == 0)
		err = verify_readback_uring(&rw.d.v, w, &rw.r, rw.fd, rw.fixed_file, rw.bufs, rw.qd);
	if (err < 0) {
		/* The kernel may still write into them: leak rather than free. */
		rw.bufs = NULL;
		rw.iov = NULL;
	}
	ring_teardown(&rw);
}

static void psync_worker(struct worker *w)
{
	const struct lg_disk_config *cfg = w->config;
	struct disk_worker d;
	unsigned char *bufs;
	struct op_slot s;

	worker_name("lg-disk", w->index);
	worker_pin(w);
	disk_worker_init(&d, cfg, w->stats, w->index);
	bufs = alloc_buffers(2, cfg->bs_bytes);
	if (!bufs) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		return;
	}
	if (cfg->verify) {
		int err = verify_init(&d.v, cfg, w->stats, d.first_block, d.n_blocks);

		if (err) {
			worker_set_state(w, LG_STATE_FAILED, -err);
			free(bufs);
			return;
		}
	}
	disk_worker_pace(&d);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	for (;;) {
		int64_t now = clock_now_ns(), deadline = pace_deadline_ns(w->run, cfg->end_ns), done;
		uint64_t off;
		ssize_t res;

		if (now >= deadline)
			break;
		worker_publish(w);
		s.sched_ns = now;
		if (cfg->rate_ops_per_s) {
			s.sched_ns = pace_due_ns(&d.next);
			if (s.sched_ns > batch_horizon_ns(&d, now, deadline)) {
				int64_t wake = s.sched_ns - d.tolerance_ns;

				idle_until(&d, wake < deadline ? wake : deadline);
				continue;
			}
		}
		peek_op(&d);	/* one op at a time: never held back */
		d.peeked = 0;
		s.is_write = d.peek.is_write;
		off = d.peek.off;
		pace_next(&d.next);
		if (d.v.gen)
			verify_begin(&d.v, bufs + (s.is_write ? cfg->bs_bytes : 0), off, (int)s.is_write);
		s.submit_ns = now;
		if (s.is_write)
			res = pwrite(cfg->fd, bufs + cfg->bs_bytes, cfg->bs_bytes, (off_t)off);
		else
			res = pread(cfg->fd, bufs, cfg->bs_bytes, (off_t)off);
		done = clock_now_ns();
		res = res < 0 ? -errno : res;
		stats_begin(w);
		complete_op(&d, &s, (int)res, done, pace_deadline_ns(w->run, cfg->end_ns));
		if (d.v.gen)
			verify_done(&d.v, bufs + (s.is_write ? cfg->bs_bytes : 0), off, (int)s.is_write, (int)res);
		stats_end(w);
	}
	if (d.v.gen && cfg->read_pct == 0)
		verify_readback_psync(&d.v, w, cfg->fd, bufs);
	verify_free(&d.v);
	free(bufs);
}

int lg_disk_start(const struct lg_disk_config *cfg, struct lg_run **out)
{
	struct lg_disk_config *copy;
	struct lg_run *run;
	int32_t *cpus = NULL;
	int err;

	if (!cfg || cfg->workers == 0 || cfg->qd == 0 || cfg->qd > MAX_QD || cfg->bs_bytes == 0 ||
	    cfg->span_bytes < cfg->bs_bytes || cfg->read_pct > 100 || cfg->fd < 0 ||
	    cfg->batch_submit > cfg->qd || cfg->batch_complete > cfg->qd ||
	    cfg->batch_wait_ns < LG_BATCH_WAIT_AUTO || cfg->batch_wait_ns > LG_MAX_BATCH_WAIT_NS ||
	    cfg->n_job_cpus > CPU_SETSIZE ||
	    (cfg->engine != LG_ENGINE_IO_URING && cfg->engine != LG_ENGINE_PSYNC && cfg->engine != LG_ENGINE_NVME))
		return -EINVAL;
	/* passthrough moves whole LBAs, at most 65536 per command (nvme.h) */
	if (cfg->engine == LG_ENGINE_NVME &&
	    (cfg->nvme_nsid == 0 || cfg->nvme_lba_shift < NVME_MIN_LBA_SHIFT ||
	     cfg->nvme_lba_shift > NVME_MAX_LBA_SHIFT || cfg->bs_bytes & ((1u << cfg->nvme_lba_shift) - 1) ||
	     (cfg->bs_bytes >> cfg->nvme_lba_shift) > NVME_MAX_NLB))
		return -EINVAL;
	/* --verify: a header fits in a block, and every worker has a slice of its own */
	if (cfg->verify && (cfg->engine == LG_ENGINE_NVME || cfg->bs_bytes < sizeof(struct lg_block_header) ||
			    cfg->span_bytes / cfg->bs_bytes < cfg->workers))
		return -EINVAL;
	err = run_alloc((int)cfg->workers, &run);
	if (err)
		return err;
	/* The workers read a private copy: the caller may free its structs at once. */
	copy = malloc(sizeof(*copy) + (cfg->workers + (cfg->job_cpus ? cfg->n_job_cpus : 0)) * sizeof(int32_t));
	if (!copy) {
		lg_run_free(run);
		return -ENOMEM;
	}
	*copy = *cfg;
	if (cfg->cpus) {
		cpus = (int32_t *)(copy + 1);
		memcpy(cpus, cfg->cpus, cfg->workers * sizeof(int32_t));
	}
	copy->cpus = cpus;
	if (cfg->job_cpus) {
		copy->job_cpus = (int32_t *)(copy + 1) + cfg->workers;
		memcpy((int32_t *)copy->job_cpus, cfg->job_cpus, cfg->n_job_cpus * sizeof(int32_t));
	}
	run->config_copy = copy;
	err = run_start(run, cfg->engine == LG_ENGINE_PSYNC ? psync_worker : uring_worker, copy, cpus);
	if (err) {
		lg_run_free(run);
		return err;
	}
	*out = run;
	return 0;
}

int lg_disk_offsets(const struct lg_disk_config *cfg, int worker, uint64_t *out, uint32_t n)
{
	struct disk_worker d;

	if (!cfg || cfg->bs_bytes == 0 || cfg->span_bytes < cfg->bs_bytes || worker < 0 ||
	    (uint32_t)worker >= cfg->workers)
		return -EINVAL;
	disk_worker_init(&d, cfg, NULL, worker);
	for (uint32_t i = 0; i < n; i++)
		out[i] = next_offset(&d);
	return (int)n;
}

int lg_io_uring_probe(void)
{
	struct uring r;
	int err = uring_init(&r, 4);

	if (!err)
		uring_exit(&r);
	return err;
}

int lg_file_fill(int fd, uint64_t offset_bytes, uint64_t length_bytes)
{
	const size_t chunk = 1 << 20;
	unsigned char *buf = alloc_buffers(1, chunk);
	uint64_t off = offset_bytes, end = offset_bytes + length_bytes;
	int err = 0;

	if (!buf)
		return -ENOMEM;
	while (off < end) {
		size_t n = end - off < chunk ? (size_t)(end - off) : chunk;
		ssize_t ret = pwrite(fd, buf, n, (off_t)off);

		if (ret < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		off += (uint64_t)ret;
	}
	free(buf);
	return err;
}

int64_t lg_now_ns(void)
{
	return clock_now_ns();
}
