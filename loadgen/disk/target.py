"""Disk targets: the temporary default, existing files, files made at --size, and block devices.

This module decides whether a target may be used and opens it; the native
engine does every measured I/O. Its one read of a device (the first 68 KiB, to
look for a filesystem signature) happens before any load.

Rules:
- Every check runs on the open descriptor (target_from_fd), never on a name
  looked up again later, so what was checked is what gets the I/O. A local run
  opens the user's own path by name (open_target); an agent opens beneath its
  allowed directory without following symlinks (open_beneath_target,
  open_temp_beneath) and hands the job process the descriptor.
- Writing to a block device that shows any sign of holding data (mounted,
  partitioned, held by another device, a signature loadgen or blkid knows)
  needs --allow-destroy. Without blkid only the built-in signatures are
  checked, and the target says so in its notes.
- A temporary target, or a target file made because it did not exist, must fit
  in its directory's free space, and a job's I/O buffers (qd x bs x workers) in
  half of MemAvailable, before anything is written.
- A missing target file is made only when --size says how big (as fio's
  filename= with size=): created with O_EXCL|O_NOFOLLOW in its directory, so a
  name planted meanwhile (a symlink above all) is refused, never followed;
  filled with the native pattern and kept, since the user named it. If it
  cannot be filled it is removed, but only while its name still holds the
  file this run made; it is sized before the fill, so one killed mid-fill
  is left sparse, and refused as such.
- "Unwritten" means a hole or an unwritten extent: a read there returns zeros
  without reaching the device. SEEK_HOLE/SEEK_DATA finds them; where the
  filesystem cannot answer, st_blocks says how much of the span has no blocks.
  A regular file with unwritten bytes in its span is refused for reads unless
  --prefill writes them first (only those extents: the data around them is
  kept) or --allow-sparse accepts them (the result says how much). Block
  devices have no holes.
- Several targets (--target A,B): each is opened and checked, as above, before
  anything is written to any of them (open_targets), so one refused target
  leaves the others as they were; a file made for the run is removed again.
  Two names for the same file or device are refused.
"""
import errno
import fcntl
import os
import secrets
import shutil
import stat
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.disk import sweep
from loadgen.disk.beneath import open_beneath, reopen
from loadgen.errors import SetupError, UsageError
from loadgen.run import native
from loadgen.units import format_size
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


SYS_ROOT = Path("/sys")
MOUNTINFO = Path("/proc/self/mountinfo")
BLKID_TIMEOUT_S = 10
MEMINFO = Path("/proc/meminfo")


@dataclass
class DiskTarget:
    path: str
    fd: int
    span_bytes: int
    kind: str  # "temp", "file" or "block"
    remove_on_close: bool = False   # a temp file this process made by name
    notes: list[str] = field(default_factory=list)   # what the result's warnings should say
    created: bool = False           # a file this run made at the user's name, and kept
    prefilled_bytes: int = 0        # unwritten bytes of an existing file written before the run (--prefill)
    unwritten_bytes: int = 0        # unwritten bytes left in the span (--allow-sparse, or a write-only job)
    pending: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) to write before the run
    made: os.stat_result | None = None   # the file this run created at path (removed if the run never starts)
    verify_filled: bool = False     # filled with --verify headers of generation 1 (disk/sweep.py)
    fill_stamp_bs: int = 0          # --verify on a fresh target: the fill stamps a header every this many bytes
    fill_seed: int = 0              # ... with this seed
    fill_psync: bool = False        # --engine psync: the fill uses no io_uring either

    def facts(self) -> dict:
        """What the result's config says about the target, wherever it was opened."""
        return {"target_path": self.path, "target_kind": self.kind, "span_bytes": self.span_bytes,
                "target_created": self.created, "prefilled_bytes": self.prefilled_bytes,
                "unwritten_bytes": self.unwritten_bytes}

    def fill(self) -> None:
        """Write the extents target_from_fd planned (a new file's whole span, --prefill's holes)."""
        done = sum(length for _, length in self.pending)
        if self.pending:
            try:
                sweep.fill(self.fd, self.pending, stamp_bs=self.fill_stamp_bs, seed=self.fill_seed,
                           psync=self.fill_psync)
            except OSError as e:
                what = "temporary target" if self.kind == "temp" else "target"
                raise SetupError(f"cannot write {format_size(done)} of the {what} {self.path}: "
                                 f"{e.strerror}") from None
            self.verify_filled = bool(self.fill_stamp_bs)
        if self.kind == "file" and not self.created:
            self.prefilled_bytes = done
        self.pending = []

    def abandon(self) -> None:
        """Close it, and remove the file this run made for it (while its name still holds that file)."""
        self.close()
        if self.made is not None:
            remove_if_ours(None, self.path, self.made)
            self.made = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.remove_on_close:
            self.remove_on_close = False
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


