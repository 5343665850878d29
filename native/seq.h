/*
 * seq.h: per-flow sequence tracking for loss, reordering and duplicates.
 *
 * Wire sequence numbers are 32-bit and wrap; the tracker unwraps each against
 * the highest seen so far (serial-number arithmetic, RFC 1982), so a flow may
 * run past 2^32 datagrams. A bitmap remembers the last SEQ_WINDOW numbers below
 * the highest: a number arriving late into a hole is "reordered", one whose bit
 * is already set is "duplicated", and one older than the window cannot be told
 * apart and is "too old".
 */
#ifndef LG_SEQ_H
#define LG_SEQ_H

#include <stdint.h>
#include <string.h>

#define SEQ_WINDOW 4096	/* bits: reorder depth tracked exactly, 512 B per flow */

struct seq_tracker {
	uint64_t next;		/* unwrapped: highest seen + 1 */
	uint64_t first;		/* unwrapped first_seq: nothing below it was ever sent */
	uint64_t bits[SEQ_WINDOW / 64];
};

enum seq_verdict { SEQ_IN_ORDER, SEQ_AHEAD, SEQ_REORDERED, SEQ_DUPLICATED, SEQ_TOO_OLD };

static inline void seq_init(struct seq_tracker *t, uint32_t first_seq)
{
	memset(t, 0, sizeof(*t));
	/* Start one window above zero so unwrapped numbers never go negative. */
	t->next = ((uint64_t)1 << 32) + first_seq;
	t->first = t->next;
}

static inline int seq_test_and_set(struct seq_tracker *t, uint64_t s)
{
	uint64_t *word = &t->bits[(s / 64) % (SEQ_WINDOW / 64)], mask = 1ULL << (s % 64);
	int was = (*word & mask) != 0;

	*word |= mask;
	return was;
}

/* Account one arrival; *skipped gets how many numbers it jumped over (SEQ_AHEAD). */
static inline enum seq_verdict seq_track(struct seq_tracker *t, uint32_t wire_seq, uint64_t *skipped)
{
	uint64_t s = t->next + (uint64_t)(int64_t)(int32_t)(wire_seq - (uint32_t)t->next);

	*skipped = 0;
	if (s >= t->next) {
		uint64_t gap = s - t->next;

		/* Forget the bits the window slides past: they now stand for new numbers. */
		if (gap >= SEQ_WINDOW) {
			memset(t->bits, 0, sizeof(t->bits));
		} else {
			for (uint64_t x = t->next; x < s; x++)
				t->bits[(x / 64) % (SEQ_WINDOW / 64)] &= ~(1ULL << (x % 64));
		}
		t->bits[(s / 64) % (SEQ_WINDOW / 64)] &= ~(1ULL << (s % 64));
		seq_test_and_set(t, s);
		t->next = s + 1;
		*skipped = gap;
		return gap ? SEQ_AHEAD : SEQ_IN_ORDER;
	}
	/* Before the flow's first number nothing was skipped: it cannot fill a hole. */
	if (t->next - s > SEQ_WINDOW || s < t->first)
		return SEQ_TOO_OLD;
	return seq_test_and_set(t, s) ? SEQ_DUPLICATED : SEQ_REORDERED;
}

#endif
