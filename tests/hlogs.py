"""Reading loadgen's .hlog as other tools do, for the tests.

by_name() decodes every interval with the hdrhistogram package's reader and
files it under its tag; untagged lines go under the name the log's
"#[Untagged: NAME]" comment gives them (None when a log has no such comment).
Logs from before untagged lines (every line tagged) read the same way.
untagged() is what HdrHistogram's HistogramLogProcessor reads without -tag.
"""
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from loadgen.results import histogram


def untagged_name(path: Path) -> str | None:
    """The histogram the untagged lines hold, as the log's comment names it."""
    marker = "#[" + histogram.HLOG_UNTAGGED
    for line in Path(path).read_text().splitlines():
        if line.startswith(marker) and line.endswith("]"):
            return line[len(marker):-1]
    return None


def intervals(path: Path) -> list[HdrHistogram]:
    """Every interval histogram, in file order, tagged or not."""
    reader = HistogramLogReader(str(path), histogram.new())
    out = []
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            out.append(h)
    finally:
        reader.close()
    return out


def by_name(path: Path) -> dict[str | None, list[HdrHistogram]]:
    """name -> interval histograms in order: a line's tag, or the untagged lines' name."""
    name = untagged_name(path)
    out: dict[str | None, list[HdrHistogram]] = {}
    for h in intervals(path):
        out.setdefault(h.get_tag() or name, []).append(h)
    return out


def untagged(path: Path) -> list[HdrHistogram]:
    """The untagged intervals only: what HistogramLogProcessor reads without -tag."""
    return [h for h in intervals(path) if h.get_tag() is None]
