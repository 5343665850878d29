"""`loadgen disk prepare` and `loadgen disk verify`: whole-target sweeps (disk/sweep.py) outside a measured run.

prepare fills a target sequentially, 128 KiB writes at qd 16 through the native sweep worker,
passes times over, printing its progress each second and a summary (bytes, MiB/s, passes).
The target is opened exactly as a write run's is (disk/target.py): a block device that holds
data is refused without --allow-destroy, a missing file is made at --size. Under --verify every
bs block gets a header (generation 1, the seed), for a later `loadgen disk verify`.

verify reads a whole target back and checks every block's header without any map: what a
--verify run or a prepare --verify wrote. The header carries the offset, seed, generation and
crc32c, so a reader needs only the bs (and, to check it, the seed): a block whose header does
not match its place or its bytes, or that has none, is bad. Exit codes: 0 clean, 1 any block
bad or not read.
"""
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from loadgen.disk import sweep
from loadgen.disk.target import open_target
from loadgen.errors import SetupError, UsageError
from loadgen.results.result import verify_line
from loadgen.units import format_bytes_per_s, format_ns, format_size, parse_count
from loadgen.workload import DiskSpec, parse_disk

MAX_PASSES = 1000


@dataclass(frozen=True)
class Sweep:
    disk: DiskSpec       # the target, bs, qd and seed, checked as a disk run's are
    passes: int
    seed_given: bool
    verify: bool


def spec(target: str, size: str | None, bs: str, qd: str, seed: str | None, verify: bool, allow_destroy: bool,
         passes: str, reads: bool = False) -> Sweep:
    """The options of prepare or verify, checked; UsageError with one line."""
    if reads and not os.path.lexists(target):   # never made here: a new file would hold nothing to check
        raise UsageError(f"target not found: {target}")
    n = parse_count(passes, "passes")
    if not 1 <= n <= MAX_PASSES:
        raise UsageError(f"invalid passes: {passes} (1 to {MAX_PASSES})")
    disk = parse_disk(target=target, size=size, bs=bs, qd=qd, seed=seed, verify=verify or reads,
                      allow_destroy=allow_destroy, rw="read" if reads else "write", workers="1",
                      allow_sparse=reads)
    return Sweep(disk, n, seed is not None, verify)


def _progress(out: TextIO, quiet: bool, what: str, total_bytes: int):
    if quiet:
        return None

    def report(done_bytes: int, elapsed_ns: int) -> None:
        rate = done_bytes * 1e9 / elapsed_ns if elapsed_ns else 0.0
        print(f"  {what} {format_size(done_bytes)} of {format_size(total_bytes)} in {format_ns(elapsed_ns)}, "
              f"{format_bytes_per_s(rate)}", file=out, flush=True)
    return report


def prepare(s: Sweep, out: TextIO, quiet: bool, json_path=None) -> int:
    """Fill the target; the exit code. json_path: where to write the fill's figures (not a result document)."""
    target = open_target(s.disk)
    try:
        span = target.span_bytes
        if not quiet:
            print(f"loadgen disk prepare: {target.path} ({target.kind}), {format_size(span)} x {s.passes} "
                  f"passes, 128k writes at qd {s.disk.qd}", file=out, flush=True)
        try:
            r = sweep.fill(target.fd, [(0, span)], passes=s.passes, stamp_bs=s.disk.bs_bytes if s.verify else 0,
                           seed=s.disk.seed, qd=s.disk.qd,
                           progress=_progress(out, quiet, "wrote", span * s.passes))
        except OSError as e:
            raise SetupError(f"cannot fill {target.path}: {e.strerror}") from None
    finally:
        target.close()
    stamped = f", headers every {format_size(s.disk.bs_bytes)} with seed {s.disk.seed}" if s.verify else ""
    print(f"prepare: {format_size(r.bytes)} written in {s.passes} passes over {format_size(span)} in "
          f"{format_ns(r.elapsed_ns)}, {format_bytes_per_s(r.rate_bytes_per_s)}{stamped}", file=out, flush=True)
    if json_path is not None:
        figures = {"kind": "prepare", "target": target.path, "span_bytes": span, "passes": s.passes,
                   "bytes": r.bytes, "elapsed_ns": r.elapsed_ns, "bytes_per_s": round(r.rate_bytes_per_s, 3),
                   "qd": s.disk.qd, "io_bytes": sweep.FILL_IO_BYTES, "verify": s.verify}
        try:
            Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
        except OSError as e:
            print(f"loadgen: cannot write {json_path}: {e.strerror}", file=sys.stderr)
            return 1
    return 0


def verify(s: Sweep, out: TextIO, quiet: bool) -> int:
    """Read the target back and check every block; the exit code."""
    target = open_target(s.disk)
    try:
        span = target.span_bytes
        r = sweep.check(target.fd, span, s.disk.bs_bytes, seed=s.disk.seed if s.seed_given else None,
                        qd=s.disk.qd, progress=_progress(out, quiet, "read", span))
    finally:
        target.close()
    print(verify_line({"checked": r.checked, "bad": r.bad, "unchecked": r.unchecked, "mismatches": r.mismatches}),
          file=out, flush=True)
    if r.errors:
        print(f"loadgen: reads failed ({r.error_text()}): those blocks were not checked", file=out, flush=True)
    return 1 if r.bad or r.unchecked or r.errors else 0
