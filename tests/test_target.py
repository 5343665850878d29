"""loadgen.target: recognising data on a device, and opening the temp, file and block targets.

Block devices with real data are tested end to end (root, loop device) in
test_disk.py; here the signature table is tested on crafted headers.
"""
import fcntl
import os

import pytest

from loadgen.errors import UsageError
from loadgen.target import HEADER_BYTES, filesystem_signature, open_target
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
