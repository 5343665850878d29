"""Several targets in one disk run: --target A,B,C or a glob.

The rules are table-tested (the names a --target gives, how workers are spread).
End to end, two files as targets give two sections whose ops add up to the total
and whose histograms, added bucket by bucket, are the total's; a bad target in the
list is refused in one line before anything is written to the others. As root,
two zram devices this test hot_adds (and hot_removes) show each target's I/Os
equal to its own device's /sys/block/zramN/stat delta, exactly, and a device with
a filesystem signature in the list is refused. /dev/zram0 is never touched.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from netfixtures import RUN_TIMEOUT_S, loadgen_argv

from loadgen import profiles
from loadgen.errors import UsageError
from loadgen.results import documents, histogram
from loadgen.workload import is_target_list, parse_disk, spread_workers, target_names

MiB = 1 << 20


# ---- the rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers, targets, shares", [
    (2, 2, [1, 1]), (5, 2, [3, 2]), (4, 3, [2, 1, 1]), (3, 3, [1, 1, 1]), (1, 1, [1]), (8, 1, [8]),
])
def test_workers_are_spread_as_evenly_as_can_be(workers, targets, shares):
    assert spread_workers(workers, targets) == shares


def test_target_names_keep_the_lists_order_and_expand_globs_sorted(tmp_path):
    for name in ("b.dat", "a.dat", "c.img"):
        (tmp_path / name).write_bytes(b"x")
    assert target_names(None) == () and target_names("") == ()
    assert target_names("/x/one") == ("/x/one",)
    assert target_names(" /x/b , /x/a ") == ("/x/b", "/x/a")
    assert target_names(f"{tmp_path}/*.dat") == (f"{tmp_path}/a.dat", f"{tmp_path}/b.dat")
    assert target_names(f"{tmp_path}/c.img,{tmp_path}/[ab].dat") == (
        f"{tmp_path}/c.img", f"{tmp_path}/a.dat", f"{tmp_path}/b.dat")


@pytest.mark.parametrize("text, message", [
    ("{d}/*.nothing", "no target matches {d}/*.nothing"),
    ("{d}/a,,{d}/b", "an empty name in the list"),
    ("{d}/a,{d}/a", "target {d}/a is named twice"),
    ("{d}/a.dat,{d}/*.dat", "target {d}/a.dat is named twice"),
])
def test_bad_target_lists_are_refused(tmp_path, text, message):
    (tmp_path / "a.dat").write_bytes(b"x")
    with pytest.raises(UsageError, match=message.format(d=tmp_path).replace("*", r"\*").replace(".", r"\.")):
        target_names(text.format(d=tmp_path))


@pytest.mark.parametrize("text, several", [
    (None, False), ("", False), ("/dev/nvme1n1", False), ("a,b", True), ("/dev/nvme*n1", True), ("f[12]", True),
])
def test_what_names_several_targets(text, several):
    assert is_target_list(text) is several


def test_fewer_workers_than_targets_are_raised_to_one_each_and_said():
    spec = parse_disk(target="/x/a,/x/b,/x/c", workers="2")
    assert spec.targets == ("/x/a", "/x/b", "/x/c")
    assert spec.common.workers == 3 and spec.wire["workers"] == 3
    assert spec.notes == ("3 targets and 2 workers: running 3 workers, one per target",)
    assert parse_disk(target="/x/a,/x/b", workers="4").notes == ()


def test_an_agent_takes_its_target_as_one_name():
    """The wire carries --target as given; an agent never splits or globs it (it opens beneath its roots)."""
    spec = parse_disk(target="/x/a", workers="1")
    from loadgen.workload import DiskSpec

    assert DiskSpec.from_wire(spec.to_wire(target="/x/a*,b")).targets == ("/x/a*,b",)


def test_a_profile_names_several_targets_and_on_refuses_them(tmp_path):
    prof = tmp_path / "two.toml"
    prof.write_text('kind = "disk"\n[options]\ntarget = "/x/a,/x/b"\nworkers = "2"\n')
    assert profiles.load(prof).options["target"] == "/x/a,/x/b"
    assert profiles.validate("disk", profiles.load(prof).options, str(prof)).targets == ("/x/a", "/x/b")
    with pytest.raises(UsageError, match="on runs one target on its host"):
        profiles.validate("disk", {"target": "/x/a,/x/b", "on": "h:1"}, str(prof))


# ---- end to end on files -------------------------------------------------------------------------

def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def short(direct_io: bool) -> list[str]:
    return ["--duration", "1s", "--ramp", "0s", "--qd", "4", *([] if direct_io else ["--buffered"])]


def decode_counts(b64: str) -> np.ndarray:
    h = HdrHistogram.decode(b64.encode("ascii"))
    return np.array([h.get_count_at_index(i) for i in range(h.counts_len)], dtype=np.uint64)


def write_file(path: Path, size_bytes: int) -> None:
    path.write_bytes(os.urandom(size_bytes))   # every block written: no holes to refuse


def test_two_files_give_two_sections_that_add_up_to_the_total(tmp_path, direct_io):
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    p = run(tmp_path, "disk", "--target", f"{a},{b}", "--size", "16m", "--workers", "3", *short(direct_io),
            "--json", "r.json")
    assert p.returncode == 0, p.stderr
    doc = documents.load_result(str(tmp_path / "r.json"))   # schema-valid
    t1, t2 = doc["targets"]
    assert (t1["path"], t2["path"]) == (str(a), str(b)) and doc["config"]["targets"] == [str(a), str(b)]
    assert (t1["workers"], t2["workers"]) == (2, 1) and doc["config"]["workers"] == 3
    assert t1["cpus"] + t2["cpus"] == doc["config"]["cpus"]
    assert t1["created"] and t2["created"] and a.stat().st_size == b.stat().st_size == 16 * MiB
    s = doc["summary"]
    assert t1["ops"] > 0 and t2["ops"] > 0
    for key in ("ops", "bytes", "errors", "warmup_ops", "drained_ops"):
        assert t1[key] + t2[key] == s[key], key
    assert t1["read"]["ops"] + t2["read"]["ops"] == s["read"]["ops"]
    for tag in ("latency", "service"):
        parts = [decode_counts(t["histograms"][tag]) for t in (t1, t2)]
        assert np.array_equal(decode_counts(doc["histograms"][tag]), parts[0] + parts[1]), tag
        for t, counts in zip((t1, t2), parts):
            # each section's latency is its own workers' merged histogram, summarized
            assert t[f"{tag}_ns"] == histogram.summarize_counts(counts)
            assert int(counts.sum()) == t["ops"]
    for row in doc["intervals"]:
        assert sum(part["ops"] for part in row["targets"].values()) == row["ops"]
    assert sum(r["targets"][str(a)]["ops"] for r in doc["intervals"]) == t1["ops"]
    assert f"target {a} (2 workers): IOPS=" in p.stdout and f"target {b} (1 worker): IOPS=" in p.stdout


def test_a_glob_names_the_targets_sorted_and_workers_are_raised_to_one_each(tmp_path, direct_io):
    for name in ("t2.dat", "t1.dat", "t3.dat", "other.img"):
        write_file(tmp_path / name, 1 * MiB)
    p = run(tmp_path, "disk", "--target", f"{tmp_path}/t*.dat", "--workers", "1", *short(direct_io),
            "--json", "r.json")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [t["path"] for t in doc["targets"]] == [f"{tmp_path}/t{i}.dat" for i in (1, 2, 3)]
    assert [t["workers"] for t in doc["targets"]] == [1, 1, 1]
    assert "3 targets and 1 worker: running 3 workers, one per target" in doc["warnings"]
    assert "loadgen: warning: 3 targets and 1 worker" in p.stderr


def test_a_glob_that_matches_nothing_is_one_line(tmp_path):
    p = run(tmp_path, "disk", "--target", f"{tmp_path}/none*", "--duration", "1s")
    assert p.returncode == 2
    assert p.stderr == f"loadgen: no target matches {tmp_path}/none*\n"


def test_a_bad_target_in_the_list_leaves_the_others_as_they_were(tmp_path):
    # a: sparse, so --prefill would write it; b would be made at --size; c is a directory.
    a, b, c = tmp_path / "a.dat", tmp_path / "b.dat", tmp_path / "c"
    with open(a, "wb") as f:
        f.truncate(4 * MiB)
    c.mkdir()
    p = run(tmp_path, "disk", "--target", f"{a},{b},{c}", "--size", "4m", "--prefill", "--duration", "1s",
            "--json", "r.json")
    assert p.returncode == 2
    assert p.stderr == f"loadgen: target must be a regular file or a block device: {c}\n"
    assert a.stat().st_blocks == 0, "a was written before c was refused"
    assert not b.exists(), "b was made and left behind"
    assert not (tmp_path / "r.json").exists()


def test_the_same_file_twice_is_refused(tmp_path):
    write_file(tmp_path / "a.dat", 1 * MiB)
    (tmp_path / "link").symlink_to(tmp_path / "a.dat")
    p = run(tmp_path, "disk", "--target", f"{tmp_path}/a.dat,{tmp_path}/link", "--duration", "1s")
    assert p.returncode == 2
    assert p.stderr == f"loadgen: targets {tmp_path}/a.dat and {tmp_path}/link are the same file\n"


@pytest.mark.parametrize("where", [["--on", "127.0.0.1:9"], ["--ray", "auto"]])
def test_agents_and_ray_refuse_several_targets_in_one_line(tmp_path, where):
    p = run(tmp_path, "disk", *where, "--target", "/x/a,/x/b", "--duration", "1s")
    assert p.returncode == 2
    flag = where[0]
    if flag == "--ray" and "ray" in p.stderr and "needs" in p.stderr:
        pytest.skip(f"ray is not installed: {p.stderr.strip()}")
    assert p.stderr == (f"loadgen: {flag} runs one target on each host: --target /x/a,/x/b names several "
                        f"(a list or a glob); give one path, or run it here without {flag}\n")


def test_a_profile_with_two_targets_runs(tmp_path, direct_io):
    prof = tmp_path / "two.toml"
    prof.write_text('kind = "disk"\n[options]\ntarget = "a.dat,b.dat"\nsize = "4m"\nworkers = "2"\n'
                    f'duration = "1s"\nramp = "0s"\nqd = "2"\ndirect = {"true" if direct_io else "false"}\n')
    p = run(tmp_path, "run", str(prof), "--json", "r.json", "--quiet")
    assert p.returncode == 0, p.stderr
    doc = documents.load_result(str(tmp_path / "r.json"))
    assert [t["path"] for t in doc["targets"]] == ["a.dat", "b.dat"]
    assert sum(t["ops"] for t in doc["targets"]) == doc["summary"]["ops"] > 0


# ---- end to end on two zram devices (root) -------------------------------------------------------

ZRAM_CONTROL = Path("/sys/class/zram-control")


@pytest.fixture
def zrams():
    """make(n, size): n zram devices of their own, hot_added and hot_removed after; never zram0."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it hot_adds zram devices")
    if not (ZRAM_CONTROL / "hot_add").exists():
        subprocess.run(["modprobe", "zram"], capture_output=True)
    if not (ZRAM_CONTROL / "hot_add").exists():
        pytest.skip("no zram here (/sys/class/zram-control/hot_add)")
    added: list[tuple[int, bool]] = []

    def make(n: int, size: str = "32M") -> list[str]:
        paths = []
        for _ in range(n):
            num = int((ZRAM_CONTROL / "hot_add").read_text())
            assert num != 0
            node = Path(f"/dev/zram{num}")
            made = not node.exists()
            if made:   # a container without udev: the node from sysfs
                major, minor = Path(f"/sys/block/zram{num}/dev").read_text().split(":")
                os.mknod(node, 0o600 | 0o060000, os.makedev(int(major), int(minor)))
            added.append((num, made))
            Path(f"/sys/block/zram{num}/disksize").write_text(size)
            paths.append(str(node))
        return paths

    yield make
    for num, made in added:
        Path(f"/sys/block/zram{num}/reset").write_text("1")
        (ZRAM_CONTROL / "hot_remove").write_text(str(num))
        if made:
            Path(f"/dev/zram{num}").unlink(missing_ok=True)


