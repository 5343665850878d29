"""Stalls and shortfalls are results: found from what a run measured, warned about, and
failed on with --strict.

The pure rules are table tests. End to end, a run whose worker is held off the
CPU (ptrace-stopped: the controller keeps running, so the intervals show it)
and a run whose whole process is SIGSTOPped (the controller held too) both say
so, with latency that counts the held time and a result that still agrees with
its .hlog exactly; unreachable rates print a shortfall.
"""
import ctypes
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from consistency import assert_consistent
from netfixtures import RUN_TIMEOUT_S, loadgen_argv

from loadgen.results import result, stalls

S = 1_000_000_000


# ---- the rules -----------------------------------------------------------------------------------

SPANS = {
    # name: (progress samples (t_s, completed), rate or None, stall spans in s)
    "steady": ([(0, 0), (1, 100), (2, 200)], 100, []),
    "one flat interval": ([(0, 0), (1, 100), (2, 100), (3, 200)], 100, [(1, 2)]),
    "adjacent flat intervals are one stall": ([(0, 0), (1, 0), (2, 0), (3, 5)], 100, [(0, 2)]),
    "two stalls": ([(0, 0), (1, 0), (2, 9), (3, 9), (4, 10)], 100, [(0, 1), (2, 3)]),
    "closed loop always requires ops": ([(0, 0), (1, 50), (1.5, 50)], None, [(1, 1.5)]),
    "too few due to tell": ([(0, 0), (1, 0), (2, 1)], 1, []),
    "two due are enough": ([(0, 0), (1, 0), (2, 2)], 2, [(0, 1)]),
    "a zero-length span is no stall": ([(0, 0), (1, 10), (1, 10)], 100, []),
    "a few ms are no stall": ([(0, 0), (1, 10), (1.005, 10)], 10**6, []),
    "short spans together are": ([(0, 0), (1, 10), (1.06, 10), (1.12, 10), (2, 20)], 10**6, [(1, 1.12)]),
}


@pytest.mark.parametrize("name", SPANS)
def test_stall_spans(name):
    samples, rate, expected = SPANS[name]
    spans = stalls.stall_spans([(int(t * S), n) for t, n in samples], rate)
    assert spans == [(int(a * S), int(b * S)) for a, b in expected]


def test_stalls_section_counts_totals_and_the_longest():
    progress = [(0, 0), (S, 0), (2 * S, 3), (3 * S, 3), (5 * S, 3), (6 * S, 9)]
    section = stalls.stalls_section(progress, [(S, 3 * S), (7 * S, 8 * S)], 10, origin_ns=0, stop_ns=6 * S,
                                    resolution_ns=S)
    assert (section["count"], section["total_ns"], section["longest_ns"]) == (2, 4 * S, 3 * S)
    assert section["spans"] == [{"start_s": 0.0, "length_s": 1.0}, {"start_s": 2.0, "length_s": 3.0}]
    assert section["controller_held"]["count"] == 1 and section["controller_held"]["longest_ns"] == 2 * S
    assert len(stalls.stall_warnings(section)) == 2


def test_holds_are_clipped_to_the_measured_window():
    assert stalls.clip([(0, 2 * S), (3 * S, 4 * S), (5 * S, 9 * S), (9 * S, 10 * S)], S, 6 * S) == [
        (S, 2 * S), (3 * S, 4 * S), (5 * S, 6 * S)]


def test_no_stall_no_warning():
    section = stalls.stalls_section([(0, 0), (S, 10)], [], 10, 0, S, S)
    assert section["count"] == 0 and stalls.stall_warnings(section) == []


