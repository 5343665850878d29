/* pace.c: the test hooks of pace.h; the engines use the header inline. */
#define _GNU_SOURCE
#include <errno.h>
#include "pace.h"

int lg_pace_schedule(int64_t start_ns, uint64_t rate, uint64_t stride, uint64_t phase, uint64_t k0,
		     int64_t *out, uint32_t n)
{
	struct pace_cursor c;

	if (rate == 0 || stride == 0 || phase >= stride)
		return -EINVAL;
	pace_cursor_init(&c, start_ns, rate, stride, phase, k0);
	for (uint32_t i = 0; i < n; i++) {
		out[i] = pace_due_ns(&c);
		pace_next(&c);
	}
	return (int)n;
}

int64_t lg_pace_count_by(int64_t start_ns, uint64_t rate, uint64_t stride, uint64_t phase, int64_t t_ns)
{
	if (rate == 0 || stride == 0 || phase >= stride)
		return -EINVAL;
	return (int64_t)pace_count_by(start_ns, rate, stride, phase, t_ns);
}

int lg_pace_wake_windows(int64_t late_p90_ns, int64_t cpu_ns, int64_t out[2])
{
	struct pace_wake_cost cost = { late_p90_ns, cpu_ns };

	if (late_p90_ns < 0 || cpu_ns < 0)
		return -EINVAL;
	out[0] = pace_tolerance_ns(cost);
	out[1] = pace_window_ns(cost, out[0]);
	return 0;
}
