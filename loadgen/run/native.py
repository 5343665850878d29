"""The seam to native/: ctypes bindings of native/loadgen.h, and nothing else.

The library is a plain shared object built by setup.py as loadgen/_native*.so.
Stats records are read through numpy views of the workers' own memory: a
read never blocks a worker, and the copy it makes is the controller's snapshot.
"""
import ctypes
import errno
import importlib.machinery
import os
from pathlib import Path

import numpy as np

from loadgen.errors import SetupError

ABI_VERSION = 12
ENGINE_IO_URING, ENGINE_PSYNC, ENGINE_NVME = 0, 1, 2
ENGINES = {"io_uring": ENGINE_IO_URING, "psync": ENGINE_PSYNC, "nvme": ENGINE_NVME}
STATE_STARTING, STATE_RUNNING, STATE_DONE, STATE_FAILED = range(4)


class DiskConfig(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int32),
        ("engine", ctypes.c_int32),
        ("workers", ctypes.c_uint32),
        ("qd", ctypes.c_uint32),
        ("bs_bytes", ctypes.c_uint32),
        ("read_pct", ctypes.c_uint32),
        ("sequential", ctypes.c_uint32),
        ("busy_poll", ctypes.c_uint32),
        ("span_bytes", ctypes.c_uint64),
        ("rate_ops_per_s", ctypes.c_uint64),
        ("start_ns", ctypes.c_int64),
        ("ramp_end_ns", ctypes.c_int64),
        ("end_ns", ctypes.c_int64),
        ("seed", ctypes.c_uint64),
        ("cpus", ctypes.POINTER(ctypes.c_int32)),
        ("nvme_nsid", ctypes.c_uint32),
        ("nvme_lba_shift", ctypes.c_uint32),
        ("verify", ctypes.c_uint32),
        ("verify_filled", ctypes.c_uint32),
        ("batch_submit", ctypes.c_uint32),
        ("batch_complete", ctypes.c_uint32),
        ("poll", ctypes.c_uint32),
        ("sqpoll", ctypes.c_uint32),
        ("sq_cpu", ctypes.c_int32),
        ("sq_idle_ms", ctypes.c_uint32),
        ("register_ring", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("batch_wait_ns", ctypes.c_int64),
        ("job_cpus", ctypes.POINTER(ctypes.c_int32)),
        ("n_job_cpus", ctypes.c_uint32),
        ("_pad2", ctypes.c_uint32),
    ]