def _devno(rdev: int) -> str:
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _mounted(rdev: int, mountinfo: Path) -> bool:
    want = _devno(rdev)
    try:
        with open(mountinfo) as f:
            return any(line.split()[2] == want for line in f)
    except (OSError, IndexError):
        return False


def blkid_probe(fd: int) -> list[str] | None:
    """What `blkid -p` finds on the device open at fd ([] nothing), or None without a usable blkid.

    blkid reads the device through /dev/fd, so it probes what is open, not a name."""
    blkid = shutil.which("blkid")
    if blkid is None:
        return None
    try:
        p = subprocess.run([blkid, "-p", "-o", "export", f"/dev/fd/{fd}"], pass_fds=(fd,), capture_output=True,
                           text=True, timeout=BLKID_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode == 2:   # blkid(8): nothing was detected
        return []
    if p.returncode == 8:   # blkid(8): ambivalent, more than one signature
        return ["more than one signature (blkid calls it ambivalent)"]
    if p.returncode != 0:
        return None
    found = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    out = []
    if found.get("PTTYPE"):
        out.append(f"a {found['PTTYPE']} partition table")
    if found.get("TYPE"):
        out.append(f"{found['TYPE']} ({found.get('USAGE') or 'signature'}, found by blkid)")
    return out or ["a signature blkid recognises"]


def destroy_reasons(rdev: int, header: bytes, probed: list[str] | None = None, *, sys_root: Path = SYS_ROOT,
                    mountinfo: Path = MOUNTINFO) -> list[str]:
    """Why writing to the block device rdev could destroy data (empty: safe).

    probed: what blkid found (blkid_probe). sys_root and mountinfo are seams for tests."""
    reasons = []
    sysfs = sys_root / "dev" / "block" / _devno(rdev)
    if _mounted(rdev, mountinfo):
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
    if not sig:  # blkid is the second opinion: it knows what the table above does not
        reasons += [f"it carries {found}" for found in probed or []]
    return reasons


def _logical_block_bytes(rdev: int, sys_root: Path = SYS_ROOT) -> int:
    """The device's logical block size; a partition reads its disk's queue."""
    sysfs = (sys_root / "dev" / "block" / _devno(rdev)).resolve()
    for queue in (sysfs / "queue", sysfs.parent / "queue"):
        try:
            return int((queue / "logical_block_size").read_text())
        except (OSError, ValueError):
            continue
    return 512


def mem_available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """MemAvailable from /proc/meminfo, or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def buffer_bytes(spec: DiskSpec) -> int:
    """The I/O buffers a disk job allocates at most: qd + 1 buffers of bs per io_uring worker
    (native/disk.c; psync takes 2), whichever engine "auto" picks."""
    return (spec.qd + 1) * spec.bs_bytes * spec.common.workers


def _gib(size_bytes: int) -> str:
    return f"{size_bytes / (1 << 30):.1f} GiB"


def check_buffer_memory(spec: DiskSpec, available_bytes: int | None = None) -> None:
    """Refuse a job whose buffers would not fit in half the memory available (the other half is
    for the page cache and everything else on the host); available_bytes None: read it here."""
    if available_bytes is None:
        available_bytes = mem_available_bytes()
    if available_bytes is None:
        return
    need = buffer_bytes(spec)
    if need > available_bytes // 2:
        raise UsageError(f"qd {spec.qd} x bs {format_size(spec.bs_bytes)} x {spec.common.workers} workers needs "
                         f"{_gib(need)} of I/O buffers, more than half of the {_gib(available_bytes)} "
                         "of memory available here")


def check_fits(size_bytes: int, vfs: os.statvfs_result, where: str, what: str = "temporary target") -> None:
    """Refuse a target to be made larger than the free space where it would be made."""
    free = vfs.f_bavail * vfs.f_frsize
    if size_bytes > free:
        raise UsageError(f"a {format_size(size_bytes)} {what} does not fit in {where}: "
                         f"{_gib(free)} free")


SECTOR_BYTES = 512   # st_blocks counts these, whatever the filesystem's block (stat(2))


def seek_holes(fd: int, span_bytes: int) -> list[tuple[int, int]] | None:
    """(offset, length) of each hole or unwritten extent in [0, span_bytes), or None where the
    filesystem cannot say (lseek SEEK_HOLE gives EINVAL). Moves the file offset; the engines use
    explicit offsets."""
    holes: list[tuple[int, int]] = []
    offset = 0
    while offset < span_bytes:
        try:
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
        except OSError as e:
            if e.errno == errno.ENXIO:   # offset at or past the end: nothing more
                break
            if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return None
            raise
        if hole >= span_bytes:
            break
        try:
            data = os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:   # ENXIO: no data after the hole, it runs to the end
                raise
            data = span_bytes
        end = min(data, span_bytes)
        holes.append((hole, end - hole))
        offset = end
    return holes


def unwritten_extents(fd: int, st: os.stat_result, span_bytes: int) -> tuple[list[tuple[int, int]], int]:
    """(the extents to write so every read of the span reaches a block, the unwritten bytes).

    Where SEEK_HOLE cannot tell, st_blocks says how much is missing but not where: the
    whole span is then the extent to write. A file with no blocks at all is wholly
    unwritten even where SEEK_HOLE (the generic one) sees data everywhere."""
    allocated = st.st_blocks * SECTOR_BYTES
    holes = seek_holes(fd, span_bytes)
    if holes is None:
        missing = span_bytes - min(span_bytes, allocated)
        return ([(0, span_bytes)] if missing else []), missing
    if not holes and allocated == 0 and span_bytes:
        return [(0, span_bytes)], span_bytes
    return holes, sum(length for _, length in holes)


def _plan_prefill(spec: DiskSpec, target: DiskTarget, st: os.stat_result) -> list[tuple[int, int]]:
    """The extents of an existing file to write before the run; refuses a sparse target for reads."""
    extents, unwritten = unwritten_extents(target.fd, st, target.span_bytes)
    if not unwritten:
        return []
    if spec.prefill:
        return extents
    if spec.read_pct and not spec.allow_sparse:
        raise UsageError(f"target {target.path} is sparse: {format_size(unwritten)} of its "
                         f"{format_size(target.span_bytes)} span is unwritten, and reads there never reach "
                         "the device (--prefill writes it first, --allow-sparse reads it as it is)")
    target.unwritten_bytes = unwritten
    if spec.read_pct:
        target.notes.append(f"{format_size(unwritten)} of the {format_size(target.span_bytes)} span of "
                            f"{target.path} is unwritten: reads there return zeros without reaching the device "
                            "(--allow-sparse)")
    return []


def _open(path: str, flags: int) -> int:
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        raise UsageError(f"target not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"target must be a regular file or a block device: {path}") from None
    except PermissionError:
        raise SetupError(f"no permission to open {path}") from None
    except OSError as e:
        raise SetupError(f"cannot open {path}: {e.strerror}") from None


def access_flags(spec: DiskSpec) -> int:
    """How a target is opened: O_DIRECT comes later, once the descriptor is checked (target_from_fd).
    O_NONBLOCK keeps a FIFO's open from waiting; target_from_fd refuses it and clears the flag.
    --prefill may write, so it opens for writing too."""
    return (os.O_RDWR if spec.writes or spec.prefill else os.O_RDONLY) | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _set_io_flags(spec: DiskSpec, fd: int, path: str) -> None:
    """O_DIRECT as asked, and O_NOATIME where we own the target or may act as if we did: a
    load generator's reads should not change the target's access time, and each one
    checked and stamped it (on zram, 2% of the CPU time of the thread that issues them)."""
    flags = (fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK) | (os.O_DIRECT if spec.direct else 0)
    for noatime in (os.O_NOATIME, 0):
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | noatime)
            return
        except OSError as e:
            if noatime and e.errno == errno.EPERM:
                continue    # not the owner, without CAP_FOWNER: atimes change as for any reader
            if e.errno == errno.EINVAL and spec.direct:
                raise UsageError(f"{path}: its filesystem does not support direct I/O (use --buffered)") from None
            raise SetupError(f"cannot set the I/O flags of {path}: {e.strerror}") from None


def target_from_fd(spec: DiskSpec, fd: int, path: str, temp: bool = False, created: bool = False,
                   fill: bool = True) -> DiskTarget:
    """Check the open target at fd and make it a DiskTarget, which owns fd from here (closed on error).

    temp: a fresh temporary file; created: a new, empty file at the user's name; either is
    filled here to spec.size_bytes. An existing file's unwritten extents are written here
    under --prefill. fill False: nothing is written yet, target.fill() writes it later.
    path only names the target in messages."""
    target = DiskTarget(path, fd, 0, "temp" if temp else "file", created=created)
    fresh = temp or created
    try:
        st = os.fstat(fd)
        if stat.S_ISBLK(st.st_mode) and not fresh:
            target.kind = "block"
            target.span_bytes = _check_block(spec, target, st)
            target.pending = []
        elif not stat.S_ISREG(st.st_mode):
            raise UsageError(f"target must be a regular file or a block device: {path}")
        elif fresh:
            check_fits(spec.size_bytes, os.fstatvfs(fd), f"the directory of {path}",
                       "temporary target" if temp else "new target file")
            target.span_bytes = spec.size_bytes
            target.pending = [(0, spec.size_bytes)]
            if created:
                # Full size first: a fill cut short by SIGKILL (an agent's child past its grace)
                # leaves holes, which the next read run refuses, never a short file taken as whole.
                os.ftruncate(fd, spec.size_bytes)
        else:
            span = min(st.st_size, spec.size_bytes) if spec.size_given else st.st_size
            if span < spec.bs_bytes:
                raise UsageError(f"target {path} holds {st.st_size} bytes, less than one block of {spec.bs_bytes}")
            target.span_bytes = span - span % spec.bs_bytes
            target.pending = _plan_prefill(spec, target, st)
        _set_io_flags(spec, fd, path)
        # --verify stamps a whole-span fill, so the run knows what every block holds
        target.fill_stamp_bs = spec.bs_bytes if spec.verify and fresh else 0
        target.fill_seed = spec.seed
        # psync forced: no ring, so no io_uring helper threads left to show in the run's census
        target.fill_psync = spec.engine == "psync"
        if fill:
            target.fill()
    except BaseException:
        target.close()
        raise
    return target


def _check_block(spec: DiskSpec, target: DiskTarget, st: os.stat_result) -> int:
    """The span of I/O on the device at target.fd, after the safety checks."""
    path, fd = target.path, target.fd
    size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
    if spec.writes and not spec.allow_destroy:
        header = os.pread(fd, HEADER_BYTES, 0)   # before O_DIRECT, which would need an aligned buffer
        probed = blkid_probe(fd)
        if probed is None:
            target.notes.append(f"blkid is not available: only loadgen's built-in signatures were checked on {path}")
        reasons = destroy_reasons(st.st_rdev, header, probed)
        if reasons:
            only = " (blkid is not available: only the built-in signatures were checked)" if probed is None else ""
            raise UsageError(f"refusing to write to {path}: {'; '.join(reasons)} (--allow-destroy overrides){only}")
    lbs = _logical_block_bytes(st.st_rdev)
    if spec.direct and spec.bs_bytes % lbs:
        raise UsageError(f"bs {spec.bs_bytes} is not a multiple of {path}'s {lbs}-byte logical block")
    span = min(size, spec.size_bytes) if spec.size_given else size
    if span < spec.bs_bytes:
        raise UsageError(f"device {path} holds {size} bytes, less than one block of {spec.bs_bytes}")
    return span - span % spec.bs_bytes


def _open_temp(spec: DiskSpec) -> DiskTarget:
    here = os.getcwd()
    try:
        check_fits(spec.size_bytes, os.statvfs(here), here)
        fd, path = tempfile.mkstemp(prefix=".loadgen-", suffix=".dat", dir=here)
    except OSError as e:
        raise SetupError(f"cannot create a temporary target in {here}: {e.strerror}") from None
    try:
        target = target_from_fd(spec, fd, path, temp=True)
    except BaseException:  # a refusal, or SIGTERM while filling: leave nothing behind
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    target.remove_on_close = True
    return target


CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
CREATE_MODE = 0o644   # as fio makes its files; the umask applies


def create_at(dir_fd: int, name: str) -> int:
    """A new, empty file name in the directory dir_fd; OSError (EEXIST) if anything, a symlink
    included, is there already. O_EXCL never follows a symlink at the name (open(2))."""
    if "/" in name or name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "not a plain file name", name)
    return os.open(name, CREATE_FLAGS, CREATE_MODE, dir_fd=dir_fd)


def remove_if_ours(dir_fd: int | None, name: str, made: os.stat_result) -> None:
    """Unlink name in dir_fd (None: name is a path) only while it is still the file this run made."""
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
            os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def fill_created(spec: DiskSpec, fd: int, path: str, dir_fd: int, name: str, fill: bool = True) -> DiskTarget:
    """The DiskTarget of a file create_at just made, filled to spec.size_bytes and kept.

    If it is refused or cannot be filled (no space, a signal), it is removed again.
    fill False: filled later by target.fill(); target.abandon() removes it if the run never starts."""
    made = os.fstat(fd)
    try:
        target = target_from_fd(spec, fd, path, created=True, fill=fill)
    except BaseException:
        remove_if_ours(dir_fd, name, made)
        raise
    if not fill:
        target.made = made
    return target


def _create_target(spec: DiskSpec, path: str, fill: bool = True) -> DiskTarget:
    parent, name = os.path.split(path)
    try:
        dir_fd = os.open(parent or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"target not found: {path} (its directory does not exist)") from None
    except OSError as e:
        raise SetupError(f"cannot open the directory of {path}: {e.strerror}") from None
    try:
        check_fits(spec.size_bytes, os.fstatvfs(dir_fd), f"the directory of {path}", "new target file")
        try:
            fd = create_at(dir_fd, name)
        except FileExistsError:
            raise UsageError(f"refusing to create {path}: something is at that name already "
                             "(a symlink is never followed to make a target)") from None
        except PermissionError:
            raise SetupError(f"no permission to create {path}") from None
        except OSError as e:
            raise SetupError(f"cannot create {path}: {e.strerror}") from None
        return fill_created(spec, fd, path, dir_fd, name, fill)
    finally:
        os.close(dir_fd)


def open_target(spec: DiskSpec, path: str | None = None, fill: bool = True) -> DiskTarget:
    """Check and open a target: path, or else the one a spec names, or else a temporary file;
    the caller closes it (removing a temp file).

    A missing target file is made at spec.size_bytes when --size was given. fill False:
    nothing is written until target.fill() (open_targets)."""
    check_buffer_memory(spec)
    if path is None:
        if not spec.targets:
            return _open_temp(spec)
        path = spec.targets[0]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if spec.size_given and not path.endswith("/"):
            return _create_target(spec, path, fill)
        raise UsageError(f"target not found: {path} (give --size to create it)") from None
    except OSError as e:
        raise SetupError(f"cannot stat {path}: {e.strerror}") from None
    # Opening some device nodes acts (a watchdog, a tape): refuse them before any open.
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise UsageError(f"target must be a regular file or a block device: {path}")
    return target_from_fd(spec, _open(path, access_flags(spec)), path, fill=fill)


def _identity(fd: int) -> tuple[int, int]:
    """What makes two open targets the same: a device's number, or a file's (device, inode)."""
    st = os.fstat(fd)
    return (-1, st.st_rdev) if stat.S_ISBLK(st.st_mode) else (st.st_dev, st.st_ino)


def open_targets(spec: DiskSpec) -> list[DiskTarget]:
    """Open and check every target the spec names, then fill them (new files, --prefill):
    nothing is written to any target until all of them passed their checks."""
    targets: list[DiskTarget] = []
    try:
        seen: dict[tuple[int, int], str] = {}
        for path in spec.targets:
            target = open_target(spec, path, fill=False)
            targets.append(target)
            same = seen.setdefault(_identity(target.fd), path)
            if same != path:
                raise UsageError(f"targets {same} and {path} are the same {'device' if target.kind == 'block' else 'file'}")
        for target in targets:
            target.fill()
            target.made = None   # filled and kept, as a single target's new file is
    except BaseException:
        for target in targets:
            target.abandon()
        raise
    return targets


def open_beneath_target(spec: DiskSpec, root_fd: int, rel: str) -> int:
    """A descriptor for the existing target rel beneath the directory root_fd, never through a symlink.

    The file is pinned with O_PATH and its type checked before it is really opened, so no
    device node other than a block device is ever opened. Raises OSError (ELOOP: a symlink,
    EXDEV: an escape) or UsageError (not a regular file or block device)."""
    pinned = open_beneath(root_fd, rel, os.O_PATH)
    try:
        mode = os.fstat(pinned).st_mode
        if not (stat.S_ISBLK(mode) or stat.S_ISREG(mode)):
            raise UsageError(f"target must be a regular file or a block device: {rel}")
        return reopen(pinned, access_flags(spec))
    finally:
        os.close(pinned)


def create_beneath(spec: DiskSpec, root_fd: int, rel: str) -> tuple[int, int, str]:
    """(descriptor, its directory's O_PATH descriptor, its name) of a new, empty file rel beneath
    root_fd, made without following any symlink; fill it with fill_created, which removes it
    on failure. Raises OSError (EEXIST: something is at the name; ELOOP, EXDEV) or
    UsageError (it would not fit)."""
    parent, name = os.path.split(rel)
    dir_fd = open_beneath(root_fd, parent, os.O_PATH | os.O_DIRECTORY) if parent else os.dup(root_fd)
    try:
        check_fits(spec.size_bytes, os.fstatvfs(dir_fd), f"the directory of {rel}", "new target file")
        return create_at(dir_fd, name), dir_fd, name
    except BaseException:
        os.close(dir_fd)
        raise


def open_temp_beneath(spec: DiskSpec, root_fd: int, where: str) -> int:
    """A fresh, already unlinked temporary file in the directory root_fd, checked to fit there.

    Unlinked at once, so nothing is left behind however the job ends."""
    check_fits(spec.size_bytes, os.fstatvfs(root_fd), where)
    name = f".loadgen-{secrets.token_hex(8)}.dat"
    fd = open_beneath(root_fd, name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.unlink(name, dir_fd=root_fd)
    except OSError:
        os.close(fd)
        raise
    return fd
