/*
 * verify.h: block headers, crc32c and a disk worker's generation map (--verify).
 *
 * Vocabulary:
 *   header      struct lg_block_header at the start of a block (loadgen.h).
 *   generation  which write of a block a header is from: 1 for a stamped fill,
 *               then the worker's own count of writes (31 bits, wrapping past 1).
 *   map         one uint32 per block of the worker's slice: the generation the
 *               block should hold (0: unknown, never checked) and, in bit 31,
 *               an I/O of it in flight. A block with an I/O in flight takes no
 *               other, so what a read should find is never in doubt.
 *   checked     a completed read of a block of known generation; bad: one whose
 *               header or crc32c did not match; unchecked: a read of an
 *               unknown block, or a written block the read-back never read.
 *
 * Rules: no printing; the hooks that count (verify_done, the read-backs) run
 * between the caller's stats_begin and stats_end, or bracket their own.
 */
#ifndef LG_VERIFY_H
#define LG_VERIFY_H

#include <stdint.h>
#include "loadgen.h"
#include "run.h"
#include "uring.h"

#define VERIFY_BUSY 0x80000000u

struct verify {
	uint32_t *gen;			/* NULL: verify is off */
	uint64_t first_block, n_blocks;	/* the worker's slice */
	uint64_t seed;
	uint32_t block_bytes;
	uint32_t last_gen;		/* the generation of the worker's latest write */
	struct lg_worker_stats *stats;
};

/* crc32c of n bytes continuing crc, by the fastest implementation here. */
uint32_t crc32c(const void *buf, uint64_t n, uint32_t crc);

/* The map of a worker's slice, every block's generation known (filled: 1) or not; 0 or -errno. */
int verify_init(struct verify *v, const struct lg_disk_config *cfg, struct lg_worker_stats *stats,
		uint64_t first_block, uint64_t n_blocks);
void verify_free(struct verify *v);

static inline uint32_t *verify_entry(const struct verify *v, uint64_t offset_bytes)
{
	return &v->gen[offset_bytes / v->block_bytes - v->first_block];
}

/* 1 while the block at offset_bytes has an I/O in flight: the next op on it must wait. */
static inline int verify_busy(const struct verify *v, uint64_t offset_bytes)
{
	return (*verify_entry(v, offset_bytes) & VERIFY_BUSY) != 0;
}

/* An op on offset_bytes goes out: mark its block busy; a write gets the next
 * generation, stamped with its crc32c into buf. */
void verify_begin(struct verify *v, void *buf, uint64_t offset_bytes, int is_write);
/* Its completion (res: bytes or -errno): a failed write leaves the block
 * unknown; a read of a known block is checked and counted. */
void verify_done(struct verify *v, const void *buf, uint64_t offset_bytes, int is_write, int res);

/* After the end of a write-only run: read every known block of the slice at qd
 * on the ring (its buffers bufs, qd of block_bytes) and check it; 0 or -errno. */
int verify_readback_uring(struct verify *v, struct worker *w, struct uring *r, int fd, int fixed_file,
			  unsigned char *bufs, unsigned qd);
/* The same with pread, one block at a time. */
int verify_readback_psync(struct verify *v, struct worker *w, int fd, unsigned char *buf);

/* Check a block against what it should hold; records the first bad ones in stats.
 * generation 0 accepts any. Returns the lg_verify_reason bits (0: good). */
int verify_block(struct lg_worker_stats *stats, const void *buf, uint32_t got_bytes, uint32_t block_bytes,
		 uint64_t offset_bytes, uint64_t seed, int check_seed, uint64_t generation);
/* Stamp a header and its crc32c into the block at buf. */
void verify_stamp(void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed, uint64_t generation);

#endif
