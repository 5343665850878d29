"""NVMe passthrough targets (--engine nvme): finding the namespace behind /dev/ngXnY and its LBA format.

Vocabulary:
  ng device   an NVMe namespace's generic char device, /dev/ngXnY (Linux >= 5.13). The kernel
              lists each in /sys/class/nvme-generic/ngXnY, whose "dev" file holds its
              major:minor; loadgen takes a char device as an ng device only when that list
              names its device number, and never opens another char device.
  nsid        the namespace id the commands carry; NVME_IOCTL_ID on the ng device gives it.
  LBA format  the namespace's logical block: its data size (2^LBADS bytes) and metadata
              bytes (MS). Identify Namespace (admin opcode 06h, CNS 00h) returns the
              namespace data structure, whose FLBAS byte picks the format in use out of its
              LBA Format table; parse_identify_ns reads it.

Rules:
- The LBA size comes from Identify Namespace, sent through the ng device (the kernel lets
  anyone who may open it send Identify). Where that fails, the namespace's block device
  twin in sysfs, /sys/block/nvmeXnY (same X and Y), gives queue/logical_block_size, size
  and nsid instead; the target's facts name the source ("identify" or "sysfs"). The twin
  is found by name, which holds unless multipath joins controllers of different numbers.
- bs must be a whole number of LBAs, at most 65536 of them (NLB is 16 bits) and at most
  the controller's largest transfer (queue/max_hw_sectors_kb, where sysfs says): the
  workers' offsets are multiples of bs, so they are whole LBAs too. Otherwise: one line,
  exit 2.
- A namespace formatted with metadata is refused (exit 1): the engine moves data only.
- Writes need --allow-destroy: loadgen cannot look for a filesystem or partition table
  through the char device before it writes.
- No ng device on this host at all, no permission, or an Identify and sysfs that both
  fail: one line, exit 1 (the environment). A path that is plainly not an ng device (a
  regular file, a block device, another char device) or one that does not exist while
  the host has ng devices: one line, exit 2, as target.py refuses targets.
"""
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from loadgen.disk.target import DiskTarget, check_buffer_memory
from loadgen.errors import SetupError, UsageError
from loadgen.run import native
from loadgen.units import format_size
from loadgen.workload import DiskSpec

SYS_ROOT = Path("/sys")
IDENTIFY_BYTES = 4096
MAX_NLB = 65536                 # NLB, 16 bits and 0's based: the most LBAs one command moves
MIN_LBADS = 9                   # "a value smaller than 9 is not supported" (512-byte LBAs at least)

# Identify Namespace data structure (NVM Command Set), by byte offset.
NSZE_OFFSET = 0                 # namespace size, in LBAs (u64)
NLBAF_OFFSET = 25               # number of LBA formats, 0's based
FLBAS_OFFSET = 26               # formatted LBA size: which format is in use
LBAF_OFFSET = 128               # LBA Format 0; each entry is 4 bytes: MS u16, LBADS u8, RP (bits 1:0)
LBAF_BYTES = 4
FLBAS_EXTENDED = 1 << 4         # metadata travels at the end of each LBA's data
NVME_BLOCK_NAME = re.compile(r"nvme(\d+n\d+)")   # a namespace's block device (not a partition, not a path)


@dataclass(frozen=True)
class LbaFormat:
    """The namespace's LBA format in use and its size."""
    lba_bytes: int
    metadata_bytes: int
    extended: bool              # metadata interleaved with the data (FLBAS bit 4)
    size_blocks: int            # NSZE


def parse_identify_ns(data: bytes) -> LbaFormat:
    """The LBA format in use, from an Identify Namespace data structure; ValueError if it names
    none that loadgen could use.

    FLBAS bits 3:0 are the format index's low bits and, when the namespace has more than 16
    formats, bits 6:5 its two high bits (NVMe 2.0; reserved, so ignored, before)."""
    if len(data) < IDENTIFY_BYTES:
        raise ValueError(f"Identify Namespace returned {len(data)} bytes, not {IDENTIFY_BYTES}")
    nsze = struct.unpack_from("<Q", data, NSZE_OFFSET)[0]
    nlbaf, flbas = data[NLBAF_OFFSET], data[FLBAS_OFFSET]
    index = flbas & 0x0F
    if nlbaf >= 16:
        index |= ((flbas >> 5) & 0x3) << 4
    if index > nlbaf:
        raise ValueError(f"FLBAS names LBA format {index}, but the namespace has {nlbaf + 1}")
    ms, lbads = struct.unpack_from("<HB", data, LBAF_OFFSET + LBAF_BYTES * index)
    if lbads < MIN_LBADS:
        raise ValueError(f"LBA format {index} has LBADS {lbads}: not a usable LBA size")
    return LbaFormat(lba_bytes=1 << lbads, metadata_bytes=ms, extended=bool(flbas & FLBAS_EXTENDED),
                     size_blocks=nsze)


