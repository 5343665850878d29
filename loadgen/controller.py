"""The controller: runs native workers on a timeline and collects interval snapshots.

Timeline (monotonic ns): start_ns (the schedule's origin) -> ramp_end_ns
(results begin) -> end_ns (no op starts after it). Workers exclude warm-up
completions themselves, so the snapshots' counts are zero until ramp_end_ns and
an interval is the difference of two snapshots taken interval_ns apart.

The controller only reads the workers' memory; it never pauses them. It stops
them at end_ns, on SIGINT/SIGTERM, when every worker has exited on its own, or
when the job's policy says so, and always returns what was measured.
"""
import asyncio
import os
import signal
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import numpy as np

from loadgen import native
from loadgen.stats import Snapshot

# How often the controller wakes during warm-up and between ticks to check for a stop.
POLL_NS = 50_000_000


def worker_cpus(n: int, offset: int = 0) -> list[int]:
    """Worker i is pinned to the (i + offset)-th CPU this process may use, wrapping around."""
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[(i + offset) % len(cpus)] for i in range(n)]


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

    @property
    def measured_ns(self) -> int:
        return max(0, self.stop_ns - self.timeline.ramp_end_ns)


class CompositeRun:
    """Several runs (local and remote) driven as one: their workers' rows are stacked in order."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.layout = parts[0].layout
        self.workers = sum(p.workers for p in parts)
        self._rows, at = [], 0
        for p in parts:
            self._rows.append(slice(at, at + p.workers))
            at += p.workers

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
            why = getattr(p, "failure", lambda: None)()
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


async def run_workers(run: "native.Run", timeline: Timeline, on_interval: OnInterval,
                      policy: Policy | None = None, on_tick: Callable[[int], None] | None = None) -> Measurement:
    """Drive one run to its end and return everything it measured.

    on_interval(interval, cumulative) is awaited once per completed interval;
    on_tick(now_ns) is called during warm-up, for progress. policy(cumulative)
    may return a reason to stop early.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reason: dict[str, str] = {}

    def on_signal(signame: str) -> None:
        reason.setdefault("interrupt", f"interrupted by {signame}")
        stop.set()

    caller_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    layout = run.layout
    previous = Snapshot.zero(layout, run.workers, timeline.ramp_end_ns)
    next_tick = timeline.ramp_end_ns + timeline.interval_ns
    intervals: list[Interval] = []
    stop_ns = timeline.end_ns
    try:
        while True:
            now = native.now_ns()
            if now >= timeline.end_ns:
                break
            failure = getattr(run, "failure", lambda: None)()
            if failure:
                reason.setdefault("policy", failure)
                stop_ns = min(now, timeline.end_ns)
                break
            if run.done():
                reason.setdefault("early", "every worker stopped before the end")
                stop_ns = min(now, timeline.end_ns)
                break
            if stop.is_set():
                stop_ns = now
                break
            wake = min(next_tick, timeline.end_ns, now + POLL_NS)
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0, wake - now) / 1e9)
            except TimeoutError:
                pass
            now = native.now_ns()
            if now < timeline.ramp_end_ns and on_tick:
                on_tick(now)
            if now >= next_tick and next_tick < timeline.end_ns and not stop.is_set():
                words = run.read()
                # The interval ends when the snapshot was taken, not when it was due:
                # a late wake-up must not put two intervals' ops into one nominal length.
                taken = min(native.now_ns(), timeline.end_ns)
                snap = Snapshot(layout, words, taken)
                interval = Interval(previous.t_ns, taken, snap.since(previous))
                intervals.append(interval)
                await on_interval(interval, snap)
                previous = snap
                while next_tick <= taken:
                    next_tick += timeline.interval_ns
                why = policy(snap) if policy else None
                if why:
                    reason.setdefault("policy", why)
                    stop_ns = native.now_ns()
                    break
        run.stop(stop_ns)
        setup_err = await run.wait()
        # A part may fail while draining after the end (an agent dying before its final report).
        late = getattr(run, "failure", lambda: None)()
        if late and "interrupt" not in reason:
            reason.setdefault("policy", late)
    finally:
        # remove_signal_handler leaves SIG_DFL behind, and a SIGTERM then would kill the
        # process before its result is written: give the caller's handlers back, with
        # the signals held so none lands in between.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, caller_handlers)
        for sig, handler in caller_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    final = Snapshot(layout, run.read(), stop_ns)
    if policy and not reason:
        why = policy(final)  # a run shorter than one interval is judged here
        if why:
            reason["policy"] = why
    if stop_ns > previous.t_ns and stop_ns > timeline.ramp_end_ns:
        last = Interval(previous.t_ns, stop_ns, final.since(previous))
        intervals.append(last)
        await on_interval(last, final)
    return Measurement(
        timeline=timeline, stop_ns=stop_ns, final=final, intervals=intervals,
        interrupted="interrupt" in reason,
        stop_reason=reason.get("interrupt") or reason.get("policy") or reason.get("early"),
        failed="interrupt" not in reason and ("policy" in reason or "early" in reason),
        setup_errno=-setup_err if setup_err < 0 else 0,
    )
