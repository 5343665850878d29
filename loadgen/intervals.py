"""Interval sinks: each controller interval becomes .hlog entries, a JSON row and a progress update.

A job describes its intervals with an IntervalView: which histograms to log under
which tags, what counts as an operation, and which extra fields a row carries.
"""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from loadgen import histogram
from loadgen.controller import Interval, Timeline
from loadgen.progress import Progress
from loadgen.stats import Snapshot
from loadgen.units import format_si


@dataclass
class IntervalView:
    tags: Callable[[Snapshot], list[tuple[str, np.ndarray]]]  # first tag: the row's latency
    ops_and_bytes: Callable[[Snapshot], tuple[int, int]]
    rate_unit: str
    extra: Callable[[Snapshot, float], dict] = lambda delta, length_s: {}


class IntervalSink:
    def __init__(self, view: IntervalView, timeline: Timeline, hlog, progress: Progress) -> None:
        self.view, self.timeline, self.hlog, self.progress = view, timeline, hlog, progress
        self.rows: list[dict] = []
        self.warnings: list[str] = []

    async def _log(self, line: str) -> None:
        """An .hlog that cannot be written (say, ENOSPC on the disk under test) stops
        being written; the run and its JSON go on, with a warning."""
        try:
            await self.hlog.write(line)
        except OSError as e:
            self.warnings.append(f"the .hlog stopped at {line.split(',', 2)[1]} s: {e.strerror}")
            self.hlog = None

    async def __call__(self, interval: Interval, cumulative: Snapshot) -> None:
        d = interval.delta
        length_s = (interval.end_ns - interval.start_ns) / 1e9
        start_s = (interval.start_ns - self.timeline.ramp_end_ns) / 1e9
        end_s = (interval.end_ns - self.timeline.ramp_end_ns) / 1e9
        latency = None
        for tag, counts in self.view.tags(d):
            if latency is None:
                latency = histogram.interval_summary(counts)
            if self.hlog:
                await self._log(histogram.hlog_line(tag, start_s, length_s, histogram.from_counts(counts)))
        ops, nbytes = self.view.ops_and_bytes(d)
        rate = ops / length_s if length_s > 0 else 0.0
        row = {"t_s": round(end_s, 3), "ops": ops, "rate": round(rate, 3)}
        row.update(self.view.extra(d, length_s))
        row["latency_ns"] = latency
        self.rows.append(row)
        bytes_per_s = nbytes / length_s if length_s > 0 else 0.0
        received = f"  received {format_si(row['received_pps'])} pps" if "received_pps" in row else ""
        self.progress.interval(end_s, rate, self.view.rate_unit, bytes_per_s,
                               latency["p50"] if latency else None, latency["p99"] if latency else None, received)

    def warming(self, now_ns: int) -> None:
        self.progress.warming((self.timeline.ramp_end_ns - now_ns) / 1e9)
