/*
 * pump.h: keep a queue of reads or writes in flight on a ring, one buffer slot
 * each, until there are no more and every one has completed: the sequential
 * passes that are not the timed workload (sweep.c's fill and check, verify.c's
 * read-back).
 *
 * Vocabulary:
 *   slot   one of qd buffers; an I/O owns its slot from next() to done().
 *   next   fill the SQE for a free slot; 0 when there is nothing more to do,
 *          after which it is never called again.
 *   done   one I/O completed with res (bytes, or -errno); called inside
 *          stats_begin/stats_end, so its counters publish together.
 *
 * The ring must have at least qd SQEs; next() and done() are the caller's
 * static inline functions, so the compiler can call them directly.
 */
#ifndef LG_PUMP_H
#define LG_PUMP_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include "run.h"
#include "uring.h"

struct pump {
	int (*next)(void *ctx, uint32_t slot, struct io_uring_sqe *sqe);
	void (*done)(void *ctx, uint32_t slot, int res);
	void *ctx;
	unsigned qd;
	unsigned inflight;	/* after pump_run: the I/Os still in flight when the ring failed */
};

/* 0 when everything next() gave has completed; -ENOMEM before any I/O; or the
 * ring's -errno with p->inflight I/Os still in flight (their buffers must then
 * be leaked). */
static inline __attribute__((always_inline)) int pump_run(struct pump *p, struct worker *w, struct uring *r)
{
	uint32_t *free_slots = malloc(p->qd * sizeof(*free_slots));
	unsigned n_free = p->qd;
	int more = 1, err = 0;

	p->inflight = 0;
	if (!free_slots)
		return -ENOMEM;
	for (unsigned i = 0; i < p->qd; i++)
		free_slots[i] = i;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head;

		while (more && n_free) {
			struct io_uring_sqe *sqe = uring_get_sqe(r);
			uint32_t slot = free_slots[n_free - 1];

			if (!sqe)
				break;
			if (!p->next(p->ctx, slot, sqe)) {
				uring_unget_sqe(r);	/* nothing more */
				more = 0;
				break;
			}
			sqe->user_data = slot;
			n_free--;
			p->inflight++;
		}
		if (!p->inflight)
			break;
		err = uring_submit_and_wait(r, 1, 0);
		if (err < 0 && err != -EAGAIN && err != -EBUSY && err != -EINTR)
			break;
		err = 0;
		stats_begin(w);
		uring_for_each_cqe(r, head, cqe) {
			if (cqe->user_data == URING_TIMEOUT_USER_DATA)
				continue;
			p->done(p->ctx, (uint32_t)cqe->user_data, cqe->res);
			free_slots[n_free++] = (uint32_t)cqe->user_data;
			p->inflight--;
		}
		stats_end(w);
		uring_cq_advance_to(r, head);
		worker_publish(w);
	}
	free(free_slots);
	return err;
}

#endif
