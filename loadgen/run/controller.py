"""The controller: runs native workers on a timeline and collects interval snapshots.

Timeline (monotonic ns): start_ns (the schedule's origin) -> ramp_end_ns
(results begin) -> end_ns (no op starts after it). Workers exclude warm-up
completions themselves, so the snapshots' counts are zero until ramp_end_ns and
an interval is the difference of two snapshots taken interval_ns apart.

The controller only reads the workers' memory; it never pauses them. It stops
them at end_ns, on SIGINT/SIGTERM, when a worker or host fails, when every
worker has exited on its own, or when the job's policy says so, and always
returns what was measured.

Rules that keep the result consistent however late the controller runs (a
starved controller may wake seconds after a tick):
- an interval ends only at a consistent snapshot (Snapshot.torn_rows) whose
  copy finished before end_ns; any other snapshot is not a boundary, and the
  next one covers its time;
- the last interval runs from the last boundary to stop_ns and holds whatever
  the final snapshot adds, so the intervals always add up to the total;
- an interval's length is what the clock says, never its nominal one.

Time comes from an injected Clock, so the stop logic is tested with a fake one.
"""
import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterator, Protocol

import numpy as np

from loadgen.facts import threads
from loadgen.run import native
from loadgen.run.stats import Snapshot

# How often the controller wakes during warm-up and between ticks to check for a stop.
POLL_NS = 50_000_000
# A wake-up this much later than asked means the controller itself was held off the CPU.
HELD_NS = 250_000_000
# A torn snapshot is taken again at once this many times before its tick is given up.
SNAPSHOT_TRIES = 3


class Clock(Protocol):
    """Where the controller gets the time and waits; tests pass a fake."""

    def now_ns(self) -> int: ...

    async def wait(self, stop: asyncio.Event, until_ns: int) -> None:
        """Return at until_ns, or as soon as stop is set."""


class MonotonicClock:
    """CLOCK_MONOTONIC, the workers' own clock."""

    def now_ns(self) -> int:
        return native.now_ns()

    async def wait(self, stop: asyncio.Event, until_ns: int) -> None:
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0, until_ns - self.now_ns()) / 1e9)
        except TimeoutError:
            pass


class DrivenRun(Protocol):
    """What the controller drives: a native.Run, a remote agent's run, or several as one."""

    layout: native.Layout
    workers: int                    # rows of every stats matrix read() returns

    def read(self) -> np.ndarray:
        """The cumulative stats matrix (workers, layout.words) as of now."""

    def stop(self, stop_ns: int) -> None:
        """Ask every worker to stop; nothing completing at or after stop_ns counts."""

    def done(self) -> bool:
        """True once every worker has exited."""

    def failure(self) -> str | None:
        """Why the run failed (a host lost, say), or None."""

    async def wait(self) -> int:
        """Until every worker exited: 0, or the first setup -errno."""

    def free(self) -> None: ...


def controller_cpus(kept_off: set[int] | None = None) -> dict:
    """Where the controller may run and where it last ran (/proc/self/stat, field 39);
    kept_off: the workers' CPUs it was moved off for the run, when it was."""
    out: dict = {"affinity": sorted(os.sched_getaffinity(0))}
    if kept_off:
        out["kept_off"] = sorted(kept_off)
    try:
        with open("/proc/self/stat") as f:
            out["last_cpu"] = int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        pass
    return out


def worker_cpus(n: int, offset: int = 0) -> list[int]:
    """Worker i is pinned to the (i + offset)-th CPU this process may use, wrapping around."""
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[(i + offset) % len(cpus)] for i in range(n)]


def cpus_held(census: dict) -> set[int]:
    """The CPUs a census's pinned threads hold: each worker, SQ-poll thread or io-wq helper
    allowed one CPU only. io-wq helpers count because a disk run gives them the CPUs its
    workers leave free, where they do the device's work for a bio-based device such as zram;
    helpers allowed several CPUs leave room for the controller beside them."""
    held = set()
    for t in census.get("threads", []):
        allowed = t.get("allowed") or ""
        if t["role"] in ("worker", "sq-poll", "io-wq") and allowed.isdigit():
            held.add(int(allowed))
    return held


class ControllerPlacement:
    """The controller thread, moved off its workers' CPUs for a run when CPUs are left over.

    Unpinned, the scheduler puts it (and the threads Python starts from it, which inherit
    its affinity) beside a worker as often as not, and a sender at full rate then loses
    the controller's share of its CPU. With every CPU held it stays where it is, and the
    stall judgement counts it as sharing."""

    def __init__(self) -> None:
        self.original = os.sched_getaffinity(0)
        self.kept_off: set[int] = set()

    def move_off(self, held: set[int]) -> None:
        free = self.original - held
        if free and free != self.original:
            os.sched_setaffinity(0, free)
            self.kept_off = self.original & held

    def census(self) -> dict:
        """The thread census (facts.threads), counting the process's CPUs, not the moved controller's."""
        return threads.census(cpus=len(self.original))

    def close(self) -> None:
        """Back to the affinity it had (kept_off stays, for the record)."""
        if self.kept_off:
            os.sched_setaffinity(0, self.original)


