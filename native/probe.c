/*
 * probe.c: what this machine's virtualization costs, timed in loops.
 *
 * Every function fills out_ns[samples] with the CLOCK_MONOTONIC time of one
 * sample, and a sample is `batch` operations back to back, so one clock read
 * is spread over many operations; Python divides by the batch and summarises.
 * Nothing here keeps state between calls, prints or changes the system beyond
 * the calling thread (its timer slack is restored) and the threads it starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "loadgen.h"

/* Bounds the probes enforce, so a bad argument cannot run for hours. */
#define PROBE_MAX_SAMPLES 100000
#define PROBE_MAX_BATCH 100000
#define PROBE_MAX_SLEEP_NS 100000000LL	/* 100 ms */
#define PROBE_MAX_PAGES 65536		/* 256 MiB of 4 KiB pages */

static int bad_counts(const int64_t *out_ns, uint32_t samples, uint32_t batch)
{
	return !out_ns || samples == 0 || samples > PROBE_MAX_SAMPLES || batch == 0 || batch > PROBE_MAX_BATCH;
}

int lg_probe_syscall(int64_t *out_ns, uint32_t samples, uint32_t batch)
{
	if (bad_counts(out_ns, samples, batch))
		return -EINVAL;
	for (uint32_t s = 0; s < samples; s++) {
		int64_t t0 = clock_now_ns();

		/* syscall(), not getppid(): the raw entry, which no libc may answer from a cache. */
		for (uint32_t i = 0; i < batch; i++)
			syscall(SYS_getppid);
		out_ns[s] = clock_now_ns() - t0;
	}
	return 0;
}

static int64_t read_clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int lg_probe_clock(int32_t clock_id, int64_t *out_ns, uint32_t samples, uint32_t batch)
{
	struct timespec ts;

	if (bad_counts(out_ns, samples, batch))
		return -EINVAL;
	if (clock_gettime(clock_id, &ts) < 0)
		return -errno;
	for (uint32_t s = 0; s < samples; s++) {
		int64_t t0 = clock_now_ns();

		for (uint32_t i = 0; i < batch; i++) {
			read_clock_ns(clock_id);
			/* Keeps the compiler from merging or dropping the reads. */
			__asm__ volatile("" ::: "memory");
		}
		out_ns[s] = clock_now_ns() - t0;
	}
	return 0;
}

int lg_probe_sleep(int64_t request_ns, int64_t *out_ns, uint32_t samples)
{
	struct timespec req = { .tv_sec = request_ns / 1000000000LL, .tv_nsec = request_ns % 1000000000LL };
	int ret = 0;
	int slack;

	if (bad_counts(out_ns, samples, 1) || request_ns <= 0 || request_ns > PROBE_MAX_SLEEP_NS)
		return -EINVAL;
	/* The default 50 us of timer slack would hide the timer's own lateness (prctl(2)). */
	slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
	if (slack < 0 || prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0) < 0)
		return -errno;
	for (uint32_t s = 0; s < samples; s++) {
		int64_t t0 = clock_now_ns();
		/* clock_nanosleep returns the error number itself, not -1 and errno. */
		int err = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);

		if (err) {
			ret = -err;	/* EINTR: a signal for the caller to handle */
			break;
		}
		out_ns[s] = clock_now_ns() - t0 - request_ns;
	}
	prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
	return ret;
}

int lg_probe_cpuid(int64_t *out_ns, uint32_t samples, uint32_t batch)
{
#if defined(__x86_64__) || defined(__i386__)
	if (bad_counts(out_ns, samples, batch))
		return -EINVAL;
	for (uint32_t s = 0; s < samples; s++) {
		int64_t t0 = clock_now_ns();

		for (uint32_t i = 0; i < batch; i++) {
			/* Leaf 0, as cpuid.c asks: under VT-x and AMD-V every CPUID exits to the hypervisor. */
			unsigned a = 0, b, c = 0, d;

			__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
		}
		out_ns[s] = clock_now_ns() - t0;
	}
	return 0;
#else
	(void)out_ns;
	(void)samples;
	(void)batch;
	return -EOPNOTSUPP;
#endif
}

/* Pipe ping-pong: the pinger writes a byte to a_to_b and waits for it on b_to_a. */
struct pingpong {
	int a_to_b[2];
	int b_to_a[2];
	int32_t cpu_a, cpu_b;
	int64_t *out_ns;
	uint32_t samples, batch;
	int ret_a, ret_b;
};

