"""The disk workers' ring: batches, polled I/O, the SQ thread and the registered ring fd.

Pure parts are table tests (the batch defaults, the SQ thread's CPU, the summary's
ring block, the CLI's optional value). End-to-end runs are short and assert what
was counted and recorded, never how fast: a closed loop that waits for batches
of 8 completions makes at most about one io_uring_enter per 8 I/Os, which is a
count, not a time. zram devices are this test's own (hot_add), never zram0.
"""
import os
import re
import subprocess
from pathlib import Path

import pytest

from loadgen import cli
from loadgen.disk import ring
from loadgen.errors import UsageError
from loadgen.facts.sysinfo import block_device_of
from loadgen.results import ring as ring_block
from loadgen.workload import default_batch, parse_disk
from netfixtures import RUN_TIMEOUT_S, loadgen_argv

MiB = 1 << 20
ZRAM_CONTROL = Path("/sys/class/zram-control")


# ---- pure parts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("qd, batch", [(1, 1), (3, 1), (4, 1), (8, 2), (32, 8), (128, 32)])
def test_default_batches_are_a_quarter_of_the_queue(qd, batch):
    spec = parse_disk(qd=str(qd))
    assert default_batch(qd) == batch
    assert (spec.batch_submit, spec.batch_complete) == (batch, batch)
    assert (spec.to_config()["batch_submit"], spec.to_config()["batch_complete"]) == (batch, batch)


def test_given_batches_are_kept_and_a_paced_run_records_none():
    spec = parse_disk(qd="32", batch_submit="16", batch_complete="8")
    assert (spec.batch_submit, spec.batch_complete) == (16, 8)
    paced = parse_disk(qd="32", iops="10k", batch_complete="8").to_config()
    assert paced["batch_submit"] is None and paced["batch_complete"] is None


@pytest.mark.parametrize("raw, ns, shown", [
    (None, -1, "auto"), ("auto", -1, "auto"), ("AUTO", -1, "auto"), ("20us", 20_000, "20us"), ("0", 0, "0s"),
    ("1s", 10**9, "1s"),
])
def test_batch_wait_is_auto_a_duration_or_off(raw, ns, shown):
    spec = parse_disk(batch_wait=raw)
    assert spec.batch_wait_ns == ns
    assert spec.to_config()["batch_wait"] == shown
    assert parse_disk(batch_wait=raw, iops="10k").to_config()["batch_wait"] is None   # paced: no batches


