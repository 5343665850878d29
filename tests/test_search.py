"""The knee search (loadgen/search.py) fed fake trial outcomes: table tests, no runs.

A fake path is a function rate -> passed; the search is driven to its end the way
loadgen/run/trials.py drives it, and its knee and trials are checked.
"""
import pytest

from loadgen.errors import UsageError
from loadgen.search import (Done, Outcome, SearchSpec, Step, bounds, curve_rates, format_knee, format_trial, judge,
                            latency_of, loss_ratio, next_step, parse_search)


def spec(**kw) -> SearchSpec:
    base = dict(kind="net", max_loss=0.001, max_p99_ns=None, trial_ns=10**9, resolution=0.01, confirm=1,
                floor=1, ceiling=100_000, max_trials=40)
    return SearchSpec(**(base | kw))


def drive(s: SearchSpec, passes, achieved_max: float = 0.0) -> tuple[Done, list[Outcome]]:
    """Run the search against passes(rate, nth trial at that rate) -> bool; the closed-loop
    trial achieves achieved_max. Bounded: a search that never ends fails the test."""
    trials: list[Outcome] = []
    for _ in range(1000):
        step = next_step(s, trials)
        if isinstance(step, Done):
            return step, trials
        if step.rate is None:
            trials.append(Outcome("ceiling", None, achieved_max, True))
            continue
        nth = sum(1 for t in trials if t.rate == step.rate)
        trials.append(Outcome(step.phase, step.rate, step.rate, passes(step.rate, nth)))
    pytest.fail("the search did not end")


def below(knee: int):
    return lambda rate, nth: rate <= knee


@pytest.mark.parametrize("knee, floor, ceiling, resolution", [
    (30_000, 1, 100_000, 0.01),
    (30_000, 1_000, 60_000, 0.01),
    (99_999, 1, 100_000, 0.01),
    (1, 1, 100_000, 0.01),
    (2_000_000, 1, 10_000_000, 0.001),
    (12_345, 10_000, 20_000, 0.05),
])
def test_the_knee_is_found_within_the_resolution(knee, floor, ceiling, resolution):
    s = spec(floor=floor, ceiling=ceiling, resolution=resolution)
    done, trials = drive(s, below(knee))
    assert done.knee is not None and done.knee <= knee
    assert knee - done.knee <= max(1, resolution * (knee + resolution * ceiling)), trials
    # confirmed: it passed 1 + confirm times, the last trials at the knee
    assert sum(1 for t in trials if t.rate == done.knee and t.passed) == 1 + s.confirm
    assert trials[-1] == Outcome("confirm", done.knee, done.knee, True)


def test_it_begins_at_the_ceiling_and_stops_there_when_it_passes():
    done, trials = drive(spec(ceiling=50_000, confirm=2), below(10**9))
    assert [(t.phase, t.rate) for t in trials] == [("search", 50_000), ("confirm", 50_000), ("confirm", 50_000)]
    assert done.knee == 50_000 and "the ceiling passed" in done.why


def test_the_ceiling_defaults_to_a_closed_loop_trial():
    done, trials = drive(spec(ceiling=None), below(20_000), achieved_max=80_000.7)
    assert trials[0] == Outcome("ceiling", None, 80_000.7, True)
    assert trials[1] == Outcome("search", 80_000, 80_000, False)
    assert done.ceiling == 80_000 and 19_800 <= done.knee <= 20_000


def test_a_closed_loop_trial_below_the_floor_ends_the_search():
    done, trials = drive(spec(ceiling=None, floor=10_000), below(10**9), achieved_max=5_000)
    assert done.knee is None and "below the floor" in done.why and len(trials) == 1


def test_a_path_that_fails_everywhere_has_no_knee_and_says_the_floor_failed():
    done, trials = drive(spec(floor=1_000), lambda rate, nth: False)
    assert done.knee is None and "fails at the floor" in done.why
    assert trials[-1].rate == 1_000 and not trials[-1].passed


def test_a_knee_that_fails_its_confirmation_is_searched_below():
    # The path holds 40k; the first trial above it passes by luck, every later one fails.
    lucky = []

    def flaky(rate, nth):
        if rate <= 40_000:
            return True
        lucky.append(rate)
        return len(lucky) == 1

    done, trials = drive(spec(ceiling=100_000), flaky)
    assert done.knee is not None and 39_600 <= done.knee <= 40_000, trials
    assert Outcome("confirm", lucky[0], lucky[0], False) in trials


def test_the_trial_cap_ends_a_search_that_has_not_converged():
    done, trials = drive(spec(max_trials=3), below(30_000))
    assert len(trials) == 3 and done.knee is None and "cap of 3 trials" in done.why


def test_confirm_zero_takes_the_first_pass_at_the_converged_rate():
    done, trials = drive(spec(confirm=0), below(30_000))
    assert not any(t.phase == "confirm" for t in trials) and done.knee is not None


@pytest.mark.parametrize("trials, lo, hi", [
    ([], None, None),
    ([Outcome("search", 100, 100, False)], None, 100),
    ([Outcome("search", 100, 100, False), Outcome("search", 50, 50, True)], 50, 100),
    # a rate that passed and then failed is a failed rate
    ([Outcome("search", 50, 50, True), Outcome("confirm", 50, 50, False), Outcome("search", 25, 25, True)], 25, 50),
    # the ceiling trial never bounds
    ([Outcome("ceiling", None, 10, True)], None, None),
])
def test_bounds(trials, lo, hi):
    assert bounds(trials) == (lo, hi)


