"""What every job shares: the timeline, the .hlog, the watchers, CPU time, and a run's lifetime.

A job (disk, net) opens its own resources, then calls measure() with a function
that starts its native run on the given timeline. From the moment the run
starts, SIGINT and SIGTERM stop it and never lose it (loadgen.run.interrupts).

Whoever starts a job says who watches it in a Watch: the display for people
(none with -q) and observers, each told of every interval as it ends with the
very row the document will hold (the NDJSON stream, live metrics). Observers
belong to the caller, who opens them before the run and closes them after
(the NDJSON stream ends with the document, written after measure() returns).
"""
import inspect
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

from loadgen import output
from loadgen.errors import UsageError
from loadgen.results import histogram
from loadgen.run import interrupts
from loadgen.run.controller import Interval, Measurement, Policy, Timeline, run_workers
from loadgen.run.intervals import IntervalSink, IntervalView
from loadgen.run.progress import Display
from loadgen.run.stats import Snapshot
from loadgen.workload import CommonSpec

if TYPE_CHECKING:
    from loadgen.run import metrics as live_metrics


class IntervalObserver(Protocol):
    async def interval(self, row: dict, interval: Interval, cumulative: Snapshot) -> None:
        """Take one finished interval: its document row (not to be changed), its delta and
        the run's totals so far. An OSError stops this observer only: the run goes on and
        the error is printed and kept in the document's warnings."""


@dataclass
class Watch:
    display: Display | None = None              # None: nothing for people while it runs (-q)
    observers: Sequence[IntervalObserver] = field(default_factory=tuple)


@dataclass
class Outcome:
    measurement: Measurement
    rows: list[dict]
    cpu: dict
    warnings: list[str]


async def measure(start: Callable, common: CommonSpec, view: IntervalView,
                  hlog_path: str | None, hlog_comment: str, watch: Watch | None,
                  policy: Policy | None = None, lead_ns: int = 20_000_000,
                  metrics: "live_metrics.Feed | None" = None) -> Outcome:
    """Start a run on a fresh timeline and drive it to the end.

    start(timeline) returns the run, or a coroutine that does (remote jobs,
    which are prepared before and only told to go here); lead_ns is how far
    ahead the schedule begins: time for every worker to receive it. hlog_comment
    describes the job; the display shows it first, as its header. metrics, if
    given, is fed each interval's cumulative snapshot and then the final one."""
    watch = watch or Watch()
    hlog = None
    if hlog_path:
        try:
            hlog = output.Stream.open(hlog_path)
        except OSError as e:
            raise UsageError(f"cannot write {hlog_path}: {output.describe(e)}") from None
    sink = None
    try:
        sink = IntervalSink(view, hlog, watch.display, watch.observers)
        # From here a signal stops the run and keeps what it measured; the .hlog's
        # header then tells a reader (and the tests) that a result will follow.
        interrupts.measuring()
        await sink.log(histogram.hlog_header(time.time() + common.ramp_ns / 1e9, hlog_comment))
        usage0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        timeline = sink.timeline = Timeline.starting_now(common.ramp_ns, common.duration_ns,
                                                         common.interval_ns, lead_ns)
        if watch.display:
            # The .hlog's comment ends by naming its unit; the display gives units with each figure.
            watch.display.start(hlog_comment.removesuffix("; values in ns"), common.duration_ns,
                                common.ramp_ns, common.interval_ns, view.rate_unit)
        run = start(timeline)
        if inspect.isawaitable(run):
            run = await run
        try:
            interrupts.pending()
            m = await run_workers(run, timeline, _with_metrics(sink, metrics), policy=policy, on_tick=sink.warming,
                                  progress=lambda s: view.ops_and_bytes(s)[0] + s.counter("errors"))
            if metrics:
                metrics.finish(m.final)
        finally:
            run.free()
        usage1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    finally:
        if watch.display:
            watch.display.close()
        if sink:
            sink.close_log()
        elif hlog:
            try:
                hlog.close()
            except OSError:
                pass   # the run never started: the error that stopped it is the one to report
    cpu = {"user_s": round(usage1.ru_utime - usage0.ru_utime, 3),
           "sys_s": round(usage1.ru_stime - usage0.ru_stime, 3), "wall_s": round(wall1 - wall0, 3)}
    return Outcome(m, sink.rows, cpu, sink.warnings)


def _with_metrics(sink: IntervalSink, metrics: "live_metrics.Feed | None"):
    """The interval observer: the sink, then the live metrics (--metrics)."""
    if metrics is None:
        return sink

    async def observe(interval, cumulative) -> None:
        await sink(interval, cumulative)
        metrics.observe(cumulative)

    return observe
