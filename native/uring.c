/* uring.c: ring setup, registration and enter, each syscall wrapped once. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include "uring.h"

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	long ret = syscall(__NR_io_uring_setup, entries, p);

	return ret < 0 ? -errno : (int)ret;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
		     const void *arg, size_t argsz)
{
	long ret = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);

	return ret < 0 ? -errno : (int)ret;
}

static int ring_enter(struct uring *r, unsigned to_submit, unsigned min_complete, unsigned flags,
		      const void *arg, size_t argsz)
{
	r->enters++;
	return sys_enter(r->enter_fd, to_submit, min_complete, flags, arg, argsz);
}

/* <linux/io_uring.h>'s io_uring_getevents_arg as of Linux 6.12, whose
 * min_wait_usec older headers call pad */
struct uring_getevents_arg {
	uint64_t sigmask;
	uint32_t sigmask_sz;
	uint32_t min_wait_usec;
	uint64_t ts;
};

static int sys_register(int fd, unsigned op, const void *arg, unsigned nr)
{
	long ret = syscall(__NR_io_uring_register, fd, op, arg, nr);

	return ret < 0 ? -errno : (int)ret;
}

/*
 * Optional flags, most wanted first; on EINVAL the last one is dropped and
 * setup retried (older kernels reject flags they do not know):
 *   SINGLE_ISSUER (6.0) + DEFER_TASKRUN (6.1): completions run in our own
 *   enter call, no task-work interrupts; COOP_TASKRUN (5.19); SUBMIT_ALL (5.18)
 *   so one bad SQE does not stop the rest of a batch.
 * SQPOLL refuses COOP_TASKRUN and DEFER_TASKRUN (EINVAL: its thread runs the
 * task work), so under SQPOLL the retries end with SUBMIT_ALL alone.
 */
static const unsigned optional_flags[] = {
	IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_COOP_TASKRUN,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
};
#define N_OPTIONAL (sizeof(optional_flags) / sizeof(optional_flags[0]))

static int map_rings(struct uring *r, struct io_uring_params *p)
{
	r->sq_ring_size = p->sq_off.array + p->sq_entries * sizeof(unsigned);
	r->cq_ring_size = p->cq_off.cqes + (p->cq_entries * sizeof(struct io_uring_cqe) << r->cqe_shift);
	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		if (r->cq_ring_size > r->sq_ring_size)
			r->sq_ring_size = r->cq_ring_size;
		r->cq_ring_size = r->sq_ring_size;
	}
	r->sq_ring = mmap(NULL, r->sq_ring_size, PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	if (r->sq_ring == MAP_FAILED)
		return -errno;
	if (p->features & IORING_FEAT_SINGLE_MMAP) {
		r->cq_ring = r->sq_ring;
	} else {
		r->cq_ring = mmap(NULL, r->cq_ring_size, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
		if (r->cq_ring == MAP_FAILED)
			return -errno;
	}
	r->sqes_size = p->sq_entries * sizeof(struct io_uring_sqe) << r->sqe_shift;
	r->sqes = mmap(NULL, r->sqes_size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (r->sqes == MAP_FAILED)
		return -errno;

	r->sq_head = (unsigned *)((char *)r->sq_ring + p->sq_off.head);
	r->sq_tail = (unsigned *)((char *)r->sq_ring + p->sq_off.tail);
	r->sq_mask = (unsigned *)((char *)r->sq_ring + p->sq_off.ring_mask);
	r->sq_array = (unsigned *)((char *)r->sq_ring + p->sq_off.array);
	r->sq_flags = (unsigned *)((char *)r->sq_ring + p->sq_off.flags);
	r->sq_entries = p->sq_entries;
	r->cq_head = (unsigned *)((char *)r->cq_ring + p->cq_off.head);
	r->cq_tail = (unsigned *)((char *)r->cq_ring + p->cq_off.tail);
	r->cq_mask = (unsigned *)((char *)r->cq_ring + p->cq_off.ring_mask);
	r->cqes = (struct io_uring_cqe *)((char *)r->cq_ring + p->cq_off.cqes);
	/* An identity SQ index array, filled once: slot i always names SQE i. */
	for (unsigned i = 0; i < p->sq_entries; i++)
		r->sq_array[i] = i;
	r->sqe_tail = *r->sq_tail;
	return 0;
}

int uring_init(struct uring *r, unsigned entries)
{
	return uring_init_flags(r, entries, 0);
}

int uring_init_flags(struct uring *r, unsigned entries, unsigned required_flags)
{
	return uring_init_sq(r, entries, required_flags, -1, 0);
}

int uring_init_sq(struct uring *r, unsigned entries, unsigned required_flags, int sq_cpu, unsigned sq_idle_ms)
{
	struct io_uring_params p;
	unsigned flags = required_flags;
	int n_opt = N_OPTIONAL, fd, err;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	for (int i = 0; i < n_opt; i++)
		flags |= optional_flags[i];
	for (;;) {
		memset(&p, 0, sizeof(p));
		p.flags = flags;
		if ((required_flags & IORING_SETUP_SQPOLL) && sq_cpu >= 0) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = (unsigned)sq_cpu;
		}
		p.sq_thread_idle = sq_idle_ms;
		/* A CQ twice the SQ: completions never overflow with qd <= entries. */
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 2;
		fd = sys_setup(entries, &p);
		if (fd != -EINVAL || n_opt == 0)
			break;
		flags &= ~optional_flags[--n_opt];
	}
	if (fd < 0)
		return fd;
	r->fd = fd;
	r->enter_fd = fd;
	r->flags = p.flags;
	r->features = p.features;
	r->sqe_shift = (p.flags & IORING_SETUP_SQE128) ? 1 : 0;
	r->cqe_shift = (p.flags & IORING_SETUP_CQE32) ? 1 : 0;
	err = map_rings(r, &p);
	if (err) {
		uring_exit(r);
		return err;
	}
	return 0;
}

void uring_exit(struct uring *r)
{
	if (r->sqes && r->sqes != MAP_FAILED)
		munmap(r->sqes, r->sqes_size);
	if (r->cq_ring && r->cq_ring != MAP_FAILED && r->cq_ring != r->sq_ring)
		munmap(r->cq_ring, r->cq_ring_size);
	if (r->sq_ring && r->sq_ring != MAP_FAILED)
		munmap(r->sq_ring, r->sq_ring_size);
	if (r->fd >= 0)
		close(r->fd);
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

int uring_register_file(struct uring *r, int fd)
{
	return sys_register(r->fd, IORING_REGISTER_FILES, &fd, 1);
}

int uring_register_buffers(struct uring *r, const struct iovec *iov, unsigned n)
{
	return sys_register(r->fd, IORING_REGISTER_BUFFERS, iov, n);
}

void uring_register_ring_fd(struct uring *r)
{
	struct io_uring_rsrc_update up = { .offset = -1U, .data = (uint64_t)r->fd };

	if (sys_register(r->fd, IORING_REGISTER_RING_FDS, &up, 1) == 1) {
		r->enter_fd = (int)up.offset;
		r->enter_flags = IORING_ENTER_REGISTERED_RING;
	}
}

int uring_register_iowq_affinity(struct uring *r, const void *cpus, unsigned long cpus_size)
{
	return sys_register(r->fd, IORING_REGISTER_IOWQ_AFF, cpus, (unsigned)cpus_size);
}

/* SQPOLL: whether an enter is needed, and its flags. After the tail store, a
 * full barrier before reading the SQ flags: the kernel thread sets NEED_WAKEUP
 * and then rechecks the tail, so one of us sees the other's store. */
static int sqpoll_needs_enter(struct uring *r, unsigned wait_nr, unsigned *flags)
{
	int need = 0;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(r->sq_flags, __ATOMIC_RELAXED) & IORING_SQ_NEED_WAKEUP) {
		*flags |= IORING_ENTER_SQ_WAKEUP;
		need = 1;
	}
	/* acquire: as uring_for_each_cqe; completions already posted need no wait */
	if (wait_nr && __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) - *r->cq_head < wait_nr)
		need = 1;
	return need;
}

