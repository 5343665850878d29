"""How workers wait, end to end: the result says which mode ran and where.

By default paced workers sleep in the kernel (summary.pacing.mode "sleep") and
batch what is due within a tolerance measured from the machine's wake-up cost;
--busy-poll spins instead and measures none. Every worker records the CPU it
ran on. An op sent early within the tolerance is timed from its actual start,
so latency is never below service. Echo returns carry the kernel's receive
stamp: kernel_rtt (kernel receive - send) and user_delay (loadgen's read -
kernel receive) each time every return. A paced one-way sender sends what
is due within its window (at least the tolerance, at most 1 ms) in one batch
and says how early it went; its receiver times every arrival by the kernel's
receive stamp and sleeps a window between drains. Echo keeps to the
tolerance and its reflector answers at once. Assertions are about what was
recorded, never about how fast anything ran.
"""
import os

import pytest

from loadgen.run import native
from netfixtures import run_net

TOLERANCE_MIN_NS, TOLERANCE_MAX_NS = 1_000, 200_000   # native/pace.h bounds
WINDOW_MAX_NS = 1_000_000   # iperf3's default pacing timer
PERCENTILE_KEYS = ("min", "p50", "p90", "p99", "p99.9", "max", "mean")


def assert_pacing(pacing: dict, mode: str, workers: int, measured: bool) -> None:
    assert pacing["mode"] == mode
    if measured:
        assert TOLERANCE_MIN_NS <= pacing["tolerance_ns"] <= TOLERANCE_MAX_NS
    else:
        assert pacing["tolerance_ns"] == 0
    assert len(pacing["worker_cpus"]) == workers
    assert set(pacing["worker_cpus"]) <= os.sched_getaffinity(0)


def assert_latency_not_below_service(s: dict) -> None:
    for key in PERCENTILE_KEYS:
        assert s["latency_ns"][key] >= s["service_ns"][key], key


@pytest.mark.parametrize("engine", ["io_uring", "psync"])
def test_paced_disk_sleeps_and_records_its_tolerance(disk, engine):
    if engine == "io_uring" and native.io_uring_probe():
        pytest.skip("io_uring is not available here")
    done = disk("--iops", "2k", "--workers", "1", "--qd", "4", "--engine", engine)
    assert done.returncode == 0, done.stderr
    s = done.doc["summary"]
    assert done.doc["config"]["busy_poll"] is False
    assert_pacing(s["pacing"], "sleep", 1, measured=True)
    assert s["ops"] > 0
    assert_latency_not_below_service(s)


def test_busy_poll_disk_says_it_spun(disk):
    done = disk("--iops", "2k", "--workers", "1", "--qd", "4", "--busy-poll")
    assert done.returncode == 0, done.stderr
    s = done.doc["summary"]
    assert done.doc["config"]["busy_poll"] is True
    assert_pacing(s["pacing"], "busy_poll", 1, measured=False)
    assert_latency_not_below_service(s)


def test_closed_loop_disk_measures_no_tolerance(disk):
    done = disk("--workers", "1", "--qd", "4")
    assert done.returncode == 0, done.stderr
    assert_pacing(done.doc["summary"]["pacing"], "sleep", 1, measured=False)