def test_next_step_halves_between_the_bounds():
    s = spec(floor=1_000, ceiling=9_000)
    assert next_step(s, []) == Step("search", 9_000)
    assert next_step(s, [Outcome("search", 9_000, 9_000, False)]) == Step("search", 5_000)
    assert next_step(s, [Outcome("search", 9_000, 9_000, False), Outcome("search", 5_000, 5_000, True)]) == \
        Step("search", 7_000)


@pytest.mark.parametrize("knee, pcts, rates", [
    (50_000, (10, 50, 80, 90, 100), [5_000, 25_000, 40_000, 45_000, 50_000]),
    (3, (10, 50), [1, 2]),
    (1, (100,), [1]),
])
def test_curve_rates(knee, pcts, rates):
    assert curve_rates(knee, pcts) == rates


LAT = {"min": 1, "mean": 5.0, "p50": 4_000, "p90": 8_000, "p99": 20_000, "p99.9": 30_000, "p99.99": 40_000,
       "max": 50_000, "count": 1000}


@pytest.mark.parametrize("summary, max_p99_ns, passed, why", [
    ({"loss_ratio": 0.0005, "latency_ns": LAT}, None, True, []),
    ({"loss_ratio": 0.002, "latency_ns": LAT}, None, False, ["loss 0.2000% > 0.1000%"]),
    ({"loss_ratio": 0.0, "latency_ns": LAT}, 10_000, False, ["p99 20.0 µs > 10.0 µs"]),
    ({"loss_ratio": 0.0, "oneway": {"latency_ns": LAT}}, 30_000, True, []),
    ({"loss_ratio": 0.0, "oneway_omitted": "clocks too coarse"}, 30_000, False,
     ["no latency measured to hold to --max-p99 (clocks too coarse)"]),
    ({"loss_ratio": None, "note": "stream mode to an external target"}, None, False,
     ["loss not measured: stream mode to an external target"]),
    ({"loss_ratio": 0.0, "shortfall": {"requested": 100_000, "achieved": 80_000, "likely_limit": "cpu"}}, None,
     False, ["fell short: 80.0k of 100.0k/s (likely limit: cpu)"]),
])
def test_judge_net(summary, max_p99_ns, passed, why):
    assert judge(spec(max_p99_ns=max_p99_ns), summary) == (passed, why)


def test_judge_disk_counts_failed_ios_as_loss():
    s = spec(kind="disk", max_loss=0.0)
    assert judge(s, {"ops": 999, "errors": 1, "latency_ns": LAT}) == (False, ["loss 0.1000% > 0.0000%"])
    assert loss_ratio("disk", {"ops": 0, "errors": 0}) == 0.0
    assert judge(s, {"ops": 1000, "errors": 0, "latency_ns": LAT}) == (True, [])


def test_a_closed_loop_trial_is_not_failed_for_its_shortfall():
    summary = {"loss_ratio": 0.0, "shortfall": {"requested": 1, "achieved": 0, "likely_limit": "cpu"}}
    assert judge(spec(), summary, closed_loop=True) == (True, [])


def test_latency_of_skips_empty_blocks():
    assert latency_of({"latency_ns": LAT | {"count": 0}}) is None


@pytest.mark.parametrize("raw, field, value", [
    ({"max_loss": "0.1%"}, "max_loss", 0.001),
    ({"max_loss": "0.001"}, "max_loss", 0.001),
    ({"resolution": "2%"}, "resolution", 0.02),
    ({"resolution": "0.5"}, "resolution", 0.005),
    ({"max_p99": "200us"}, "max_p99_ns", 200_000),
    ({"ceiling": "max"}, "ceiling", None),
    ({"ceiling": "40k"}, "ceiling", 40_000),
    ({"load_curve": "none"}, "load_curve_pct", ()),
    ({"load_curve": "10,50,80,90,100"}, "load_curve_pct", (10, 50, 80, 90, 100)),
    ({}, "trial_ns", 60 * 10**9),
    ({}, "load_curve_pct", (10, 50, 80, 90, 100)),
])
def test_parse_search(raw, field, value):
    assert getattr(parse_search("net", **raw), field) == pytest.approx(value) if isinstance(value, float) else \
        getattr(parse_search("net", **raw), field) == value


@pytest.mark.parametrize("raw, message", [
    ({"max_loss": "2"}, "max-loss"),
    ({"max_loss": "-1"}, "max-loss"),
    ({"resolution": "0"}, "resolution"),
    ({"load_curve": "10,150"}, "load-curve"),
    ({"load_curve": "ten"}, "load-curve"),
    ({"floor": "50k", "ceiling": "10k"}, "below --floor"),
    ({"trial": "soon"}, "trial"),
])
def test_parse_search_refuses(raw, message):
    with pytest.raises(UsageError, match=message):
        parse_search("net", **raw)


def test_format_trial_and_knee():
    entry = {"phase": "search", "pct": None, "rate": 30_000, "achieved": 25_500.0, "loss_ratio": 0.01,
             "p50_ns": 4_000, "p99_ns": 20_000, "lag_max_ns": 1_000, "passed": False, "why": ["loss 1.0000% > 0.1000%"]}
    line = format_trial("net", entry)
    for part in ("search", "30.0k pps", "25.5k", "1.0000%", "4.0 µs", "20.0 µs", "1.0 µs", "FAIL loss 1.0000% > 0.1000%"):
        assert part in line, (part, line)
    search = {"kind": "net", "knee_pps": 30_000, "why": "w", "load_curve": [entry | {"phase": "curve", "pct": 50}]}
    assert format_knee(search) == "knee: 30.0k pps (w)\nload curve, p99 at each share of the knee: 50% 20.0 µs"
    assert format_knee({"kind": "disk", "knee_iops": None, "why": "fails at the floor"}) == \
        "knee: not found (fails at the floor)"