int uring_submit_and_wait(struct uring *r, unsigned wait_nr, int64_t timeout_ns)
{
	return uring_submit_and_wait_min(r, wait_nr, timeout_ns, 0);
}

int uring_submit_and_wait_min(struct uring *r, unsigned wait_nr, int64_t timeout_ns, int64_t min_wait_ns)
{
	unsigned flags = r->enter_flags, to_submit;
	struct __kernel_timespec ts;
	struct uring_getevents_arg arg;
	const void *argp = NULL;
	size_t argsz = 0;

	if (wait_nr && timeout_ns > 0) {
		ts.tv_sec = timeout_ns / 1000000000LL;
		ts.tv_nsec = timeout_ns % 1000000000LL;
		if (r->features & IORING_FEAT_EXT_ARG) {
			/* EXT_ARG (5.11): one enter waits for a completion or the time */
			memset(&arg, 0, sizeof(arg));
			arg.ts = (uint64_t)(uintptr_t)&ts;
			/* whole microseconds, rounded up; a kernel without the feature wants 0 here */
			if (wait_nr > 1 && min_wait_ns > 0 && min_wait_ns < timeout_ns && uring_has_min_wait(r))
				arg.min_wait_usec = (uint32_t)((min_wait_ns + 999) / 1000);
			argp = &arg;
			argsz = sizeof(arg);
			flags |= IORING_ENTER_EXT_ARG;
		} else {
			/* A pure timer (count 0) that completes with -ETIME; the kernel
			 * copies ts when it takes the SQE, inside this enter. */
			struct io_uring_sqe *sqe = uring_get_sqe(r);

			if (sqe) {
				sqe->opcode = IORING_OP_TIMEOUT;
				sqe->fd = -1;
				sqe->addr = (uint64_t)(uintptr_t)&ts;
				sqe->len = 1;
				sqe->user_data = URING_TIMEOUT_USER_DATA;
			}
		}
	}
	/* Everything the kernel has not consumed yet, including SQEs a failed
	 * enter left behind; counting from our last published tail would strand them. */
	to_submit = r->sqe_tail - __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
	/* release: SQE contents must be visible before the kernel sees the new tail */
	__atomic_store_n(r->sq_tail, r->sqe_tail, __ATOMIC_RELEASE);
	if ((r->flags & IORING_SETUP_SQPOLL) && !sqpoll_needs_enter(r, wait_nr, &flags))
		return (int)to_submit;
	/* DEFER_TASKRUN runs completions only inside GETEVENTS, and IOPOLL finds
	 * them only there (polling the device): always ask. */
	if (wait_nr || (r->flags & (IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_IOPOLL)))
		flags |= IORING_ENTER_GETEVENTS;
	for (;;) {
		int ret = ring_enter(r, to_submit, wait_nr, flags, argp, argsz);

		if (ret == -EINTR)
			continue;
		if (ret == -ETIME)
			return 0;
		return ret;
	}
}
