"""loadgen.disk.target: recognising data on a device, and opening the temp, file and block targets.

Block devices with real data are tested end to end (root, loop device) in
disk/test_disk.py; here the signature table is tested on crafted headers.
"""
import fcntl
import os
import stat
from types import SimpleNamespace

import pytest

from loadgen.disk.target import (HEADER_BYTES, buffer_bytes, check_buffer_memory, check_fits, filesystem_signature,
                            mem_available_bytes, open_beneath_target, open_target, open_temp_beneath, target_from_fd)
from loadgen.errors import UsageError
from loadgen.workload import parse_disk

MiB = 1 << 20


def header_with(*parts: tuple[int, bytes]) -> bytes:
    """A zeroed device header with each (offset, bytes) written in."""
    buf = bytearray(HEADER_BYTES)
    for offset, data in parts:
        buf[offset : offset + len(data)] = data
    return bytes(buf)


@pytest.mark.parametrize("header, name", [
    (header_with((1080, b"\x53\xef")), "ext2/3/4"),                       # s_magic 0xEF53, little-endian
    (header_with((0, b"XFSB")), "xfs"),
    (header_with((512, b"EFI PART")), "a GPT partition table"),
    (header_with((4086, b"SWAPSPACE2")), "swap"),
    (header_with((4086, b"SWAP-SPACE")), "swap"),
    (header_with((0, b"LUKS\xba\xbe")), "LUKS"),
    (header_with((510, b"\x55\xaa")), "a DOS partition table or FAT boot sector"),
    (header_with((512, b"LABELONE")), "an LVM physical volume"),
    (header_with((3, b"NTFS    ")), "ntfs"),
    (header_with((1024, b"\x10\x20\xf5\xf2")), "f2fs"),
    (header_with((0, b"hsqs")), "squashfs"),
    (header_with((32769, b"CD001")), "iso9660"),
    (header_with((65600, b"_BHRfS_M")), "btrfs"),
    (header_with(), None),                                               # all zero
    (b"\xff" * HEADER_BYTES, None),
    (header_with((1081, b"\x53\xef")), None),                            # ext magic one byte off
    (header_with((1080, b"\xef\x53")), None),                            # big-endian: not ext
    (header_with((4, b"XFSB")), None),
    (b"", None),                                                         # an empty device
    (b"\0" * 600, None),                                                 # shorter than the table's reach
])
def test_filesystem_signature(header, name):
    assert filesystem_signature(header) == name


def disk_spec(**options):
    return parse_disk(**({"seed": "1", "workers": "1", "direct": False, "duration": "1s"} | options))