@pytest.mark.parametrize("raw, message", [
    ({"batch_wait": "soon"}, "invalid batch-wait: 'soon' (a duration such as 20us, 0 for off, or auto)"),
    ({"batch_wait": "2s"}, "invalid batch-wait: '2s' (auto, or 0s to 1s)"),
    ({"batch_wait": "-5us"}, "invalid batch-wait"),
    ({"qd": "32", "batch_complete": "33"}, "--batch-complete 33 is more than --qd 32"),
    ({"batch_submit": "0"}, "invalid batch-submit"),
    ({"poll": True, "direct": False}, "--poll needs O_DIRECT"),
    ({"poll": True, "engine": "psync"}, "--poll needs the io_uring engine"),
    ({"sqpoll": "0", "engine": "psync"}, "--sqpoll needs the io_uring engine"),
    ({"sqpoll": "x"}, "a CPU number, or any"),
])
def test_bad_ring_options_are_usage_errors(raw, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_disk(**raw)


@pytest.mark.parametrize("requested, workers, usable, cpu", [
    (None, [0], {0, 1}, None),          # no SQ thread
    (1, [0], {0, 1}, 1),
    (0, [0], {0, 1}, 0),                # asked for: even a worker's CPU
    (-1, [0], {0, 1}, 1),               # any: the first CPU without a worker
    (-1, [0, 1], {0, 1}, ring.SQ_CPU_ANY),   # every CPU has a worker: not pinned
    (-1, [2], {1, 2, 5}, 1),
])
def test_sq_cpu(requested, workers, usable, cpu):
    assert ring.sq_cpu(requested, workers, usable) == cpu


def test_sq_cpu_outside_the_affinity_is_a_usage_error():
    with pytest.raises(UsageError, match="CPU 7 is not one this process may use"):
        ring.sq_cpu(7, [0], {0, 1})


def row(**kw):
    return {name: kw.get(name, 0) for name in ring_block.COUNTERS}


def test_ring_block_of_psync_workers_is_none():
    assert ring_block.ring_summary([row(), row()], 100) is None


def test_ring_block_counts_enters_flags_and_registrations():
    flags = (1 << 3) | (1 << 7) | (1 << 12) | (1 << 13)    # CQSIZE SUBMIT_ALL SINGLE_ISSUER DEFER_TASKRUN
    b = ring_block.ring_summary([row(ring_flags=flags, ring_registered=7, enters=30),
                                 row(ring_flags=flags, ring_registered=6, enters=20)], 400)
    assert b == {"setup_flags": ["CQSIZE", "SUBMIT_ALL", "SINGLE_ISSUER", "DEFER_TASKRUN"],
                 "registered": {"ring": 1, "file": 2, "buffers": 2}, "enters": 50, "enters_per_io": 0.125,
                 "min_wait_kernel": False, "batch_wait": None}


def test_ring_block_gives_the_batch_waits_and_their_mean():
    flags, feat = 1 << 13, ring_block.FEAT_MIN_TIMEOUT | 1
    b = ring_block.ring_summary([row(ring_flags=flags, ring_features=feat, batch_waits=3, batch_wait_sum_ns=90_000),
                                 row(ring_flags=flags, ring_features=feat, batch_waits=1, batch_wait_sum_ns=50_001)],
                                100)
    assert b["min_wait_kernel"] is True
    assert b["batch_wait"] == {"waits": 4, "mean_ns": 35_000}
    # one ring without the feature: the kernel does not offer it to all
    assert ring_block.ring_summary([row(ring_flags=flags, ring_features=feat), row(ring_flags=flags)],
                                   100)["min_wait_kernel"] is False


def test_ring_block_names_each_sq_thread_and_its_cpu():
    flags = (1 << 1) | (1 << 2) | (1 << 3)
    b = ring_block.ring_summary([row(ring_flags=flags, sq_tid=900, sq_last_cpu=1, sq_cpu_ns=1_500_000_000),
                                 row(ring_flags=flags)], 0)
    assert b["setup_flags"] == ["SQPOLL", "SQ_AFF", "CQSIZE"] and b["enters_per_io"] is None
    assert b["sq_threads"] == [{"worker": 0, "tid": 900, "last_cpu": 1, "cpu_s": 1.5},
                               {"worker": 1, "tid": None, "last_cpu": None, "cpu_s": 0.0}]
    assert b["sq_cpu_s"] == 1.5


@pytest.mark.parametrize("argv, out", [
    (["disk", "--sqpoll"], ["disk", "--sqpoll", "any"]),
    (["disk", "--sqpoll", "--qd", "4"], ["disk", "--sqpoll", "any", "--qd", "4"]),
    (["disk", "--sqpoll", "1", "--qd", "4"], ["disk", "--sqpoll", "1", "--qd", "4"]),
    (["disk", "--sqpoll", "any"], ["disk", "--sqpoll", "any"]),
    (["disk", "--qd", "4"], ["disk", "--qd", "4"]),
    (["disk", "--", "--sqpoll"], ["disk", "--", "--sqpoll"]),
])
def test_sqpoll_alone_means_any(argv, out):
    assert cli.with_optional_values(argv) == out


# ---- end to end -----------------------------------------------------------------------------------

@pytest.fixture
def zram():
    """A zram device of this test's own (hot_add), 64 MiB; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it hot-adds a zram device")
    if not (ZRAM_CONTROL / "hot_add").exists():
        subprocess.run(["modprobe", "zram"], capture_output=True)
    if not (ZRAM_CONTROL / "hot_add").exists():
        pytest.skip("no zram here (/sys/class/zram-control/hot_add)")
    n = (ZRAM_CONTROL / "hot_add").read_text().strip()
    made_node = None
    try:
        sys_dir, dev = Path(f"/sys/block/zram{n}"), Path(f"/dev/zram{n}")
        (sys_dir / "disksize").write_text(str(64 * MiB))
        if not dev.exists():    # containers often lack udev
            major, minor = (sys_dir / "dev").read_text().strip().split(":")
            os.mknod(dev, 0o600 | 0o60000, os.makedev(int(major), int(minor)))
            made_node = dev
        yield str(dev)
    finally:
        if made_node:
            made_node.unlink()
        Path(f"/sys/block/zram{n}/reset").write_text("1")
        (ZRAM_CONTROL / "hot_remove").write_text(n)


@pytest.fixture
def loop_device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: it attaches a loop device")
    image = tmp_path / "loop.img"
    with open(image, "wb") as f:
        f.truncate(16 * MiB)
    attach = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def poll_queues_under(path: Path) -> bool:
    name = block_device_of(str(path))
    try:
        return name is not None and Path(f"/sys/block/{name}/queue/io_poll").read_text().strip() == "1"
    except OSError:
        return False


def test_a_closed_loop_waits_for_batches_and_records_them(disk, io_uring):
    done = disk("--qd", "32", "--workers", "1", "--batch-submit", "8", "--batch-complete", "8")
    assert done.returncode == 0, done.stderr
    config, s = done.doc["config"], done.summary
    assert (config["batch_submit"], config["batch_complete"]) == (8, 8)
    r = s["ring"]
    assert s["ops"] > 0 and r["enters"] > 0
    # every enter waits for 8 completions, but for the last few of the window
    assert r["enters"] <= s["ops"] / 8 + 4, r
    assert r["enters_per_io"] == round(r["enters"] / s["ops"], 4)


def test_default_batches_are_recorded_as_used(disk, io_uring):
    done = disk("--qd", "16", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert (done.doc["config"]["batch_submit"], done.doc["config"]["batch_complete"]) == (4, 4)
    assert done.summary["ring"]["registered"]["ring"] in (0, 1)     # where the kernel allows (5.18)


def test_register_ring_can_be_turned_off_and_says_so(disk, io_uring):
    done = disk("--workers", "1", "--no-register-ring")
    assert done.returncode == 0, done.stderr
    assert done.doc["config"]["register_ring"] is False
    assert done.summary["ring"]["registered"]["ring"] == 0


def test_a_paced_run_does_not_batch(disk, io_uring):
    done = disk("--iops", "2k", "--workers", "1", "--batch-complete", "8")
    assert done.returncode == 0, done.stderr
    assert done.doc["config"]["batch_complete"] is None and done.summary["ops"] > 0


@pytest.mark.root
def test_batched_closed_loop_counts_every_io_the_device_did(zram, io_uring, tmp_path):
    """Batched, the device's completed I/Os are still exactly loadgen's (measured, warm-up and
    drained after the stop)."""
    out = tmp_path / "r.json"
    p = subprocess.run(loadgen_argv("disk", "--target", zram, "--duration", "1s", "--ramp", "0.2s", "--qd", "32",
                                    "--workers", "1", "--batch-complete", "8", "--batch-submit", "8",
                                    "--json", str(out), "-q"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    import json

    doc = json.loads(out.read_text())
    check = doc["summary"]["device_crosscheck"]
    assert doc["summary"]["ops"] > 0
    assert check["device_ios"] == check["loadgen_ios"], check


def zram_run(zram: str, tmp_path: Path, *args: str) -> dict:
    """A short closed loop on the test's zram, one worker at qd 32; its result document."""
    import json

    out = tmp_path / "r.json"
    p = subprocess.run(loadgen_argv("disk", "--target", zram, "--duration", "1s", "--ramp", "0.2s", "--qd", "32",
                                    "--workers", "1", "--batch-complete", "8", *args, "--json", str(out), "-q"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


@pytest.mark.root
def test_a_fixed_batch_wait_is_used_and_every_io_still_counted(zram, io_uring, tmp_path):
    """zram cannot take I/O without blocking, so every read goes to io-wq helpers: the case the
    batch wait is for. Each wait asks for every I/O in flight and is cut at 40 µs, on kernels
    that offer it (IORING_FEAT_MIN_TIMEOUT); the device still did exactly loadgen's I/Os."""
    doc = zram_run(zram, tmp_path, "--batch-wait", "40us")
    s, r = doc["summary"], doc["summary"]["ring"]
    assert doc["config"]["batch_wait"] == "40us"
    assert s["ops"] > 0
    if not r["min_wait_kernel"]:
        assert r["batch_wait"] is None
        pytest.skip("this kernel has no IORING_FEAT_MIN_TIMEOUT (Linux 6.12): the batch wait is off")
    # a wait cut short ends an enter: no more of them than enters, and each was the 40 µs asked
    assert 0 < r["batch_wait"]["waits"] <= r["enters"], r
    assert r["batch_wait"]["mean_ns"] == 40_000
    check = s["device_crosscheck"]
    assert check["device_ios"] == check["loadgen_ios"], check


@pytest.mark.root
def test_batch_wait_off_waits_for_batches_again(zram, io_uring, tmp_path):
    doc = zram_run(zram, tmp_path, "--batch-wait", "0")
    s, r = doc["summary"], doc["summary"]["ring"]
    assert r["batch_wait"] is None
    assert 0 < r["enters"] <= s["ops"] / 8 + 4, r


@pytest.mark.root
def test_auto_batch_wait_follows_the_io_wq_helpers(zram, io_uring, tmp_path):
    """Auto: on while the worker's I/O goes to io-wq helpers on CPUs without a worker (zram's
    always does, given a free CPU), at batch-complete times the time per I/O."""
    doc = zram_run(zram, tmp_path)
    s, r = doc["summary"], doc["summary"]["ring"]
    assert doc["config"]["batch_wait"] == "auto"
    worker_cpus = {t["last_cpu"] for t in s["threads"]["threads"] if t["role"] == "worker"}
    helpers = [t for t in s["threads"]["threads"] if t["role"] == "io-wq"]
    apart = helpers and all(t["last_cpu"] not in worker_cpus for t in helpers)
    if not (r["min_wait_kernel"] and apart):
        assert r["batch_wait"] is None, r
        pytest.skip("no IORING_FEAT_MIN_TIMEOUT, or no CPU without a worker for the helpers: auto stays off")
    assert r["batch_wait"]["waits"] > 0 and r["batch_wait"]["mean_ns"] > 0, r
    assert s["device_crosscheck"]["device_ios"] == s["device_crosscheck"]["loadgen_ios"]


def test_auto_batch_wait_stays_off_without_io_wq_helpers(disk, io_uring):
    """Where the kernel issues the I/O without blocking (O_DIRECT on most filesystems), no
    helper exists, completions come from the device, and holding them would only shrink the
    queue: auto leaves the batch wait off."""
    done = disk("--qd", "32", "--workers", "1")
    assert done.returncode == 0, done.stderr
    s = done.summary
    if any(t["role"] == "io-wq" for t in s["threads"]["threads"]):
        pytest.skip("this filesystem sends the I/O to io-wq helpers: the case auto is for")
    assert s["ring"]["batch_wait"] is None, s["ring"]


def refused_poll(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: --poll needs a block device with poll queues"), lines


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv("disk", "--duration", "1s", "--ramp", "0s", "-q", *args), cwd=tmp_path,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


@pytest.mark.root
def test_poll_on_zram_is_refused_in_one_line(zram, io_uring, tmp_path):
    refused_poll(run_cli(tmp_path, "--target", zram, "--poll"))


@pytest.mark.root
def test_poll_on_a_loop_device_is_refused_in_one_line(loop_device, io_uring, tmp_path):
    refused_poll(run_cli(tmp_path, "--target", loop_device, "--poll"))


def test_poll_on_a_file_is_refused_where_its_disk_has_no_poll_queues(io_uring, tmp_path, direct_io):
    if not direct_io:
        pytest.skip("no O_DIRECT under tmp_path, which --poll needs")
    if poll_queues_under(tmp_path):
        pytest.skip("the disk under tmp_path has poll queues")
    p = run_cli(tmp_path, "--size", "16m", "--poll")
    refused_poll(p)
    assert not list(tmp_path.glob(".loadgen-*")), "the temporary target is left behind"


def sqpoll_run(tmp_path: Path, *args: str) -> dict:
    import json

    out = tmp_path / "r.json"
    # intervals of 0.5 s: the thread census is taken while the SQ thread lives
    p = run_cli(tmp_path, "--duration", "2s", "--interval", "0.5s", "--workers", "1", "--json", str(out), *args)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


def check_sq_thread(doc: dict, cpu: int | None) -> None:
    config, r = doc["config"], doc["summary"]["ring"]
    assert "SQPOLL" in r["setup_flags"]
    assert config["sqpoll"]["cpu"] == cpu
    [t] = r["sq_threads"]
    assert t["tid"] and t["last_cpu"] is not None and t["cpu_s"] >= 0
    if cpu is not None:
        assert "SQ_AFF" in r["setup_flags"] and t["last_cpu"] == cpu
    census = doc["summary"]["threads"]
    assert census["count"].get("sq-poll") == 1
    [sq] = [x for x in census["threads"] if x["role"] == "sq-poll"]
    assert sq["tid"] == t["tid"] and sq["name"] == f"iou-sqp-{next(x['tid'] for x in census['threads'] if x['role'] == 'worker')}"


@pytest.mark.root
def test_sqpoll_on_zram_names_its_cpu_and_counts_its_time(zram, io_uring, tmp_path):
    usable = sorted(os.sched_getaffinity(0))
    doc = sqpoll_run(tmp_path, "--target", zram, "--sqpoll", str(usable[-1]))
    check_sq_thread(doc, usable[-1])


def test_sqpoll_any_on_a_temp_file(io_uring, tmp_path, direct_io):
    doc = sqpoll_run(tmp_path, "--size", "16m", "--sqpoll", *([] if direct_io else ["--buffered"]))
    usable = sorted(os.sched_getaffinity(0))
    free = [c for c in usable if c not in doc["config"]["cpus"]]
    assert doc["config"]["sqpoll"]["requested"] == "any"
    check_sq_thread(doc, free[0] if free else None)


@pytest.mark.parametrize("args, message", [
    (["--sqpoll", "99999"], "invalid sqpoll"),
    (["--sqpoll", "x"], "invalid sqpoll"),
    (["--batch-complete", "0"], "invalid batch-complete"),
    (["--batch-wait", "soon"], "invalid batch-wait"),
    (["--qd", "8", "--batch-submit", "9"], "--batch-submit 9 is more than --qd 8"),
    (["--poll", "--buffered"], "--poll needs O_DIRECT"),
])
def test_bad_values_exit_2_in_one_line(tmp_path, args, message):
    p = run_cli(tmp_path, "--size", "16m", *args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and message in lines[0], lines


class FailedSnapshot:
    def __init__(self, errors_by_errno, ops=0):
        self._errors, self.ops = errors_by_errno, ops

    def counter(self, name):
        return {"ops_read": self.ops, "ops_write": 0, "errors": sum(self._errors.values())}[name]

    def errors_by_errno(self):
        return self._errors


@pytest.mark.parametrize("errors, ops, says", [
    ({95: 32}, 0, "--poll: the kernel refused polled I/O on this target (EOPNOTSUPP on every I/O)"),
    ({95: 3, 5: 1}, 0,   # 95: EOPNOTSUPP and ENOTSUP are one number on Linux; Python names it ENOTSUP
      "every I/O failed (ENOTSUP x3, EIO x1)"),
    ({95: 3}, 10, None),
    ({}, 10, None),
])
def test_a_polled_run_the_kernel_refuses_says_so(errors, ops, says):
    from loadgen.disk.job import all_failed

    assert ring.poll_answer(all_failed)(FailedSnapshot(errors, ops)) == says