class SweepConfig(ctypes.Structure):
    """struct lg_sweep_config: a pass over extents in order (prepare, --prefill, disk verify)."""
    _fields_ = [
        ("fd", ctypes.c_int32),
        ("check", ctypes.c_uint32),
        ("io_bytes", ctypes.c_uint32),
        ("qd", ctypes.c_uint32),
        ("block_bytes", ctypes.c_uint32),
        ("stamp", ctypes.c_uint32),
        ("passes", ctypes.c_uint32),
        ("check_seed", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("extents", ctypes.POINTER(ctypes.c_uint64)),
        ("n_extents", ctypes.c_uint32),
        ("psync", ctypes.c_uint32),
    ]


class BlockHeader(ctypes.Structure):
    """struct lg_block_header: what a --verify write puts at the start of each block."""
    _fields_ = [
        ("magic", ctypes.c_uint32),
        ("crc32c", ctypes.c_uint32),
        ("offset_bytes", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("generation", ctypes.c_uint64),
        ("block_bytes", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    ]

    def as_dict(self) -> dict:
        return {"magic": self.magic, "crc32c": self.crc32c, "offset_bytes": self.offset_bytes,
                "seed": self.seed, "generation": self.generation, "block_bytes": self.block_bytes}


class VerifyMismatch(ctypes.Structure):
    _fields_ = [
        ("offset_bytes", ctypes.c_uint64),
        ("reasons", ctypes.c_uint64),
        ("expected", BlockHeader),
        ("found", BlockHeader),
    ]


# enum lg_verify_reason, by bit.
VERIFY_REASONS = {1: "no header", 2: "crc32c", 4: "offset", 8: "seed", 16: "generation", 32: "block size",
                  64: "short read"}


NET_ENGINE_SOCKET, NET_ENGINE_PACKET = 0, 1
NET_ENGINES = {"socket": NET_ENGINE_SOCKET, "packet": NET_ENGINE_PACKET}


NET_ENGINE_SOCKET, NET_ENGINE_PACKET, NET_ENGINE_XDP = 0, 1, 2
NET_ENGINES = {"socket": NET_ENGINE_SOCKET, "packet": NET_ENGINE_PACKET, "xdp": NET_ENGINE_XDP}
XSK_ZEROCOPY, XSK_NEED_WAKEUP = 1, 2   # lg_xsk_mode's bits


class PacketConfig(ctypes.Structure):
    """struct lg_packet_config: the raw engines' frame template and per-flow patches."""
    _fields_ = [
        ("fds", ctypes.POINTER(ctypes.c_int32)),
        ("frame", ctypes.POINTER(ctypes.c_uint8)),
        ("frame_bytes", ctypes.c_uint32),
        ("udp_offset", ctypes.c_uint32),
        ("src_ports", ctypes.POINTER(ctypes.c_uint16)),
        ("csum_base", ctypes.POINTER(ctypes.c_uint16)),
        ("ring_frames", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("xsks", ctypes.POINTER(ctypes.c_void_p)),
    ]


NET_RX_ENGINE_SOCKET, NET_RX_ENGINE_PACKET = 0, 1
NET_RX_ENGINES = {"socket": NET_RX_ENGINE_SOCKET, "packet": NET_RX_ENGINE_PACKET}


class PacketRxConfig(ctypes.Structure):
    """struct lg_packet_rx_config: the packet receivers' ring geometry."""
    _fields_ = [
        ("block_bytes", ctypes.c_uint32),
        ("blocks", ctypes.c_uint32),
    ]


class NetConfig(ctypes.Structure):
    _fields_ = [
        ("senders", ctypes.c_uint32),
        ("receivers", ctypes.c_uint32),
        ("flows", ctypes.c_uint32),
        ("size_bytes", ctypes.c_uint32),
        ("batch", ctypes.c_uint32),
        ("echo", ctypes.c_uint32),
        ("run_tag", ctypes.c_uint32),
        ("first_seq", ctypes.c_uint32),
        ("flow_base", ctypes.c_uint32),
        ("busy_poll", ctypes.c_uint32),
        ("gso", ctypes.c_uint32),
        ("engine", ctypes.c_uint32),
        ("rate_pps", ctypes.c_uint64),
        ("start_ns", ctypes.c_int64),
        ("ramp_end_ns", ctypes.c_int64),
        ("end_ns", ctypes.c_int64),
        ("grace_ns", ctypes.c_int64),
        ("send_fds", ctypes.POINTER(ctypes.c_int32)),
        ("recv_fds", ctypes.POINTER(ctypes.c_int32)),
        ("send_cpus", ctypes.POINTER(ctypes.c_int32)),
        ("recv_cpus", ctypes.POINTER(ctypes.c_int32)),
        ("packet", ctypes.POINTER(PacketConfig)),
        ("rx_engine", ctypes.c_uint32),
        ("_rx_pad", ctypes.c_uint32),
        ("packet_rx", ctypes.POINTER(PacketRxConfig)),
    ]


PKT_HEADER_BYTES = 32
PKT_MAX_BYTES = 65507
PKT_MAGIC = 0x4C47504B


def uint16_array(values) -> ctypes.Array:
    values = list(values)
    return (ctypes.c_uint16 * max(1, len(values)))(*values)


def packet_config(fds: list[int] | None, frame: bytes, udp_offset: int, src_ports: list[int],
                  csum_base: list[int], ring_frames: int = 0, xsks: list["Xsk"] | None = None) -> PacketConfig:
    """A raw engine's part of a NetConfig: AF_PACKET fds (packet) or AF_XDP sockets (xdp);
    it keeps its arrays alive as attributes."""
    frame_buf = (ctypes.c_uint8 * len(frame)).from_buffer_copy(frame)
    cfg = PacketConfig(fds=int32_array(fds) if fds is not None else None, frame=frame_buf, frame_bytes=len(frame),
                       udp_offset=udp_offset, src_ports=uint16_array(src_ports), csum_base=uint16_array(csum_base),
                       ring_frames=ring_frames,
                       xsks=(ctypes.c_void_p * len(xsks))(*(x.handle for x in xsks)) if xsks else None)
    cfg._keep = (frame_buf,)
    return cfg


def int32_array(values) -> ctypes.Array:
    values = list(values)
    return (ctypes.c_int32 * max(1, len(values)))(*values)


def _library_path() -> Path:
    here = Path(__file__).parent.parent   # setup.py builds it as loadgen._native
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native{suffix}"
        if candidate.exists():
            return candidate
    raise SetupError("loadgen's native library is not built; reinstall with 'pip install .'")


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(_library_path()))
    except OSError as e:
        raise SetupError(f"loadgen's native library does not load ({e}); reinstall with 'pip install .'") from None
    c = ctypes
    signatures = {
        "lg_abi_version": (c.c_int, []),
        "lg_struct_size": (c.c_int, [c.c_char_p]),
        "lg_limit": (c.c_int64, [c.c_char_p]),
        "lg_counter_count": (c.c_int, []),
        "lg_counter_name": (c.c_char_p, [c.c_int]),
        "lg_hist_count": (c.c_int, []),
        "lg_hist_name": (c.c_char_p, [c.c_int]),
        "lg_hdr_counts_len": (c.c_int, []),
        "lg_errno_slots": (c.c_int, []),
        "lg_now_ns": (c.c_int64, []),
        "lg_hypervisor_vendor": (c.c_int, [c.c_char_p]),
        "lg_io_uring_probe": (c.c_int, []),
        "lg_file_fill": (c.c_int, [c.c_int, c.c_uint64, c.c_uint64]),
        "lg_sweep_start": (c.c_int, [c.POINTER(SweepConfig), c.POINTER(c.c_void_p)]),
        "lg_crc32c": (c.c_int, [c.c_void_p, c.c_uint64, c.c_uint32, c.c_int, c.POINTER(c.c_uint32)]),
        "lg_verify_stamp": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint64, c.c_uint64, c.c_uint64]),
        "lg_verify_check": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint64, c.c_uint64, c.c_int, c.c_uint64,
                                      c.POINTER(VerifyMismatch)]),
        "lg_disk_start": (c.c_int, [c.POINTER(DiskConfig), c.POINTER(c.c_void_p)]),
        "lg_run_workers": (c.c_int, [c.c_void_p]),
        "lg_run_snapshot": (c.c_int, [c.c_void_p, c.c_void_p, c.c_int64]),
        "lg_run_stop": (None, [c.c_void_p, c.c_int64]),
        "lg_run_done": (c.c_int, [c.c_void_p]),
        "lg_run_join": (c.c_int, [c.c_void_p]),
        "lg_run_free": (None, [c.c_void_p]),
        "lg_net_start": (c.c_int, [c.POINTER(NetConfig), c.POINTER(c.c_void_p)]),
        "lg_pkt_encode": (None, [c.c_void_p, c.c_uint32, c.c_uint32, c.c_uint32, c.c_int64, c.c_int64]),
        "lg_packet_frame": (c.c_int, [c.POINTER(NetConfig), c.c_uint32, c.c_uint32, c.c_int64, c.c_int64,
                                      c.c_void_p]),
        "lg_xsk_open": (c.c_int, [c.c_int32, c.c_uint32, c.c_uint32, c.c_uint32, c.POINTER(c.c_void_p)]),
        "lg_xsk_mode": (c.c_int, [c.c_void_p]),
        "lg_xsk_close": (None, [c.c_void_p]),
        "lg_packet_rx_open": (c.c_int, [c.c_int, c.c_int32, c.c_uint32, c.POINTER(PacketRxConfig), c.c_int32]),
        "lg_seq_replay": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint32, c.c_void_p]),
        "lg_disk_offsets": (c.c_int, [c.POINTER(DiskConfig), c.c_int, c.c_void_p, c.c_uint32]),
        "lg_pace_schedule": (c.c_int, [c.c_int64, c.c_uint64, c.c_uint64, c.c_uint64, c.c_uint64, c.c_void_p,
                                       c.c_uint32]),
        "lg_pace_count_by": (c.c_int64, [c.c_int64, c.c_uint64, c.c_uint64, c.c_uint64, c.c_int64]),
        "lg_pace_wake_windows": (c.c_int, [c.c_int64, c.c_int64, c.c_void_p]),
        "lg_hdr_record": (None, [c.c_void_p, c.c_int64]),
        "lg_hdr_index": (c.c_int, [c.c_int64]),
        "lg_nvme_encode": (c.c_int, [c.c_void_p, c.c_int32, c.c_uint32, c.c_uint32, c.c_uint64, c.c_uint32,
                                     c.c_uint64]),
        "lg_nvme_sqe": (c.c_int, [c.c_void_p, c.c_int32, c.c_int32, c.c_int32, c.c_int32, c.c_uint32, c.c_uint32,
                                  c.c_uint64, c.c_uint32, c.c_uint64]),
        "lg_nvme_encode_identify": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint64]),
        "lg_nvme_identify": (c.c_int, [c.c_int32, c.c_void_p]),
        "lg_nvme_ring_probe": (c.c_int, []),
        "lg_probe_syscall": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint32]),
        "lg_probe_clock": (c.c_int, [c.c_int32, c.c_void_p, c.c_uint32, c.c_uint32]),
        "lg_probe_sleep": (c.c_int, [c.c_int64, c.c_void_p, c.c_uint32]),
        "lg_probe_cpuid": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint32]),
        "lg_probe_context_switch": (c.c_int, [c.c_int32, c.c_int32, c.c_void_p, c.c_uint32, c.c_uint32]),
        "lg_probe_page_fault": (c.c_int, [c.c_void_p, c.c_uint32, c.c_uint32]),
    }
    # The version first: a library from another version may lack the functions bound below.
    lib.lg_abi_version.restype, lib.lg_abi_version.argtypes = c.c_int, []
    if lib.lg_abi_version() != ABI_VERSION:
        raise SetupError("loadgen's native library is from another version; reinstall loadgen")
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    # The ctypes mirrors must match the C structs byte for byte, or configs arrive garbled.
    for name, mirror in (("lg_disk_config", DiskConfig), ("lg_net_config", NetConfig),
                         ("lg_packet_config", PacketConfig), ("lg_packet_rx_config", PacketRxConfig),
                         ("lg_sweep_config", SweepConfig)):
        if lib.lg_struct_size(name.encode()) != ctypes.sizeof(mirror):
            raise SetupError(f"loadgen's native library disagrees on {name}; reinstall loadgen")
    return lib


