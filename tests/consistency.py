"""One check shared by the stall and contention tests: a result and its .hlog agree exactly.

The intervals' operations add up to the summary's, the .hlog's interval
histograms add up to the document's total histogram bucket by bucket, each
interval's histogram counts what its row counts, and the intervals tile the
measured time without gap or overlap. Nothing here looks at how long anything took.
"""
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from hlogs import untagged_name
from loadgen.results import histogram

# .hlog times are written with 3 decimals (ms).
HLOG_TIME_STEP_S = 0.001


def hlog_tagged(path: Path) -> dict[str, list[tuple[float, float, HdrHistogram]]]:
    """tag -> [(start_s, length_s, histogram)], in file order; untagged lines under
    the name the log's comment gives them (hlogs.untagged_name)."""
    name = untagged_name(path)
    out: dict[str, list] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith(("#", '"')):
            continue
        tag = name
        if line.startswith("Tag="):
            tag, line = line[4:].split(",", 1)
        start, length, _max, payload = line.split(",", 3)
        out.setdefault(tag, []).append((float(start), float(length), HdrHistogram.decode(payload)))
    return out


def same_counts(a: HdrHistogram, b: HdrHistogram) -> bool:
    ca = np.frombuffer(a.counts, dtype=np.uint64)[: a.counts_len]
    cb = np.frombuffer(b.counts, dtype=np.uint64)[: b.counts_len]
    return bool(np.array_equal(ca, cb))


def assert_consistent(doc: dict, hlog: Path, tag: str, row_count: str) -> None:
    """doc's intervals, summary, total histogram `tag` and the .hlog agree exactly.

    row_count names the row field the tag's histogram counts ("ops" for disk,
    "received" for net)."""
    s, rows = doc["summary"], doc["intervals"]
    assert sum(r["ops"] for r in rows) == s["ops"]
    lines = hlog_tagged(hlog)[tag]
    assert len(lines) == len(rows)
    total = histogram.new()
    for (start_s, length_s, h), row in zip(lines, rows):
        assert h.get_total_count() == row[row_count]
        total.add(h)
    whole = HdrHistogram.decode(doc["histograms"][tag])
    assert same_counts(total, whole)
    assert whole.get_total_count() == sum(r[row_count] for r in rows)
    # contiguous, and together as long as the measured time
    ends = [start + length for start, length, _ in lines]
    for (start, _, _), prev_end in zip(lines[1:], ends):
        assert abs(start - prev_end) <= 2 * HLOG_TIME_STEP_S
    assert lines[0][0] == 0.0
    assert abs(ends[-1] - s["duration_s"]) <= 2 * HLOG_TIME_STEP_S
    assert rows[-1]["t_s"] == round(s["duration_s"], 3)
    assert [r["t_s"] for r in rows] == sorted(r["t_s"] for r in rows)
