"""The disk job: a DiskSpec in, a result document out.

prepare() chooses the engine, opens the target and picks the workers' CPUs:
the one preparation a local run, an agent's job process and a fleet worker all
call. run_disk() starts it on a timeline, streams intervals to the .hlog and
the progress line; disk_document() builds the document, whether the job ran
here or on an agent's host. Policy lives here: the run stops early only when
every I/O fails.
"""
import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from loadgen.disk.target import DiskTarget, mem_available_bytes, open_target
from loadgen.errors import SetupError, UsageError
from loadgen.facts import counters, sysinfo
from loadgen.facts.sysinfo import basic_env
from loadgen.results import histogram, result
from loadgen.results.result import errno_name
from loadgen.run import metrics as live_metrics, native
from loadgen.run.controller import Timeline, worker_cpus
from loadgen.run.intervals import IntervalView
from loadgen.run.job import Outcome, Watch, measure, starting
from loadgen.run.stats import Snapshot
from loadgen.units import format_size
from loadgen.workload import DiskSpec

if TYPE_CHECKING:
    from loadgen.fleet.remote import HostClient

# The totals a document embeds as encoded HdrHistograms, by tag.
DISK_HISTOGRAMS = {"latency": ("latency_read", "latency_write"), "service": ("service_read", "service_write")}
SIDES = ("read", "write")


def histogram_tags(spec: DiskSpec) -> dict[str, tuple[str, ...]]:
    """DISK_HISTOGRAMS, and in a mixed run each side's own (read-latency...), as the .hlog tags them."""
    tags = dict(DISK_HISTOGRAMS)
    if 0 < spec.read_pct < 100:
        for side in SIDES:
            tags |= {f"{side}-latency": (f"latency_{side}",), f"{side}-service": (f"service_{side}",)}
    return tags

# io_uring_setup errors that mean "not allowed here" (seccomp, io_uring_disabled, old kernel).
_URING_FORBIDDEN = {errno.EPERM, errno.ENOSYS, errno.EACCES}


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
        return "psync", (f"io_uring unavailable ({errno_name(err)}); psync runs instead, "
                         "one I/O in flight per worker")
    raise SetupError(f"io_uring setup failed: {os.strerror(err)}")


def all_failed(cumulative: Snapshot) -> str | None:
    errors = cumulative.counter("errors")
    if errors and not (cumulative.counter("ops_read") + cumulative.counter("ops_write")):
        detail = ", ".join(f"{errno_name(e)} x{n}" for e, n in cumulative.errors_by_errno().items())
        return f"every I/O failed ({detail})"
    return None


def interval_view(spec: DiskSpec) -> IntervalView:
    mixed = 0 < spec.read_pct < 100

    def tags(d: Snapshot):
        out = [("latency", d.hist("latency_read", "latency_write")),
               ("service", d.hist("service_read", "service_write"))]
        if mixed:
            for side in ("read", "write"):
                out += [(f"{side}-latency", d.hist(f"latency_{side}")),
                        (f"{side}-service", d.hist(f"service_{side}"))]
        return out

    def extra(d: Snapshot, length_s: float) -> dict:
        out = {"errors": d.counter("errors")}
        if mixed:    # each side's rate and latency, so a report can draw them apart
            for side in SIDES:
                ops = d.counter(f"ops_{side}")
                out[side] = {"ops": ops, "rate": round(ops / length_s, 3) if length_s else 0.0,
                             "latency_ns": histogram.interval_summary(d.hist(f"latency_{side}"))}
        return out

    return IntervalView(
        tags=tags,
        ops_and_bytes=lambda d: (d.counter("ops_read") + d.counter("ops_write"),
                                 d.counter("bytes_read") + d.counter("bytes_write")),
        rate_unit="IOPS",
        extra=extra,
    )


@dataclass
class DiskJob:
    """A disk job ready to start: its engine chosen, its target open, its workers' CPUs picked."""
    spec: DiskSpec
    engine: str
    engine_note: str | None
    target: DiskTarget
    cpus: list[int]

    @property
    def workers(self) -> int:
        return self.spec.common.workers

    @property
    def interval_ns(self) -> int:
        return self.spec.common.interval_ns

    def start(self, timeline: Timeline) -> native.Run:
        spec, target = self.spec, self.target
        return native.start_disk(native.DiskConfig(
            fd=target.fd, engine=native.ENGINES[self.engine], workers=spec.common.workers, qd=spec.qd,
            bs_bytes=spec.bs_bytes, read_pct=spec.read_pct, sequential=int(spec.sequential),
            busy_poll=int(spec.common.busy_poll),
            span_bytes=target.span_bytes, rate_ops_per_s=spec.rate_ops_per_s or 0,
            start_ns=timeline.start_ns, ramp_end_ns=timeline.ramp_end_ns, end_ns=timeline.end_ns,
            seed=spec.seed & (2**64 - 1), cpus=native.int32_array(self.cpus),
            verify=int(spec.verify), verify_filled=int(self.target.verify_filled),
        ))  # the native run copies the config and the CPU list

    def facts(self) -> dict:
        """The engine, the target (TARGET_FACTS) and the CPUs: an agent's "ready" says these."""
        return {"engine": self.engine, "engine_note": self.engine_note, **self.target.facts(),
                "verify_filled": self.target.verify_filled if self.spec.verify else None,
                "target_notes": self.target.notes, "cpus": self.cpus}

    def close(self) -> None:
        self.target.close()