_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = _load()
    return _lib


class Layout:
    """Where each counter and histogram sits in one worker's stats record (uint64 words)."""

    def __init__(self) -> None:
        L = lib()
        self.counters = [L.lg_counter_name(i).decode() for i in range(L.lg_counter_count())]
        self.hists = [L.lg_hist_name(i).decode() for i in range(L.lg_hist_count())]
        self.counts_len = L.lg_hdr_counts_len()
        self.errno_slots = L.lg_errno_slots()
        self.errno_offset = len(self.counters)
        self.hist_offset = self.errno_offset + self.errno_slots
        # the first bad blocks of --verify (struct lg_verify_mismatch), after the histograms
        self.verify_offset = self.hist_offset + len(self.hists) * self.counts_len
        self.verify_kept = int(L.lg_limit(b"verify_kept"))
        self.verify_record_words = int(L.lg_limit(b"verify_mismatch_bytes")) // 8
        self.words = self.verify_offset + self.verify_kept * self.verify_record_words
        if self.words * 8 != L.lg_struct_size(b"lg_worker_stats"):
            raise SetupError("loadgen's native library disagrees on lg_worker_stats; reinstall loadgen")

    def counter(self, name: str) -> int:
        return self.counters.index(name)

    def hist_slice(self, name: str) -> slice:
        start = self.hist_offset + self.hists.index(name) * self.counts_len
        return slice(start, start + self.counts_len)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


