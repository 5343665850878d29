"""Disk targets: the temporary default, existing files and block devices.

This module decides whether a target may be used and opens it; the native
engine does every measured I/O. Its one read of a device (the first 68 KiB, to
look for a filesystem signature) happens before any load.
"""
import errno
import fcntl
import os
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loadgen import native
from loadgen.errors import SetupError, UsageError
from loadgen.workload import DiskSpec

BLKGETSIZE64 = 0x80081272  # <linux/fs.h>: _IOR(0x12, 114, size_t)
HEADER_BYTES = 68 * 1024

# (offset, magic, name): enough of blkid's table to recognise what people keep on disks.
SIGNATURES = [
    (0, b"XFSB", "xfs"),
    (0, b"LUKS\xba\xbe", "LUKS"),
    (0, b"hsqs", "squashfs"),
    (3, b"NTFS    ", "ntfs"),
    (510, b"\x55\xaa", "a DOS partition table or FAT boot sector"),
    (512, b"EFI PART", "a GPT partition table"),
    (512, b"LABELONE", "an LVM physical volume"),
    (1024, b"\x10\x20\xf5\xf2", "f2fs"),
    (1080, b"\x53\xef", "ext2/3/4"),
    (4086, b"SWAPSPACE2", "swap"),
    (4086, b"SWAP-SPACE", "swap"),
    (32769, b"CD001", "iso9660"),
    (65600, b"_BHRfS_M", "btrfs"),
]


@dataclass
class DiskTarget:
    path: str
    fd: int
    span_bytes: int
    kind: str  # "temp", "file" or "block"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.kind == "temp":
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def filesystem_signature(header: bytes) -> str | None:
    """The name of the first known signature in a device's first bytes, or None."""
    for offset, magic, name in SIGNATURES:
        if header[offset : offset + len(magic)] == magic:
            return name
    return None


def _sysfs_dir(st: os.stat_result) -> Path:
    return Path(f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")


def _mounted(st: os.stat_result) -> bool:
    want = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[2] == want for line in f)
    except OSError:
        return False


def destroy_reasons(path: str, st: os.stat_result, header: bytes) -> list[str]:
    """Why writing to this block device could destroy data (empty: safe)."""
    reasons = []
    sysfs = _sysfs_dir(st)
    if _mounted(st):
        reasons.append("it is mounted")
    if sysfs.is_dir():
        if any((child / "partition").exists() for child in sysfs.iterdir() if child.is_dir()):
            reasons.append("it has partitions")
        holders = sysfs / "holders"
        if holders.is_dir() and any(holders.iterdir()):
            reasons.append("another device is built on it")
    sig = filesystem_signature(header)
    if sig:
        reasons.append(f"it carries {sig}")
    return reasons


def _logical_block_bytes(st: os.stat_result) -> int:
    """The device's logical block size; a partition reads its disk's queue."""
    sysfs = _sysfs_dir(st).resolve()
    for queue in (sysfs / "queue", sysfs.parent / "queue"):
        try:
            return int((queue / "logical_block_size").read_text())
        except (OSError, ValueError):
            continue
    return 512


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise UsageError(f"target not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"target is a directory: {path}") from None
    except PermissionError:
        raise SetupError(f"no permission to open {path}") from None
    except OSError as e:
        if e.errno == errno.EINVAL and flags & os.O_DIRECT:
            raise UsageError(f"{path}: its filesystem does not support direct I/O (use --buffered)") from None
        raise SetupError(f"cannot open {path}: {e.strerror}") from None


def _flags(spec: DiskSpec) -> int:
    flags = os.O_RDWR if spec.writes else os.O_RDONLY
    return flags | (os.O_DIRECT if spec.direct else 0) | os.O_CLOEXEC


def _open_temp(spec: DiskSpec) -> DiskTarget:
    try:
        fd0, path = tempfile.mkstemp(prefix=".loadgen-", suffix=".dat", dir=os.getcwd())
    except OSError as e:
        raise SetupError(f"cannot create a temporary target in {os.getcwd()}: {e.strerror}") from None
    os.close(fd0)
    target = DiskTarget(path, -1, spec.size_bytes, "temp")
    try:
        target.fd = _open(path, (os.O_RDWR | os.O_CLOEXEC) | (os.O_DIRECT if spec.direct else 0))
        try:
            native.file_fill(target.fd, spec.size_bytes)
        except OSError as e:
            raise SetupError(f"cannot write the {spec.size_bytes}-byte temporary target {path}: {e.strerror}") from None
    except BaseException:
        target.close()
        raise
    return target


def open_target(spec: DiskSpec) -> DiskTarget:
    """Check and open the target a spec names; the caller closes it (removing a temp file)."""
    if spec.target is None:
        return _open_temp(spec)
    path = spec.target
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"target not found: {path}") from None
    except OSError as e:
        raise SetupError(f"cannot stat {path}: {e.strerror}") from None
    if stat.S_ISBLK(st.st_mode):
        return _open_block(spec, path, st)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"target must be a regular file or a block device: {path}")
    span = min(st.st_size, spec.size_bytes) if spec.size_given else st.st_size
    if span < spec.bs_bytes:
        raise UsageError(f"target {path} holds {st.st_size} bytes, less than one block of {spec.bs_bytes}")
    fd = _open(path, _flags(spec))
    return DiskTarget(path, fd, span - span % spec.bs_bytes, "file")


def _open_block(spec: DiskSpec, path: str, st: os.stat_result) -> DiskTarget:
    fd = _open(path, _flags(spec))
    try:
        size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
        if spec.writes and not spec.allow_destroy:
            with open(path, "rb", buffering=0) as f:
                header = f.read(HEADER_BYTES)
            reasons = destroy_reasons(path, st, header)
            if reasons:
                raise UsageError(f"refusing to write to {path}: {'; '.join(reasons)} (--allow-destroy overrides)")
        lbs = _logical_block_bytes(st)
        if spec.direct and spec.bs_bytes % lbs:
            raise UsageError(f"bs {spec.bs_bytes} is not a multiple of {path}'s {lbs}-byte logical block")
        span = min(size, spec.size_bytes) if spec.size_given else size
        if span < spec.bs_bytes:
            raise UsageError(f"device {path} holds {size} bytes, less than one block of {spec.bs_bytes}")
    except BaseException:
        os.close(fd)
        raise
    return DiskTarget(path, fd, span - span % spec.bs_bytes, "block")