FACTS_IDLE = stalls.Facts(cpu_s=0.1, wall_s=1.0, cores=2)
SHORTFALLS = {
    # name: (requested, achieved, unsent, facts, likely limit or None for no shortfall)
    "max asks for nothing": (None, 10.0, 0, FACTS_IDLE, None),
    "on target": (1000, 995.0, 0, FACTS_IDLE, None),
    "just under 99%": (1000, 989.0, 0, FACTS_IDLE, "schedule"),
    "unsent counts even at full rate": (1000, 1000.0, 3, FACTS_IDLE, "schedule"),
    "cores busy": (10**6, 2e5, 0, stalls.Facts(cpu_s=1.9, wall_s=1.0, cores=2), "cpu"),
    "remote workers: CPU unknown": (10**6, 2e5, 0, stalls.Facts(cpu_s=None, wall_s=1.0, cores=2), "schedule"),
    # 64 in flight of 64 allowed: 40k IOPS x 1.6 ms
    "queue full": (10**6, 4e4, 0, stalls.Facts(cpu_s=0.2, wall_s=1.0, cores=2, qd_total=64,
                                               service_mean_ns=1.6e6), "queue_depth"),
    "the device's own queue full": (10**6, 4e4, 0, stalls.Facts(cpu_s=0.2, wall_s=1.0, cores=2, qd_total=64,
                                                               service_mean_ns=1.6e6, device_queue=64), "device"),
    "ours full, the device's not": (10**6, 4e4, 0, stalls.Facts(cpu_s=0.2, wall_s=1.0, cores=2, qd_total=64,
                                                               service_mean_ns=1.6e6, device_queue=256),
                                    "queue_depth"),
    "queue not full": (10**6, 4e4, 0, stalls.Facts(cpu_s=0.2, wall_s=1.0, cores=2, qd_total=64,
                                                   service_mean_ns=1e5), "schedule"),
}


@pytest.mark.parametrize("name", SHORTFALLS)
def test_shortfall(name):
    requested, achieved, unsent, facts, limit = SHORTFALLS[name]
    section = stalls.shortfall_section(requested, achieved, unsent, 0, facts)
    if limit is None:
        assert section is None
    else:
        assert section["likely_limit"] == limit
        assert (section["requested"], section["achieved"], section["unsent"]) == (requested, achieved, unsent)
        warning = stalls.shortfall_warning(section, "IOPS")
        assert warning.startswith("shortfall: requested ") and limit in warning


@pytest.mark.parametrize("summary, strict_fails", [
    ({}, False),
    ({"stalls": {"count": 0, "controller_held": {"count": 0}}, "shortfall": None}, False),
    ({"stalls": {"count": 1, "controller_held": {"count": 0}}, "shortfall": None}, True),
    ({"stalls": {"count": 0, "controller_held": {"count": 2}}, "shortfall": None}, True),
    ({"stalls": {"count": 0, "controller_held": {"count": 0}}, "shortfall": {"ratio": 0.5}}, True),
])
def test_what_strict_fails_on(summary, strict_fails):
    assert result.falls_short({"summary": summary}) is strict_fails


# ---- end to end ----------------------------------------------------------------------------------

def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv(*args), cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def test_unreachable_disk_rate_is_a_shortfall(tmp_path, io_uring):
    p = _run(tmp_path, "disk", "--iops", "5M", "--duration", "1s", "--ramp", "0s", "--size", "16m",
             "--buffered", "--json", "r.json", "-q")
    assert p.returncode == 0, p.stderr
    assert "loadgen: warning: shortfall: requested 5.0M IOPS" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    sf = doc["summary"]["shortfall"]
    assert sf["requested"] == 5_000_000 and sf["achieved"] == doc["summary"]["rate"] < 0.99 * 5_000_000
    assert sf["likely_limit"] in ("cpu", "device", "queue_depth", "schedule")


def test_unreachable_net_rate_is_a_shortfall_and_strict_fails(tmp_path):
    p = _run(tmp_path, "net", "--pps", "5M", "--duration", "1s", "--ramp", "0s", "--json", "r.json", "-q",
             "--strict")
    assert p.returncode == 1, p.stderr
    assert "loadgen: warning: shortfall: requested 5.0M pps" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["shortfall"]["requested"] == 5_000_000
    assert not doc["failed"]   # a shortfall is a result, not a failure


def test_a_reachable_rate_has_no_shortfall(tmp_path):
    p = _run(tmp_path, "net", "--pps", "1k", "--duration", "1s", "--ramp", "0s", "--json", "r.json", "-q")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    # at 1k pps every datagram of the window is sent, however busy the machine
    if doc["summary"]["schedule_lag_ns"]["unsent"] == 0 and doc["summary"]["rate"] >= 990:
        assert doc["summary"]["shortfall"] is None and "shortfall" not in p.stderr


# ptrace(2) requests (linux/ptrace.h): a single thread can be stopped this way, not with a signal.
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000   # waitpid(2) __WALL: a traced thread of another process
HOLD_S = 1.5
WAIT_S = 15.0       # bound on waiting for the child to start; never asserted


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    return libc


