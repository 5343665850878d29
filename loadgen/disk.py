"""The disk job: a DiskSpec in, a result document out.

It chooses the engine, opens the target, starts the native workers on a
timeline, streams intervals to the .hlog and the progress line, and builds the
document. Policy lives here: the run stops early only when every I/O fails.
"""
import os
import resource
import time

import aiofiles

from loadgen import histogram, native, results
from loadgen.controller import Interval, Measurement, Timeline, run_workers
from loadgen.errors import SetupError, UsageError
from loadgen.progress import Progress
from loadgen.results import errno_name
from loadgen.stats import Snapshot
from loadgen.sysinfo import basic_env
from loadgen.target import open_target
from loadgen.workload import DiskSpec

# io_uring_setup errors that mean "not allowed here" (seccomp, io_uring_disabled, old kernel).
_URING_FORBIDDEN = {1: "EPERM", 38: "ENOSYS", 13: "EACCES"}


def choose_engine(requested: str) -> tuple[str, str | None]:
    """(engine, note): io_uring when allowed, else psync, saying why."""
    if requested == "psync":
        return "psync", "psync forced; synchronous pread/pwrite, one I/O in flight per worker"
    err = -native.io_uring_probe()
    if err == 0:
        return "io_uring", None
    if requested == "io_uring":
        raise SetupError(f"io_uring is not available here: {os.strerror(err)}")
    if err in _URING_FORBIDDEN:
        return "psync", (f"io_uring unavailable ({_URING_FORBIDDEN[err]}); psync runs instead, "
                         "one I/O in flight per worker")
    raise SetupError(f"io_uring setup failed: {os.strerror(err)}")


def worker_cpus(n: int) -> list[int]:
    """Worker i is pinned to the i-th CPU this process may use, wrapping around."""
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[i % len(cpus)] for i in range(n)]


def all_failed(cumulative: Snapshot) -> str | None:
    errors = cumulative.counter("errors")
    if errors and not (cumulative.counter("ops_read") + cumulative.counter("ops_write")):
        detail = ", ".join(f"{errno_name(e)} x{n}" for e, n in cumulative.errors_by_errno().items())
        return f"every I/O failed ({detail})"
    return None


class IntervalSink:
    """Turns each interval into an .hlog entry, a JSON row and a progress update."""

    def __init__(self, spec: DiskSpec, timeline: Timeline, hlog, progress: Progress) -> None:
        self.spec, self.timeline, self.hlog, self.progress = spec, timeline, hlog, progress
        self.rows: list[dict] = []
        self.mixed = 0 < spec.read_pct < 100

    def _tags(self):
        yield "latency", ("latency_read", "latency_write")
        yield "service", ("service_read", "service_write")
        if self.mixed:
            for side in ("read", "write"):
                yield f"{side}-latency", (f"latency_{side}",)
                yield f"{side}-service", (f"service_{side}",)

    async def __call__(self, interval: Interval, cumulative: Snapshot) -> None:
        d = interval.delta
        length_ns = interval.end_ns - interval.start_ns
        start_s = (interval.start_ns - self.timeline.ramp_end_ns) / 1e9
        ops = d.counter("ops_read") + d.counter("ops_write")
        latency = None
        for tag, names in self._tags():
            counts = d.hist(*names)
            if tag == "latency":
                latency = histogram.interval_summary(counts)
            if self.hlog:
                hist = histogram.from_counts(counts)
                await self.hlog.write(histogram.hlog_line(tag, start_s, length_ns / 1e9, hist))
        rate = ops * 1e9 / length_ns if length_ns else 0.0
        self.rows.append({"t_s": round((interval.end_ns - self.timeline.ramp_end_ns) / 1e9, 3),
                          "ops": ops, "rate": round(rate, 3), "errors": d.counter("errors"),
                          "latency_ns": latency})
        bytes_per_s = (d.counter("bytes_read") + d.counter("bytes_write")) * 1e9 / length_ns if length_ns else 0
        self.progress.interval((interval.end_ns - self.timeline.ramp_end_ns) / 1e9, rate, "IOPS",
                               bytes_per_s, latency["p50"], latency["p99"])

    def warming(self, now_ns: int) -> None:
        self.progress.warming((self.timeline.ramp_end_ns - now_ns) / 1e9)


def _native_config(spec: DiskSpec, target, engine: str, timeline: Timeline, cpus: list[int]):
    import ctypes

    cpu_array = (ctypes.c_int32 * len(cpus))(*cpus)
    cfg = native.DiskConfig(
        fd=target.fd, engine=native.ENGINES[engine], workers=spec.common.workers, qd=spec.qd,
        bs_bytes=spec.bs_bytes, read_pct=spec.read_pct, sequential=int(spec.sequential),
        span_bytes=target.span_bytes, rate_ops_per_s=spec.rate_ops_per_s or 0,
        start_ns=timeline.start_ns, ramp_end_ns=timeline.ramp_end_ns, end_ns=timeline.end_ns,
        seed=spec.seed & (2**64 - 1), cpus=cpu_array,
    )
    return cfg, cpu_array


async def run_disk(spec: DiskSpec, hlog_path: str | None = None, quiet: bool = False) -> dict:
    """Run one disk job and return its result document (interrupted or not)."""
    engine, engine_note = choose_engine(spec.engine)
    if engine == "psync" and spec.qd > 1 and spec.engine == "psync":
        engine_note = f"{engine_note}; qd {spec.qd} does not apply"
    target = open_target(spec)
    hlog = None
    progress = Progress(spec.common.duration_ns / 1e9, enabled=False if quiet else None)
    try:
        if hlog_path:
            try:
                hlog = await aiofiles.open(hlog_path, "w")
            except OSError as e:
                raise UsageError(f"cannot write {hlog_path}: {e.strerror}") from None
            await hlog.write(histogram.hlog_header(time.time() + spec.common.ramp_ns / 1e9,
                                                   f"loadgen disk {spec.rw} bs={spec.bs_bytes} qd={spec.qd}; values in ns"))
        cpus = worker_cpus(spec.common.workers)
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        timeline = Timeline.starting_now(spec.common.ramp_ns, spec.common.duration_ns, spec.common.interval_ns)
        sink = IntervalSink(spec, timeline, hlog, progress)
        cfg, _keep = _native_config(spec, target, engine, timeline, cpus)
        run = native.start_disk(cfg)
        try:
            m: Measurement = await run_workers(run, timeline, sink, policy=all_failed, on_tick=sink.warming)
        finally:
            run.free()
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        progress.close()
        if hlog:
            await hlog.close()
        target.close()
    if m.setup_errno and not (m.final.counter("ops_read") + m.final.counter("ops_write")):
        raise SetupError(f"{engine} workers could not start: {os.strerror(m.setup_errno)}")
    cpu = {"user_s": round(usage1.ru_utime - usage0.ru_utime, 3), "sys_s": round(usage1.ru_stime - usage0.ru_stime, 3)}
    config = spec.to_config() | {"target_path": target.path, "target_kind": target.kind,
                                 "span_bytes": target.span_bytes, "cpus": cpus}
    return results.document("disk", config, engine, m, basic_env(), results.disk_summary(m, cpu), sink.rows,
                            engine_note=engine_note)
