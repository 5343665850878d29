/*
 * pace.h: pacing, shared by every engine (disk.c, net.c, the raw engines to come).
 *
 * Vocabulary:
 *   schedule   op k of stream `phase` of `stride` interleaved streams, at a total
 *              rate R per second, is due at start_ns + floor((k * stride + phase) * 1e9 / R).
 *              The streams together make one evenly spaced sequence.
 *   cursor     the next op of one stream: its due time kept as quotient and
 *              remainder, so stepping to the next op is two adds and a compare,
 *              exact, without a 128-bit divide per op.
 *   deadline   the earlier of the run's own end and the controller's stop.
 *   tolerance  ops due within this much of now go out in the same batch. A
 *              worker sleeps until (next due - tolerance): the kernel wakes it
 *              about one wake-up late, so it lands near the due time instead
 *              of one wake-up behind it. A wake-up costs twice: its lateness,
 *              and the CPU time of the sleep and the wake (large in a VM, where
 *              arming a timer and idling exit to the hypervisor). The tolerance
 *              covers both: at least the lateness, and at least
 *              PACE_WAKE_CPU_FACTOR times the CPU of one wake-up, so that a
 *              worker waking at most once per tolerance spends at most
 *              1/PACE_WAKE_CPU_FACTOR of a core sleeping and waking. Each op keeps its own
 *              scheduled time, so latency stays corrected for coordinated
 *              omission; an op sent early has lag 0 and its latency counts
 *              from its actual start, so latency is never less than service.
 *   window     a sender of a one-way stream sends every op due within the
 *              window of now in one batch, ahead of its time; a receiver that
 *              times arrivals by the kernel's receive stamp sleeps a window
 *              between drains. The window is at least the tolerance, and wide
 *              enough that its wake-ups cost at most 1/PACE_WINDOW_CPU_FACTOR
 *              of a core, up to PACE_WINDOW_MAX_NS. Ops sent early are counted
 *              (early_max_ns, early_sum_ns), never hidden.
 *   busy poll  the opt-in alternative: never sleep, spin on the clock.
 *
 * Rules: no I/O besides the clock and sleeping; times are CLOCK_MONOTONIC ns.
 */
#ifndef LG_PACE_H
#define LG_PACE_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include "clock.h"
#include "hdr.h"
#include "run.h"

#define PACE_NS_PER_S 1000000000ULL

/* Bounds of the measured tolerance: 1 us is below any timer's wake-up cost;
 * beyond 200 us an early batch would bunch a 10k pps stream into pairs, so a
 * machine that wakes later than that is reported as lag rather than hidden. */
#define PACE_TOLERANCE_MIN_NS 1000LL
#define PACE_TOLERANCE_MAX_NS 200000LL
#define PACE_WAKE_SAMPLES 48
#define PACE_WAKE_SLEEP_NS 20000LL
#define PACE_WAKE_BUDGET_NS 5000000LL
#define PACE_WAKE_CPU_FACTOR 10
/* The window: a worker that may send ahead wakes at most once per window, and
 * a window costs at most 1/PACE_WINDOW_CPU_FACTOR of a core in wake-ups. Its
 * ceiling is iperf3's default pacing timer (--pacing-timer 1000 us): loadgen
 * never bursts more than its peer does. */
#define PACE_WINDOW_CPU_FACTOR 100
#define PACE_WINDOW_MAX_NS 1000000LL

struct pace_cursor {
	int64_t start_ns;
	uint64_t rate;		/* ops per second over all streams; 0: unpaced */
	uint64_t k;		/* the index of the op the cursor stands on */
	uint64_t q, r;		/* floor(n * 1e9 / rate) and its remainder, n = k * stride + phase */
	uint64_t step_q, step_r; /* the same for stride * 1e9 */
};

/* Place c on op k of stream phase (of stride streams) at rate per second. */
static inline void pace_cursor_init(struct pace_cursor *c, int64_t start_ns, uint64_t rate,
				    uint64_t stride, uint64_t phase, uint64_t k)
{
	c->start_ns = start_ns;
	c->rate = rate;
	c->k = k;
	c->q = c->r = c->step_q = c->step_r = 0;
	if (rate) {
		/* once per stream: the 128-bit divide the steps avoid */
		unsigned __int128 n = ((unsigned __int128)k * stride + phase) * PACE_NS_PER_S;
		unsigned __int128 step = (unsigned __int128)stride * PACE_NS_PER_S;

		c->q = (uint64_t)(n / rate);
		c->r = (uint64_t)(n % rate);
		c->step_q = (uint64_t)(step / rate);
		c->step_r = (uint64_t)(step % rate);
	}
}

/* When the cursor's op is due (meaningless when unpaced). */
static inline int64_t pace_due_ns(const struct pace_cursor *c)
{
	return c->start_ns + (int64_t)c->q;
}

/* Step to the stream's next op. */
static inline void pace_next(struct pace_cursor *c)
{
	c->k++;
	c->q += c->step_q;
	c->r += c->step_r;
	if (c->r >= c->rate && c->rate) {
		c->r -= c->rate;
		c->q++;
	}
}

/* How many ops of stream phase are due at or before t_ns (exact; one 128-bit
 * divide, for end-of-run accounting, not the hot path). */
static inline uint64_t pace_count_by(int64_t start_ns, uint64_t rate, uint64_t stride, uint64_t phase,
				     int64_t t_ns)
{
	unsigned __int128 slots;
	int64_t t = t_ns - start_ns;

	if (t < 0 || rate == 0)
		return 0;
	/* Slot n is due by t iff floor(n * 1e9 / R) <= t iff n * 1e9 < (t + 1) * R. */
	slots = ((unsigned __int128)(t + 1) * rate + PACE_NS_PER_S - 1) / PACE_NS_PER_S;
	if (slots <= phase)
		return 0;
	return (uint64_t)((slots - phase - 1) / stride) + 1;
}