static int pin_self(int32_t cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return -pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static int move_byte(int from_fd, int to_fd)
{
	char byte = 0;
	ssize_t n = read(from_fd, &byte, 1);

	if (n == 0)
		return -EPIPE;	/* the other side left */
	if (n < 0)
		return -errno;
	if (write(to_fd, &byte, 1) < 0)
		return -errno;
	return 0;
}

static void *ponger(void *arg)
{
	struct pingpong *p = arg;

	p->ret_b = pin_self(p->cpu_b);
	while (p->ret_b == 0)
		p->ret_b = move_byte(p->a_to_b[0], p->b_to_a[1]);
	if (p->ret_b == -EPIPE)
		p->ret_b = 0;	/* the pinger closed its end: done */
	/* The pinger reads end of file if we stopped early, rather than waiting forever. */
	close(p->b_to_a[1]);
	return NULL;
}

static void *pinger(void *arg)
{
	struct pingpong *p = arg;
	char byte = 0;
	int ret = pin_self(p->cpu_a);

	for (uint32_t s = 0; ret == 0 && s < p->samples; s++) {
		int64_t t0 = clock_now_ns();

		for (uint32_t i = 0; ret == 0 && i < p->batch; i++) {
			if (write(p->a_to_b[1], &byte, 1) < 0) {
				ret = -errno;
				break;
			}
			ssize_t n = read(p->b_to_a[0], &byte, 1);

			ret = n == 1 ? 0 : n == 0 ? -EPIPE : -errno;
		}
		p->out_ns[s] = clock_now_ns() - t0;
	}
	p->ret_a = ret;
	close(p->a_to_b[1]);	/* ends the ponger's loop */
	return NULL;
}

int lg_probe_context_switch(int32_t cpu_a, int32_t cpu_b, int64_t *out_ns, uint32_t samples, uint32_t batch)
{
	struct pingpong p = { .cpu_a = cpu_a, .cpu_b = cpu_b, .out_ns = out_ns, .samples = samples, .batch = batch };
	pthread_t ta, tb;
	int err;

	if (bad_counts(out_ns, samples, batch) || cpu_a >= CPU_SETSIZE || cpu_b >= CPU_SETSIZE)
		return -EINVAL;
	if (pipe2(p.a_to_b, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(p.b_to_a, O_CLOEXEC) < 0) {
		err = -errno;
		close(p.a_to_b[0]);
		close(p.a_to_b[1]);
		return err;
	}
	/* Both sides are new threads, so the caller's own affinity is never touched. */
	err = pthread_create(&tb, NULL, ponger, &p);
	if (err) {
		close(p.a_to_b[0]);
		close(p.a_to_b[1]);
		close(p.b_to_a[0]);
		close(p.b_to_a[1]);
		return -err;
	}
	err = pthread_create(&ta, NULL, pinger, &p);
	if (err) {
		close(p.a_to_b[1]);	/* the ponger sees end of file and closes b_to_a[1] */
		p.ret_a = -err;
	} else {
		pthread_join(ta, NULL);
	}
	pthread_join(tb, NULL);
	close(p.a_to_b[0]);
	close(p.b_to_a[0]);
	/* A ponger that failed makes the pinger read end of file: its own error is the cause. */
	return p.ret_b ? p.ret_b : p.ret_a;
}

int lg_probe_page_fault(int64_t *out_ns, uint32_t samples, uint32_t pages)
{
	long page_bytes = sysconf(_SC_PAGESIZE);

	if (bad_counts(out_ns, samples, 1) || pages == 0 || pages > PROBE_MAX_PAGES || page_bytes <= 0)
		return -EINVAL;
	for (uint32_t s = 0; s < samples; s++) {
		size_t length = (size_t)pages * (size_t)page_bytes;
		volatile char *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return -errno;
		/* One fault per page: a transparent huge page would serve 512 pages from one fault. */
		madvise((void *)p, length, MADV_NOHUGEPAGE);
		int64_t t0 = clock_now_ns();

		for (uint32_t i = 0; i < pages; i++)
			p[(size_t)i * (size_t)page_bytes] = 1;
		out_ns[s] = clock_now_ns() - t0;
		munmap((void *)p, length);
	}
	return 0;
}
