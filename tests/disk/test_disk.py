"""The disk job: its policy in-process, and `loadgen disk` end to end in a subprocess.

End-to-end runs are short (conftest.SHORT_LOAD: 16m temp file, 1 s, no ramp)
and assert behaviour only: what was counted, how the outputs agree with each
other, exit codes and cleanup; never how fast anything was.

Failing I/O is produced with RLIMIT_FSIZE: a write at an offset at or above
the limit fails with EFBIG (and raises SIGXFSZ, which Python ignores, so the
child survives). The limit also covers the child's own --json and --hlog, so
the run where every write fails reports through stdout.
"""
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

import hlogs
from loadgen.disk.job import all_failed, choose_engine, worker_cpus
from loadgen.results import histogram
from netns import Controller, wait_until

MiB = 1 << 20
LATENCY_KEYS = ["min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"]


# ---- the job's pure parts ------------------------------------------------------------------------

class FakeSnapshot:
    def __init__(self, ops_read=0, ops_write=0, errors_by_errno=None):
        self.counters = {"ops_read": ops_read, "ops_write": ops_write,
                         "errors": sum((errors_by_errno or {}).values())}
        self._errors = errors_by_errno or {}

    def counter(self, name):
        return self.counters[name]

    def errors_by_errno(self):
        return self._errors


@pytest.mark.parametrize("snapshot, reason", [
    (FakeSnapshot(), None),                                              # nothing happened yet
    (FakeSnapshot(ops_read=10), None),
    (FakeSnapshot(ops_write=1, errors_by_errno={27: 500}), None),        # one success is enough
    (FakeSnapshot(ops_read=1, errors_by_errno={5: 3}), None),
    (FakeSnapshot(errors_by_errno={27: 12}), "every I/O failed (EFBIG x12)"),
    (FakeSnapshot(errors_by_errno={5: 2, 22: 1}), "every I/O failed (EIO x2, EINVAL x1)"),
])
def test_all_failed_policy(snapshot, reason):
    assert all_failed(snapshot) == reason


def test_worker_cpus_wrap_over_usable_cpus():
    usable = sorted(os.sched_getaffinity(0))
    n = 2 * len(usable) + 1
    assert worker_cpus(n) == [usable[i % len(usable)] for i in range(n)]


def test_psync_can_be_forced():
    engine, note = choose_engine("psync")
    assert engine == "psync" and "psync forced" in note


# ---- helpers for the end-to-end runs -------------------------------------------------------------

def loadgen_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadgen", *args]


def file_size_limit(limit_bytes: int):
    """preexec_fn: the child may not write at or beyond limit_bytes of any file."""

    def apply():
        # Python ignores SIGXFSZ at startup; make sure the child cannot die of it before then.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def hlog_intervals(path: Path) -> list:
    """Every interval histogram in an .hlog, in order, the untagged ones named as the log names them."""
    name = hlogs.untagged_name(path)
    out = hlogs.intervals(path)
    for h in out:
        if h.get_tag() is None:
            h.set_tag(name)
    return out


def merged(hists) -> "histogram.HdrHistogram":
    total = histogram.new()
    for h in hists:
        # The package's add() takes min from get_min_value(), which is 0 for an
        # empty histogram, so an empty interval would zero the merged min.
        if h.get_total_count():
            total.add(h)
    return total


def package_summary(h) -> dict:
    return {"min": h.get_min_value(), "mean": h.get_mean_value(),
            **{name: h.get_value_at_percentile(p) for name, p in histogram.PERCENTILES.items()},
            "max": h.get_max_value(), "count": h.get_total_count()}