def test_each_targets_ops_equal_its_zram_devices_count(tmp_path, zrams, io_uring):
    a, b = zrams(2)
    p = run(tmp_path, "disk", "--target", f"{a},{b}", "--rw", "randread", "--workers", "2", "--qd", "8",
            "--duration", "1s", "--ramp", "200ms", "--json", "r.json", "--quiet")
    assert p.returncode == 0, p.stderr
    doc = documents.load_result(str(tmp_path / "r.json"))
    for t, path in zip(doc["targets"], (a, b)):
        name = Path(path).name
        assert t["path"] == path and t["device"] == name and t["kind"] == "block"
        stat = doc["counters"]["disks"][name]["stat"]
        assert t["counters"] == doc["counters"]["disks"][name]
        assert t["ops"] > 0 and t["write"]["ops"] == 0 and stat["writes_completed"] == 0
        # every read the device completed is one loadgen counted: measured, warm-up or drained at the end
        assert stat["reads_completed"] == t["read"]["ops"] + t["warmup_ops"] + t["drained_ops"]
        assert t["device_crosscheck"]["ratio"] == 1.0
    assert doc["summary"]["device_crosscheck"]["ratio"] == 1.0


def test_a_device_with_a_signature_in_the_list_is_refused(tmp_path, zrams):
    clean, marked = zrams(2, "4M")
    with open(marked, "r+b") as f:
        f.seek(1080)
        f.write(b"\x53\xef")    # ext2/3/4's magic
    before = Path(clean).read_bytes()
    p = run(tmp_path, "disk", "--target", f"{clean},{marked}", "--rw", "randwrite", "--duration", "1s",
            "--ramp", "0s", "--json", "r.json")
    assert p.returncode == 2
    assert p.stderr.startswith(f"loadgen: refusing to write to {marked}: it carries ext2/3/4")
    assert p.stderr.count("\n") == 1
    assert Path(clean).read_bytes() == before, "the clean device was written"
    assert not (tmp_path / "r.json").exists()


