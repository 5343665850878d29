/*
 * sweep.c: one pass (or several) over a target in order, at full bandwidth:
 * `loadgen disk prepare` and --prefill write it, `loadgen disk verify` reads
 * it back and checks every block's header (verify.h).
 *
 * One worker keeps qd I/Os of io_bytes in flight on an io_uring, walking the
 * extents in order, pass after pass, writing pseudo-random bytes (incompressible,
 * as fio's are); where io_uring is forbidden it falls back
 * to pwrite/pread one I/O at a time. It counts ops and bytes as a disk worker
 * does (no histograms: a sweep is not measured, only watched) and stops early
 * when the run is stopped (lg_run_stop), leaving the rest undone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "hdr.h"
#include "pace.h"
#include "pump.h"
#include "run.h"
#include "uring.h"
#include "verify.h"

#define BUF_ALIGN 4096

/* Where the sweep is: extent ext, pos bytes into it, in pass pass. */
struct sweep_cursor {
	const struct lg_sweep_config *cfg;
	uint32_t ext, pass;
	uint64_t pos;
};

/* The next I/O's offset and length; 0 when the sweep is over. */
static int sweep_next(struct sweep_cursor *c, uint64_t *off, uint32_t *len)
{
	const struct lg_sweep_config *cfg = c->cfg;
	uint32_t passes = cfg->check ? 1 : cfg->passes;

	while (c->pass < passes) {
		if (c->ext < cfg->n_extents) {
			uint64_t start = cfg->extents[2 * c->ext], length = cfg->extents[2 * c->ext + 1];

			if (c->pos < length) {
				uint64_t left = length - c->pos;

				*off = start + c->pos;
				*len = left < cfg->io_bytes ? (uint32_t)left : cfg->io_bytes;
				c->pos += *len;
				return 1;
			}
			c->ext++;
			c->pos = 0;
			continue;
		}
		c->ext = 0;
		c->pass++;
	}
	return 0;
}

static int sweep_stopped(const struct worker *w)
{
	return run_stop_ns(w->run) != INT64_MAX;
}

/* Before a write: the chunk's block headers, when stamped. */
static void sweep_prepare(const struct lg_sweep_config *cfg, unsigned char *buf, uint64_t off, uint32_t len)
{
	if (cfg->check || !cfg->stamp)
		return;
	for (uint32_t k = 0; k + cfg->block_bytes <= len; k += cfg->block_bytes)
		verify_stamp(buf + k, cfg->block_bytes, off + k, cfg->seed, 1);
}

/* Count one finished I/O of len bytes at off (res: bytes or -errno); a read's blocks are checked. */
static void sweep_done(struct worker *w, const unsigned char *buf, uint64_t off, uint32_t len, int res)
{
	const struct lg_sweep_config *cfg = w->config;
	uint64_t *c = w->stats->counters;

	if (res < 0) {
		pace_count_errno(w->stats, -res);
		if (cfg->check)	/* blocks that could not be read are not checked */
			counter_add(&c[LG_CTR_VERIFY_UNCHECKED], len / cfg->block_bytes);
		return;
	}
	if ((uint32_t)res < len && !cfg->check) {
		pace_count_errno(w->stats, EIO);	/* a short write: the fill has a gap */
		return;
	}
	counter_add(&c[cfg->check ? LG_CTR_OPS_READ : LG_CTR_OPS_WRITE], 1);
	counter_add(&c[cfg->check ? LG_CTR_BYTES_READ : LG_CTR_BYTES_WRITE], (uint64_t)res);
	if (cfg->check)
		for (uint32_t k = 0; k < len; k += cfg->block_bytes) {
			uint32_t got = (uint32_t)res > k ? (uint32_t)res - k : 0;

			verify_block(w->stats, buf + k, got < cfg->block_bytes ? got : cfg->block_bytes,
				     cfg->block_bytes, off + k, cfg->seed, (int)cfg->check_seed, 0);
		}
}

static void sweep_psync(struct worker *w, struct sweep_cursor *cur, unsigned char *buf)
{
	const struct lg_sweep_config *cfg = w->config;
	uint64_t off;
	uint32_t len;

	while (!sweep_stopped(w) && sweep_next(cur, &off, &len)) {
		ssize_t res;

		sweep_prepare(cfg, buf, off, len);
		res = cfg->check ? pread(cfg->fd, buf, len, (off_t)off) : pwrite(cfg->fd, buf, len, (off_t)off);
		stats_begin(w);
		sweep_done(w, buf, off, len, res < 0 ? -errno : (int)res);
		stats_end(w);
		worker_publish(w);
	}
}

/* The sweep's side of the pump (pump.h): a slot's offset and length live here. */
struct sweep_pump {
	struct worker *w;
	struct sweep_cursor *cur;
	unsigned char *bufs;
	uint64_t *offs;
	uint32_t *lens;
};

