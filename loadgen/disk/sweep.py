"""Sweeps: passes over a target in order at full bandwidth, by the native sweep worker (native/sweep.c).

fill() writes extents with the fill pattern: `loadgen disk prepare`, --prefill, and the first
fill of a temporary or created target all go through it, 128 KiB writes at qd 16 on an
io_uring (pwrite where io_uring is forbidden). Under --verify a whole-span fill is stamped:
every block of the run's bs gets a header of generation 1 and the run's seed, so the run
knows every block's content from the start and checks every read.

check() reads every block of a span back and checks its header without any map: magic,
offset, size and crc32c always, the seed when given (`loadgen disk verify`). It takes the
span as written by --verify runs or a stamped prepare: a block without a header is bad.

Rules: a sweep blocks its caller (it runs before a measured run, or is the whole command);
a signal stops it, waits out its I/O and re-raises, so no buffer is freed under the kernel.
"""
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from loadgen.results.result import errno_name
from loadgen.run import native
from loadgen.run.stats import Snapshot

FILL_IO_BYTES = 128 << 10   # as fio's sequential preconditioning writes
FILL_QD = 16
PROGRESS_S = 1.0

Progress = Callable[[int, int], None]   # (bytes done, ns since the start)


@dataclass
class SweepResult:
    bytes: int
    elapsed_ns: int
    passes: int
    errors: dict[int, int] = field(default_factory=dict)
    checked: int = 0
    bad: int = 0
    unchecked: int = 0
    mismatches: list[dict] = field(default_factory=list)

    @property
    def rate_bytes_per_s(self) -> float:
        return self.bytes * 1e9 / self.elapsed_ns if self.elapsed_ns else 0.0

    def error_text(self) -> str:
        return ", ".join(f"{errno_name(e)} x{n}" for e, n in sorted(self.errors.items()))


def _run(config: native.SweepConfig, progress: Progress | None) -> SweepResult:
    run = native.start_sweep(config)
    t0 = time.monotonic_ns()
    next_report_ns = t0 + int(PROGRESS_S * 1e9)
    side = "bytes_read" if config.check else "bytes_write"
    try:
        while not run.done():
            time.sleep(0.05)
            now = time.monotonic_ns()
            if progress and now >= next_report_ns:
                next_report_ns += int(PROGRESS_S * 1e9)
                progress(Snapshot(run.layout, run.read(), 0).counter(side), now - t0)
    except BaseException:   # a signal: stop, wait out the I/O in flight, then let it unwind
        run.stop(native.now_ns())
        run.join()
        run.free()
        raise
    run.join()
    elapsed = time.monotonic_ns() - t0
    words = run.read()
    layout = run.layout
    run.free()
    snap = Snapshot(layout, words, 0)
    return SweepResult(bytes=snap.counter(side), elapsed_ns=elapsed, passes=config.passes,
                       errors=snap.errors_by_errno(), checked=snap.counter("verify_checked"),
                       bad=snap.counter("verify_bad"), unchecked=snap.counter("verify_unchecked"),
                       mismatches=native.mismatches(layout, np.asarray(words)))


def _extents(extents: list[tuple[int, int]]):
    flat = [x for pair in extents for x in pair]
    return (native.ctypes.c_uint64 * max(1, len(flat)))(*flat)


def fill(fd: int, extents: list[tuple[int, int]], passes: int = 1, stamp_bs: int = 0, seed: int = 0,
         qd: int = FILL_QD, io_bytes: int = FILL_IO_BYTES, progress: Progress | None = None,
         psync: bool = False) -> SweepResult:
    """Write the fill pattern over extents (offset, length), passes times over, then fdatasync.

    stamp_bs: headers every stamp_bs bytes (generation 1, seed), the extents then being multiples
    of it; io_bytes is rounded down to a multiple of it. OSError if the writes failed."""
    block = stamp_bs or 1
    io = max(block, io_bytes - io_bytes % block)
    arr = _extents(extents)
    cfg = native.SweepConfig(fd=fd, check=0, io_bytes=io, qd=qd, block_bytes=block, stamp=int(bool(stamp_bs)),
                             passes=passes, check_seed=0, seed=seed & (2**64 - 1), extents=arr,
                             n_extents=len(extents), psync=int(psync))
    result = _run(cfg, progress)
    if result.errors:
        first = min(result.errors)
        raise OSError(first, f"{os.strerror(first)} ({result.error_text()})")
    os.fdatasync(fd)
    return result


def check(fd: int, span_bytes: int, block_bytes: int, seed: int | None = None, qd: int = FILL_QD,
          io_bytes: int = FILL_IO_BYTES, progress: Progress | None = None) -> SweepResult:
    """Read [0, span_bytes) and check every block's header (seed too, when given)."""
    io = max(block_bytes, io_bytes - io_bytes % block_bytes)
    arr = _extents([(0, span_bytes)])
    cfg = native.SweepConfig(fd=fd, check=1, io_bytes=io, qd=qd, block_bytes=block_bytes, stamp=0, passes=1,
                             check_seed=int(seed is not None), seed=(seed or 0) & (2**64 - 1), extents=arr,
                             n_extents=1)
    return _run(cfg, progress)