def test_echo_is_timed_by_the_kernel(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--mode", "echo", "--workers", "1", "--receivers", "1")
    assert r.returncode == 0, r.stderr
    s = r.summary
    # senders (1) then receivers (1): every worker says where it ran
    assert_pacing(s["pacing"], "sleep", 2, measured=True)
    n = s["latency_ns"]["count"]
    assert n > 0
    assert s["kernel_rtt_ns"]["count"] == s["user_delay_ns"]["count"] == n
    # The kernel's receive comes before loadgen reads the return.
    assert s["kernel_rtt_ns"]["max"] <= s["service_ns"]["max"]
    assert s["kernel_rtt_ns"]["min"] <= s["service_ns"]["min"]
    assert_latency_not_below_service(s)


def test_busy_poll_net_sends_the_same_schedule(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--workers", "1", "--receivers", "1", "--busy-poll", "--batch", "1024")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert r.doc["config"]["busy_poll"] is True
    assert s["pacing"]["mode"] == "busy_poll"
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 2000   # 1 s at 2k pps, nothing skipped
    assert s["received"] == s["sent"]


@pytest.mark.parametrize("options, senders, receivers", [
    # paced, embedded receivers: one pinned thread per CPU in all
    ({"pps": "10k"}, max(1, len(os.sched_getaffinity(0)) // 2), max(1, len(os.sched_getaffinity(0)) // 2)),
    # blast keeps a sender (and a receiver) per CPU
    ({"pps": "max"}, len(os.sched_getaffinity(0)), len(os.sched_getaffinity(0))),
    # an external target has no embedded receivers: every CPU sends
    ({"pps": "10k", "target": "127.0.0.1:9"}, len(os.sched_getaffinity(0)), None),
    # given counts win
    ({"pps": "10k", "workers": "3", "receivers": "2"}, 3, 2),
])
def test_net_thread_defaults_fit_the_cpus(options, senders, receivers):
    from loadgen.workload import parse_net

    spec = parse_net(**options)
    assert spec.common.workers == senders
    if receivers is not None:
        assert spec.receivers == receivers


@pytest.mark.parametrize("late_ns, cpu_ns, tolerance_ns, window_ns", [
    (0, 0, 1_000, 1_000),                  # a free wake-up: the floors
    (15_000, 1_000, 15_000, 100_000),      # lateness sets the tolerance, 100 x CPU the window
    (15_000, 3_000, 30_000, 300_000),      # 10 x CPU beats the lateness
    (5_000, 10_000, 100_000, 1_000_000),   # a costly wake-up (a VM): the window's ceiling
    (500_000, 50_000, 200_000, 1_000_000), # later than the bound: reported as lag, not hidden
    (150_000, 100, 150_000, 150_000),      # the window is never narrower than the tolerance
])
def test_tolerance_and_window_from_the_wake_cost(late_ns, cpu_ns, tolerance_ns, window_ns):
    assert native.pace_wake_windows(late_ns, cpu_ns) == (tolerance_ns, window_ns)


def test_wake_cost_must_be_a_cost():
    with pytest.raises(OSError):
        native.pace_wake_windows(-1, 0)


def assert_arrivals_stamped(s: dict) -> None:
    """Every timed arrival was timed by the kernel's receive stamp."""
    timed = s["received"] - s["duplicated"]
    assert timed > 0
    assert s["arrival_clock"] == {"kernel_stamped": timed, "user_read": 0}
    assert s["oneway"]["latency_ns"]["count"] == timed


def test_paced_stream_batches_a_window_and_receives_by_kernel_stamps(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--workers", "1", "--receivers", "1", quiet=False)
    assert r.returncode == 0, r.stderr
    s = r.summary
    p = s["pacing"]
    assert "workers slept, batching what was due within" in r.stdout
    assert ("ahead of schedule" in r.stdout) == (s["schedule_early_ns"]["max"] > 0)
    assert_pacing(p, "sleep", 2, measured=True)
    assert p["tolerance_ns"] <= p["window_ns"] <= WINDOW_MAX_NS
    assert TOLERANCE_MIN_NS <= p["receiver_window_ns"] <= WINDOW_MAX_NS
    # nothing goes out further ahead than the window, and every datagram is accounted
    assert 0 <= s["schedule_early_ns"]["max"] <= p["window_ns"]
    assert s["schedule_early_ns"]["mean"] <= s["schedule_early_ns"]["max"]
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 2000   # 1 s at 2k pps
    assert s["received"] == s["sent"] and s["lost"] == 0
    assert s["gso_sent"] == 0   # GSO only with --gso
    assert_arrivals_stamped(s)
    assert_latency_not_below_service(s["oneway"])


def test_gso_is_asked_for_and_its_runs_arrive_as_datagrams(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--workers", "1", "--receivers", "1", "--gso")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert r.doc["config"]["gso"] is True
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 2000
    # runs sent by UDP GSO arrive as the datagrams they were cut into, every one counted
    assert 0 <= s["gso_sent"] <= s["sent"]
    assert s["received"] == s["sent"] and s["lost"] == 0


def test_busy_poll_stream_sends_on_time_and_its_receiver_never_sleeps(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--workers", "1", "--receivers", "1", "--busy-poll")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert (s["pacing"]["window_ns"], s["pacing"]["receiver_window_ns"]) == (0, 0)
    assert s["schedule_early_ns"] == {"max": 0, "mean": 0.0}
    assert_arrivals_stamped(s)


def test_blast_has_no_window_and_its_arrivals_are_stamped(tmp_path):
    r = run_net(tmp_path, "--pps", "max", "--workers", "1", "--receivers", "1")
    assert r.returncode == 0, r.stderr
    s = r.summary
    assert (s["pacing"]["window_ns"], s["pacing"]["receiver_window_ns"]) == (0, 0)
    assert s["gso_sent"] == 0   # blast keeps the per-datagram path
    assert_arrivals_stamped(s)


def test_echo_keeps_to_its_tolerance_and_answers_at_once(tmp_path):
    r = run_net(tmp_path, "--pps", "2k", "--mode", "echo", "--workers", "1", "--receivers", "1")
    assert r.returncode == 0, r.stderr
    p = r.summary["pacing"]
    assert p["window_ns"] == p["tolerance_ns"] > 0
    assert p["receiver_window_ns"] == 0
    assert r.summary["schedule_early_ns"]["max"] <= p["tolerance_ns"]
    assert r.summary["gso_sent"] == 0   # echo sends datagram by datagram