class Run:
    """A started set of native workers; stats are read while they run."""

    # How long a snapshot waits for busy workers to hand over a consistent copy.
    SNAPSHOT_WAIT_NS = 50_000_000

    def __init__(self, handle: int) -> None:
        self._handle = ctypes.c_void_p(handle)
        self.layout = Layout()
        self.workers = lib().lg_run_workers(self._handle)

    def read(self) -> np.ndarray:
        """A consistent copy of every worker's stats record, shape (workers, words).

        Each worker copies its own record between two batches when asked, so
        counters and histograms in one snapshot agree; it never waits for us."""
        out = np.zeros((self.workers, self.layout.words), dtype=np.uint64)
        _check(lib().lg_run_snapshot(self._handle, out.ctypes.data, self.SNAPSHOT_WAIT_NS), "taking a snapshot")
        return out

    def stop(self, stop_ns: int) -> None:
        lib().lg_run_stop(self._handle, stop_ns)

    def done(self) -> bool:
        return bool(lib().lg_run_done(self._handle))

    def failure(self) -> str | None:
        """A local run has no host to lose: its workers' failures show in their stats."""
        return None

    def join(self) -> int:
        """Blocks until every worker exits; 0 or the first setup -errno."""
        return lib().lg_run_join(self._handle)

    async def wait(self) -> int:
        """join() without blocking the event loop."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.join)

    def free(self) -> None:
        if self._handle:
            lib().lg_run_free(self._handle)
            self._handle = ctypes.c_void_p()


def _start(fn, config, what: str) -> Run:
    handle = ctypes.c_void_p()
    ret = fn(ctypes.byref(config), ctypes.byref(handle))
    if ret < 0:
        raise SetupError(f"cannot start {what}: {os.strerror(-ret)}")
    return Run(handle.value)


def start_disk(config: DiskConfig) -> Run:
    return _start(lib().lg_disk_start, config, "the disk workers")


def start_sweep(config: SweepConfig) -> Run:
    return _start(lib().lg_sweep_start, config, "the sweep")


def mismatches(layout: Layout, words: np.ndarray) -> list[dict]:
    """The bad blocks each worker kept in its stats row (struct lg_verify_mismatch), in worker order."""
    out = []
    lo = layout.verify_offset
    for row in np.atleast_2d(words):
        region = np.ascontiguousarray(row[lo: lo + layout.verify_kept * layout.verify_record_words], dtype="<u8")
        for k in range(layout.verify_kept):
            rec = VerifyMismatch.from_buffer_copy(
                region[k * layout.verify_record_words:(k + 1) * layout.verify_record_words].tobytes())
            if rec.reasons:
                out.append({"offset_bytes": rec.offset_bytes,
                            "reasons": [name for bit, name in VERIFY_REASONS.items() if rec.reasons & bit],
                            "expected": rec.expected.as_dict(), "found": rec.found.as_dict()})
    return out


CRC32C_IMPLS = {"auto": 0, "table": 1, "sse4.2": 2}


def crc32c(data: bytes, crc: int = 0, impl: str = "auto") -> int | None:
    """crc32c of data by one native implementation (tests it); None where impl is not available."""
    out = ctypes.c_uint32()
    ret = lib().lg_crc32c(data, len(data), crc, CRC32C_IMPLS[impl], ctypes.byref(out))
    if ret == -errno.EOPNOTSUPP:
        return None
    _check(ret, "computing crc32c")
    return out.value


def verify_stamp(block: bytearray, offset_bytes: int, seed: int, generation: int) -> None:
    """Stamp a block header and its crc32c into block, as a --verify write does."""
    buf = (ctypes.c_char * len(block)).from_buffer(block)
    _check(lib().lg_verify_stamp(buf, len(block), offset_bytes, seed, generation), "stamping a block")


def verify_check(block: bytes, offset_bytes: int, seed: int | None = None, generation: int = 0) -> dict:
    """The native check of one block: {"reasons": [...], "expected": {...}, "found": {...}}."""
    m = VerifyMismatch()
    ret = _check(lib().lg_verify_check(block, len(block), offset_bytes, seed or 0, seed is not None,
                                       generation, ctypes.byref(m)), "checking a block")
    return {"reasons": [name for bit, name in VERIFY_REASONS.items() if ret & bit],
            "expected": m.expected.as_dict(), "found": m.found.as_dict()}


def start_net(config: NetConfig) -> Run:
    return _start(lib().lg_net_start, config, "the UDP workers")


def pkt_encode(flow: int, seq: int, run_tag: int, sched_ns: int, send_ns: int) -> bytes:
    """The native encoding of a datagram header (tests the wire format)."""
    buf = ctypes.create_string_buffer(PKT_HEADER_BYTES)
    lib().lg_pkt_encode(buf, flow, seq, run_tag, sched_ns, send_ns)
    return buf.raw


def packet_frame(config: NetConfig, flow: int, seq: int, sched_ns: int, send_ns: int) -> bytes:
    """The frame the packet engine sends for datagram seq of flow (an index) under config (tests it)."""
    out = ctypes.create_string_buffer(config.packet.contents.frame_bytes)
    n = _check(lib().lg_packet_frame(ctypes.byref(config), flow, seq, sched_ns, send_ns, out), "building a frame")
    return out.raw[:n]


class Xsk:
    """An AF_XDP socket bound to one TX queue, with its UMEM (native/xdp.c); close() after the run."""

    def __init__(self, ifindex: int, queue: int, frame_bytes: int, ring_frames: int = 0) -> None:
        handle = ctypes.c_void_p()
        ret = lib().lg_xsk_open(ifindex, queue, frame_bytes, ring_frames, ctypes.byref(handle))
        if ret < 0:
            raise OSError(-ret, os.strerror(-ret))
        self.handle = handle.value
        self.mode = lib().lg_xsk_mode(self.handle)

    @property
    def zero_copy(self) -> bool:
        return bool(self.mode & XSK_ZEROCOPY)

    @property
    def need_wakeup(self) -> bool:
        return bool(self.mode & XSK_NEED_WAKEUP)

    def close(self) -> None:
        if self.handle:
            lib().lg_xsk_close(self.handle)
            self.handle = None


SEQ_VERDICTS = ("in_order", "reordered", "duplicated", "too_old", "holes")


def packet_rx_open(fd: int, ifindex: int, protocol: int, rx: PacketRxConfig, fanout_id: int | None) -> int:
    """Give an AF_PACKET socket its RX ring, bind it and put it in a fanout group (None: a new
    one); the group's id, or OSError with the errno."""
    ret = lib().lg_packet_rx_open(fd, ifindex, protocol, ctypes.byref(rx), -1 if fanout_id is None else fanout_id)
    if ret < 0:
        raise OSError(-ret, os.strerror(-ret))
    return ret


