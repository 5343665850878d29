"""A result stays consistent when every CPU is busy (issue 9: once, under contention,
summary.ops was 34,233 while the intervals summed to 31,849, and the JSON p99 was
1.92 s against the .hlog's 36.5 ms).

The test starts one busy loop per usable CPU, each pinned to its CPU and
bounded in time by itself, and kills them afterwards. Under that load short
disk and net runs with many snapshot boundaries must give intervals that add up
to the summary, .hlog histograms that add up to the total bucket by bucket, and
intervals that tile the measured time. Nothing here asserts a time or a rate.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consistency import assert_consistent
from netfixtures import RUN_TIMEOUT_S, loadgen_argv

# Each busy loop ends by itself after this long, should the test die before killing it.
BUSY_BOUND_S = 60
BUSY_LOOP = f"import time\nend = time.monotonic() + {BUSY_BOUND_S}\nwhile time.monotonic() < end:\n    pass\n"


@pytest.fixture
def every_cpu_busy():
    procs = []
    try:
        for cpu in sorted(os.sched_getaffinity(0)):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", BUSY_LOOP],
                preexec_fn=lambda cpu=cpu: os.sched_setaffinity(0, {cpu})))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    p = subprocess.run(loadgen_argv(*args, "--json", "r.json", "--hlog", "r.hlog", "-q"), cwd=tmp_path,
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    return p, json.loads((tmp_path / "r.json").read_text())


def test_disk_result_agrees_with_itself_under_contention(tmp_path, io_uring, every_cpu_busy):
    _, doc = _run(tmp_path, "disk", "--iops", "20k", "--duration", "2s", "--ramp", "0.2s", "--interval", "100ms",
                  "--size", "16m", "--buffered")
    assert all(p.poll() is None for p in every_cpu_busy), "the busy loops ended before the run did"
    assert doc["summary"]["ops"] > 0
    assert_consistent(doc, tmp_path / "r.hlog", "latency", "ops")
    assert_consistent(doc, tmp_path / "r.hlog", "service", "ops")


def test_closed_loop_disk_result_agrees_with_itself_under_contention(tmp_path, io_uring, every_cpu_busy):
    _, doc = _run(tmp_path, "disk", "--duration", "2s", "--ramp", "0s", "--interval", "100ms",
                  "--size", "16m", "--buffered", "--rw", "randrw")
    assert doc["summary"]["ops"] > 0
    assert_consistent(doc, tmp_path / "r.hlog", "latency", "ops")
    assert_consistent(doc, tmp_path / "r.hlog", "service", "ops")


def test_net_result_agrees_with_itself_under_contention(tmp_path, every_cpu_busy):
    # Late sends and arrivals in the grace time land after the last snapshot: the last
    # interval must take them.
    _, doc = _run(tmp_path, "net", "--pps", "50k", "--duration", "2s", "--ramp", "0.2s", "--interval", "100ms")
    assert all(p.poll() is None for p in every_cpu_busy), "the busy loops ended before the run did"
    assert doc["summary"]["sent"] > 0
    assert sum(r["received"] for r in doc["intervals"]) == doc["summary"]["received"]
    assert_consistent(doc, tmp_path / "r.hlog", "oneway-latency", "received")
    assert_consistent(doc, tmp_path / "r.hlog", "oneway-service", "received")


def test_echo_result_agrees_with_itself_under_contention(tmp_path, every_cpu_busy):
    _, doc = _run(tmp_path, "net", "--pps", "20k", "--mode", "echo", "--duration", "2s", "--ramp", "0s",
                  "--interval", "100ms", "--timeout", "500ms")
    assert sum(r["received"] for r in doc["intervals"]) == doc["summary"]["received"]
    assert_consistent(doc, tmp_path / "r.hlog", "latency", "received")
