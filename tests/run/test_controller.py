"""The controller's stop logic, driven by a fake run on a fake clock: no real time passes.

Each case checks why and when the run stopped, and for every case the rules
that keep a result consistent: intervals are contiguous, end no later than
stop_ns, are each consistent, and add up to the final snapshot exactly. A case
whose run has "parts" drives several fake runs as one CompositeRun, as a paired
run drives a local part and agents' parts.
"""
import asyncio
import contextlib
import errno
import os
import signal

import numpy as np
import pytest

from loadgen.run import controller, native
from loadgen.fleet.remote import RemoteRun
from loadgen.run.controller import POLL_NS, SNAPSHOT_TRIES, CompositeRun, DrivenRun, Timeline, run_workers
from loadgen.run.stats import Snapshot

S = 1_000_000_000
LAYOUT = native.Layout()
TIMELINE = Timeline(start_ns=0, ramp_end_ns=1 * S, end_ns=6 * S, interval_ns=1 * S)
RATE_PER_S = 1000
HIST_INDEX = 1234  # where the fake records every op's latency


class FakeClock:
    """now_ns moves only when the controller waits: to the wake-up it asked for,
    plus late(due) when it is starved, or to the next scheduled event."""

    def __init__(self, events=(), late=lambda due_ns: 0) -> None:
        self.t = 0
        self.events = sorted(events, key=lambda e: e[0])
        self.late = late

    def now_ns(self) -> int:
        return self.t

    async def wait(self, stop: asyncio.Event, until_ns: int) -> None:
        if self.events and self.events[0][0] <= until_ns:
            at, action = self.events.pop(0)
            self.t = max(self.t, int(at))
            await action(stop)
            return
        self.t = max(self.t, int(until_ns + self.late(until_ns)))


def signal_self(signum):
    async def action(stop: asyncio.Event) -> None:
        os.kill(os.getpid(), signum)
        # the loop's handler runs on its next turn; it sets stop
        await asyncio.wait_for(stop.wait(), timeout=10)
    return action


