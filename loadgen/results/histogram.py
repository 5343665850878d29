"""The histogram pipeline: native counts arrays -> hdrhistogram objects -> summaries and .hlog.

Every percentile loadgen prints or writes is computed by the `hdrhistogram`
package from the exact counts the native recorder kept, so a reader that
decodes the .hlog gets the same numbers. Layout: 1 ns .. 1 h, 3 significant
digits (native/loadgen.h).

The .hlog is HdrHistogram's interval log (format 1.3). Each interval writes its
primary histogram (the one the interval rows' latency comes from) untagged and
every other one tagged, because HdrHistogram's own tools (HistogramLogProcessor)
read only untagged lines unless given -tag. A comment line says which histogram
the untagged lines hold; older loadgen logs tagged every line, and readers
accept both.
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
HLOG_UNTAGGED = "Untagged: "
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


# Per counts index: the lowest value it holds and the width of its range, as
# HdrHistogram defines them (get_value_from_index, _hdr_size_of_equiv_value_range).
_INDEX = np.arange(33792, dtype=np.int64)
_BUCKET = np.maximum((_INDEX >> 10) - 1, 0)
_LOWEST = np.where(_INDEX < 2048, _INDEX, ((_INDEX & 1023) + 1024) << _BUCKET)
_WIDTH = np.int64(1) << _BUCKET


def summarize_counts(counts: np.ndarray, percentiles: dict[str, float] = PERCENTILES) -> dict:
    """min, mean, the named percentiles, max and count of a counts array, in ns.

    The same arithmetic as the hdrhistogram package's getters (tests hold the
    two equal), done with numpy so a 1 s interval costs the controller
    microseconds instead of a Python loop over 33,792 buckets.
    """
    counts = np.asarray(counts, dtype=np.uint64)
    nonzero = np.flatnonzero(counts)
    if not nonzero.size:
        return {"min": 0, "mean": 0.0, **{k: 0 for k in percentiles}, "max": 0, "count": 0}
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    out: dict = {"min": int(_LOWEST[nonzero[0]])}
    out["mean"] = float(midpoint_sum_ns(counts)) / total
    for name, p in percentiles.items():
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        i = int(np.searchsorted(cumulative, target, side="left"))
        out[name] = int(_LOWEST[i] + _WIDTH[i] - 1) if p else int(_LOWEST[i])
    last = nonzero[-1]
    out["max"] = int(_LOWEST[last] + _WIDTH[last] - 1)
    out["count"] = total
    return out


def midpoint_sum_ns(counts: np.ndarray) -> int:
    """The sum of every count at its bucket's midpoint, in exact integers like the
    package's mean: the summaries' mean is this over the count."""
    counts = np.asarray(counts, dtype=np.uint64)
    return sum(int(counts[i]) * (int(_LOWEST[i]) + (int(_WIDTH[i]) >> 1)) for i in np.flatnonzero(counts))


def bucket_top_ns(value_ns: int) -> int:
    """The highest value counted together with value_ns (HdrHistogram's
    highestEquivalentValue): how many values are at or below it is exact from
    the counts, and the summaries' percentiles are such tops too."""
    i = int(np.searchsorted(_LOWEST, value_ns, side="right")) - 1
    return int(_LOWEST[i] + _WIDTH[i] - 1)


def counts_at_or_below(counts: np.ndarray, tops_ns: list[int]) -> list[int]:
    """How many values are at or below each bucket top (bucket_top_ns), exactly."""
    cumulative = np.cumsum(np.asarray(counts, dtype=np.uint64), dtype=np.uint64)
    at = np.searchsorted(_LOWEST, np.asarray(tops_ns, dtype=np.int64), side="right") - 1
    return [int(cumulative[i]) for i in at]


def interval_summary(counts: np.ndarray) -> dict:
    s = summarize_counts(counts, INTERVAL_PERCENTILES)
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


def hlog_untagged(name: str) -> str:
    """The comment naming the histogram the untagged lines hold (written before the first)."""
    return f"#[{HLOG_UNTAGGED}{name}]\n"


def hlog_line(tag: str | None, start_s: float, length_s: float, hist: HdrHistogram) -> str:
    """One interval: Tag=... (None: the primary histogram, untagged), start and
    length relative to StartTime, max in ms, payload."""
    max_ms = hist.get_max_value() / HLOG_MAX_UNIT_RATIO
    payload = hist.encode().decode("ascii")
    prefix = "" if tag is None else f"Tag={tag},"
    return f"{prefix}{start_s:.3f},{length_s:.3f},{max_ms:.3f},{payload}\n"
