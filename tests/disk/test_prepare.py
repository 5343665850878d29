"""loadgen disk prepare and --prefill: sequential fills by the native sweep, on files and a zram device."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from netns import clean_env, loadgen_argv, run_loadgen

MiB = 1 << 20


def _holes(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < os.fstat(fd).st_size
    finally:
        os.close(fd)


def _every_4k_block_written(data: bytes) -> bool:
    zero = bytes(4096)
    return all(data[i:i + 4096] != zero for i in range(0, len(data), 4096))


def test_prepare_writes_every_byte_of_a_sparse_file(tmp_path):
    path = tmp_path / "t.dat"
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    assert _holes(path)
    r = run_loadgen(tmp_path, "disk", "prepare", "--target", "t.dat", "--passes", "2")
    assert r.returncode == 0, r.stderr
    assert "prepare: 16m written in 2 passes over 8m" in r.stdout
    assert not _holes(path) and _every_4k_block_written(path.read_bytes())


def test_prepare_verify_then_disk_verify_is_clean(tmp_path):
    r = run_loadgen(tmp_path, "disk", "prepare", "--target", "v.dat", "--size", "2m", "--verify", "--bs", "8k",
                    "--seed", "11")
    assert r.returncode == 0, r.stderr
    v = run_loadgen(tmp_path, "disk", "verify", "--target", "v.dat", "--bs", "8k", "--seed", "11")
    assert v.returncode == 0 and "verify: 256 blocks checked, 0 bad" in v.stdout, v.stdout + v.stderr


def test_prefill_writes_the_holes_of_a_sparse_target_before_a_read_run(tmp_path):
    path = tmp_path / "s.dat"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    refused = run_loadgen(tmp_path, "disk", "--target", "s.dat", "--duration", "1s")
    assert refused.returncode == 2 and "--prefill" in refused.stderr and "--allow-sparse" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    sparse = run_loadgen(tmp_path, "disk", "--target", "s.dat", "--duration", "1s", "--allow-sparse", "-q")
    assert sparse.returncode == 0 and _holes(path)
    filled = run_loadgen(tmp_path, "disk", "--target", "s.dat", "--duration", "1s", "--prefill", "-q")
    assert filled.returncode == 0, filled.stderr
    assert not _holes(path) and _every_4k_block_written(path.read_bytes())


def test_a_signal_stops_prepare_between_writes_with_one_line_and_exit_130(tmp_path):
    """Stopped, its I/O waited out, then the usual interrupted line; nothing of a result is claimed."""
    with open(tmp_path / "big.dat", "wb") as f:
        f.truncate(64 * MiB)
    p = subprocess.Popen(loadgen_argv("disk", "prepare", "--target", "big.dat", "--passes", "1000"), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        p.stdout.readline()                 # the header
        assert "wrote" in p.stdout.readline()   # a progress line: the sweep is writing
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130 and err == "loadgen: interrupted; nothing was measured\n"
    assert "prepare:" not in out


@pytest.mark.parametrize("args, message", [
    (["--passes", "0"], "invalid passes"),
    (["--passes", "x"], "passes"),
    (["--qd", "0"], "qd"),
    ([], "Missing option '--target'"),
])
def test_prepare_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    target = ["--target", "p.dat", "--size", "1m"] if args else []
    r = run_loadgen(tmp_path, "disk", "prepare", *target, *args)
    assert r.returncode == 2 and r.stderr.startswith("loadgen: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


ZRAM_CONTROL = Path("/sys/class/zram-control")


@pytest.fixture
def zram():
    """A zram device of this test's own (never zram0), 64 MiB, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to hot_add a zram device")
    if not ZRAM_CONTROL.exists():
        pytest.skip("no zram-control (modprobe zram)")
    n = int((ZRAM_CONTROL / "hot_add").read_text())
    try:
        Path(f"/sys/block/zram{n}/disksize").write_text(str(64 * MiB))
        yield n
    finally:
        (ZRAM_CONTROL / "hot_remove").write_text(str(n))


def _write_sectors(n: int) -> int:
    return int(Path(f"/sys/block/zram{n}/stat").read_text().split()[6])   # Documentation/block/stat.rst


def test_prepare_fills_a_zram_device_and_respects_its_signatures(tmp_path, zram):
    dev = f"/dev/zram{zram}"
    before = _write_sectors(zram)
    r = run_loadgen(tmp_path, "disk", "prepare", "--target", dev, "--passes", "2")
    assert r.returncode == 0, r.stderr
    assert _write_sectors(zram) - before == 2 * 64 * MiB // 512       # every byte, twice, and no more
    with open(dev, "rb") as f:
        assert _every_4k_block_written(f.read())
    # a device that holds a filesystem's signature is refused, as a write run refuses it
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\x53\xef", 1080)    # ext2/3/4's magic
        os.fsync(fd)
    finally:
        os.close(fd)
    refused = run_loadgen(tmp_path, "disk", "prepare", "--target", dev)
    assert refused.returncode == 2 and "refusing to write" in refused.stderr and "--allow-destroy" in refused.stderr
    forced = run_loadgen(tmp_path, "disk", "prepare", "--target", dev, "--allow-destroy", "-q")
    assert forced.returncode == 0, forced.stderr
