"""native/pace.h through loadgen.run.native: the schedule every engine paces by.

Op k of stream phase of stride streams at rate R per second is due at
start + floor((k * stride + phase) * 1e9 / R). The engines step it with a
quotient and a remainder instead of a 128-bit divide per op; stepping must
agree exactly with the formula, from any starting op, for rates that do and
do not divide 1e9, and over spans where k * 1e9 needs more than 64 bits.
count_by(t) is how many ops are due at or before t: the end-of-run count of
what should have been sent.
"""
import pytest

from loadgen.run import native

NS = 10**9


def due(start, rate, stride, phase, k):
    return start + (k * stride + phase) * NS // rate


def count_by(start, rate, stride, phase, t):
    """Brute force: the smallest k not yet due at t."""
    if t < start:
        return 0
    lo, hi = 0, 1
    while due(start, rate, stride, phase, hi) <= t:
        hi *= 2
    while lo < hi:  # first k with due > t
        mid = (lo + hi) // 2
        if due(start, rate, stride, phase, mid) <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


SCHEDULES = [
    # start_ns, rate, stride, phase, k0
    (0, 1, 1, 0, 0),
    (5, 3, 1, 0, 0),                 # 1e9/3: remainders carry
    (1000, 7, 3, 2, 0),
    (123, 10_000, 2, 1, 0),
    (0, 100_000, 1, 0, 0),
    (0, 999_999_937, 1, 0, 0),        # a prime near 1e9: a carry almost every step
    (0, 1_000_000_000, 1, 0, 0),      # one per ns
    (0, 3_000_000_000, 4, 3, 0),      # faster than 1 per ns: ties in ns
    (10**12, 250_000, 65536, 65535, 0),  # the most flows
    (0, 999_999_937, 1, 0, 2**35),    # k * 1e9 beyond 64 bits, 34 s into a run
    (7, 123_457_000, 5, 4, 2**33 + 17),
]


@pytest.mark.parametrize("start, rate, stride, phase, k0", SCHEDULES)
def test_stepping_agrees_with_the_formula(start, rate, stride, phase, k0):
    n = 5000
    got = native.pace_schedule(start, rate, stride, phase, k0, n)
    assert got == [due(start, rate, stride, phase, k0 + i) for i in range(n)]


def test_streams_interleave_into_one_even_sequence():
    rate, stride = 7_919, 3
    merged = sorted(t for p in range(stride) for t in native.pace_schedule(0, rate, stride, p, 0, 1000))
    assert merged == [n * NS // rate for n in range(3000)]


@pytest.mark.parametrize("start, rate, stride, phase, _k0", SCHEDULES[:-2])
def test_count_by_agrees_with_brute_force(start, rate, stride, phase, _k0):
    times = native.pace_schedule(start, rate, stride, phase, 0, 50)
    probes = {start - 1, start, times[-1] + 10**6}
    for t in times:
        probes |= {t - 1, t, t + 1}
    for t in sorted(probes):
        assert native.pace_count_by(start, rate, stride, phase, t) == count_by(start, rate, stride, phase, t), t


def test_count_by_at_a_due_time_includes_it():
    # 1e9/3 = 333333333.3: op 1 is due at 333333333 and counts there, not one ns later.
    assert native.pace_schedule(0, 3, 1, 0, 1, 1) == [333_333_333]
    assert native.pace_count_by(0, 3, 1, 0, 333_333_332) == 1
    assert native.pace_count_by(0, 3, 1, 0, 333_333_333) == 2


@pytest.mark.parametrize("rate, stride, phase", [(0, 1, 0), (1, 0, 0), (10, 2, 2)])
def test_bad_schedules_are_refused(rate, stride, phase):
    with pytest.raises(OSError):
        native.pace_schedule(0, rate, stride, phase, 0, 1)
    with pytest.raises(OSError):
        native.pace_count_by(0, rate, stride, phase, 0)