def _worker_tid(pid: int) -> int | None:
    """The native worker: the one thread pinned to a single CPU that is not an io_uring helper."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            allowed = os.sched_getaffinity(int(tid))
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(tid) != pid and len(allowed) == 1 and not comm.startswith("iou-"):
            return int(tid)
    return None


def _hold_thread(tid: int, hold_s: float) -> float:
    """Stop one thread for hold_s; returns how long it was certainly stopped."""
    libc = _libc()
    if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
        pytest.skip(f"ptrace is not allowed here: {os.strerror(ctypes.get_errno())}")
    try:
        assert libc.ptrace(PTRACE_INTERRUPT, tid, None, None) == 0
        os.waitpid(tid, WALL)   # returns once the thread has stopped
        stopped = time.monotonic()
        time.sleep(hold_s)      # the hold itself is what is measured, not a synchronisation
        held = time.monotonic() - stopped
    finally:
        libc.ptrace(PTRACE_DETACH, tid, None, None)
    return held


def _disk_run_held(tmp_path: Path, hold) -> tuple[subprocess.CompletedProcess, float]:
    """A 4 s disk run at 2k IOPS, one worker; hold(pid, tid) is called about a second into it."""
    argv = loadgen_argv("disk", "--iops", "2k", "--duration", "4s", "--ramp", "0.5s", "--workers", "1",
                        "--size", "16m", "--buffered", "--interval", "250ms", "--json", "r.json",
                        "--hlog", "r.hlog", "-q")
    child = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        tid = None
        while tid is None and time.monotonic() < deadline and child.poll() is None:
            tid = _worker_tid(child.pid)
            time.sleep(0.01)
        assert tid is not None, "the worker thread never appeared"
        time.sleep(1.0)   # into the measured window (0.5 s ramp); only places the hold
        held = hold(child.pid, tid)
        out, err = child.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(argv, child.returncode, out, err), held


def _all_stopped(pid: int) -> bool:
    """Every thread of pid in the stopped state (proc(5): 'T')."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "T":
            return False
    return True


def _stop_whole_process(pid: int, tid: int) -> float:
    """SIGSTOP for HOLD_S, counted from when every thread has stopped; returns how long
    it was certainly stopped."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + WAIT_S
        while not _all_stopped(pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        stopped = time.monotonic()
        time.sleep(HOLD_S)
        held = time.monotonic() - stopped
    finally:
        os.kill(pid, signal.SIGCONT)
    return held


def test_a_worker_held_off_the_cpu_is_a_stall(tmp_path, io_uring):
    p, held_s = _disk_run_held(tmp_path, lambda pid, tid: _hold_thread(tid, HOLD_S))
    assert p.returncode == 0, p.stderr
    assert "loadgen: warning: stall: " in p.stderr and "no operation completed" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    st = doc["summary"]["stalls"]
    assert st["count"] >= 1
    # At 250 ms resolution a hold of held_s covers at least held_s - 2 x 250 ms of whole intervals.
    assert st["longest_ns"] >= (held_s - 0.5) * S
    # Operations due during the hold count from their scheduled time (coordinated omission).
    assert doc["summary"]["latency_ns"]["max"] >= (held_s - 0.01) * S
    assert_consistent(doc, tmp_path / "r.hlog", "latency", "ops")


def test_a_whole_process_held_says_so(tmp_path, io_uring):
    """SIGSTOP holds the controller too: its snapshots straddle the hold, so it is the
    controller's late wake-up that shows it; the result still agrees with its .hlog."""
    p, held_s = _disk_run_held(tmp_path, _stop_whole_process)
    assert p.returncode == 0, p.stderr
    assert "loadgen: warning: stall: loadgen itself was held off the CPU" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    held = doc["summary"]["stalls"]["controller_held"]
    assert held["count"] >= 1 and held["longest_ns"] >= (held_s - 0.3) * S
    assert doc["summary"]["latency_ns"]["max"] >= (held_s - 0.01) * S, (
        held, [(r["t_s"], r["ops"], r["latency_ns"]) for r in doc["intervals"]])
    assert_consistent(doc, tmp_path / "r.hlog", "latency", "ops")