def test_the_nvme_engine_takes_one_target():
    with pytest.raises(UsageError, match="--engine nvme runs on one /dev/ngXnY"):
        parse_disk(target="/dev/ng0n1,/dev/ng1n1", engine="nvme")


def test_io_wq_helpers_keep_off_every_targets_workers(tmp_path, zrams, io_uring):
    """A run per target, but the helpers' placement counts the whole job's workers: with a
    worker on every CPU there is no CPU of their own for them, so each stays on its own
    worker's CPU rather than moving onto another target's worker, and the automatic batch
    wait (for helpers apart) stays off."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs: a worker per target at least, one per CPU")
    a, b = zrams(2)
    p = run(tmp_path, "disk", "--target", f"{a},{b}", "--rw", "randread", "--workers", str(len(cpus)), "--qd", "8",
            "--duration", "1s", "--ramp", "200ms", "--json", "r.json", "--quiet")
    assert p.returncode == 0, p.stderr
    doc = documents.load_result(str(tmp_path / "r.json"))
    threads = doc["summary"]["threads"]["threads"]
    workers = {t["tid"]: t for t in threads if t["role"] == "worker"}
    for h in (t for t in threads if t["role"] == "io-wq"):
        creator = workers.get(int(h["name"].rsplit("-", 1)[1]))
        assert creator is not None and h["allowed"] == creator["allowed"], (h, creator)
    assert doc["summary"]["ring"]["batch_wait"] is None
