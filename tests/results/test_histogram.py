"""loadgen.results.histogram: counts arrays -> summaries (numpy) and hdrhistogram objects -> .hlog lines.

These build counts arrays with the package itself (no native recorder, no
clock). summarize_counts must give exactly what the package's getters give on
the same counts, since the JSON summary comes from one and the .hlog from the
other; the recorder's agreement with the package is tested in run/test_native.py.
"""
import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadgen.results import histogram

SUMMARY_KEYS = ["min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"]


def counts_of(values) -> np.ndarray:
    """A counts array in the package's own layout, filled by the package."""
    ref = histogram.new()
    for v in values:
        assert ref.record_value(v)
    return np.ctypeslib.as_array(ref.counts).astype(np.uint64).copy()


def test_layout_is_one_ns_to_one_hour_at_three_digits():
    h = histogram.new()
    assert (h.lowest_trackable_value, h.highest_trackable_value, h.significant_figures) == (1, 3_600_000_000_000, 3)
    assert h.counts_len == 33792


def test_from_counts_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="counts array"):
        histogram.from_counts(np.zeros(100, dtype=np.uint64))


def test_from_counts_holds_exactly_the_counts():
    values = [1, 5, 5, 2047, 2048, 123_456, 10**9]
    h = histogram.from_counts(counts_of(values))
    assert h.get_total_count() == len(values)
    assert h.get_min_value() == 1
    assert h.get_max_value() == h.get_highest_equivalent_value(10**9)
    assert h.get_count_at_value(5) == 2
    assert h.get_count_at_value(123_456) == 1


def package_summary(ref: HdrHistogram, percentiles=histogram.PERCENTILES) -> dict:
    """What summarize_counts must return, from the package's own getters."""
    return {"min": ref.get_min_value(), "mean": ref.get_mean_value(),
            **{name: ref.get_value_at_percentile(p) for name, p in percentiles.items()},
            "max": ref.get_max_value(), "count": ref.get_total_count()}


def _log_uniform(n, seed, high_ns):
    rng = np.random.default_rng(seed)
    return [int(v) for v in np.exp(rng.uniform(0.0, np.log(high_ns), n))]


DISTRIBUTIONS = {
    "one value": [123_456],
    "only zero": [0],
    "zero and more": [0, 0, 5, 70_000],
    "unit resolution": list(range(1, 2048)),
    "bucket edges": [2047, 2048, 2049, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1],
    "top of the range": [1, 3_600_000_000_000],
    "log-uniform 1ns-10s": _log_uniform(5000, 1, 10e9),
    "log-uniform 10us-1ms": _log_uniform(5000, 2, 1e6),
    "heavy tail": [50_000] * 9990 + [10**9] * 10,
    "two modes": [20_000] * 500 + [4_000_000] * 500,
}
MORE_PERCENTILES = {f"p{p}": p for p in (0.0, 0.001, 1.0, 10.0, 25.0, 33.3, 50.0, 66.7, 75.0, 90.0, 99.0, 99.9,
                                          99.99, 99.999, 100.0)}


@pytest.mark.parametrize("values", DISTRIBUTIONS.values(), ids=DISTRIBUTIONS.keys())
@pytest.mark.parametrize("percentiles", [histogram.PERCENTILES, MORE_PERCENTILES], ids=["default", "more"])
def test_summarize_counts_equals_the_package(values, percentiles):
    ref = histogram.new()
    for v in values:
        assert ref.record_value(v)
    counts = np.ctypeslib.as_array(ref.counts).astype(np.uint64).copy()
    expected = package_summary(ref, percentiles)
    assert histogram.summarize_counts(counts, percentiles) == expected
    # and from_counts rebuilds a package histogram that agrees with both
    assert package_summary(histogram.from_counts(counts), percentiles) == expected


def test_summarize_empty_is_all_zero():
    s = histogram.summarize_counts(np.zeros(33792, dtype=np.uint64))
    assert list(s) == SUMMARY_KEYS
    assert s == {"min": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "p99.99": 0, "max": 0, "count": 0}


def test_summarize_exact_below_2048():
    # Below 2048 ns the layout has 1 ns resolution, so percentiles are exact.
    s = histogram.summarize_counts(counts_of(range(1, 1001)))
    assert list(s) == SUMMARY_KEYS
    assert s == {"min": 1, "mean": 500.5, "p50": 500, "p90": 900, "p99": 990, "p99.9": 999, "p99.99": 1000,
                 "max": 1000, "count": 1000}


def test_interval_summary():
    assert histogram.interval_summary(counts_of(range(1, 101))) == {"p50": 50, "p99": 99, "max": 100}


def test_hlog_line_fields():
    h = histogram.from_counts(counts_of([1000, 1_500_000]))
    line = histogram.hlog_line("latency", 1.5, 0.5, h)
    tag, start, length, max_ms, payload = line.rstrip("\n").split(",")
    assert (tag, start, length) == ("Tag=latency", "1.500", "0.500")
    assert max_ms == f"{h.get_max_value() / 1e6:.3f}"   # Java's convention: Interval_Max in ms
    decoded = HdrHistogram.decode(payload)
    assert decoded.get_total_count() == 2
    assert decoded.get_max_value() == h.get_max_value()


def test_hlog_round_trips_through_the_package_reader(tmp_path):
    start_wall_s = 1_700_000_000.25
    first = histogram.from_counts(counts_of([100, 200, 300]))
    second = histogram.from_counts(counts_of([5_000_000]))
    path = tmp_path / "x.hlog"
    path.write_text(histogram.hlog_header(start_wall_s, "test log")
                    + histogram.hlog_line("latency", 0.0, 1.0, first)
                    + histogram.hlog_line("service", 0.0, 1.0, first)
                    + histogram.hlog_line("latency", 1.0, 1.0, second))
    header = path.read_text().splitlines()[:4]
    assert header[0] == "#[Histogram log format version 1.3]"
    assert header[1] == "#[test log]"
    assert header[3] == histogram.HLOG_LEGEND

    reader = HistogramLogReader(str(path), histogram.new())
    read = []
    while (h := reader.get_next_interval_histogram()) is not None:
        read.append((h.get_tag(), h.get_start_time_stamp(), h.get_end_time_stamp(), h.get_total_count(),
                     h.get_max_value()))
    reader.close()
    assert reader.get_start_time_sec() == pytest.approx(start_wall_s, abs=1e-3)
    start_ms = reader.get_start_time_sec() * 1000
    assert [(tag, round(s - start_ms), round(e - start_ms), n, mx) for tag, s, e, n, mx in read] == [
        ("latency", 0, 1000, 3, 300),
        ("service", 0, 1000, 3, 300),
        ("latency", 1000, 2000, 1, second.get_max_value()),
    ]