def prepare(spec: DiskSpec, opener: Callable[[DiskSpec], DiskTarget] = open_target) -> DiskJob:
    """The one way a disk job is prepared, wherever it runs.

    opener(spec) gives the target: by default spec's own path (a local run); an
    agent's job process passes one that takes the descriptor the agent opened."""
    engine, note = choose_engine(spec.engine)
    target = opener(spec)
    try:
        check_verify_map(spec, target.span_bytes)
    except BaseException:
        target.close()
        raise
    return DiskJob(spec, engine, note, target, worker_cpus(spec.common.workers))


VERIFY_MAP_BYTES_PER_BLOCK = 4   # native/verify.h: a uint32 per block


def check_verify_map(spec: DiskSpec, span_bytes: int) -> None:
    """--verify keeps a generation per block (4 bytes) and gives each worker a slice of its own:
    refuse a span too large for the map at this bs, or with fewer blocks than workers."""
    if not spec.verify:
        return
    blocks, most = span_bytes // spec.bs_bytes, native.limit("verify_max_blocks")
    if blocks > most:
        raise UsageError(f"--verify keeps a generation per block: {format_size(span_bytes)} at bs "
                         f"{format_size(spec.bs_bytes)} is {blocks} blocks, more than {most} "
                         "(use a larger --bs or a smaller --size)")
    available = mem_available_bytes()
    if available is not None and blocks * VERIFY_MAP_BYTES_PER_BLOCK > available // 2:
        raise UsageError(f"--verify keeps a generation per block: {blocks} blocks need "
                         f"{format_size(blocks * VERIFY_MAP_BYTES_PER_BLOCK)} of map, more than half of the "
                         f"{format_size(available)} of memory available here (use a larger --bs or a smaller --size)")
    if blocks < spec.common.workers:
        raise UsageError(f"--verify gives each worker blocks of its own: {blocks} blocks for "
                         f"{spec.common.workers} workers (use fewer --workers or a larger --size)")


def verify_summary(spec: DiskSpec, final: Snapshot) -> dict:
    """What --verify found: the counts, and the first bad blocks in full (native/verify.h)."""
    return {"mode": "read-back" if spec.read_pct == 0 else "inline",
            "checked": final.counter("verify_checked"), "bad": final.counter("verify_bad"),
            "unchecked": final.counter("verify_unchecked"),
            "mismatches": native.mismatches(final.layout, final.words)}


# What a disk job's facts say about its target (DiskTarget.facts), copied into the config.
TARGET_FACTS = ("target_path", "target_kind", "span_bytes", "target_created", "prefilled_bytes", "unwritten_bytes",
                "verify_filled")


def disk_document(spec: DiskSpec, out: Outcome, facts: dict, env: dict, where: dict | None = None,
                  hosts: "list[tuple[dict, slice]] | None" = None, measured: dict | None = None,
                  device: str | None = None) -> dict:
    """The result document of a disk job, from the facts its prepared job gave (DiskJob.facts,
    here or in an agent's "ready"). where: what the config adds about where it ran;
    hosts: each host's section (host, role, clock, agent...) with its workers' rows, when it
    ran on agents; measured: what the kernel counted around a local run, device its disk."""
    m = out.measurement
    config = spec.to_config() | {key: facts.get(key) for key in TARGET_FACTS} | {"cpus": facts.get("cpus")}
    config |= where or {}
    summary = result.disk_summary(m, out.cpu)
    if spec.verify:
        summary["verify"] = verify_summary(spec, m.final)
    extra: dict = {"engine_note": facts.get("engine_note"),
                   "warnings": out.warnings + list(facts.get("target_notes") or [])}
    if measured is not None:
        extra["counters"] = measured
        if device:
            # Warm-up I/Os reached the device too: count them on our side as well.
            summary["device_crosscheck"] = counters.disk_crosscheck(
                measured["disks"][device], summary["read"]["ops"] + m.final.counter("warmup_ops"),
                summary["write"]["ops"])
    if hosts is None:
        extra["histograms"] = result.total_histograms(m.final, histogram_tags(spec))
    else:
        # Each host's histograms sit in its section; the total's are theirs added.
        total, own = result.host_histograms(m.final, [rows for _, rows in hosts], histogram_tags(spec))
        extra |= {"hosts": [section | {"histograms": h} for (section, _), h in zip(hosts, own)], "histograms": total}
    return result.document("disk", config, facts.get("engine", "?"), m, env, summary, out.rows, **extra)


