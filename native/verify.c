/*
 * verify.c: crc32c, block headers and the generation map behind --verify
 * (see verify.h and struct lg_block_header in loadgen.h).
 *
 * crc32c is the Castagnoli polynomial, reflected (0x82F63B78), with the usual
 * pre- and post-inversion: "123456789" hashes to 0xE3069283 (RFC 3720 B.4).
 * SSE4.2's crc32 instruction computes it where the CPU has it (checked at run
 * time); elsewhere a slicing-by-8 table takes 8 bytes per step.
 *
 * Headers are stored in the host's byte order, which loadgen's targets (x86-64,
 * arm64) share with the little-endian layout loadgen.h documents.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include "hdr.h"
#include "pump.h"
#include "verify.h"

#define CRC32C_POLY 0x82f63b78u	/* Castagnoli, reflected */

/* The layouts loadgen.h documents, which readers of other runs' blocks rely on. */
_Static_assert(sizeof(struct lg_block_header) == 40, "lg_block_header is 40 bytes");
_Static_assert(sizeof(struct lg_verify_mismatch) == 96, "lg_verify_mismatch is 12 words");
#define CRC_FIELD 4		/* offsetof(struct lg_block_header, crc32c) */

static uint32_t crc_table[8][256];
static uint32_t (*crc_fast)(const void *, uint64_t, uint32_t);
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static uint32_t crc32c_table(const void *buf, uint64_t n, uint32_t crc)
{
	const unsigned char *p = buf;

	crc = ~crc;
	for (; n && ((uintptr_t)p & 7); n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		      crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		      crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		      crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
	}
	for (; n; n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(const void *buf, uint64_t n, uint32_t crc)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc & 0xffffffffu;

	for (; n && ((uintptr_t)p & 7); n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	for (; n >= 8; n -= 8, p += 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; n; n--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

static int have_sse42(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
static int have_sse42(void)
{
	return 0;
}
#endif

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	/* table t advances table t-1 by one more zero byte */
	for (int t = 1; t < 8; t++)
		for (uint32_t i = 0; i < 256; i++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
	crc_fast = crc32c_table;
#if defined(__x86_64__)
	if (have_sse42())
		crc_fast = crc32c_sse42;
#endif
}

uint32_t crc32c(const void *buf, uint64_t n, uint32_t crc)
{
	pthread_once(&crc_once, crc_init);
	return crc_fast(buf, n, crc);
}

int lg_crc32c(const void *buf, uint64_t n, uint32_t crc, int impl, uint32_t *out)
{
	pthread_once(&crc_once, crc_init);
	switch (impl) {
	case 0:
		*out = crc_fast(buf, n, crc);
		return 0;
	case 1:
		*out = crc32c_table(buf, n, crc);
		return 0;
	case 2:
#if defined(__x86_64__)
		if (have_sse42()) {
			*out = crc32c_sse42(buf, n, crc);
			return 0;
		}
#endif
		return -EOPNOTSUPP;
	}
	return -EINVAL;
}

/* The crc32c of a block as stamped: taken with its crc32c field zeroed. */
static uint32_t block_crc(const unsigned char *buf, uint32_t block_bytes)
{
	static const unsigned char zero[4];
	uint32_t c = crc32c(buf, CRC_FIELD, 0);

	c = crc32c(zero, sizeof(zero), c);
	return crc32c(buf + CRC_FIELD + 4, block_bytes - CRC_FIELD - 4, c);
}

void verify_stamp(void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed, uint64_t generation)
{
	struct lg_block_header h = {
		.magic = LG_VERIFY_MAGIC, .offset_bytes = offset_bytes, .seed = seed,
		.generation = generation, .block_bytes = block_bytes,
	};
	uint32_t crc;

	memcpy(buf, &h, sizeof(h));
	crc = block_crc(buf, block_bytes);
	memcpy((unsigned char *)buf + CRC_FIELD, &crc, sizeof(crc));
}

static void keep_mismatch(struct lg_worker_stats *stats, const struct lg_verify_mismatch *m)
{
	for (int i = 0; i < LG_VERIFY_KEPT; i++)
		if (!stats->verify_kept[i].reasons) {
			stats->verify_kept[i] = *m;
			return;
		}
}

/* The reasons a block fails, both headers into m. */
static int block_reasons(const void *buf, uint32_t got_bytes, uint32_t block_bytes, uint64_t offset_bytes,
			 uint64_t seed, int check_seed, uint64_t generation, struct lg_verify_mismatch *m)
{
	struct lg_block_header found = { 0 };
	int reasons = 0;

	if (got_bytes >= sizeof(found))
		memcpy(&found, buf, sizeof(found));
	m->offset_bytes = offset_bytes;
	m->found = found;
	/* what is not known is shown as found, or 0 where nothing was found */
	m->expected = (struct lg_block_header){
		.magic = LG_VERIFY_MAGIC, .offset_bytes = offset_bytes,
		.seed = check_seed || found.magic != LG_VERIFY_MAGIC ? seed : found.seed,
		.generation = generation || found.magic != LG_VERIFY_MAGIC ? generation : found.generation,
		.block_bytes = block_bytes,
	};
	if (got_bytes < block_bytes)
		return LG_VERIFY_SHORT_READ;
	m->expected.crc32c = block_crc(buf, block_bytes);
	if (found.magic != LG_VERIFY_MAGIC)
		return LG_VERIFY_BAD_MAGIC;
	if (found.crc32c != m->expected.crc32c)
		reasons |= LG_VERIFY_BAD_CRC;
	if (found.offset_bytes != offset_bytes)
		reasons |= LG_VERIFY_BAD_OFFSET;
	if (found.block_bytes != block_bytes)
		reasons |= LG_VERIFY_BAD_SIZE;
	if (check_seed && found.seed != seed)
		reasons |= LG_VERIFY_BAD_SEED;
	if (generation && found.generation != generation)
		reasons |= LG_VERIFY_BAD_GENERATION;
	return reasons;
}

int verify_block(struct lg_worker_stats *stats, const void *buf, uint32_t got_bytes, uint32_t block_bytes,
		 uint64_t offset_bytes, uint64_t seed, int check_seed, uint64_t generation)
{
	struct lg_verify_mismatch m;
	int reasons = block_reasons(buf, got_bytes, block_bytes, offset_bytes, seed, check_seed, generation, &m);

	counter_add(&stats->counters[LG_CTR_VERIFY_CHECKED], 1);
	if (reasons) {
		counter_add(&stats->counters[LG_CTR_VERIFY_BAD], 1);
		m.reasons = (uint64_t)reasons;
		keep_mismatch(stats, &m);
	}
	return reasons;
}

int lg_verify_stamp(void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed, uint64_t generation)
{
	if (!buf || block_bytes < sizeof(struct lg_block_header))
		return -EINVAL;
	verify_stamp(buf, block_bytes, offset_bytes, seed, generation);
	return 0;
}

int lg_verify_check(const void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed,
		    int check_seed, uint64_t generation, struct lg_verify_mismatch *mismatch)
{
	struct lg_verify_mismatch m;
	int reasons;

	if (!buf || block_bytes < sizeof(struct lg_block_header))
		return -EINVAL;
	reasons = block_reasons(buf, block_bytes, block_bytes, offset_bytes, seed, check_seed, generation, &m);
	m.reasons = (uint64_t)reasons;
	if (mismatch)
		*mismatch = m;
	return reasons;
}

int verify_init(struct verify *v, const struct lg_disk_config *cfg, struct lg_worker_stats *stats,
		uint64_t first_block, uint64_t n_blocks)
{
	memset(v, 0, sizeof(*v));
	if (n_blocks > LG_VERIFY_MAX_BLOCKS || cfg->bs_bytes < sizeof(struct lg_block_header))
		return -EFBIG;
	v->gen = malloc((n_blocks ? n_blocks : 1) * sizeof(*v->gen));
	if (!v->gen)
		return -ENOMEM;
	for (uint64_t i = 0; i < n_blocks; i++)
		v->gen[i] = cfg->verify_filled ? 1 : 0;
	v->first_block = first_block;
	v->n_blocks = n_blocks;
	v->seed = cfg->seed;
	v->block_bytes = cfg->bs_bytes;
	v->last_gen = 1;
	v->stats = stats;
	return 0;
}

void verify_free(struct verify *v)
{
	free(v->gen);
	v->gen = NULL;
}

void verify_begin(struct verify *v, void *buf, uint64_t offset_bytes, int is_write)
{
	uint32_t *e = verify_entry(v, offset_bytes);

	if (!is_write) {
		*e |= VERIFY_BUSY;
		return;
	}
	/* 0 is "unknown" and 1 a fill's: a worker's writes wrap past both */
	v->last_gen = v->last_gen >= (VERIFY_BUSY - 1) ? 2 : v->last_gen + 1;
	*e = v->last_gen | VERIFY_BUSY;
	verify_stamp(buf, v->block_bytes, offset_bytes, v->seed, v->last_gen);
}

void verify_done(struct verify *v, const void *buf, uint64_t offset_bytes, int is_write, int res)
{
	uint32_t *e = verify_entry(v, offset_bytes);
	uint32_t gen = *e & ~VERIFY_BUSY;

	if (is_write) {
		/* a write that failed or fell short may have left anything behind: that
		 * block can no longer be checked, and says so */
		*e = res == (int)v->block_bytes ? gen : 0;
		if (res != (int)v->block_bytes)
			counter_add(&v->stats->counters[LG_CTR_VERIFY_UNCHECKED], 1);
		return;
	}
	*e = gen;
	if (!gen || res < 0)
		counter_add(&v->stats->counters[LG_CTR_VERIFY_UNCHECKED], 1);
	else
		verify_block(v->stats, buf, (uint32_t)res, v->block_bytes, offset_bytes, v->seed, 1, gen);
}

/* Written blocks at or after block i that a read-back will not reach. */
static void count_unread(struct verify *v, uint64_t i)
{
	uint64_t n = 0;

	for (; i < v->n_blocks; i++)
		n += (v->gen[i] & ~VERIFY_BUSY) != 0;
	counter_add(&v->stats->counters[LG_CTR_VERIFY_UNCHECKED], n);
}

/* The next known block at or after *i; 0 when none is left. */
static int next_known(const struct verify *v, uint64_t *i)
{
	while (*i < v->n_blocks && !(v->gen[*i] & ~VERIFY_BUSY))
		(*i)++;
	return *i < v->n_blocks;
}

/* A run stopped before its end (a signal) skips the read-back: what it wrote is counted unchecked. */
static int stopped_early(struct verify *v, struct worker *w)
{
	const struct lg_disk_config *cfg = w->config;

	if (run_stop_ns(w->run) >= cfg->end_ns)
		return 0;
	stats_begin(w);
	count_unread(v, 0);
	stats_end(w);
	return 1;
}

/* The read-back's side of the pump (pump.h): a slot's offset lives here. */
struct readback_pump {
	struct verify *v;
	unsigned char *bufs;
	uint64_t *offs;
	uint64_t next;		/* the block the next read looks from */
	int fd, fixed_file;
};

static inline int readback_pump_next(void *ctx, uint32_t slot, struct io_uring_sqe *sqe)
{
	struct readback_pump *rp = ctx;
	struct verify *v = rp->v;

	if (!next_known(v, &rp->next))
		return 0;
	rp->offs[slot] = (v->first_block + rp->next++) * v->block_bytes;
	sqe->opcode = IORING_OP_READ;
	sqe->flags = rp->fixed_file ? IOSQE_FIXED_FILE : 0;
	sqe->fd = rp->fd;
	sqe->addr = (uint64_t)(uintptr_t)(rp->bufs + (size_t)slot * v->block_bytes);
	sqe->len = v->block_bytes;
	sqe->off = rp->offs[slot];
	return 1;
}

static inline void readback_pump_done(void *ctx, uint32_t slot, int res)
{
	struct readback_pump *rp = ctx;

	verify_done(rp->v, rp->bufs + (size_t)slot * rp->v->block_bytes, rp->offs[slot], 0, res);
}

int verify_readback_uring(struct verify *v, struct worker *w, struct uring *r, int fd, int fixed_file,
			  unsigned char *bufs, unsigned qd)
{
	struct readback_pump rp = { .v = v, .bufs = bufs, .fd = fd, .fixed_file = fixed_file };
	struct pump p = { .next = readback_pump_next, .done = readback_pump_done, .ctx = &rp, .qd = qd };
	int err;

	if (stopped_early(v, w))
		return 0;
	rp.offs = malloc(qd * sizeof(*rp.offs));
	err = rp.offs ? pump_run(&p, w, r) : -ENOMEM;
	if (err) {
		/* the ring failed: what is in flight and what is left is not checked */
		stats_begin(w);
		counter_add(&v->stats->counters[LG_CTR_VERIFY_UNCHECKED], p.inflight);
		count_unread(v, rp.next);
		stats_end(w);
	}
	free(rp.offs);
	return err;
}

int verify_readback_psync(struct verify *v, struct worker *w, int fd, unsigned char *buf)
{
	if (stopped_early(v, w))
		return 0;
	for (uint64_t i = 0; next_known(v, &i); i++) {
		uint64_t off = (v->first_block + i) * v->block_bytes;
		ssize_t res = pread(fd, buf, v->block_bytes, (off_t)off);

		stats_begin(w);
		verify_done(v, buf, off, 0, res < 0 ? -errno : (int)res);
		stats_end(w);
		worker_publish(w);
	}
	return 0;
}
