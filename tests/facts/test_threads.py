"""The thread census: every thread of a run, its role, where it ran (facts/threads.py)."""
import json
import subprocess

import pytest

from loadgen.facts import threads
from netfixtures import RUN_TIMEOUT_S, loadgen_argv

STAT = "{tid} ({name}) S 1 1 1 0 -1 4194304 100 0 0 0 {ut} {st} 0 0 20 0 3 0 1 1 1 1 1 1 1 1 1 0 0 0 0 0 0 0 17 {cpu} 0 0 0 0 0"


@pytest.mark.parametrize("name, tid, role", [
    ("python3", 100, "controller"), ("lg-disk-0", 101, "worker"), ("lg-pkt-send-3", 102, "worker"),
    ("lg-recv-0", 103, "worker"), ("iou-wrk-101", 104, "io-wq"), ("Thread-1 (serve)", 105, "other"),
    ("iou-sqp-101", 106, "sq-poll"),    # a ring's SQ thread under --sqpoll spins on a CPU of its own
])
def test_roles(name, tid, role):
    assert threads.role_of(name, tid, pid=100) == role


def test_stat_fields_even_with_parentheses_and_spaces_in_the_name():
    text = STAT.format(tid=7, name="a (b) c", ut=250, st=150, cpu=1)
    name, cpu, cpu_s = threads.parse_stat(text)
    assert name == "a (b) c" and cpu == 1 and cpu_s == pytest.approx(400 / threads.CLK_TCK)


def test_census_of_a_fake_proc_tree(tmp_path):
    for tid, name, cpu in [(50, "python3", 0), (51, "lg-send-0", 1), (52, "iou-wrk-51", 0)]:
        d = tmp_path / "task" / str(tid)
        d.mkdir(parents=True)
        (d / "stat").write_text(STAT.format(tid=tid, name=name, ut=10, st=5, cpu=cpu))
        (d / "status").write_text(f"Name:\t{name}\nCpus_allowed_list:\t{cpu}\n")
    c = threads.census(str(tmp_path), pid=50)
    assert c["count"] == {"controller": 1, "worker": 1, "io-wq": 1}
    assert [(t["name"], t["last_cpu"], t["allowed"]) for t in c["threads"]] == [
        ("python3", 0, "0"), ("lg-send-0", 1, "1"), ("iou-wrk-51", 0, "0")]


def test_a_run_counts_its_named_workers_and_where_they_ran(tmp_path):
    out = tmp_path / "r.json"
    subprocess.run(loadgen_argv("disk", "--size", "16m", "--duration", "1s", "--ramp", "0s", "--interval", "250ms",
                                "--workers", "2", "--json", str(out), "-q"),
                   check=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path)
    doc = json.loads(out.read_text())
    census = doc["summary"]["threads"]
    workers = [t for t in census["threads"] if t["role"] == "worker"]
    assert sorted(t["name"] for t in workers) == ["lg-disk-0", "lg-disk-1"]
    assert census["count"]["controller"] == 1 and census["count"]["worker"] == 2
    # each worker is pinned where the config says it runs
    assert sorted(t["allowed"] for t in workers) == sorted(str(c) for c in doc["config"]["cpus"])