def test_temp_target_is_created_here_filled_and_removed_on_close(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = open_target(disk_spec(size="2m"))
    try:
        assert target.kind == "temp"
        assert os.path.dirname(target.path) == str(tmp_path)
        assert os.path.basename(target.path).startswith(".loadgen-")
        assert target.span_bytes == os.path.getsize(target.path) == 2 * MiB
        with open(target.path, "rb") as f:
            data = f.read()
        assert data.count(0) < len(data) // 2, "the temp target must hold a non-zero pattern"
    finally:
        target.close()
    assert list(tmp_path.iterdir()) == []
    target.close()          # closing twice is harmless
    assert target.fd == -1


@pytest.mark.parametrize("file_bytes, options, span_bytes", [
    (8 * MiB, {}, 8 * MiB),
    (8 * MiB, {"size": "2m"}, 2 * MiB),                       # --size caps the span
    (8 * MiB, {"size": "64m"}, 8 * MiB),                      # ... but never extends a file
    (10 * 4096 + 100, {}, 10 * 4096),                         # whole blocks only
    (10 * 4096 + 100, {"bs": "8k"}, 5 * 8192),
    (4096, {}, 4096),
])
def test_file_target_span(tmp_path, file_bytes, options, span_bytes):
    path = tmp_path / "f"
    path.write_bytes(b"\1" * file_bytes)
    target = open_target(disk_spec(target=str(path), **options))
    try:
        assert (target.kind, target.path, target.span_bytes) == ("file", str(path), span_bytes)
    finally:
        target.close()
    assert path.stat().st_size == file_bytes     # an existing file is never removed or resized


@pytest.mark.parametrize("rw, access", [("randread", os.O_RDONLY), ("read", os.O_RDONLY),
                                        ("randwrite", os.O_RDWR), ("randrw", os.O_RDWR)])
@pytest.mark.parametrize("direct", [False, True])
def test_file_target_open_flags(tmp_path, direct_io, rw, access, direct):
    if direct and not direct_io:
        pytest.skip("the filesystem under tmp_path does not support O_DIRECT")
    path = tmp_path / "f"
    path.write_bytes(b"\1" * MiB)
    target = open_target(disk_spec(target=str(path), rw=rw, direct=direct))
    try:
        flags = fcntl.fcntl(target.fd, fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == access
        assert bool(flags & os.O_DIRECT) is direct
        assert fcntl.fcntl(target.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        target.close()


def test_an_owned_target_is_opened_noatime(tmp_path):
    """loadgen's reads leave the target's access time alone: the file is ours, so O_NOATIME."""
    path = tmp_path / "f"
    path.write_bytes(b"\1" * MiB)
    target = open_target(disk_spec(target=str(path)))
    try:
        assert fcntl.fcntl(target.fd, fcntl.F_GETFL) & os.O_NOATIME
    finally:
        target.close()


def test_without_the_right_to_noatime_the_target_opens_as_any_reader(tmp_path, monkeypatch):
    """Not the owner and without CAP_FOWNER, F_SETFL with O_NOATIME says EPERM: open without it."""
    import errno

    from loadgen.disk import target as target_mod

    real, asked = fcntl.fcntl, []

    def fcntl_without_noatime(fd, cmd, arg=0):
        if cmd == fcntl.F_SETFL:
            asked.append(arg)
            if arg & os.O_NOATIME:
                raise PermissionError(errno.EPERM, "Operation not permitted")
        return real(fd, cmd, arg)

    monkeypatch.setattr(target_mod.fcntl, "fcntl", fcntl_without_noatime)
    path = tmp_path / "f"
    path.write_bytes(b"\1" * MiB)
    target = open_target(disk_spec(target=str(path), direct=False))
    try:
        assert len(asked) == 2 and asked[0] & os.O_NOATIME and not asked[1] & os.O_NOATIME
        assert not real(target.fd, fcntl.F_GETFL) & os.O_NOATIME
    finally:
        target.close()


def test_a_read_run_leaves_the_targets_access_time(tmp_path, disk):
    """relatime updates an access time a day old at the next read; loadgen's reads must not."""
    path = tmp_path / "f"
    path.write_bytes(b"\1" * (4 * MiB))
    old_s = path.stat().st_mtime - 3 * 86400
    os.utime(path, (old_s, path.stat().st_mtime))
    done = disk("--target", str(path), "--rw", "randread", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert done.summary["ops"] > 0
    assert path.stat().st_atime == old_s


def test_file_smaller_than_a_block_is_refused(tmp_path):
    path = tmp_path / "small"
    path.write_bytes(b"\1" * 1000)
    with pytest.raises(UsageError, match="less than one block"):
        open_target(disk_spec(target=str(path)))


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "target not found"),
    (lambda p: p.mkdir(), "must be a regular file or a block device"),
    (lambda p: os.mkfifo(p), "must be a regular file or a block device"),
])
def test_unusable_targets_are_usage_errors(tmp_path, make, message):
    path = tmp_path / "t"
    make(path)
    with pytest.raises(UsageError, match=message):
        open_target(disk_spec(target=str(path)))


# ---- limits: free space and buffer memory ---------------------------------------------------------

def vfs(free_blocks: int, block_bytes: int = 4096):
    return SimpleNamespace(f_bavail=free_blocks, f_frsize=block_bytes)


@pytest.mark.parametrize("size_bytes, free_blocks, fits", [
    (4096 * 10, 10, True),          # exactly the free space
    (4096 * 10 + 1, 10, False),
    (1, 0, False),
    (1 << 40, 1 << 20, False),      # 1 TiB into 4 GiB
])
def test_check_fits(size_bytes, free_blocks, fits):
    if fits:
        check_fits(size_bytes, vfs(free_blocks), "d")
    else:
        with pytest.raises(UsageError, match="does not fit in d"):
            check_fits(size_bytes, vfs(free_blocks), "d")


def test_a_temp_target_larger_than_the_free_space_is_refused_before_any_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="does not fit"):
        open_target(disk_spec(size="1000t"))
    assert list(tmp_path.iterdir()) == []