/* The time after which a worker stops: its own end, or the controller's stop. */
static inline int64_t pace_deadline_ns(const struct lg_run *run, int64_t end_ns)
{
	int64_t stop = run_stop_ns(run);

	return stop < end_ns ? stop : end_ns;
}

static inline void pace_sleep_until(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* A spin-wait hint: it eases the sibling hyperthread and saves power. */
#if defined(__x86_64__) || defined(__i386__)
#define PACE_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define PACE_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define PACE_CPU_RELAX() do { } while (0)
#endif

/* Busy poll: spin on the clock until t_ns. */
static inline void pace_spin_until(int64_t t_ns)
{
	while (clock_now_ns() < t_ns)
		PACE_CPU_RELAX();
}

/* What one wake-up costs this thread where it now runs. */
struct pace_wake_cost {
	int64_t late_p90_ns;	/* how late an absolute clock_nanosleep returns */
	int64_t cpu_ns;		/* the thread's CPU time per sleep and wake */
};

/*
 * Measure the wake-up cost: the 90th percentile lateness of up to
 * PACE_WAKE_SAMPLES short sleeps, and the CPU time per sleep and wake. A
 * loaded machine ends the sampling after PACE_WAKE_BUDGET_NS (at least 8
 * samples), so the workers still start near the run's start. Call after
 * pinning, with the 1 ns timer slack set (worker_main does).
 */
static inline struct pace_wake_cost pace_measure_wake(void)
{
	int64_t late[PACE_WAKE_SAMPLES], v, begin = clock_now_ns();
	struct timespec cpu0, cpu1;
	struct pace_wake_cost cost;
	int n = 0;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
	while (n < PACE_WAKE_SAMPLES && (n < 8 || clock_now_ns() - begin < PACE_WAKE_BUDGET_NS)) {
		int64_t t = clock_now_ns() + PACE_WAKE_SLEEP_NS;

		pace_sleep_until(t);
		late[n++] = clock_now_ns() - t;
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
	cost.cpu_ns = ((int64_t)(cpu1.tv_sec - cpu0.tv_sec) * 1000000000LL + cpu1.tv_nsec - cpu0.tv_nsec) / n;
	/* insertion sort: a few dozen values, once per worker */
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && late[j - 1] > late[j]; j--) {
			v = late[j];
			late[j] = late[j - 1];
			late[j - 1] = v;
		}
	cost.late_p90_ns = late[n * 9 / 10];
	return cost;
}

/* The tolerance for a wake-up cost: its lateness, or PACE_WAKE_CPU_FACTOR
 * times its CPU, whichever is more, clamped to the bounds. */
static inline int64_t pace_tolerance_ns(struct pace_wake_cost cost)
{
	int64_t v = cost.late_p90_ns;

	if (v < PACE_WAKE_CPU_FACTOR * cost.cpu_ns)
		v = PACE_WAKE_CPU_FACTOR * cost.cpu_ns;
	if (v < PACE_TOLERANCE_MIN_NS)
		v = PACE_TOLERANCE_MIN_NS;
	if (v > PACE_TOLERANCE_MAX_NS)
		v = PACE_TOLERANCE_MAX_NS;
	return v;
}

/* The window for a wake-up cost: PACE_WINDOW_CPU_FACTOR times its CPU, at
 * least the tolerance, at most PACE_WINDOW_MAX_NS. */
static inline int64_t pace_window_ns(struct pace_wake_cost cost, int64_t tolerance_ns)
{
	int64_t v = PACE_WINDOW_CPU_FACTOR * cost.cpu_ns;

	if (v > PACE_WINDOW_MAX_NS)
		v = PACE_WINDOW_MAX_NS;
	return v > tolerance_ns ? v : tolerance_ns;
}

/* The tolerance measured for this thread where it now runs (see above). */
static inline int64_t pace_measure_tolerance_ns(void)
{
	return pace_tolerance_ns(pace_measure_wake());
}

/* Record how this worker paces, for the result: its tolerance, its mode, and
 * the CPU it runs on (call after pinning: a pinned worker stays there). */
static inline void pace_record_mode(struct lg_worker_stats *st, int64_t tolerance_ns, int busy_poll)
{
	int cpu = sched_getcpu();

	counter_set(&st->counters[LG_CTR_PACE_TOLERANCE_NS], (uint64_t)tolerance_ns);
	counter_set(&st->counters[LG_CTR_BUSY_POLL], busy_poll ? 1 : 0);
	counter_set(&st->counters[LG_CTR_CPU], cpu >= 0 ? (uint64_t)cpu : 0);
}

/* Count one failed op under its errno; errnos past the table share the last slot. */
static inline void pace_count_errno(struct lg_worker_stats *st, int err)
{
	counter_add(&st->errno_counts[err > 0 && err < LG_ERRNO_SLOTS ? err : LG_ERRNO_SLOTS - 1], 1);
	counter_add(&st->counters[LG_CTR_ERRORS], 1);
}

/* Lag of an op started at now_ns: early (within the tolerance) counts as on time. */
static inline uint64_t pace_lag_ns(int64_t now_ns, int64_t sched_ns)
{
	return now_ns > sched_ns ? (uint64_t)(now_ns - sched_ns) : 0;
}

/* How far ahead of its scheduled time an op started at now_ns went (0: not early). */
static inline uint64_t pace_early_ns(int64_t now_ns, int64_t sched_ns)
{
	return sched_ns > now_ns ? (uint64_t)(sched_ns - now_ns) : 0;
}

#endif
