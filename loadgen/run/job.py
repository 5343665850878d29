"""What every job shares: the timeline, the .hlog, the watchers, CPU time, and a run's lifetime.

A job (disk, net) is prepared once, by one function per kind, wherever it runs
(here, in an agent's job process, in a fleet's worker): disk.job.prepare,
net.job.prepare_send and prepare_receive. What they return is a PreparedJob:
its target opened or its sockets bound, its workers' CPUs chosen, start() to
begin its native run on a timeline, facts() for an agent's "ready" and the
document, and close() for what it opened.

measure() drives a run: it takes an async start(timeline) that returns the
DrivenRun (a local one starts at once; a remote one is told to go first). From
the moment the run starts, SIGINT and SIGTERM stop it and never lose it
(loadgen.run.interrupts).

Whoever starts a job says who watches it in a Watch: the display for people
(none with -q) and observers, each told of every interval as it ends with the
very row the document will hold (the NDJSON stream, live metrics). Observers
belong to the caller, who opens them before the run and closes them after
(the NDJSON stream ends with the document, written after measure() returns).
"""
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable, Protocol, Sequence

from loadgen import output
from loadgen.errors import UsageError
from loadgen.results import histogram
from loadgen.run import interrupts
from loadgen.run.controller import DrivenRun, Interval, Measurement, Policy, Timeline, run_workers
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


class PreparedJob(Protocol):
    """A job ready to start: what disk.job.prepare and net.job.prepare_send/prepare_receive return."""

    workers: int        # rows of stats its run will have
    interval_ns: int    # the spec's interval: a timeline told from elsewhere carries none

    def start(self, timeline: Timeline) -> DrivenRun:
        """Start the native workers on timeline (they wait for its start_ns)."""

    def facts(self) -> dict:
        """What it is (engine, target, ports, CPUs): an agent's "ready" carries these, and the
        document's config is made from them wherever the job ran."""

    def close(self) -> None:
        """Close what prepare opened; the run must have been freed first."""


Start = Callable[[Timeline], Awaitable[DrivenRun]]


def starting(job: PreparedJob) -> Start:
    """measure()'s start for a job prepared here: its native run starts at once."""
    async def start(timeline: Timeline) -> DrivenRun:
        return job.start(timeline)

    return start


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


async def measure(start: Start, common: CommonSpec, view: IntervalView,
                  hlog_path: str | None, hlog_comment: str, watch: Watch | None,
                  policy: Policy | None = None, lead_ns: int = 20_000_000,
                  metrics: "live_metrics.Feed | None" = None) -> Outcome:
    """Start a run on a fresh timeline and drive it to the end.

    start(timeline) is awaited for the run (remote jobs are prepared before
    and only told to go here; see starting() for one prepared here); lead_ns is how far
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
        run = await start(timeline)
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
