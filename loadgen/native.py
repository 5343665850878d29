"""The seam to native/: ctypes bindings of native/loadgen.h, and nothing else.

The library is a plain shared object built by setup.py next to this module.
Stats records are read through numpy views of the workers' own memory: a
read never blocks a worker, and the copy it makes is the controller's snapshot.
"""
import ctypes
import importlib.machinery
import os
from pathlib import Path

import numpy as np

from loadgen.errors import SetupError

ABI_VERSION = 1
ENGINE_IO_URING, ENGINE_PSYNC = 0, 1
ENGINES = {"io_uring": ENGINE_IO_URING, "psync": ENGINE_PSYNC}
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
        ("_pad", ctypes.c_uint32),
        ("span_bytes", ctypes.c_uint64),
        ("rate_ops_per_s", ctypes.c_uint64),
        ("start_ns", ctypes.c_int64),
        ("ramp_end_ns", ctypes.c_int64),
        ("end_ns", ctypes.c_int64),
        ("seed", ctypes.c_uint64),
        ("cpus", ctypes.POINTER(ctypes.c_int32)),
    ]


def _library_path() -> Path:
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native{suffix}"
        if candidate.exists():
            return candidate
    raise SetupError("loadgen's native library is not built; reinstall with 'pip install .'")


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))
    c = ctypes
    signatures = {
        "lg_abi_version": (c.c_int, []),
        "lg_counter_count": (c.c_int, []),
        "lg_counter_name": (c.c_char_p, [c.c_int]),
        "lg_hist_count": (c.c_int, []),
        "lg_hist_name": (c.c_char_p, [c.c_int]),
        "lg_hdr_counts_len": (c.c_int, []),
        "lg_errno_slots": (c.c_int, []),
        "lg_now_ns": (c.c_int64, []),
        "lg_io_uring_probe": (c.c_int, []),
        "lg_file_fill": (c.c_int, [c.c_int, c.c_uint64]),
        "lg_disk_start": (c.c_int, [c.POINTER(DiskConfig), c.POINTER(c.c_void_p)]),
        "lg_run_workers": (c.c_int, [c.c_void_p]),
        "lg_run_stats": (c.c_void_p, [c.c_void_p, c.c_int]),
        "lg_run_stop": (None, [c.c_void_p, c.c_int64]),
        "lg_run_done": (c.c_int, [c.c_void_p]),
        "lg_run_join": (c.c_int, [c.c_void_p]),
        "lg_run_free": (None, [c.c_void_p]),
        "lg_disk_offsets": (c.c_int, [c.POINTER(DiskConfig), c.c_int, c.c_void_p, c.c_uint32]),
        "lg_hdr_record": (None, [c.c_void_p, c.c_int64]),
        "lg_hdr_index": (c.c_int, [c.c_int64]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    if lib.lg_abi_version() != ABI_VERSION:
        raise SetupError("loadgen's native library is from another version; reinstall loadgen")
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
        self.words = self.hist_offset + len(self.hists) * self.counts_len

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

    def __init__(self, handle: int) -> None:
        self._handle = ctypes.c_void_p(handle)
        self.layout = Layout()
        L = lib()
        n = L.lg_run_workers(self._handle)
        self._views = []
        for i in range(n):
            addr = L.lg_run_stats(self._handle, i)
            buf = (ctypes.c_uint64 * self.layout.words).from_address(addr)
            self._views.append(np.ctypeslib.as_array(buf))

    @property
    def workers(self) -> int:
        return len(self._views)

    def read(self) -> np.ndarray:
        """A copy of every worker's stats record, shape (workers, words)."""
        return np.stack([np.array(v, copy=True) for v in self._views])

    def stop(self, stop_ns: int) -> None:
        lib().lg_run_stop(self._handle, stop_ns)

    def done(self) -> bool:
        return bool(lib().lg_run_done(self._handle))

    def join(self) -> int:
        """Blocks until every worker exits; 0 or the first setup -errno."""
        return lib().lg_run_join(self._handle)

    def free(self) -> None:
        if self._handle:
            self._views = []
            lib().lg_run_free(self._handle)
            self._handle = ctypes.c_void_p()


def start_disk(config: DiskConfig) -> Run:
    handle = ctypes.c_void_p()
    _check(lib().lg_disk_start(ctypes.byref(config), ctypes.byref(handle)), "starting disk workers")
    return Run(handle.value)


def disk_offsets(config: DiskConfig, worker: int, n: int) -> np.ndarray:
    """The first n offsets a worker would use under config (tests the generator)."""
    out = np.zeros(n, dtype=np.uint64)
    _check(lib().lg_disk_offsets(ctypes.byref(config), worker, out.ctypes.data, n), "generating offsets")
    return out


def io_uring_probe() -> int:
    """0 when io_uring can be used here, else -errno."""
    return lib().lg_io_uring_probe()


def file_fill(fd: int, size_bytes: int) -> None:
    _check(lib().lg_file_fill(fd, size_bytes), "writing the target's initial pattern")


def now_ns() -> int:
    return lib().lg_now_ns()


def hdr_record(counts: np.ndarray, value_ns: int) -> None:
    """Record with the native recorder into a uint64 counts array (tests)."""
    assert counts.dtype == np.uint64 and counts.flags.c_contiguous
    lib().lg_hdr_record(counts.ctypes.data, value_ns)


def hdr_counts_len() -> int:
    return lib().lg_hdr_counts_len()
