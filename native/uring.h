/*
 * uring.h: io_uring on raw syscalls and <linux/io_uring.h>, no liburing.
 * Each syscall is wrapped once here; functions return >= 0 or -errno.
 */
#ifndef LG_URING_H
#define LG_URING_H

#include <linux/io_uring.h>
#include <stdint.h>

#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)	/* Linux 6.12: a wait's min_wait_usec */
#endif

struct uring {
	int fd;
	unsigned flags;			/* setup flags the kernel accepted */
	unsigned features;		/* IORING_FEAT_* the kernel offers */
	unsigned enter_flags;		/* IORING_ENTER_REGISTERED_RING when registered */
	unsigned sqe_shift, cqe_shift;	/* 1 with SQE128 / CQE32: each entry spans two slots */
	int enter_fd;			/* ring fd, or its registered index */
	uint64_t enters;		/* io_uring_enter calls so far */
	/* submission queue */
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *sq_flags;		/* IORING_SQ_NEED_WAKEUP: the SQ thread sleeps */
	unsigned sq_entries;
	struct io_uring_sqe *sqes;
	unsigned sqe_tail;		/* local tail, published by uring_submit_and_wait */
	/* completion queue */
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_cqe *cqes;
	void *sq_ring, *cq_ring;
	size_t sq_ring_size, cq_ring_size, sqes_size;
};

/* Set up a ring with entries slots, dropping optional flags the kernel rejects. */
int uring_init(struct uring *r, unsigned entries);
/* uring_init with required setup flags as well (IORING_SETUP_SQE128 | CQE32), never dropped. */
int uring_init_flags(struct uring *r, unsigned entries, unsigned required_flags);
/* uring_init_flags where the required flags may hold IORING_SETUP_SQPOLL: then
 * sq_cpu >= 0 pins the SQ thread there (IORING_SETUP_SQ_AFF), and it sleeps
 * after sq_idle_ms without work. IOPOLL is required like any other. */
int uring_init_sq(struct uring *r, unsigned entries, unsigned required_flags, int sq_cpu, unsigned sq_idle_ms);
void uring_exit(struct uring *r);
/* Register one file (fixed index 0) and the buffers; each -errno on failure. */
int uring_register_file(struct uring *r, int fd);
int uring_register_buffers(struct uring *r, const struct iovec *iov, unsigned n);
/* Let the ring's io-wq helper threads run on any CPU of cpus; optional (Linux >= 5.14). */
int uring_register_iowq_affinity(struct uring *r, const void *cpus, unsigned long cpus_size);
/* Register the ring fd itself so enter skips the fd lookup (Linux >= 5.18); optional. */
void uring_register_ring_fd(struct uring *r);

/* The next free SQE, zeroed; NULL when the queue is full. */
static inline struct io_uring_sqe *uring_get_sqe(struct uring *r)
{
	/* acquire: the kernel's head store must be seen before the slot is reused */
	unsigned head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
	struct io_uring_sqe *sqe;

	if (r->sqe_tail - head >= r->sq_entries)
		return NULL;
	sqe = &r->sqes[(r->sqe_tail & *r->sq_mask) << r->sqe_shift];
	r->sqe_tail++;
	__builtin_memset(sqe, 0, sizeof(*sqe) << r->sqe_shift);
	return sqe;
}

/* Hand back the SQE the last uring_get_sqe gave, unused (nothing was published since). */
static inline void uring_unget_sqe(struct uring *r)
{
	r->sqe_tail--;
}

/* Where EXT_ARG is missing (before 5.11), a bounded wait queues a timeout SQE
 * with this user_data: leave one SQ slot free for it, and skip its CQE. */
#define URING_TIMEOUT_USER_DATA UINT64_MAX

/* Publish queued SQEs and enter once: submit them and wait for wait_nr
 * completions (0: do not wait), for at most timeout_ns (0: no bound). Returns
 * the number submitted or -errno; a wait that times out is not an error.
 * Under SQPOLL the kernel's thread takes the SQEs: enter only to wake it
 * (IORING_SQ_NEED_WAKEUP) or to wait for completions the CQ does not hold yet.
 * Under IOPOLL a wait polls the device and ignores timeout_ns. */
int uring_submit_and_wait(struct uring *r, unsigned wait_nr, int64_t timeout_ns);
/* uring_submit_and_wait where, once min_wait_ns has passed, the wait ends with
 * any completion short of wait_nr (IORING_FEAT_MIN_TIMEOUT): until then only
 * wait_nr completions or the timeout wake the waiter. Without the feature, or
 * with min_wait_ns 0, wait_nr 1 or no timeout, it is uring_submit_and_wait. */
int uring_submit_and_wait_min(struct uring *r, unsigned wait_nr, int64_t timeout_ns, int64_t min_wait_ns);

static inline int uring_has_min_wait(const struct uring *r)
{
	return (r->features & IORING_FEAT_MIN_TIMEOUT) != 0;
}

/* Visit every ready CQE, then release them all with one head store. */
#define uring_for_each_cqe(r, head, cqe)                                           \
	for (head = *(r)->cq_head;                                                   \
	     /* acquire: CQE contents are valid once the tail that covers them is seen */ \
	     head != __atomic_load_n((r)->cq_tail, __ATOMIC_ACQUIRE) &&              \
	     (cqe = &(r)->cqes[(head & *(r)->cq_mask) << (r)->cqe_shift], 1);        \
	     head++)

static inline void uring_cq_advance_to(struct uring *r, unsigned head)
{
	/* release: the kernel may reuse the slots only after we are done reading */
	__atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
}

#endif