async def run_disk(spec: DiskSpec, hlog_path: str | None = None, watch: Watch | None = None,
                   metrics: "live_metrics.Exporter | None" = None) -> dict:
    """Run one disk job and return its result document (interrupted or not)."""
    job = prepare(spec)
    try:
        device = sysinfo.block_device_of(job.target.path)
        around = counters.Around([], [device] if device else [])
        out = await measure(starting(job), spec.common, interval_view(spec), hlog_path,
                            f"loadgen disk {spec.rw} bs={spec.bs_bytes} qd={spec.qd}; values in ns",
                            watch, policy=all_failed,
                            metrics=live_metrics.feed(metrics, lambda: [live_metrics.Part("local", "disk")]))
    finally:
        job.close()
    m = out.measurement
    if m.setup_errno and not (m.final.counter("ops_read") + m.final.counter("ops_write")):
        raise SetupError(f"{job.engine} workers could not start: {os.strerror(m.setup_errno)}")
    env = sysinfo.run_env(job.engine, disks=[device] if device else [])
    return disk_document(spec, out, job.facts(), env, measured=around.finish(), device=device)


REMOTE_LEAD_NS = 2_000_000_000


async def run_disk_remote(spec: DiskSpec, on: tuple[str, int], connect, hlog_path: str | None = None,
                          watch: Watch | None = None, metrics: "live_metrics.Exporter | None" = None) -> dict:
    """Run the disk job on an agent's host (its job process prepares it); the document names that host."""
    from loadgen.run.controller import CompositeRun

    agent = await connect(*on)
    try:
        run = await agent.prepare({"kind": "disk", "options": spec.to_wire()})

        async def start(timeline: Timeline):
            await agent.go(run, timeline)
            return CompositeRun([run])

        out = await measure(start, spec.common, interval_view(spec), hlog_path,
                            f"loadgen disk {spec.rw} bs={spec.bs_bytes} qd={spec.qd} on {on[0]}; values in ns",
                            watch, policy=all_failed, lead_ns=REMOTE_LEAD_NS,
                            metrics=live_metrics.feed(metrics, lambda: [live_metrics.Part(f"{on[0]}:{on[1]}", "disk")]))
    finally:
        await agent.close()
    host = {"host": f"{on[0]}:{on[1]}", "role": "disk", "clock": agent.clock.as_dict(),
            "agent": agent.info} | counters.host_fields(run.counters)
    # The machine that did the I/O is the agent's; CPU time is the controller's.
    env = run.ready.get("env") or {}
    doc = disk_document(spec, out, run.ready, env | {"controller": basic_env()}, where={"on": host["host"]},
                        hosts=[(host, slice(0, run.workers))])
    summary, m = doc["summary"], out.measurement
    for device in (run.counters.get("disks") or {}).values():   # the agent counts the one disk under its target
        summary["device_crosscheck"] = counters.disk_crosscheck(
            device, summary["read"]["ops"] + m.final.counter("warmup_ops"), summary["write"]["ops"])
    return doc


async def run_disk_hosts(spec: DiskSpec, clients: "list[HostClient]", hlog_path: str | None = None, watch: Watch | None = None,
                         metrics: "live_metrics.Exporter | None" = None) -> dict:
    """The same disk job on several hosts at once (Ray nodes: fleet/ray_fleet.py), started on one
    timeline. Each host gets a section with its own IOPS, counters and histograms, and the
    total's histograms are theirs added."""
    from loadgen.run.controller import CompositeRun

    runs = [await c.prepare({"kind": "disk", "options": spec.to_wire()}) for c in clients]
    composite = CompositeRun(runs)

    async def start(timeline: Timeline) -> CompositeRun:
        for c, run in zip(clients, runs):
            await c.go(run, timeline)
        return composite

    try:
        out = await measure(start, spec.common, interval_view(spec), hlog_path,
                            f"loadgen disk {spec.rw} bs={spec.bs_bytes} qd={spec.qd} on {len(clients)} hosts; "
                            "values in ns", watch, policy=all_failed, lead_ns=REMOTE_LEAD_NS,
                            metrics=live_metrics.feed(metrics, lambda: [live_metrics.Part(c.name, "disk")
                                                                        for c in clients]))
    finally:
        for c in clients:
            await c.close()
    m = out.measurement
    hosts = []
    for c, run, rows in zip(clients, runs, composite.rows()):
        part = m.final.rows(rows)
        ops = part.counter("ops_read") + part.counter("ops_write")
        section = {"host": c.name, "role": "disk", "clock": c.clock.as_dict(), "agent": c.info,
                   "workers": run.workers, "ops": ops, "rate": result.per_s(ops, m.measured_ns),
                   "errors": part.counter("errors"), "env": run.ready.get("env"),
                   "target": {key: run.ready.get(key) for key in TARGET_FACTS}}
        hosts.append((section | counters.host_fields(run.counters), rows))
    # The config names the first host's target; every host's own is in its section.
    notes = [f"{c.name}: {n}" for c, r in zip(clients, runs) for n in (r.ready.get("target_notes") or [])]
    doc = disk_document(spec, out, runs[0].ready | {"target_notes": notes}, basic_env(),
                        where={"hosts": [c.name for c in clients]}, hosts=hosts)
    if m.failed:
        doc["summary"]["note"] = "a host failed mid-run: each host's counts end at its last report"
    return doc
