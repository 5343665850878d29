"""Interval sinks: each controller interval becomes .hlog entries, a JSON row, a line
or table on the display, and a call to each observer.

A job describes its intervals with an IntervalView: which histograms to log under
which tags, what counts as an operation, and which extra fields a row carries.
The first histogram is the primary one: the row's latency, and the .hlog's
untagged lines (loadgen.results.histogram says why).
The row is made once: the document, the display and every observer get the same one.
"""
import asyncio
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from loadgen import output
from loadgen.results import histogram
from loadgen.run.controller import Interval, Timeline
from loadgen.run.progress import Display
from loadgen.run.stats import Snapshot

if TYPE_CHECKING:
    from loadgen.run.job import IntervalObserver


@dataclass
class IntervalView:
    tags: Callable[[Snapshot], list[tuple[str, np.ndarray]]]  # first tag: the row's latency
    ops_and_bytes: Callable[[Snapshot], tuple[int, int]]
    rate_unit: str
    extra: Callable[[Snapshot, float], dict] = lambda delta, length_s: {}


class IntervalSink:
    """Turns each interval into .hlog lines, a JSON row, a display update and observer calls.

    The .hlog gets one write per interval, so it is on its way to the disk (or
    the reader) as soon as the interval ends. An .hlog that cannot be written
    (ENOSPC on the disk under test, a reader that went away) stops being
    written; the run and its JSON go on, the error is printed at once and kept
    in `warnings`, and the CLI exits 1 for it (loadgen.output.failures). An
    observer that raises OSError is dropped the same way."""

    def __init__(self, view: IntervalView, hlog: "output.Stream | None", display: Display | None,
                 observers: "Sequence[IntervalObserver]" = ()) -> None:
        self.view, self.hlog, self.display = view, hlog, display
        self.observers = list(observers)
        self.timeline: Timeline | None = None   # set once the .hlog's header is out (it may be slow)
        self.rows: list[dict] = []
        self.warnings: list[str] = []
        self._logged_s = 0.0
        self._untagged_named = False

    def _hlog_failed(self, e: OSError) -> None:
        where = f"after {self._logged_s:.3f} s of intervals" if self._logged_s else "before its first interval"
        self.warn(f"cannot write the .hlog {self.hlog.path}: {output.describe(e)}; it stops {where}")

    def warn(self, text: str) -> None:
        """Print a warning now (it is also kept for the document)."""
        self.warnings.append(text)
        if self.display:
            self.display.pause()
        sys.stderr.write(f"loadgen: warning: {text}\n")
        sys.stderr.flush()

    async def log(self, text: str) -> bool:
        """Write text to the .hlog, off the event loop (a FIFO's reader may be slow); whether it was."""
        if self.hlog is None or not self.hlog.ok:
            return False
        try:
            await asyncio.to_thread(self.hlog.write, text)
        except OSError as e:
            self._hlog_failed(e)
            return False
        return True

    def close_log(self) -> None:
        if self.hlog is None:
            return
        failed_before = not self.hlog.ok
        try:
            self.hlog.close()
        except OSError as e:
            if not failed_before:
                self._hlog_failed(e)

    async def __call__(self, interval: Interval, cumulative: Snapshot) -> None:
        d = interval.delta
        length_s = (interval.end_ns - interval.start_ns) / 1e9
        start_s = (interval.start_ns - self.timeline.ramp_end_ns) / 1e9
        end_s = (interval.end_ns - self.timeline.ramp_end_ns) / 1e9
        latency = None
        lines = []
        for tag, counts in self.view.tags(d):
            primary = latency is None
            if primary:
                latency = histogram.interval_summary(counts)
            if self.hlog is not None and self.hlog.ok:
                if primary and not self._untagged_named:
                    lines.append(histogram.hlog_untagged(tag))
                    self._untagged_named = True
                lines.append(histogram.hlog_line(None if primary else tag, start_s, length_s,
                                                 histogram.from_counts(counts)))
        if lines and await self.log("".join(lines)):
            self._logged_s = end_s
        ops, nbytes = self.view.ops_and_bytes(d)
        rate = ops / length_s if length_s > 0 else 0.0
        row = {"t_s": round(end_s, 3), "ops": ops, "rate": round(rate, 3)}
        row.update(self.view.extra(d, length_s))
        row["latency_ns"] = latency
        self.rows.append(row)
        if self.display:
            self.display.interval(row, nbytes / length_s if length_s > 0 else 0.0)
        for observer in list(self.observers):
            try:
                await observer.interval(row, interval, cumulative)
            except OSError as e:
                self.observers.remove(observer)
                where = (f"after {self.rows[-2]['t_s']:.3f} s of intervals" if len(self.rows) > 1
                         else "before its first interval")
                name = "stdout" if output.is_stdout(str(e.filename)) else e.filename
                self.warn(f"cannot write {name}: {output.describe(e)}; it stops {where}")

    def warming(self, now_ns: int) -> None:
        if self.display:
            self.display.warming((self.timeline.ramp_end_ns - now_ns) / 1e9)
