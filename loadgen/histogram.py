"""The histogram pipeline: native counts arrays -> hdrhistogram objects -> summaries and .hlog.

Every percentile loadgen prints or writes is computed by the `hdrhistogram`
package from the exact counts the native recorder kept, so a reader that
decodes the .hlog gets the same numbers. Layout: 1 ns .. 1 h, 3 significant
digits (native/loadgen.h).
"""
import ctypes
import time

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3_600_000_000_000
SIGFIGS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9, "p99.99": 99.99}
INTERVAL_PERCENTILES = {"p50": 50.0, "p99": 99.0}
# Java's HdrHistogram convention for ns values: Interval_Max is written in ms.
HLOG_MAX_UNIT_RATIO = 1e6
HLOG_LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'


def new() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGFIGS)


def from_counts(counts: np.ndarray) -> HdrHistogram:
    """A histogram holding exactly these counts (the native layout equals the package's)."""
    hist = new()
    counts = np.ascontiguousarray(counts, dtype=np.uint64)
    if counts.shape != (hist.counts_len,):
        raise ValueError(f"counts array has {counts.shape}, expected ({hist.counts_len},)")
    nonzero = np.flatnonzero(counts)
    if nonzero.size:
        ctypes.memmove(hist.counts, counts.ctypes.data, counts.nbytes)
        hist.set_internal_tacking_values(int(nonzero[0]), int(nonzero[-1]), int(counts.sum()))
    return hist


def summarize(hist: HdrHistogram, percentiles: dict[str, float] = PERCENTILES) -> dict:
    """min, mean, the named percentiles, max and count; all ns, all from the package."""
    count = hist.get_total_count()
    if not count:
        return {"min": 0, "mean": 0.0, **{k: 0 for k in percentiles}, "max": 0, "count": 0}
    values = hist.get_percentile_to_value_dict(list(percentiles.values()))
    return {
        "min": hist.get_min_value(),
        "mean": round(hist.get_mean_value(), 1),
        **{name: values[p] for name, p in percentiles.items()},
        "max": hist.get_max_value(),
        "count": count,
    }


def interval_summary(hist: HdrHistogram) -> dict:
    s = summarize(hist, INTERVAL_PERCENTILES)
    return {"p50": s["p50"], "p99": s["p99"], "max": s["max"]}


def hlog_header(start_wall_s: float, comment: str) -> str:
    """The log's opening lines: format version, start time and the column legend."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(start_wall_s))
    return (
        "#[Histogram log format version 1.3]\n"
        f"#[{comment}]\n"
        f"#[StartTime: {start_wall_s:.3f} (seconds since epoch), {stamp}]\n"
        f"{HLOG_LEGEND}\n"
    )


def hlog_line(tag: str, start_s: float, length_s: float, hist: HdrHistogram) -> str:
    """One interval: Tag=..., start and length relative to StartTime, max in ms, payload."""
    max_ms = hist.get_max_value() / HLOG_MAX_UNIT_RATIO
    payload = hist.encode().decode("ascii")
    return f"Tag={tag},{start_s:.3f},{length_s:.3f},{max_ms:.3f},{payload}\n"