static inline int sweep_pump_next(void *ctx, uint32_t slot, struct io_uring_sqe *sqe)
{
	struct sweep_pump *sp = ctx;
	const struct lg_sweep_config *cfg = sp->w->config;
	unsigned char *buf = sp->bufs + (size_t)slot * cfg->io_bytes;

	if (sweep_stopped(sp->w) || !sweep_next(sp->cur, &sp->offs[slot], &sp->lens[slot]))
		return 0;
	sweep_prepare(cfg, buf, sp->offs[slot], sp->lens[slot]);
	sqe->opcode = cfg->check ? IORING_OP_READ : IORING_OP_WRITE;
	sqe->fd = cfg->fd;
	sqe->addr = (uint64_t)(uintptr_t)buf;
	sqe->len = sp->lens[slot];
	sqe->off = sp->offs[slot];
	return 1;
}

static inline void sweep_pump_done(void *ctx, uint32_t slot, int res)
{
	struct sweep_pump *sp = ctx;
	const struct lg_sweep_config *cfg = sp->w->config;

	sweep_done(sp->w, sp->bufs + (size_t)slot * cfg->io_bytes, sp->offs[slot], sp->lens[slot], res);
}

/* 0, or -errno when the ring failed with I/O in flight (the buffers must then be leaked). */
static int sweep_uring(struct worker *w, struct uring *r, struct sweep_cursor *cur, unsigned char *bufs)
{
	const struct lg_sweep_config *cfg = w->config;
	struct sweep_pump sp = { .w = w, .cur = cur, .bufs = bufs,
				 .offs = calloc(cfg->qd, sizeof(uint64_t)), .lens = calloc(cfg->qd, sizeof(uint32_t)) };
	struct pump p = { .next = sweep_pump_next, .done = sweep_pump_done, .ctx = &sp, .qd = cfg->qd };
	int err = sp.offs && sp.lens ? pump_run(&p, w, r) : -ENOMEM;

	free(sp.offs);
	free(sp.lens);
	return p.inflight ? err : 0;
}

/* Pseudo-random bytes (splitmix64): a preconditioning fill must not compress or
 * dedupe better than real data would (zram, compressing SSDs), as fio's default
 * random buffers do not. */
static void fill_random(unsigned char *buf, size_t n, uint64_t seed)
{
	uint64_t s = seed ^ 0x6a09e667f3bcc908ULL;

	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t z = (s += 0x9e3779b97f4a7c15ULL);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		z ^= z >> 31;
		memcpy(buf + i, &z, 8);
	}
}

static void sweep_worker(struct worker *w)
{
	const struct lg_sweep_config *cfg = w->config;
	struct sweep_cursor cur = { .cfg = cfg };
	size_t n = (size_t)cfg->qd * cfg->io_bytes;
	unsigned char *bufs;
	struct uring r;

	worker_name("lg-sweep", w->index);
	if (posix_memalign((void **)&bufs, BUF_ALIGN, n)) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		return;
	}
	fill_random(bufs, n, cfg->seed);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	if (!cfg->psync && uring_init(&r, cfg->qd + 1) == 0) {
		int err = sweep_uring(w, &r, &cur, bufs);

		uring_exit(&r);
		if (err) {
			worker_set_state(w, LG_STATE_FAILED, -err);
			return;	/* the kernel may still write into bufs: leak them */
		}
	} else {
		sweep_psync(w, &cur, bufs);
	}
	free(bufs);
}

int lg_sweep_start(const struct lg_sweep_config *cfg, struct lg_run **out)
{
	struct lg_sweep_config *copy;
	struct lg_run *run;
	size_t ext_bytes;
	int err;

	if (!cfg || cfg->fd < 0 || cfg->qd == 0 || cfg->qd > LG_MAX_QD || cfg->block_bytes == 0 ||
	    cfg->io_bytes == 0 || cfg->io_bytes % cfg->block_bytes || (!cfg->check && cfg->passes == 0) ||
	    ((cfg->stamp || cfg->check) && cfg->block_bytes < sizeof(struct lg_block_header)) ||
	    (cfg->n_extents && !cfg->extents))
		return -EINVAL;
	for (uint32_t i = 0; i < cfg->n_extents; i++)
		if (cfg->extents[2 * i] % cfg->block_bytes || cfg->extents[2 * i + 1] % cfg->block_bytes)
			return -EINVAL;
	err = run_alloc(1, &run);
	if (err)
		return err;
	/* The worker reads a private copy: the caller may free its config and extents at once. */
	ext_bytes = (size_t)cfg->n_extents * 2 * sizeof(uint64_t);
	copy = malloc(sizeof(*copy) + ext_bytes);
	if (!copy) {
		lg_run_free(run);
		return -ENOMEM;
	}
	*copy = *cfg;
	copy->extents = (const uint64_t *)(copy + 1);
	memcpy(copy + 1, cfg->extents, ext_bytes);
	run->config_copy = copy;
	err = run_start(run, sweep_worker, copy, NULL);
	if (err) {
		lg_run_free(run);
		return err;
	}
	*out = run;
	return 0;
}