def seq_replay(seqs: list[int], first_seq: int = 0) -> dict[str, int]:
    """Feed sequence numbers to a fresh native flow tracker; its counts by verdict."""
    arr = (ctypes.c_uint32 * max(1, len(seqs)))(*[s & 0xFFFFFFFF for s in seqs])
    out = (ctypes.c_uint64 * 5)()
    _check(lib().lg_seq_replay(arr, len(seqs), first_seq & 0xFFFFFFFF, out), "replaying sequence numbers")
    return dict(zip(SEQ_VERDICTS, (int(x) for x in out)))


def disk_offsets(config: DiskConfig, worker: int, n: int) -> np.ndarray:
    """The first n offsets a worker would use under config (tests the generator)."""
    out = np.zeros(n, dtype=np.uint64)
    _check(lib().lg_disk_offsets(ctypes.byref(config), worker, out.ctypes.data, n), "generating offsets")
    return out


def pace_schedule(start_ns: int, rate: int, stride: int, phase: int, k0: int, n: int) -> list[int]:
    """Due times of ops k0 .. k0+n-1 of one stream, as the engines step them (tests pace.h)."""
    out = np.zeros(max(1, n), dtype=np.int64)
    _check(lib().lg_pace_schedule(start_ns, rate, stride, phase, k0, out.ctypes.data, n), "stepping a schedule")
    return [int(x) for x in out[:n]]