@dataclass
class Timeline:
    start_ns: int
    ramp_end_ns: int
    end_ns: int
    interval_ns: int

    @classmethod
    def starting_now(cls, ramp_ns: int, duration_ns: int, interval_ns: int, lead_ns: int = 20_000_000):
        """A timeline that begins lead_ns from now, giving threads time to start."""
        start = native.now_ns() + lead_ns
        return cls(start, start + ramp_ns, start + ramp_ns + duration_ns, interval_ns)


@dataclass
class Interval:
    start_ns: int
    end_ns: int
    delta: Snapshot


@dataclass
class Measurement:
    timeline: Timeline
    stop_ns: int               # when results end: end_ns, or the moment of the stop
    final: Snapshot            # cumulative, after every worker exited
    intervals: list[Interval] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: str | None = None   # None: ran to the end
    failed: bool = False             # stopped by the job's policy or by the workers themselves
    setup_errno: int = 0
    # (t_ns, operations completed so far) at ramp_end_ns, at every snapshot, consistent
    # or not (counters only grow), and at stop_ns: what stalls are found from
    progress: list[tuple[int, int]] = field(default_factory=list)
    held: list[tuple[int, int]] = field(default_factory=list)  # (due, woke): the controller held
    skipped_snapshots: int = 0       # torn, or finished past the end: not an interval boundary
    controller: dict = field(default_factory=dict)
    threads: dict = field(default_factory=dict)  # facts.threads.census() at the last snapshot

    @property
    def measured_ns(self) -> int:
        return max(0, self.stop_ns - self.timeline.ramp_end_ns)


def stacked_rows(workers: list[int]) -> list[slice]:
    """Each part's rows when parts of these many workers are stacked in order (as CompositeRun does)."""
    rows, at = [], 0
    for n in workers:
        rows.append(slice(at, at + n))
        at += n
    return rows


class CompositeRun:
    """Several runs (local and remote) driven as one: their workers' rows are stacked in order."""

    def __init__(self, parts: list[DrivenRun]) -> None:
        self.parts = parts
        self.layout = parts[0].layout
        self.workers = sum(p.workers for p in parts)
        self._rows = stacked_rows([p.workers for p in parts])

    def rows(self) -> list[slice]:
        """Each part's rows in a stacked snapshot (fixed when the parts started)."""
        return list(self._rows)

    def read(self) -> np.ndarray:
        return np.vstack([p.read() for p in self.parts])

    def stop(self, stop_ns: int) -> None:
        for p in self.parts:
            p.stop(stop_ns)

    def done(self) -> bool:
        return all(p.done() for p in self.parts)

    def failure(self) -> str | None:
        for p in self.parts:
            why = p.failure()
            if why:
                return why
        return None

    async def wait(self) -> int:
        codes = await asyncio.gather(*(p.wait() for p in self.parts))
        return next((c for c in codes if c < 0), 0)

    def free(self) -> None:
        for p in self.parts:
            p.free()


OnInterval = Callable[[Interval, Snapshot], Awaitable[None]]
Policy = Callable[[Snapshot], str | None]
Progress = Callable[[Snapshot], int]


def _read_consistent(run: DrivenRun, layout: native.Layout, clock: Clock) -> tuple[Snapshot, bool]:
    """A snapshot of the run, taken again if torn; (snapshot, consistent)."""
    for _ in range(SNAPSHOT_TRIES):
        words = run.read()
        # The snapshot's time is after every worker's copy was made.
        snap = Snapshot(layout, words, clock.now_ns())
        if not snap.torn_rows():
            return snap, True
    return snap, False