def shape(value):
    """The document's structure without its values: keys, recursively."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        shapes = [shape(v) for v in value]
        assert all(s == shapes[0] for s in shapes), "list elements differ in shape"
        return shapes[:1]
    return None


# ---- outputs agree with each other ----------------------------------------------------------------

def test_hlog_round_trips_to_the_json_summary(disk):
    done = disk("--duration", "2s", "--interval", "500ms", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    doc = done.doc
    s = doc["summary"]
    assert s["ops"] > 0 and s["errors"] == 0
    assert (doc["interrupted"], doc["failed"], doc["stop_reason"]) == (False, False, None)

    rows = doc["intervals"]
    assert sum(r["ops"] for r in rows) == s["ops"]
    assert sum(r["errors"] for r in rows) == 0
    assert [r["t_s"] for r in rows] == sorted(set(r["t_s"] for r in rows))
    assert rows[-1]["t_s"] == 2.0   # the last interval ends with the run; the others when taken

    by_tag: dict[str, list] = {}
    for h in hlog_intervals(done.cwd / "r.hlog"):
        by_tag.setdefault(h.get_tag(), []).append(h)
    assert sorted(by_tag) == ["latency", "service"]            # not mixed: no per-side tags
    assert len(by_tag["latency"]) == len(by_tag["service"]) == len(rows)
    for h, row in zip(by_tag["latency"], rows):
        assert row["latency_ns"] == {"p50": h.get_value_at_percentile(50), "p99": h.get_value_at_percentile(99),
                                     "max": h.get_max_value()}
    latency, service = merged(by_tag["latency"]), merged(by_tag["service"])
    assert latency.get_total_count() == s["ops"]
    assert package_summary(latency) == s["latency_ns"]
    assert package_summary(service) == s["service_ns"]
    assert list(s["latency_ns"]) == LATENCY_KEYS
    assert done.temp_files_left() == []


def test_each_interval_is_one_consistent_snapshot(disk):
    # Many short intervals, so a snapshot taken mid-completion cannot be missed.
    done = disk("--duration", "3s", "--interval", "100ms", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    rows = done.doc["intervals"]
    by_tag: dict[str, list[int]] = {}
    for h in hlog_intervals(done.cwd / "r.hlog"):
        by_tag.setdefault(h.get_tag(), []).append(h.get_total_count())
    assert len(rows) > 10
    assert by_tag["latency"] == by_tag["service"] == [r["ops"] for r in rows]


def test_mixed_reads_and_writes(disk):
    done = disk("--rw", "randrw", "--mix", "70", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    doc = done.doc
    s = doc["summary"]
    reads, writes = s["read"]["ops"], s["write"]["ops"]
    assert reads > 0 and writes > 0
    assert reads + writes == s["ops"]
    assert 0.55 <= reads / s["ops"] <= 0.85
    assert (doc["config"]["read_pct"], doc["config"]["rw"]) == (70, "randrw")
    assert s["read"]["latency_ns"]["count"] == reads and s["write"]["latency_ns"]["count"] == writes
    assert s["bytes"] == s["ops"] * 4096

    by_tag: dict[str, list] = {}
    for h in hlog_intervals(done.cwd / "r.hlog"):
        by_tag.setdefault(h.get_tag(), []).append(h)
    assert sorted(by_tag) == ["latency", "read-latency", "read-service", "service", "write-latency", "write-service"]
    assert merged(by_tag["read-latency"]).get_total_count() == reads
    assert merged(by_tag["write-latency"]).get_total_count() == writes
    assert package_summary(merged(by_tag["read-latency"])) == s["read"]["latency_ns"]
    assert package_summary(merged(by_tag["write-service"])) == s["write"]["service_ns"]


@pytest.mark.parametrize("rw, reads, writes", [("read", True, False), ("write", False, True), ("rw", True, True)])
def test_sequential_modes(disk, rw, reads, writes):
    done = disk("--rw", rw, "--duration", "300ms")
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert (s["read"]["ops"] > 0, s["write"]["ops"] > 0) == (reads, writes)
    assert s["errors"] == 0


# ---- open and closed loop -------------------------------------------------------------------------

def test_low_rate_open_loop(disk):
    done = disk("--iops", "2k", "--duration", "2s", "--workers", "1", "--qd", "4")
    assert done.returncode == 0, done.stderr
    doc = done.doc
    s = doc["summary"]
    assert doc["config"]["iops"] == 2000
    # 2k IOPS for 2 s schedules exactly 4000 I/Os, and an open loop never runs ahead of its
    # schedule: closed loop at qd 4 would do far more. Only I/Os that complete inside the
    # measured time count, so a slow host counts fewer; how many is bench.sh's business.
    # (Disk runs report no "unsent" as net runs do, so the shortfall cannot be checked exactly.)
    assert 0 < s["ops"] + s["errors"] <= 4000
    assert s["errors"] == 0 and s["warmup_ops"] == 0
    assert s["rate"] == pytest.approx(s["ops"] / s["duration_s"])
    assert sum(r["ops"] for r in doc["intervals"]) == s["ops"]
    assert set(s["schedule_lag_ns"]) == {"max", "mean", "late_ops"}
    assert 0 <= s["schedule_lag_ns"]["late_ops"] <= s["ops"]
    assert s["latency_ns"]["count"] == s["service_ns"]["count"] == s["ops"]
    # latency starts at the scheduled time, service at the (later or equal) submission
    for key in ("min", "p50", "p90", "p99", "p99.9", "max", "mean"):
        assert s["latency_ns"][key] >= s["service_ns"][key], key


def test_closed_loop_latency_is_service(disk):
    done = disk()
    assert done.returncode == 0, done.stderr
    doc = done.doc
    s = doc["summary"]
    assert doc["config"]["iops"] == "max"
    assert s["ops"] > 0 and s["latency_ns"]["count"] == s["ops"]
    assert s["latency_ns"] == s["service_ns"]
    assert s["read"]["latency_ns"] == s["read"]["service_ns"]
    assert s["schedule_lag_ns"] == {"max": 0, "mean": 0.0, "late_ops": 0}
    # the temporary target: made here, the asked size, and gone afterwards
    c = doc["config"]
    assert c["target_kind"] == "temp" and c["span_bytes"] == 16 * MiB
    assert Path(c["target_path"]).parent == done.cwd and Path(c["target_path"]).name.startswith(".loadgen-")
    assert done.temp_files_left() == []


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a CPU the worker leaves free")
def test_the_controller_runs_off_the_workers_cpus_when_one_is_free(disk):
    """psync: one thread and no io-wq helpers (which would take the free CPU)."""
    done = disk("--workers", "1", "--engine", "psync")
    assert done.returncode == 0, done.stderr
    c = done.doc["config"]
    placed = c["controller_cpus"]
    assert placed["kept_off"] == c["cpus"]
    assert set(placed["affinity"]) == set(os.sched_getaffinity(0)) - set(c["cpus"])
    # the census still counts every CPU the process may use
    assert done.doc["summary"]["threads"]["cpus"] == len(os.sched_getaffinity(0))


def test_psync_gives_the_same_document_shape(disk, io_uring, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    uring = disk("--engine", "io_uring", cwd=tmp_path / "a")
    psync = disk("--engine", "psync", cwd=tmp_path / "b")
    assert uring.returncode == psync.returncode == 0, uring.stderr + psync.stderr
    assert (uring.doc["engine"], psync.doc["engine"]) == ("io_uring", "psync")
    assert psync.doc["config"]["engine"] == "psync"
    assert "psync forced" in psync.doc["engine_note"] and uring.doc["engine_note"] is None
    assert psync.summary["ops"] > 0
    # psync has no ring: its block is null (an io_uring run's is tested in test_ring.py)
    psync_doc, uring_doc = psync.doc, uring.doc
    assert psync_doc["summary"].pop("ring") is None and uring_doc["summary"].pop("ring")["enters"] > 0
    assert shape(psync_doc) == shape(uring_doc)


# ---- failing I/O ----------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["auto", "psync"])
def test_errors_are_counted_by_errno(disk, tmp_path, engine):
    target = tmp_path / "F"
    target.write_bytes(b"\1" * (8 * MiB))
    done = disk("--target", "F", "--rw", "randwrite", "--buffered", "--engine", engine,
                preexec_fn=file_size_limit(4 * MiB))
    assert done.returncode == 0, done.stderr
    doc = done.doc
    s = doc["summary"]
    assert doc["engine"] == choose_engine(engine)[0]       # auto: io_uring wherever the kernel allows it
    assert s["ops"] > 0 and s["errors"] > 0
    assert s["errors_by_errno"] == {"EFBIG": s["errors"]}
    assert s["write"]["ops"] == s["ops"] and s["read"]["ops"] == 0
    assert s["bytes"] == s["ops"] * 4096
    # offsets are uniform over 8 MiB and those in the upper 4 MiB fail: about half of all attempts
    assert 0.35 <= s["errors"] / (s["errors"] + s["ops"]) <= 0.65
    assert sum(r["errors"] for r in doc["intervals"]) == s["errors"]
    assert (doc["failed"], doc["stop_reason"]) == (False, None)     # some I/O succeeded: no early stop
    assert target.stat().st_size == 8 * MiB


@pytest.fixture(scope="module")
def every_write_fails(tmp_path_factory):
    """A randwrite where every write fails (RLIMIT_FSIZE 0), checked every 100 ms.

    Its duration is far beyond the subprocess timeout: the run finishes only because it
    stops early, so no test needs to time it."""
    where = tmp_path_factory.mktemp("every-write-fails")
    (where / "F").write_bytes(b"\1" * (8 * MiB))
    p = subprocess.run(loadgen_argv("disk", "--target", "F", "--rw", "randwrite", "--buffered", "--duration", "1h",
                                    "--ramp", "0s", "--interval", "100ms"),
                       cwd=where, capture_output=True, text=True, preexec_fn=file_size_limit(0), timeout=60)
    return p


def test_every_io_failing_stops_the_run_early(every_write_fails):
    out = every_write_fails.stdout
    assert "stopped early: every I/O failed (EFBIG x" in out, out + every_write_fails.stderr
    ops_line = next(line for line in out.splitlines() if " ops in " in line)
    assert "IOPS=0," in ops_line and " 0 ops in " in ops_line
    errors_line = next(line for line in out.splitlines() if line.strip().startswith("errors:"))
    n = int(errors_line.split()[1])
    assert n > 0 and errors_line.strip() == f"errors: {n} (EFBIG x{n})"


def test_every_io_failing_exits_1_with_the_reason(every_write_fails):
    assert every_write_fails.returncode == 1
    lines = every_write_fails.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: every I/O failed (EFBIG x"), every_write_fails.stderr
    assert "Traceback" not in every_write_fails.stderr


def test_every_io_failing_summary_names_the_write_side(every_write_fails):
    lines = every_write_fails.stdout.splitlines()
    assert any(line.startswith("  write: ") for line in lines)
    assert not any(line.startswith("  read: ") for line in lines)


def test_every_io_failing_within_one_interval_is_reported(disk, tmp_path):
    (tmp_path / "F").write_bytes(b"\1" * (8 * MiB))
    done = disk("--target", "F", "--rw", "randwrite", "--buffered", "--interval", "1s", json_out=False,
                preexec_fn=file_size_limit(0))
    assert done.returncode == 1
    assert "every I/O failed" in done.stderr


# ---- refusing to destroy data ---------------------------------------------------------------------

@pytest.fixture
def ext4_loop(tmp_path):
    """(device, image): a 64 MiB ext4 image attached to a loop device, detached afterwards."""
    for tool in ("losetup", "mkfs.ext4"):
        if not shutil.which(tool):
            pytest.skip(f"needs {tool}")
    image = tmp_path / "ext4.img"
    with open(image, "wb") as f:
        f.truncate(64 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    attach = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        yield device, image
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def digest(path: Path) -> str:
    return sha256(path.read_bytes()).hexdigest()


@pytest.mark.root
def test_refuses_to_write_over_a_filesystem(disk, ext4_loop):
    device, image = ext4_loop
    before = digest(image)
    done = disk("--target", device, "--rw", "randwrite")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: "), done.stderr
    assert "refusing" in lines[0] and "ext2/3/4" in lines[0] and device in lines[0]
    assert not done.json_path.exists()
    assert digest(image) == before


@pytest.mark.root
def test_reads_a_device_with_a_filesystem(disk, ext4_loop):
    device, image = ext4_loop
    before = digest(image)
    done = disk("--target", device, "--rw", "randread")
    assert done.returncode == 0, done.stderr
    doc = done.doc
    assert doc["config"]["target_kind"] == "block" and doc["config"]["span_bytes"] == 16 * MiB
    assert doc["summary"]["read"]["ops"] > 0 and doc["summary"]["errors"] == 0
    assert digest(image) == before


@pytest.mark.root
def test_allow_destroy_writes_anyway(disk, ext4_loop):
    device, image = ext4_loop
    before = digest(image)
    done = disk("--target", device, "--rw", "randwrite", "--allow-destroy")
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert s["write"]["ops"] > 0 and s["errors"] == 0
    assert digest(image) != before


# ---- interrupts and cleanup -----------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_still_writes_its_json(tmp_path, direct_io, sig):
    # The live progress line (stderr on a pseudo-terminal) says when I/Os are being counted.
    c = Controller(tmp_path, "disk", "--size", "16m", "--duration", "30s", "--ramp", "0s", "--interval", "200ms",
                   "--json", "r.json", "--hlog", "r.hlog", *([] if direct_io else ["--buffered"]), tty=True)
    try:
        wait_until(c.measuring, 30, "the progress line to show I/Os done")
        c.proc.send_signal(sig)
        done = c.finish(timeout_s=30)
    finally:
        c.kill()
    assert done.returncode == 130, done.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    s = doc["summary"]
    assert (doc["interrupted"], doc["failed"]) == (True, False)
    assert doc["stop_reason"] == f"interrupted by {sig.name}"
    assert s["ops"] > 0
    assert 0 < s["duration_s"] < 30     # a part of the asked duration, whatever the host's speed
    assert sum(r["ops"] for r in doc["intervals"]) == s["ops"]
    assert sorted(f.name for f in tmp_path.glob(".loadgen-*")) == []


def test_sigterm_while_filling_the_temp_target_removes_it(tmp_path):
    argv = loadgen_argv("disk", "--size", "1g", "--duration", "1s", "--ramp", "0s", "--quiet", "--buffered")
    p = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Readiness: the temp target exists (filling 1 GiB comes first, then a 1 s run).
        wait_until(lambda: glob.glob(str(tmp_path / ".loadgen-*")) or p.poll() is not None, 30,
                   "the temporary target to appear")
        assert p.poll() is None, f"loadgen exited before it could be stopped: {p.returncode}"
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
        left = sorted(f.name for f in tmp_path.glob(".loadgen-*"))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in tmp_path.glob(".loadgen-*"):
            f.unlink()
    assert left == []