def pace_count_by(start_ns: int, rate: int, stride: int, phase: int, t_ns: int) -> int:
    """How many ops of one stream are due at or before t_ns (tests pace.h)."""
    return _check(lib().lg_pace_count_by(start_ns, rate, stride, phase, t_ns), "counting a schedule")


def pace_wake_windows(late_p90_ns: int, cpu_ns: int) -> tuple[int, int]:
    """The (tolerance_ns, window_ns) pace.h derives from one wake-up's lateness and CPU (tests pace.h)."""
    out = (ctypes.c_int64 * 2)()
    _check(lib().lg_pace_wake_windows(late_p90_ns, cpu_ns, out), "deriving the pacing windows")
    return out[0], out[1]


def limit(name: str) -> int:
    """A bound of native/loadgen.h by name ("max_qd", "pkt_max_bytes"...); KeyError if it has none."""
    value = lib().lg_limit(name.encode())
    if value < 0:
        raise KeyError(name)
    return value


def io_uring_probe() -> int:
    """0 when io_uring can be used here, else -errno."""
    return lib().lg_io_uring_probe()


NVME_CMD_BYTES = 72          # struct nvme_uring_cmd, and struct nvme_passthru_cmd (native/nvme.h)
NVME_IDENTIFY_BYTES = 4096


