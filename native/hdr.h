/*
 * hdr.h: the recorder. One counts array in HdrHistogram's layout (see
 * loadgen.h), written by one thread. Counts are stored with relaxed atomics so
 * that the controller's concurrent reads are never torn; with a single writer
 * no read-modify-write lock is needed.
 */
#ifndef LG_HDR_H
#define LG_HDR_H

#include <stdint.h>
#include "loadgen.h"

/* HdrHistogram: unit_magnitude 0, sub_bucket_half_count_magnitude 10. */
#define HDR_SUB_BUCKET_HALF_MAG 10
#define HDR_SUB_BUCKET_MASK 2047ULL

static inline int hdr_index(int64_t value_ns)
{
	uint64_t v;
	int bucket, sub_bucket;

	if (value_ns < 0)
		value_ns = 0;
	if (value_ns > LG_HDR_HIGHEST_NS)
		value_ns = LG_HDR_HIGHEST_NS;	/* clamp: an hour is the layout's top */
	v = (uint64_t)value_ns;
	bucket = 64 - __builtin_clzll(v | HDR_SUB_BUCKET_MASK) - (HDR_SUB_BUCKET_HALF_MAG + 1);
	sub_bucket = (int)(v >> bucket);
	return ((bucket + 1) << HDR_SUB_BUCKET_HALF_MAG) + sub_bucket - (1 << HDR_SUB_BUCKET_HALF_MAG);
}

static inline void counter_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void counter_set(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

static inline void counter_max(uint64_t *c, uint64_t v)
{
	if (v > __atomic_load_n(c, __ATOMIC_RELAXED))
		__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

static inline void hdr_record(uint64_t *counts, int64_t value_ns)
{
	counter_add(&counts[hdr_index(value_ns)], 1);
}

#endif