@contextlib.contextmanager
def _signals_stop(on_signal: Callable[[str], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call on_signal(name) on the running loop; after, the
    caller's handlers are back."""
    loop = asyncio.get_running_loop()
    caller_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in caller_handlers:
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        yield
    finally:
        # remove_signal_handler leaves SIG_DFL behind, and a SIGTERM then would kill the
        # process before its result is written: give the caller's handlers back, with
        # the signals held so none lands in between.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, caller_handlers)
        for sig, handler in caller_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


async def run_workers(run: DrivenRun, timeline: Timeline, on_interval: OnInterval,
                      policy: Policy | None = None, on_tick: Callable[[int], None] | None = None,
                      progress: Progress | None = None, clock: Clock | None = None) -> Measurement:
    """Drive one run to its end and return everything it measured.

    on_interval(interval, cumulative) is awaited once per completed interval;
    on_tick(now_ns) is called during warm-up, for progress. policy(cumulative)
    may return a reason to stop early. progress(cumulative) counts completed
    operations, sampled at every snapshot for stall detection.
    """
    clock = clock or MonotonicClock()
    stop = asyncio.Event()
    reason: dict[str, str] = {}

    def on_signal(signame: str) -> None:
        reason.setdefault("interrupt", f"interrupted by {signame}")
        stop.set()

    layout = run.layout
    previous = Snapshot.zero(layout, run.workers, timeline.ramp_end_ns)
    next_tick = timeline.ramp_end_ns + timeline.interval_ns
    intervals: list[Interval] = []
    samples: list[tuple[int, int]] = [(timeline.ramp_end_ns, 0)] if progress else []
    held: list[tuple[int, int]] = []
    skipped = 0
    # Taken once the schedule has begun (every worker has named its thread by then), and
    # retaken at every interval, so io-wq helpers started later count.
    census: dict = {}
    stop_ns = timeline.end_ns
    woke = None     # when the controller last woke: from then until it waits again it works
    placement = ControllerPlacement()
    with _signals_stop(on_signal), contextlib.closing(placement):
        while True:
            now = clock.now_ns()
            if woke is not None and now - woke >= HELD_NS:
                held.append((woke, now))    # held while at work (a read, the .hlog)
            if now >= timeline.end_ns:
                break
            failure = run.failure()
            if failure:
                reason.setdefault("policy", failure)
                stop_ns = now
                break
            if run.done():
                reason.setdefault("early", "every worker stopped before the end")
                stop_ns = now
                break
            if stop.is_set():
                stop_ns = now
                break
            wake = min(next_tick, timeline.end_ns, now + POLL_NS)
            await clock.wait(stop, wake)
            asleep_from, now = now, clock.now_ns()
            woke = now
            # held while asleep: woken this late (a wake-up already due counts from the wait)
            if now - max(wake, asleep_from) >= HELD_NS:
                held.append((max(wake, asleep_from), now))
            if not census and now >= timeline.start_ns:
                census = placement.census()
                placement.move_off(cpus_held(census))
            if now < timeline.ramp_end_ns and on_tick:
                on_tick(now)
            if now < next_tick or next_tick >= timeline.end_ns or stop.is_set():
                continue
            snap, consistent = _read_consistent(run, layout, clock)
            if snap.t_ns >= timeline.end_ns:
                skipped += 1        # the final snapshot ends the last interval instead
                continue
            if progress:
                samples.append((snap.t_ns, progress(snap)))
            while next_tick <= snap.t_ns:
                next_tick += timeline.interval_ns
            if not consistent:
                skipped += 1        # the next consistent snapshot covers this time too
                continue
            interval = Interval(previous.t_ns, snap.t_ns, snap.since(previous))
            intervals.append(interval)
            census = placement.census()      # while every worker and io-wq helper is alive
            await on_interval(interval, snap)
            previous = snap
            why = policy(snap) if policy else None
            if why:
                reason.setdefault("policy", why)
                stop_ns = min(clock.now_ns(), timeline.end_ns)
                break
        if not census:
            census = placement.census()      # a run stopped before its schedule began
        run.stop(stop_ns)
        setup_err = await run.wait()
        # A part may fail while draining after the end (an agent dying before its final report).
        late = run.failure()
        if late and "interrupt" not in reason:
            reason.setdefault("policy", late)
        controller = controller_cpus(placement.kept_off)    # where it ran, before it moves back
    # Every worker has exited, so each row is final and consistent.
    final = Snapshot(layout, run.read(), stop_ns)
    if policy and not reason:
        why = policy(final)  # a run shorter than one interval is judged here
        if why:
            reason["policy"] = why
    if progress and stop_ns > timeline.ramp_end_ns:
        samples.append((stop_ns, progress(final)))
    last = Interval(previous.t_ns, max(stop_ns, previous.t_ns), final.since(previous))
    if stop_ns > previous.t_ns or (stop_ns >= timeline.ramp_end_ns and not final.same_counts(previous)):
        intervals.append(last)
        await on_interval(last, final)
    return Measurement(
        timeline=timeline, stop_ns=stop_ns, final=final, intervals=intervals,
        interrupted="interrupt" in reason,
        stop_reason=reason.get("interrupt") or reason.get("policy") or reason.get("early"),
        failed="interrupt" not in reason and ("policy" in reason or "early" in reason),
        setup_errno=-setup_err if setup_err < 0 else 0,
        progress=samples, held=held, skipped_snapshots=skipped, controller=controller,
        threads=census,
    )