def nvme_encode(is_write: bool, nsid: int, lba_shift: int, offset_bytes: int, length_bytes: int, addr: int) -> bytes:
    """The 72-byte NVMe read or write command the nvme engine puts in an SQE (tests the encoding);
    OSError(EINVAL) unless offset and length are whole LBAs."""
    out = ctypes.create_string_buffer(NVME_CMD_BYTES)
    n = _check(lib().lg_nvme_encode(out, int(is_write), nsid, lba_shift, offset_bytes, length_bytes, addr),
               "encoding an NVMe command")
    return out.raw[:n]


def nvme_sqe(fd: int, fixed_file: bool, buf_index: int, is_write: bool, nsid: int, lba_shift: int,
             offset_bytes: int, length_bytes: int, addr: int) -> bytes:
    """The 128-byte SQE the nvme engine submits for one command (tests the prep); buf_index -1:
    a plain buffer."""
    out = ctypes.create_string_buffer(2 * 64)
    n = _check(lib().lg_nvme_sqe(out, fd, int(fixed_file), buf_index, int(is_write), nsid, lba_shift, offset_bytes,
                                 length_bytes, addr), "preparing an NVMe SQE")
    return out.raw[:n]


def nvme_encode_identify(nsid: int, addr: int) -> bytes:
    """The 72-byte Identify Namespace admin command lg_nvme_identify sends (tests the encoding)."""
    out = ctypes.create_string_buffer(NVME_CMD_BYTES)
    n = _check(lib().lg_nvme_encode_identify(out, nsid, addr), "encoding Identify")
    return out.raw[:n]


