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
 * Closed loop (rate 0): scheduled = submitted, so latency equals service.
 *
 * Timestamps are taken once per batch: every SQE of one enter shares its
 * submission time, every CQE reaped after one enter shares its completion time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "hdr.h"
#include "run.h"
#include "uring.h"

/* Gaps shorter than this are spun, longer ones slept: a VM's timer wake-up
 * costs tens of microseconds, so sleeping for less only adds lag. */
#define SPIN_NS 100000LL
#define MAX_QD LG_MAX_QD
#define BUF_ALIGN 4096

struct op_slot {
	int64_t sched_ns;
	int64_t submit_ns;
	uint32_t is_write;
};

struct disk_worker {
	const struct lg_disk_config *cfg;
	struct lg_worker_stats *stats;
	uint64_t rng;
	uint64_t k;			/* next op's index in this worker's schedule */
	uint64_t n_blocks;		/* of bs_bytes each in this worker's range */
	uint64_t first_block;
	uint64_t seq_block;
	int64_t slot_ns;		/* per-worker spacing: late means behind by more */
	int index;
	int n_workers;
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
		block = (uint64_t)(((unsigned __int128)splitmix64(&d->rng) * d->n_blocks) >> 64);
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

static int64_t sched_ns(const struct disk_worker *d, uint64_t k)
{
	unsigned __int128 n = (unsigned __int128)k * d->n_workers + d->index;

	return d->cfg->start_ns + (int64_t)(n * 1000000000ULL / d->cfg->rate_ops_per_s);
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
	if (cfg->sequential) {
		/* Each worker walks its own slice, so the stream per worker is sequential. */
		d->first_block = total_blocks * index / d->n_workers;
		d->n_blocks = total_blocks * (index + 1) / d->n_workers - d->first_block;
		if (d->n_blocks == 0) {
			d->first_block = 0;
			d->n_blocks = total_blocks;
		}
	} else {
		d->n_blocks = total_blocks;
	}
	if (cfg->rate_ops_per_s)
		d->slot_ns = (int64_t)(1000000000ULL * d->n_workers / cfg->rate_ops_per_s);
}

/* Account one finished op; only completions inside [ramp_end, stop) count. */
static void complete_op(struct disk_worker *d, const struct op_slot *s, int res,
			int64_t done_ns, int64_t stop_ns)
{
	uint64_t *c = d->stats->counters;
	int64_t lag_ns;

	if (done_ns >= stop_ns)
		return;
	if (done_ns < d->cfg->ramp_end_ns) {
		counter_add(&c[LG_CTR_WARMUP_OPS], 1);
		return;
	}
	if (res < 0) {
		int e = -res < LG_ERRNO_SLOTS ? -res : LG_ERRNO_SLOTS - 1;

		counter_add(&d->stats->errno_counts[e], 1);
		counter_add(&c[LG_CTR_ERRORS], 1);
		return;
	}
	lag_ns = s->submit_ns - s->sched_ns;
	if (d->slot_ns) {
		counter_add(&c[LG_CTR_LAG_SUM_NS], (uint64_t)lag_ns);
		counter_max(&c[LG_CTR_LAG_MAX_NS], (uint64_t)lag_ns);
		if (lag_ns > d->slot_ns)
			counter_add(&c[LG_CTR_LATE_OPS], 1);
	}
	if (s->is_write) {
		counter_add(&c[LG_CTR_OPS_WRITE], 1);
		counter_add(&c[LG_CTR_BYTES_WRITE], (uint64_t)res);
		hdr_record(d->stats->hist[LG_HIST_LATENCY_WRITE], done_ns - s->sched_ns);
		hdr_record(d->stats->hist[LG_HIST_SERVICE_WRITE], done_ns - s->submit_ns);
	} else {
		counter_add(&c[LG_CTR_OPS_READ], 1);
		counter_add(&c[LG_CTR_BYTES_READ], (uint64_t)res);
		hdr_record(d->stats->hist[LG_HIST_LATENCY_READ], done_ns - s->sched_ns);
		hdr_record(d->stats->hist[LG_HIST_SERVICE_READ], done_ns - s->submit_ns);
	}
}

static int64_t worker_deadline(struct worker *w, const struct lg_disk_config *cfg)
{
	int64_t stop = run_stop_ns(w->run);

	return stop < cfg->end_ns ? stop : cfg->end_ns;
}

static void sleep_until(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Wait for the next scheduled op: sleep the long part of a gap, spin the rest,
 * yielding each turn so io-wq helpers sharing this core still run. */
static void wait_until(int64_t due_ns, int64_t now_ns)
{
	if (due_ns - now_ns > SPIN_NS)
		sleep_until(due_ns - SPIN_NS / 2);
	else
		sched_yield();
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
 * no worker, the helpers get those, as a hardware queue completes on its own
 * interrupt path; when every CPU has a worker, moving them only adds contention.
 * The kernel takes only a subset of the caller's mask: call before pinning.
 */
static void iowq_free_cpus(struct uring *r, const struct lg_disk_config *cfg)
{
	cpu_set_t set;

	if (sched_getaffinity(getpid(), sizeof(set), &set) != 0 || !cfg->cpus)
		return;
	for (uint32_t i = 0; i < cfg->workers; i++)
		if (cfg->cpus[i] >= 0 && cfg->cpus[i] < CPU_SETSIZE)
			CPU_CLR(cfg->cpus[i], &set);
	if (CPU_COUNT(&set) > 0)
		uring_register_iowq_affinity(r, &set, sizeof(set));
}

static void uring_worker(struct worker *w)
{
	const struct lg_disk_config *cfg = w->config;
	struct disk_worker d;
	struct uring r;
	struct op_slot *slots = NULL;
	uint32_t *free_slots = NULL;
	unsigned char *bufs = NULL;
	struct iovec *iov = NULL;
	unsigned qd = cfg->qd, n_free, inflight = 0, head;
	int fixed_file, fixed_bufs, err, fd;
	struct io_uring_cqe *cqe;
	int64_t deadline;

	disk_worker_init(&d, cfg, w->stats, w->index);
	err = uring_init(&r, qd);
	if (err) {
		worker_set_state(w, LG_STATE_FAILED, -err);
		return;
	}
	slots = calloc(qd, sizeof(*slots));
	free_slots = calloc(qd, sizeof(*free_slots));
	iov = calloc(qd + 1, sizeof(*iov));
	/* qd read buffers and one shared write buffer that keeps its pattern */
	bufs = alloc_buffers(qd + 1, cfg->bs_bytes);
	if (!slots || !free_slots || !iov || !bufs) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		goto out;
	}
	for (unsigned i = 0; i <= qd; i++) {
		iov[i].iov_base = bufs + (size_t)i * cfg->bs_bytes;
		iov[i].iov_len = cfg->bs_bytes;
	}
	for (n_free = 0; n_free < qd; n_free++)
		free_slots[n_free] = qd - 1 - n_free;
	/* Registration is an optimisation: without it (RLIMIT_MEMLOCK on old kernels) we still run. */
	fixed_file = uring_register_file(&r, cfg->fd) == 0;
	fixed_bufs = uring_register_buffers(&r, iov, qd + 1) == 0;
	uring_register_ring_fd(&r);
	iowq_free_cpus(&r, cfg);
	worker_pin(w);
	fd = fixed_file ? 0 : cfg->fd;
	worker_set_state(w, LG_STATE_RUNNING, 0);

	for (;;) {
		int64_t now = clock_now_ns(), due = 0;
		unsigned queued = 0, wait_nr;
		int64_t timeout_ns = 0;

		worker_publish(w);
		deadline = worker_deadline(w, cfg);
		if (now >= deadline)
			break;
		while (inflight < qd) {
			struct io_uring_sqe *sqe;
			struct op_slot *s;
			uint32_t slot;

			if (cfg->rate_ops_per_s) {
				due = sched_ns(&d, d.k);
				if (due > now || due >= deadline)
					break;
			}
			sqe = uring_get_sqe(&r);
			if (!sqe)
				break;
			slot = free_slots[--n_free];
			s = &slots[slot];
			s->is_write = (uint32_t)next_is_write(&d);
			s->sched_ns = cfg->rate_ops_per_s ? due : now;
			s->submit_ns = now;
			if (fixed_bufs) {
				sqe->opcode = s->is_write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED;
				sqe->buf_index = (uint16_t)(s->is_write ? qd : slot);
			} else {
				sqe->opcode = s->is_write ? IORING_OP_WRITE : IORING_OP_READ;
			}
			sqe->flags = fixed_file ? IOSQE_FIXED_FILE : 0;
			sqe->fd = fd;
			sqe->addr = (uint64_t)(uintptr_t)iov[s->is_write ? qd : slot].iov_base;
			sqe->len = cfg->bs_bytes;
			sqe->off = next_offset(&d);
			sqe->user_data = slot;
			d.k++;
			inflight++;
			queued++;
		}
		wait_nr = inflight ? 1 : 0;
		if (cfg->rate_ops_per_s && inflight < qd) {
			due = sched_ns(&d, d.k);
			if (due >= deadline)
				due = deadline;
			timeout_ns = due - now;
			if (inflight == 0 && queued == 0) {
				wait_until(due, now);	/* nothing to reap: idle until the next slot */
				continue;
			}
			if (timeout_ns < SPIN_NS)
				wait_nr = 0;		/* short gap: poll completions and spin */
		}
		/* With I/O in flight always enter: without DEFER_TASKRUN (kernels before
		 * 6.1) COOP_TASKRUN posts completions only when we enter the kernel. */
		if (queued || wait_nr || inflight) {
			err = uring_submit_and_wait(&r, wait_nr, timeout_ns);
			if (err < 0 && err != -EAGAIN && err != -EBUSY) {
				worker_set_state(w, LG_STATE_FAILED, -err);
				break;
			}
		}
		now = clock_now_ns();
		deadline = worker_deadline(w, cfg);	/* a stop may have come while we waited */
		stats_begin(w);
		uring_for_each_cqe(&r, head, cqe) {
			uint32_t slot = (uint32_t)cqe->user_data;

			complete_op(&d, &slots[slot], cqe->res, now, deadline);
			free_slots[n_free++] = slot;
			inflight--;
		}
		stats_end(w);
		uring_cq_advance_to(&r, head);
	}
	/* Drain: buffers must outlive every I/O the kernel still holds. */
	deadline = worker_deadline(w, cfg);
	while (inflight) {
		err = uring_submit_and_wait(&r, 1, 0);
		if (err == -EAGAIN || err == -EBUSY)
			continue;
		if (err < 0) {
			/* The kernel may still write into them: leak rather than free. */
			bufs = NULL;
			iov = NULL;
			break;
		}
		stats_begin(w);
		uring_for_each_cqe(&r, head, cqe) {
			complete_op(&d, &slots[(uint32_t)cqe->user_data], cqe->res, clock_now_ns(), deadline);
			inflight--;
		}
		stats_end(w);
		uring_cq_advance_to(&r, head);
	}
out:
	uring_exit(&r);
	free(bufs);
	free(iov);
	free(free_slots);
	free(slots);
}

static void psync_worker(struct worker *w)
{
	const struct lg_disk_config *cfg = w->config;
	struct disk_worker d;
	unsigned char *bufs;
	struct op_slot s;

	worker_pin(w);
	disk_worker_init(&d, cfg, w->stats, w->index);
	bufs = alloc_buffers(2, cfg->bs_bytes);
	if (!bufs) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		return;
	}
	worker_set_state(w, LG_STATE_RUNNING, 0);
	for (;;) {
		int64_t now = clock_now_ns(), deadline = worker_deadline(w, cfg), done;
		uint64_t off;
		ssize_t res;

		if (now >= deadline)
			break;
		worker_publish(w);
		if (cfg->rate_ops_per_s) {
			s.sched_ns = sched_ns(&d, d.k);
			if (s.sched_ns >= deadline) {
				wait_until(deadline, now);
				continue;
			}
			if (s.sched_ns > now) {
				wait_until(s.sched_ns, now);
				continue;
			}
		} else {
			s.sched_ns = now;
		}
		s.is_write = (uint32_t)next_is_write(&d);
		off = next_offset(&d);
		d.k++;
		s.submit_ns = now;
		if (s.is_write)
			res = pwrite(cfg->fd, bufs + cfg->bs_bytes, cfg->bs_bytes, (off_t)off);
		else
			res = pread(cfg->fd, bufs, cfg->bs_bytes, (off_t)off);
		done = clock_now_ns();
		res = res < 0 ? -errno : res;
		stats_begin(w);
		complete_op(&d, &s, (int)res, done, worker_deadline(w, cfg));
		stats_end(w);
	}
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
	    (cfg->engine != LG_ENGINE_IO_URING && cfg->engine != LG_ENGINE_PSYNC))
		return -EINVAL;
	err = run_alloc((int)cfg->workers, &run);
	if (err)
		return err;
	/* The workers read a private copy: the caller may free its structs at once. */
	copy = malloc(sizeof(*copy) + cfg->workers * sizeof(int32_t));
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
	run->config_copy = copy;
	err = run_start(run, cfg->engine == LG_ENGINE_IO_URING ? uring_worker : psync_worker, copy, cpus);
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