def test_disk_size_1000t_exits_2_at_once_and_writes_nothing(cli, tmp_path):
    done = cli("disk", "--size", "1000t", "--duration", "1s", "--json", "r.json")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and "does not fit" in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, available, ok", [
    ({"qd": "32", "bs": "4k", "workers": "2"}, 1 << 30, True),              # 256 KiB of buffers
    ({"qd": "4096", "bs": "64m", "workers": "1"}, 64 << 30, False),         # 256 GiB
    ({"qd": "15", "bs": "1m", "workers": "4"}, 128 << 20, True),            # 64 MiB: exactly half
    ({"qd": "15", "bs": "1m", "workers": "4"}, (128 << 20) - 1, False),
])
def test_buffer_memory_is_bounded_by_half_of_what_is_available(options, available, ok):
    spec = disk_spec(**options)
    assert buffer_bytes(spec) == (spec.qd + 1) * spec.bs_bytes * spec.common.workers   # native/disk.c
    if ok:
        check_buffer_memory(spec, available)
    else:
        with pytest.raises(UsageError, match="I/O buffers"):
            check_buffer_memory(spec, available)


def test_mem_available_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8000000 kB\n")
    assert mem_available_bytes(meminfo) == 8000000 * 1024
    assert mem_available_bytes(tmp_path / "missing") is None
    assert mem_available_bytes() > 0          # this host's


def test_huge_buffers_are_refused_locally(cli):
    done = cli("disk", "--qd", "4096", "--bs", "64m", "--workers", "1", "--size", "64m", "--duration", "1s")
    assert done.returncode == 2 and "I/O buffers" in done.stderr, done.stderr


# ---- targets from descriptors, as an agent's job gets them ----------------------------------------

def test_target_from_fd_checks_the_descriptor_not_a_name(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\1" * MiB)
    fd = os.open(path, os.O_RDWR)
    path.unlink()                              # the name is gone; the descriptor is what counts
    target = target_from_fd(disk_spec(rw="randwrite"), fd, "shown-name")
    try:
        assert (target.kind, target.path, target.span_bytes) == ("file", "shown-name", MiB)
    finally:
        target.close()
    assert target.fd == -1


def test_target_from_fd_refuses_a_fifo_and_closes_it(tmp_path):
    os.mkfifo(tmp_path / "p")
    fd = os.open(tmp_path / "p", os.O_RDONLY | os.O_NONBLOCK)
    with pytest.raises(UsageError, match="regular file or a block device"):
        target_from_fd(disk_spec(), fd, "p")
    with pytest.raises(OSError):
        os.fstat(fd)                           # closed on the way out


@pytest.fixture
def root_fd(tmp_path):
    fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_open_beneath_target_never_opens_a_fifo(tmp_path, root_fd):
    os.mkfifo(tmp_path / "p")                  # a real open would wait for a writer
    with pytest.raises(UsageError, match="regular file or a block device"):
        open_beneath_target(disk_spec(), root_fd, "p")


def test_open_beneath_target_refuses_a_symlink(tmp_path, root_fd):
    (tmp_path / "f").write_bytes(b"\1" * MiB)
    (tmp_path / "link").symlink_to(tmp_path / "f")
    with pytest.raises(OSError):
        open_beneath_target(disk_spec(), root_fd, "link")
    fd = open_beneath_target(disk_spec(rw="randwrite"), root_fd, "f")
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    finally:
        os.close(fd)


def test_a_temp_target_beneath_is_unlinked_at_once_and_filled(tmp_path, root_fd):
    spec = disk_spec(size="2m")
    fd = open_temp_beneath(spec, root_fd, str(tmp_path))
    assert list(tmp_path.iterdir()) == []      # nothing to leave behind, however the job ends
    target = target_from_fd(spec, fd, "temp", temp=True)
    try:
        assert target.kind == "temp" and target.span_bytes == 2 * MiB
        st = os.fstat(target.fd)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 2 * MiB and st.st_nlink == 0
    finally:
        target.close()


def test_a_temp_target_beneath_must_fit(tmp_path, root_fd):
    with pytest.raises(UsageError, match="does not fit"):
        open_temp_beneath(disk_spec(size="1000t"), root_fd, str(tmp_path))
    assert list(tmp_path.iterdir()) == []