def nvme_identify(fd: int) -> tuple[int, bytes]:
    """(nsid, the Identify Namespace data) of the NVMe namespace's device open at fd; OSError
    (ENOTTY: not an NVMe namespace's device)."""
    out = ctypes.create_string_buffer(NVME_IDENTIFY_BYTES)
    nsid = _check(lib().lg_nvme_identify(fd, out), "NVMe Identify Namespace")
    return nsid, out.raw


def nvme_ring_probe() -> int:
    """0 when a ring with 128-byte SQEs and 32-byte CQEs works here, else -errno."""
    return lib().lg_nvme_ring_probe()


FILL_CHUNK_BYTES = 64 << 20


def file_fill(fd: int, size_bytes: int, offset_bytes: int = 0) -> None:
    """Write the initial pattern over [offset_bytes, offset_bytes + size_bytes) in chunks, so a
    signal is handled between them."""
    end = offset_bytes + size_bytes
    for offset in range(offset_bytes, end, FILL_CHUNK_BYTES):
        length = min(FILL_CHUNK_BYTES, end - offset)
        _check(lib().lg_file_fill(fd, offset, length), "writing the target's initial pattern")
    os.fdatasync(fd)


def hypervisor_vendor() -> str | None:
    """The CPUID hypervisor signature ("KVMKVMKVM"), "" on bare metal, None off x86."""
    buf = ctypes.create_string_buffer(13)
    ret = lib().lg_hypervisor_vendor(buf)
    if ret < 0:
        return None
    return buf.value.decode("ascii", "replace").strip("\0 ") if ret else ""


def probe_syscall(samples: int, batch: int) -> np.ndarray:
    """ns of each sample of batch syscall(SYS_getppid) calls."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    _check(lib().lg_probe_syscall(out.ctypes.data, samples, batch), "timing getppid")
    return out[:samples]


def probe_clock(clock_id: int, samples: int, batch: int) -> np.ndarray:
    """ns of each sample of batch clock_gettime(clock_id) reads."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    _check(lib().lg_probe_clock(clock_id, out.ctypes.data, samples, batch), "timing clock reads")
    return out[:samples]


def probe_sleep(request_ns: int, samples: int) -> np.ndarray:
    """Each wake-up's overshoot in ns, of samples relative sleeps of request_ns with 1 ns of slack."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    _check(lib().lg_probe_sleep(request_ns, out.ctypes.data, samples), "timing sleeps")
    return out[:samples]


def probe_cpuid(samples: int, batch: int) -> np.ndarray | None:
    """ns of each sample of batch cpuid instructions; None off x86."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    ret = lib().lg_probe_cpuid(out.ctypes.data, samples, batch)
    if ret == -errno.EOPNOTSUPP:
        return None
    _check(ret, "timing cpuid")
    return out[:samples]


def probe_context_switch(cpu_a: int, cpu_b: int, samples: int, batch: int) -> np.ndarray:
    """ns of each sample of batch pipe round trips between threads on cpu_a and cpu_b (-1: unpinned)."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    _check(lib().lg_probe_context_switch(cpu_a, cpu_b, out.ctypes.data, samples, batch), "timing pipe round trips")
    return out[:samples]


def probe_page_fault(samples: int, pages: int) -> np.ndarray:
    """ns of each sample of touching pages fresh anonymous pages, one fault each."""
    out = np.zeros(max(1, samples), dtype=np.int64)
    _check(lib().lg_probe_page_fault(out.ctypes.data, samples, pages), "timing page faults")
    return out[:samples]


def now_ns() -> int:
    return lib().lg_now_ns()


def hdr_record(counts: np.ndarray, value_ns: int) -> None:
    """Record with the native recorder into a uint64 counts array (tests)."""
    assert counts.dtype == np.uint64 and counts.flags.c_contiguous
    lib().lg_hdr_record(counts.ctypes.data, value_ns)


def hdr_counts_len() -> int:
    return lib().lg_hdr_counts_len()
