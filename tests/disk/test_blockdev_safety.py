"""Refusing to write over data on a block device: sysfs, mountinfo and blkid.

destroy_reasons is tested on a fake sysfs tree and mountinfo (no root needed):
mounted, partitioned and held devices are refused. blkid is tested end to end
as root on loop devices: a minix filesystem (a signature only blkid knows here)
is refused, and without blkid the refusal says only the built-in table was
checked. Loop devices are detached and images live in tmp_path.
"""
import json
import os
import shutil
import subprocess
from hashlib import sha256

import pytest

from netfixtures import RUN_TIMEOUT_S, loadgen_argv

from loadgen.disk import target
from loadgen.disk.target import HEADER_BYTES, blkid_probe, destroy_reasons

MiB = 1 << 20
RDEV = os.makedev(7, 3)
CLEAN = bytes(HEADER_BYTES)


@pytest.fixture
def fake_sys(tmp_path):
    """(sys root, mountinfo path, the device's sysfs dir) for device 7:3, with nothing on it."""
    root = tmp_path / "sys"
    dev = root / "dev" / "block" / "7:3"
    (dev / "holders").mkdir(parents=True)
    (dev / "queue").mkdir()
    (dev / "queue" / "logical_block_size").write_text("4096\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                         "23 22 7:30 / /mnt rw - ext4 /dev/loop30 rw\n")   # 7:30 is not 7:3
    return root, mountinfo, dev


def reasons(fake_sys, header=CLEAN, probed=None):
    root, mountinfo, _ = fake_sys
    return destroy_reasons(RDEV, header, probed, sys_root=root, mountinfo=mountinfo)


def test_a_clean_device_has_no_reasons(fake_sys):
    assert reasons(fake_sys) == []
    assert target._logical_block_bytes(RDEV, fake_sys[0]) == 4096


def test_a_mounted_device_is_refused(fake_sys):
    _, mountinfo, _ = fake_sys
    with open(mountinfo, "a") as f:
        f.write("40 22 7:3 / /data rw,relatime - minix /dev/loop3 rw\n")
    assert reasons(fake_sys) == ["it is mounted"]


def test_a_partitioned_device_is_refused(fake_sys):
    _, _, dev = fake_sys
    (dev / "loop3p1").mkdir()
    (dev / "loop3p1" / "partition").write_text("1\n")
    assert reasons(fake_sys) == ["it has partitions"]


def test_a_subdirectory_that_is_not_a_partition_does_not_count(fake_sys):
    _, _, dev = fake_sys
    (dev / "power").mkdir()
    assert reasons(fake_sys) == []


def test_a_held_device_is_refused(fake_sys):
    _, _, dev = fake_sys
    (dev / "holders" / "dm-0").mkdir()
    assert reasons(fake_sys) == ["another device is built on it"]


def test_every_reason_is_given(fake_sys):
    _, mountinfo, dev = fake_sys
    mountinfo.write_text("40 22 7:3 / /data rw - ext4 /dev/loop3 rw\n")
    (dev / "loop3p1").mkdir()
    (dev / "loop3p1" / "partition").write_text("1\n")
    (dev / "holders" / "md0").mkdir()
    header = bytearray(CLEAN)
    header[1080:1082] = b"\x53\xef"
    assert reasons(fake_sys, bytes(header)) == ["it is mounted", "it has partitions", "another device is built on it",
                                                "it carries ext2/3/4"]


def test_what_blkid_finds_is_a_reason_where_the_table_finds_nothing(fake_sys):
    assert reasons(fake_sys, probed=["minix (filesystem, found by blkid)"]) == [
        "it carries minix (filesystem, found by blkid)"]
    assert reasons(fake_sys, probed=[]) == []


def test_without_blkid_the_probe_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # no blkid on this PATH
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        assert blkid_probe(fd) is None
    finally:
        os.close(fd)


# ---- end to end, as root, on loop devices ---------------------------------------------------------

def make_loop(tmp_path, name: str, mkfs: list[str] | None = None, header: tuple[int, bytes] | None = None):
    if not shutil.which("losetup"):
        pytest.skip("needs losetup")
    image = tmp_path / name
    with open(image, "wb") as f:
        f.truncate(32 * MiB)
    if mkfs:
        if not shutil.which(mkfs[0]):
            pytest.skip(f"needs {mkfs[0]}")
        subprocess.run([*mkfs, str(image)], check=True, capture_output=True, timeout=60)
    if header:
        with open(image, "r+b") as f:
            f.seek(header[0])
            f.write(header[1])
    attach = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    return attach.stdout.strip(), image


@pytest.fixture
def loops(tmp_path):
    attached = []

    def make(*args, **kwargs):
        device, image = make_loop(tmp_path, *args, **kwargs)
        attached.append(device)
        return device, image

    yield make
    for device in attached:
        subprocess.run(["losetup", "--detach", device], check=False)


def write_to(device: str, cwd, path_env: str | None = None, *args: str):
    env = dict(os.environ)
    if path_env is not None:
        env["PATH"] = path_env
    return subprocess.run(loadgen_argv("disk", "--target", device, "--rw", "randwrite", "--size", "4m",
                                       "--duration", "1s", "--ramp", "0s", "--workers", "1", "--quiet",
                                       "--json", "r.json", *args),
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def digest(path) -> str:
    return sha256(path.read_bytes()).hexdigest()


@pytest.mark.root
def test_a_minix_filesystem_is_refused_for_writes(loops, tmp_path):
    """minix is not in loadgen's own table: blkid is what finds it."""
    device, image = loops("minix.img", mkfs=["mkfs.minix"])
    if shutil.which("blkid") is None:
        pytest.skip("needs blkid")
    assert target.filesystem_signature(image.read_bytes()[:HEADER_BYTES]) is None
    before = digest(image)
    p = write_to(device, tmp_path)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "refusing to write" in lines[0] and "minix" in lines[0] and device in lines[0]
    assert digest(image) == before
    assert not (tmp_path / "r.json").exists()


@pytest.mark.root
def test_a_bfs_filesystem_is_refused_for_writes(loops, tmp_path):
    device, image = loops("bfs.img", mkfs=["mkfs.bfs"])
    if shutil.which("blkid") is None:
        pytest.skip("needs blkid")
    before = digest(image)
    p = write_to(device, tmp_path)
    assert p.returncode == 2 and "bfs" in p.stderr, p.stderr
    assert digest(image) == before


@pytest.mark.root
def test_without_blkid_a_refusal_says_only_the_built_in_signatures_were_checked(loops, tmp_path):
    device, image = loops("ext.img", header=(1080, b"\x53\xef"))
    before = digest(image)
    p = write_to(device, tmp_path, str(tmp_path / "empty-path"))
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert "ext2/3/4" in lines[0] and "only the built-in signatures were checked" in lines[0]
    assert digest(image) == before


@pytest.mark.root
def test_without_blkid_a_write_warns_that_only_the_built_in_signatures_were_checked(loops, tmp_path):
    device, image = loops("blank.img")
    p = write_to(device, tmp_path, str(tmp_path / "empty-path"), "--buffered")
    assert p.returncode == 0, p.stderr
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert any("blkid is not available" in w and device in w for w in warnings), warnings


@pytest.mark.root
def test_a_blank_device_with_blkid_is_written_without_a_note(loops, tmp_path):
    if shutil.which("blkid") is None:
        pytest.skip("needs blkid")
    device, image = loops("blank.img")
    p = write_to(device, tmp_path, None, "--buffered")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["write"]["ops"] > 0
    assert not any("blkid" in w for w in doc["warnings"]), doc["warnings"]