def generic_devices(sys_root: Path = SYS_ROOT) -> dict[str, str]:
    """Every ng device on this host: {"major:minor": "ngXnY"}, empty where there are none."""
    found = {}
    try:
        entries = sorted((sys_root / "class" / "nvme-generic").iterdir())
    except OSError:
        return {}
    for entry in entries:
        try:
            found[(entry / "dev").read_text().strip()] = entry.name
        except OSError:
            continue
    return found


def block_twin(ng_name: str) -> str:
    """ngXnY's namespace as a block device: nvmeXnY."""
    return "nvme" + ng_name[len("ng"):]


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def sysfs_format(ng_name: str, sys_root: Path = SYS_ROOT) -> tuple[int, LbaFormat] | None:
    """(nsid, LBA format) from the block twin's sysfs, or None where it cannot say. A kernel
    without the metadata_bytes attribute (added in 2024) does not say how much metadata an LBA
    has: 0 is taken then, and the first command to such a namespace fails instead."""
    base = sys_root / "block" / block_twin(ng_name)
    lba = _read_int(base / "queue" / "logical_block_size")
    sectors = _read_int(base / "size")          # always in 512-byte sectors
    nsid = _read_int(base / "nsid")
    if not lba or lba & (lba - 1) or lba < (1 << MIN_LBADS) or sectors is None or not nsid:
        return None
    return nsid, LbaFormat(lba_bytes=lba, metadata_bytes=_read_int(base / "metadata_bytes") or 0, extended=False,
                           size_blocks=sectors * 512 // lba)


def max_transfer_bytes(ng_name: str, sys_root: Path = SYS_ROOT) -> int | None:
    """The controller's largest transfer (MDTS as the driver caps it), or None where sysfs does not say."""
    kb = _read_int(sys_root / "block" / block_twin(ng_name) / "queue" / "max_hw_sectors_kb")
    return kb * 1024 if kb else None


@dataclass
class NvmeTarget(DiskTarget):
    """A namespace opened through its ng device."""
    nsid: int = 0
    lba_bytes: int = 0
    lba_source: str = ""        # "identify" or "sysfs"

    @property
    def lba_shift(self) -> int:
        return self.lba_bytes.bit_length() - 1

    def facts(self) -> dict:
        return super().facts() | {"nvme": {"nsid": self.nsid, "lba_bytes": self.lba_bytes,
                                           "lba_source": self.lba_source}}


def check_engine() -> tuple[str, str | None]:
    """("nvme", note) when this kernel can run passthrough commands on io_uring, else SetupError."""
    err = -native.io_uring_probe()
    if err:
        raise SetupError(f"--engine nvme needs io_uring, which is not available here: {os.strerror(err)}")
    err = -native.nvme_ring_probe()
    if err:
        raise SetupError("--engine nvme needs io_uring rings with 128-byte SQEs and 32-byte CQEs "
                         f"(Linux >= 5.19): {os.strerror(err)}")
    return "nvme", None


def _file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a char device"
    return "not a device"


def _ng_name(path: str, devices: dict[str, str]) -> str:
    """The ng name of the device at path, or UsageError/SetupError saying why it is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not devices:
            raise SetupError(f"no NVMe generic char device here: {path} does not exist and "
                             "/sys/class/nvme-generic lists none (--engine nvme needs /dev/ngXnY)") from None
        have = ", ".join(f"/dev/{n}" for n in devices.values())
        raise UsageError(f"target not found: {path} (NVMe generic char devices here: {have})") from None
    except OSError as e:
        raise SetupError(f"cannot stat {path}: {e.strerror}") from None
    rdev = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    if stat.S_ISCHR(st.st_mode) and rdev in devices:
        return devices[rdev]
    hint = ""
    namespace = NVME_BLOCK_NAME.fullmatch(os.path.basename(path))
    if stat.S_ISBLK(st.st_mode) and namespace:
        hint = f" (its char device is /dev/ng{namespace[1]})"
    elif stat.S_ISCHR(st.st_mode):
        hint = f" (/sys/class/nvme-generic does not list its device number {rdev})"
    raise UsageError(f"--engine nvme needs an NVMe namespace's generic char device (/dev/ngXnY); "
                     f"{path} is {_file_kind(st.st_mode)}{hint}")


def _lba_format(fd: int, path: str, ng_name: str, sys_root: Path) -> tuple[int, LbaFormat, str]:
    """(nsid, LBA format, where it came from) of the namespace open at fd."""
    try:
        nsid, data = native.nvme_identify(fd)
        return nsid, parse_identify_ns(data), "identify"
    except (OSError, ValueError) as e:
        why = os.strerror(e.errno) if isinstance(e, OSError) else str(e)
    fallback = sysfs_format(ng_name, sys_root)
    if fallback is None:
        raise SetupError(f"cannot learn {path}'s LBA format: Identify Namespace failed ({why}) and "
                         f"/sys/block/{block_twin(ng_name)} does not say")
    return fallback[0], fallback[1], "sysfs"


def _check_bs(spec: DiskSpec, path: str, fmt: LbaFormat, max_bytes: int | None) -> None:
    lba = fmt.lba_bytes
    if spec.bs_bytes % lba:
        raise UsageError(f"bs {format_size(spec.bs_bytes)} is not a multiple of {path}'s {lba}-byte LBA")
    if spec.bs_bytes // lba > MAX_NLB:
        raise UsageError(f"bs {format_size(spec.bs_bytes)} is more than one NVMe command moves: "
                         f"{MAX_NLB} LBAs of {lba} bytes")
    if max_bytes and spec.bs_bytes > max_bytes:
        raise UsageError(f"bs {format_size(spec.bs_bytes)} is more than {path}'s largest transfer, "
                         f"{format_size(max_bytes)} (queue/max_hw_sectors_kb)")


def open_nvme_target(spec: DiskSpec, sys_root: Path = SYS_ROOT) -> NvmeTarget:
    """Check and open the ng device spec.target names, learn its namespace and LBA format, and
    check bs and the span against them; the caller closes it. sys_root is a seam for tests."""
    path = spec.target
    if path is None:   # workload.py refuses it first; kept so no caller reaches os.stat(None)
        raise UsageError("--engine nvme needs --target /dev/ngXnY")
    check_buffer_memory(spec)
    ng_name = _ng_name(path, generic_devices(sys_root))
    if spec.writes and not spec.allow_destroy:
        raise UsageError(f"refusing to write to {path}: loadgen cannot check an NVMe namespace for data "
                         "through its char device (--allow-destroy overrides)")
    flags = (os.O_RDWR if spec.writes else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except PermissionError:
        raise SetupError(f"no permission to open {path}") from None
    except OSError as e:
        raise SetupError(f"cannot open {path}: {e.strerror}") from None
    target = NvmeTarget(path, fd, 0, "nvme")
    try:
        st = os.fstat(fd)   # what was opened is what was checked: the same device number
        if not stat.S_ISCHR(st.st_mode) or generic_devices(sys_root).get(
                f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}") != ng_name:
            raise UsageError(f"{path} changed while it was opened: it is no longer {ng_name}")
        nsid, fmt, source = _lba_format(fd, path, ng_name, sys_root)
        if fmt.metadata_bytes:
            raise SetupError(f"{path}'s LBA format carries {fmt.metadata_bytes} bytes of metadata per LBA"
                             f"{' (extended)' if fmt.extended else ''}, which --engine nvme does not move")
        _check_bs(spec, path, fmt, max_transfer_bytes(ng_name, sys_root))
        size = fmt.size_blocks * fmt.lba_bytes
        span = min(size, spec.size_bytes) if spec.size_given else size
        if span < spec.bs_bytes:
            raise UsageError(f"namespace {path} holds {size} bytes, less than one block of {spec.bs_bytes}")
        target.span_bytes = span - span % spec.bs_bytes
        target.nsid, target.lba_bytes, target.lba_source = nsid, fmt.lba_bytes, source
        if source == "sysfs":
            target.notes.append(f"{path}: Identify Namespace failed; its LBA size ({fmt.lba_bytes} bytes) "
                                f"is /sys/block/{block_twin(ng_name)}'s")
    except BaseException:
        target.close()
        raise
    return target