class FakeRun:
    """Two workers completing RATE_PER_S ops between them, counted like the native
    workers: only in [ramp_end_ns, min(end_ns, stop)), each op timed in the same batch.
    A worker in workers_fail_at fails from that time on: every op it tries counts as an
    error (EIO), as a disk worker's do when the device goes away. A worker in
    setup_fails stopped at setup (its state FAILED) and counts nothing."""

    def __init__(self, clock: FakeClock, done_at=None, setup_errno=0, fail_at=None, fail_after_wait=None,
                 drain_ops=0, torn_reads=(), read_takes_ns=None, workers_fail_at=None, setup_fails=()) -> None:
        self.layout, self.workers = LAYOUT, 2
        self.clock = clock
        self.done_at, self.setup_errno = done_at, setup_errno
        self.fail_at, self.fail_after_wait = fail_at, fail_after_wait
        self.workers_fail_at = workers_fail_at or {}
        self.setup_fails = set(setup_fails)
        self.drain_ops = drain_ops          # counted after the stop: late sends, echoes in the grace time
        self.torn_reads = set(torn_reads)   # read() calls (from 0) that return a torn copy
        self.reads = 0
        self.read_takes_ns = read_takes_ns or {}   # read() call -> how far it moves the clock
        self.stops: list[int] = []
        self.waited = False
        self.freed = False

    def _tries(self) -> list[int]:
        """Each worker's operations so far, failed or not (each does half the rate)."""
        until = min(self.clock.t, TIMELINE.end_ns, *self.stops, *([self.done_at] if self.done_at else []))
        n = [max(0, (until - TIMELINE.ramp_end_ns) * (RATE_PER_S // self.workers) // S)] * self.workers
        n[-1] += self.drain_ops if self.waited else 0
        return [0 if w in self.setup_fails else k for w, k in enumerate(n)]

    def _split(self) -> list[tuple[int, int]]:
        """(ops, errors) of each worker."""
        out = []
        for w, tries in enumerate(self._tries()):
            at = self.workers_fail_at.get(w)
            if at is not None:   # what it did before it failed
                tries_ok = max(0, (int(at) - TIMELINE.ramp_end_ns) * (RATE_PER_S // self.workers) // S)
                out.append((min(tries, tries_ok), tries - min(tries, tries_ok)))
            else:
                out.append((tries, 0))
        return out

    def _ops(self) -> int:
        return sum(ok for ok, _ in self._split())

    def read(self) -> np.ndarray:
        self.clock.t += int(self.read_takes_ns.get(self.reads, 0))
        words = np.zeros((self.workers, LAYOUT.words), dtype=np.uint64)
        for row, (ops, errors) in enumerate(self._split()):
            words[row, LAYOUT.counter("ops_read")] = ops
            words[row, LAYOUT.counter("bytes_read")] = ops * 4096
            words[row, LAYOUT.hist_slice("latency_read").start + HIST_INDEX] = ops
            words[row, LAYOUT.hist_slice("service_read").start + HIST_INDEX] = ops
            words[row, LAYOUT.counter("errors")] = errors
            words[row, LAYOUT.errno_offset + errno.EIO] = errors
            words[row, LAYOUT.counter("state")] = native.STATE_DONE if self.waited else native.STATE_RUNNING
            if row in self.setup_fails:
                words[row, LAYOUT.counter("state")] = native.STATE_FAILED
                words[row, LAYOUT.counter("setup_errno")] = errno.ENOMEM
        if self.reads in self.torn_reads and self._ops():
            # copied while the worker was between counting an op and timing it
            words[1, LAYOUT.hist_slice("latency_read").start + HIST_INDEX] -= 1
        self.reads += 1
        return words

    def stop(self, stop_ns: int) -> None:
        self.stops.append(stop_ns)

    def done(self) -> bool:
        return self.done_at is not None and self.clock.t >= self.done_at

    def failure(self) -> str | None:
        if self.fail_at is not None and self.clock.t >= self.fail_at:
            return "agent h1 went silent"
        if self.fail_after_wait and self.waited:
            return self.fail_after_wait
        return None

    async def wait(self) -> int:
        self.waited = True
        return -self.setup_errno

    def free(self) -> None:
        self.freed = True


def ops_policy(limit: int):
    return lambda snap: f"{limit} ops reached" if snap.counter("ops_read") >= limit else None


def every_io_failed(snap: Snapshot) -> str | None:
    """The disk job's policy (loadgen.disk.job.all_failed): errors, and not one I/O done."""
    return "every I/O failed" if snap.counter("errors") and not snap.counter("ops_read") else None


def final_policy(snap: Snapshot) -> str | None:
    """Trips only on the final snapshot, taken after every worker exited."""
    return "judged at the end" if snap.counter("state") == native.STATE_DONE else None


CASES = {
    # name: (clock kwargs, run kwargs, policy, expected stop_ns, interrupted, failed, stop_reason, boundaries in s)
    "duration reached": ({}, {}, None, 6 * S, False, False, None, [2, 3, 4, 5, 6]),
    "SIGINT": ({"events": [(3.5 * S, signal_self(signal.SIGINT))]}, {}, None, 3.5 * S, True, False,
               "interrupted by SIGINT", [2, 3, 3.5]),
    "SIGTERM during warm-up": ({"events": [(0.5 * S, signal_self(signal.SIGTERM))]}, {}, None, 0.5 * S, True, False,
                               "interrupted by SIGTERM", []),
    "a worker fails at setup": ({}, {"done_at": 2.5 * S, "setup_errno": 5}, None, 2.5 * S, False, True,
                                "every worker stopped before the end", [2, 2.5]),
    "every worker stops early": ({}, {"done_at": 4.2 * S}, None, 4.2 * S, False, True,
                                 "every worker stopped before the end", [2, 3, 4, 4.2]),
    # A worker's failures are counted in its stats, not raised: the run goes on without it.
    "a worker fails at setup, the other runs on": ({}, {"setup_fails": [0], "setup_errno": errno.ENOMEM}, None,
                                                   6 * S, False, False, None, [2, 3, 4, 5, 6]),
    "a worker's I/Os fail, the other's go on": ({}, {"workers_fail_at": {1: 2.5 * S}}, every_io_failed, 6 * S,
                                                False, False, None, [2, 3, 4, 5, 6]),
    "every worker's I/Os fail: the policy stops it": ({}, {"workers_fail_at": {0: 1 * S, 1: 1 * S}}, every_io_failed,
                                                      2 * S, False, True, "every I/O failed", [2]),
    "a host fails": ({}, {"fail_at": 2.2 * S}, None, 2.2 * S, False, True, "agent h1 went silent", [2, 2.2]),
    "a host fails, the others stop with it": ({}, {"parts": [{}, {"fail_at": 3.4 * S}, {}]}, None, 3.4 * S, False,
                                              True, "agent h1 went silent", [2, 3, 3.4]),
    "a host's workers stop early, the others' go on": ({}, {"parts": [{"done_at": 2.5 * S}, {}]}, None, 6 * S,
                                                        False, False, None, [2, 3, 4, 5, 6]),
    "a host fails while draining": ({}, {"fail_after_wait": "agent h1 lost its final report"}, None, 6 * S,
                                    False, True, "agent h1 lost its final report", [2, 3, 4, 5, 6]),
    "an interrupt outranks a host failing later": (
        {"events": [(2.5 * S, signal_self(signal.SIGINT))]}, {"fail_after_wait": "agent h1 lost"}, None, 2.5 * S,
        True, False, "interrupted by SIGINT", [2, 2.5]),
    "the policy stops it": ({}, {}, ops_policy(2500), 4 * S, False, True, "2500 ops reached", [2, 3, 4]),
    "the policy judges the final snapshot": ({}, {}, final_policy, 6 * S, False, True, "judged at the end",
                                             [2, 3, 4, 5, 6]),
    # Starved past the end at the tick due at 5 s: that snapshot is no boundary, so the
    # last interval holds everything the workers counted after it, drain included.
    "starved past the end": ({"late": lambda due: 2 * S if due == 5 * S else 0}, {"drain_ops": 77}, None, 6 * S,
                             False, False, None, [2, 3, 4, 6]),
    # Late but before the end: the interval is as long as it really was.
    "starved inside the run": ({"late": lambda due: 1.7 * S if due == 3 * S else 0}, {}, None, 6 * S,
                               False, False, None, [2, 4.7, 5, 6]),
    # Every try at the 4 s tick is torn: the 5 s snapshot ends a two-second interval.
    "torn at one tick": ({}, {"torn_reads": range(2, 2 + SNAPSHOT_TRIES)}, None, 6 * S, False, False, None,
                         [2, 3, 5, 6]),
    "torn once, read again": ({}, {"torn_reads": [2]}, None, 6 * S, False, False, None, [2, 3, 4, 5, 6]),
}


class FakeParts(CompositeRun):
    """Fake runs driven as one, as a paired run's local part and agents' parts are."""

    def __init__(self, clock: FakeClock, parts: list[dict]) -> None:
        super().__init__([FakeRun(clock, **kw) for kw in parts])

    stops = property(lambda self: sorted({s for p in self.parts for s in p.stops}))
    waited = property(lambda self: all(p.waited for p in self.parts))

    def _ops(self) -> int:
        return sum(p._ops() for p in self.parts)


def drive(clock_kw, run_kw, policy):
    clock = FakeClock(**clock_kw)
    run = FakeParts(clock, run_kw["parts"]) if "parts" in run_kw else FakeRun(clock, **run_kw)
    seen: list = []

    async def on_interval(interval, cumulative: Snapshot) -> None:
        seen.append((interval, cumulative))

    async def go():
        return await run_workers(run, TIMELINE, on_interval, policy=policy, clock=clock,
                                 progress=lambda s: s.counter("ops_read"))

    return asyncio.run(go()), run, seen


@pytest.mark.parametrize("name", CASES)
def test_stop_logic(name):
    clock_kw, run_kw, policy, stop_ns, interrupted, failed, reason, boundaries_s = CASES[name]
    m, run, seen = drive(clock_kw, run_kw, policy)
    assert (m.stop_ns, m.interrupted, m.failed, m.stop_reason) == (int(stop_ns), interrupted, failed, reason)
    assert run.stops == [m.stop_ns] and run.waited
    assert m.setup_errno == run_kw.get("setup_errno", 0)
    assert [round(i.end_ns / S, 3) for i in m.intervals] == boundaries_s
    assert [i for i, _ in seen] == m.intervals


@pytest.mark.parametrize("name", CASES)
def test_intervals_add_up(name):
    clock_kw, run_kw, policy, *_ = CASES[name]
    m, run, _ = drive(clock_kw, run_kw, policy)
    starts = ([TIMELINE.ramp_end_ns] + [i.end_ns for i in m.intervals])[:len(m.intervals)]
    assert [i.start_ns for i in m.intervals] == starts
    assert all(i.end_ns <= max(m.stop_ns, TIMELINE.ramp_end_ns) for i in m.intervals)
    assert all(not i.delta.torn_rows() for i in m.intervals)
    if m.intervals:
        assert m.intervals[-1].end_ns == max(m.stop_ns, TIMELINE.ramp_end_ns)
        assert sum(i.end_ns - i.start_ns for i in m.intervals) == m.measured_ns
    total = sum((i.delta.words for i in m.intervals), np.zeros_like(m.final.words))
    for name_ in ("ops_read", "bytes_read"):
        col = LAYOUT.counter(name_)
        assert np.array_equal(total[:, col], m.final.words[:, col])
    for hist in ("latency_read", "service_read"):
        cols = LAYOUT.hist_slice(hist)
        assert np.array_equal(total[:, cols], m.final.words[:, cols])
    assert m.final.counter("ops_read") == run._ops()


def test_every_part_is_told_the_same_stop():
    m, run, _ = drive({}, {"parts": [{}, {"fail_at": 3.4 * S}, {}]}, None)
    assert [p.stops for p in run.parts] == [[m.stop_ns]] * 3


@pytest.mark.parametrize("kind", [native.Run, RemoteRun, CompositeRun, FakeRun])
def test_what_the_controller_drives_says_why_it_failed(kind):
    """Every run the controller drives has each method of DrivenRun: failure() is not optional."""
    methods = [name for name in vars(DrivenRun) if not name.startswith("_") and callable(getattr(DrivenRun, name))]
    assert "failure" in methods
    assert all(callable(getattr(kind, name, None)) for name in methods)


def test_progress_samples_every_snapshot_and_the_stop():
    m, _, _ = drive({}, {}, None)
    assert [t for t, _ in m.progress] == [k * S for k in range(1, 7)]
    assert [n for _, n in m.progress] == [0, 1000, 2000, 3000, 4000, 5000]
    assert m.skipped_snapshots == 0


def test_a_torn_snapshot_still_samples_progress():
    # counters only grow, so even a torn copy says how far the workers got
    m, _, _ = drive({}, {"torn_reads": range(2, 2 + SNAPSHOT_TRIES)}, None)
    assert [t for t, _ in m.progress] == [k * S for k in range(1, 7)]
    assert m.skipped_snapshots == 1


def test_a_late_wake_up_is_recorded_as_the_controller_held():
    m, _, _ = drive({"late": lambda due: 1.5 * S if due == 3 * S else 0}, {}, None)
    assert m.held == [(3 * S, int(4.5 * S))]


def test_a_controller_held_while_reading_is_recorded():
    # stopped (SIGSTOP) in the middle of the 3 s snapshot: that interval ends late, and says why
    m, _, _ = drive({}, {"read_takes_ns": {1: 1.5 * S}}, None)
    assert m.held == [(3 * S, int(4.5 * S))]
    assert [round(i.end_ns / S, 3) for i in m.intervals] == [2, 4.5, 5, 6]


def test_a_hold_at_work_is_not_counted_again_as_a_late_wake_up():
    # held while writing the 3 s interval, past the 4 s tick: that wake-up is due at once
    clock = FakeClock()
    run = FakeRun(clock)

    async def on_interval(interval, cumulative) -> None:
        if interval.end_ns == 3 * S:
            clock.t += int(1.5 * S)

    m = asyncio.run(run_workers(run, TIMELINE, on_interval, clock=clock))
    assert m.held == [(3 * S, int(4.5 * S))]
    assert [round(i.end_ns / S, 3) for i in m.intervals] == [2, 3, 4.5, 5, 6]


def test_wake_ups_on_time_are_not_held():
    m, _, _ = drive({"late": lambda due: POLL_NS // 10}, {}, None)
    assert m.held == []


def test_the_result_says_where_the_controller_ran():
    m, _, _ = drive({}, {}, None)
    assert m.controller["affinity"] == sorted(os.sched_getaffinity(0))
    assert m.controller.get("last_cpu", 0) in range(os.cpu_count() or 1)


@pytest.mark.parametrize("threads, held", [
    ([], set()),
    ([("worker", "0"), ("worker", "1"), ("controller", "0-1")], {0, 1}),
    ([("worker", "3"), ("sq-poll", "2"), ("io-wq", "5")], {2, 3, 5}),  # helpers on a CPU of their own
    ([("worker", "0"), ("io-wq", "1-7"), ("io-wq", "1-7")], {0}),       # helpers with room beside them
    ([("worker", "0-1"), ("other", "1")], set()),                      # not pinned: holds nothing
])
def test_the_cpus_pinned_threads_hold(threads, held):
    census = {"threads": [{"role": role, "allowed": allowed} for role, allowed in threads]}
    assert controller.cpus_held(census) == held


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to keep one free")
def test_the_controller_moves_off_its_workers_cpus_and_back():
    mine = os.sched_getaffinity(0)
    held = {min(mine)}
    with contextlib.closing(controller.ControllerPlacement()) as p:
        p.move_off(held | {10_000})        # a CPU it could not use is not its business
        assert os.sched_getaffinity(0) == mine - held
        assert p.kept_off == held
    assert os.sched_getaffinity(0) == mine


def test_the_controller_stays_when_every_cpu_is_held():
    mine = os.sched_getaffinity(0)
    with contextlib.closing(controller.ControllerPlacement()) as p:
        p.move_off(set(mine))
        assert os.sched_getaffinity(0) == mine and p.kept_off == set()


def test_the_callers_signal_handlers_are_back_after_the_run():
    """A SIGTERM after the run must reach the caller's handler (which keeps the result), not SIG_DFL."""
    def mine(signum, frame) -> None:
        pass

    before = {sig: signal.signal(sig, mine) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        drive({"events": [(2.5 * S, signal_self(signal.SIGTERM))]}, {}, None)
        assert signal.getsignal(signal.SIGINT) is mine and signal.getsignal(signal.SIGTERM) is mine
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
