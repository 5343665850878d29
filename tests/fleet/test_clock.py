"""Clock offsets between the controller and an agent (loadgen/fleet/clock.py): pure arithmetic on crafted samples.

A sample is (t0, a, t1): the controller's clock when it sent a ping, the
agent's clock when it answered, the controller's clock when the answer came.
"""
import pytest

from loadgen.fleet.clock import ClockEstimate, estimate, one_way_meaningful

MS = 1_000_000


@pytest.mark.parametrize("samples, offset_ns, rtt_ns, error_ns", [
    # Same clock, the agent answers halfway.
    ([(1000, 1500, 2000)], 0, 1000, 500),
    # The agent is 10 s ahead.
    ([(1000, 10**10 + 1500, 2000)], 10**10, 1000, 500),
    # The agent is 10 s behind (its clock can read less than ours, even negative).
    ([(10**10 + 1000, 1500, 10**10 + 2000)], -10**10, 1000, 500),
    ([(1000, -10**9, 3000)], -10**9 - 2000, 2000, 1000),
    # Asymmetric paths: the agent really answered at t0 + 100 of a 1000 ns round trip (same clock).
    # The estimate assumes halfway, so it is 400 ns off, inside its +-500 bound.
    ([(1000, 1100, 2000)], -400, 1000, 500),
    # ... and answered just before the reply reached us: 499 ns off.
    ([(1000, 1999, 2000)], 499, 1000, 500),
    # An odd round trip: the midpoint rounds down, the bound rounds up.
    ([(0, 0, 3)], -1, 3, 2),
    # A round trip of zero: exact.
    ([(500, 700, 500)], 200, 0, 0),
])
def test_single_sample(samples, offset_ns, rtt_ns, error_ns):
    assert estimate(samples) == ClockEstimate(offset_ns, rtt_ns, error_ns)


def test_the_smallest_round_trip_wins_wherever_it_is():
    slow_first = (0, 5 * MS + 777, 10 * MS)             # rtt 10 ms, says offset 777
    best = (20 * MS, 20 * MS + 50_000 + 3_000_000, 20 * MS + 100_000)   # rtt 100 us, says +3 ms
    slow_last = (30 * MS, 0, 32 * MS)                  # rtt 2 ms, says -31 ms
    for samples in ([slow_first, best, slow_last], [best, slow_last, slow_first], [slow_last, slow_first, best]):
        e = estimate(samples)
        assert (e.offset_ns, e.rtt_ns, e.error_ns) == (3 * MS, 100_000, 50_000)


def test_the_true_offset_lies_within_the_bound():
    """Whenever inside [t0, t1] the agent really answered, |truth - estimate| <= error_ns."""
    true_offset = 123_456_789
    t0, t1 = 1_000_000, 1_000_777
    for answered in range(t0, t1 + 1, 7):
        e = estimate([(t0, answered + true_offset, t1)])
        assert abs(true_offset - e.offset_ns) <= e.error_ns


@pytest.mark.parametrize("offset_ns", [0, 1, -1, 987_654_321, -10**12])
@pytest.mark.parametrize("t", [0, 1, 10**9, 2**62, -5])
def test_to_agent_and_to_controller_are_inverses(offset_ns, t):
    e = ClockEstimate(offset_ns, 10, 5)
    assert e.to_agent(t) == t + offset_ns
    assert e.to_controller(e.to_agent(t)) == t
    assert e.to_agent(e.to_controller(t)) == t


def test_the_estimate_maps_the_midpoint_to_the_agents_reading():
    t0, a, t1 = 1_000, 777_000_500, 2_000
    e = estimate([(t0, a, t1)])
    assert e.to_agent((t0 + t1) // 2) == a
    assert e.to_controller(a) == (t0 + t1) // 2


def test_as_dict():
    assert ClockEstimate(-3, 8, 4).as_dict() == {"offset_ns": -3, "rtt_ns": 8, "error_ns": 4}


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        estimate([])


def test_a_reply_before_its_request_is_an_error():
    with pytest.raises(ValueError):
        estimate([(2000, 1500, 1000)])


def test_a_negative_round_trip_is_an_error_even_beside_good_samples():
    # The negative one has the smallest "round trip", so it is the one judged.
    with pytest.raises(ValueError):
        estimate([(0, 50, 100), (2000, 1500, 1999)])


@pytest.mark.parametrize("error_ns, median_ns, meaningful", [
    (0, 1000, True),
    (250, 1000, True),        # exactly a quarter
    (251, 1000, False),
    (1000, 1000, False),
    (10, 0, False),           # no delay measured
    (0, 0, False),
    (0, -5, False),
    (50_000, 433, False),     # loopback: the clock bound dwarfs the delay
    (5_000, 1_000_000, True),
])
def test_one_way_meaningful(error_ns, median_ns, meaningful):
    assert one_way_meaningful(error_ns, median_ns) is meaningful


def test_one_way_meaningful_share():
    assert one_way_meaningful(500, 1000, max_share=0.5)
    assert not one_way_meaningful(501, 1000, max_share=0.5)
    assert not one_way_meaningful(1, 1000, max_share=0.0)
