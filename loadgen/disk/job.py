"""The disk job: a DiskSpec in, a result document out.

prepare() chooses the engine, opens the target and picks the workers' CPUs:
the one preparation a local run, an agent's job process and a fleet worker all
call. run_disk() starts it on a timeline, streams intervals to the .hlog and
the progress line; disk_document() builds the document, whether the job ran
here or on an agent's host. Policy lives here: the run stops early only when
every I/O fails.

Several targets (--target A,B): the workers are spread over them, as evenly as
can be and at least one each (workload.spread_workers), each target's workers
a native run of their own with the target's descriptor, driven together as one
(CompositeRun: its rows are the targets' workers in order). The document has a
section per target, made from that target's rows of the same final snapshot as
the total, so their ops add up to the total's and their histograms, added
bucket by bucket, are the total's; each section has its device's counters. A
job on an agent or on Ray nodes has one target (cli.py refuses more).
"""
import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from loadgen.disk import ring
from loadgen.disk import nvme
from loadgen.disk.target import DiskTarget, mem_available_bytes, open_target, open_targets
from loadgen.errors import SetupError, UsageError
from loadgen.facts import counters, sysinfo
from loadgen.facts.sysinfo import basic_env
from loadgen.results import histogram, result
from loadgen.results.result import errno_name
from loadgen.run import metrics as live_metrics, native
from loadgen.run.controller import CompositeRun, Timeline, stacked_rows, worker_cpus
from loadgen.run.intervals import IntervalView
from loadgen.run.job import Outcome, Watch, measure, starting
from loadgen.run.stats import Snapshot
from loadgen.units import format_size
from loadgen.workload import DiskSpec, spread_workers

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
    if requested == "nvme":
        return nvme.check_engine()
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


def interval_view(spec: DiskSpec, parts: "list[tuple[str, slice]] | None" = None) -> IntervalView:
    """parts: each target's name and rows, when there are several: a row then has each one's ops and rate."""
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
        if parts:
            out["targets"] = {}
            for name, rows in parts:
                part = d.rows(rows)
                ops = part.counter("ops_read") + part.counter("ops_write")
                out["targets"][name] = {"ops": ops, "rate": round(ops / length_s, 3) if length_s else 0.0}
        return out

    return IntervalView(
        tags=tags,
        ops_and_bytes=lambda d: (d.counter("ops_read") + d.counter("ops_write"),
                                 d.counter("bytes_read") + d.counter("bytes_write")),
        rate_unit="IOPS",
        extra=extra,
    )


# Each target's workers draw from their own stream of offsets: target i's seed is the run's
# XOR i times this odd constant (splitmix64's multiplier), so the first target's is the run's own.
TARGET_SEED_STEP = 0xBF58476D1CE4E5B9


@dataclass
class DiskJob:
    """A disk job ready to start: its engine chosen, its targets open, its workers' CPUs picked."""
    spec: DiskSpec
    engine: str
    engine_note: str | None
    targets: list[DiskTarget]
    cpus: list[int]
    sq_cpu: int | None = None   # --sqpoll: the SQ threads' CPU (ring.SQ_CPU_ANY: not pinned); None: off

    @property
    def target(self) -> DiskTarget:
        """The first (or only) target."""
        return self.targets[0]

    @property
    def workers(self) -> int:
        return self.spec.common.workers

    @property
    def interval_ns(self) -> int:
        return self.spec.common.interval_ns

    def rows(self) -> list[slice]:
        """Each target's workers' rows in the run's stats, in target order."""
        return stacked_rows(spread_workers(self.workers, len(self.targets)))

    def _config(self, target: DiskTarget, rows: slice, seed: int, timeline: Timeline) -> native.DiskConfig:
        spec = self.spec
        ns = target if isinstance(target, nvme.NvmeTarget) else None
        return native.DiskConfig(
            fd=target.fd, engine=native.ENGINES[self.engine], workers=rows.stop - rows.start, qd=spec.qd,
            bs_bytes=spec.bs_bytes, read_pct=spec.read_pct, sequential=int(spec.sequential),
            busy_poll=int(spec.common.busy_poll),
            span_bytes=target.span_bytes, rate_ops_per_s=spec.rate_ops_per_s or 0,
            start_ns=timeline.start_ns, ramp_end_ns=timeline.ramp_end_ns, end_ns=timeline.end_ns,
            seed=seed & (2**64 - 1), cpus=native.int32_array(self.cpus[rows]),
            # every target's workers: the helpers keep off all of them
            job_cpus=native.int32_array(self.cpus), n_job_cpus=len(self.cpus),
            nvme_nsid=ns.nsid if ns else 0, nvme_lba_shift=ns.lba_shift if ns else 0,
            batch_submit=spec.batch_submit, batch_complete=spec.batch_complete, batch_wait_ns=spec.batch_wait_ns,
            poll=int(spec.poll),
            sqpoll=int(self.sq_cpu is not None), sq_cpu=ring.SQ_CPU_ANY if self.sq_cpu is None else self.sq_cpu,
            sq_idle_ms=ring.SQ_IDLE_MS, register_ring=int(spec.register_ring),
            verify=int(spec.verify), verify_filled=int(spec.verify and target.verify_filled),
        )  # the native run copies the config and the CPU list

    def start(self, timeline: Timeline) -> "native.Run | CompositeRun":
        if len(self.targets) == 1:
            return native.start_disk(self._config(self.target, slice(0, self.workers), self.spec.seed, timeline))
        runs: list[native.Run] = []
        try:
            for i, (target, rows) in enumerate(zip(self.targets, self.rows())):
                seed = self.spec.seed ^ (i * TARGET_SEED_STEP)
                runs.append(native.start_disk(self._config(target, rows, seed, timeline)))
        except BaseException:
            for run in runs:   # free() stops and joins the targets already started
                run.free()
            raise
        return CompositeRun(runs)

    def facts(self) -> dict:
        """The engine, the target (TARGET_FACTS) and the CPUs: an agent's "ready" says these.
        Several targets: TARGET_FACTS of them all, and each one's in "targets"."""
        notes = [n for t in self.targets for n in t.notes]
        out = {"engine": self.engine, "engine_note": self.engine_note, **self.target.facts(),
               "target_notes": notes, "cpus": self.cpus,
               "sqpoll": ring.sqpoll_facts(self.spec.sqpoll_cpu, self.sq_cpu),
               "verify_filled": all(t.verify_filled for t in self.targets) if self.spec.verify else None}
        if len(self.targets) > 1:
            kinds = {t.kind for t in self.targets}
            out |= {"target_path": ",".join(t.path for t in self.targets),
                    "target_kind": kinds.pop() if len(kinds) == 1 else "mixed",
                    "span_bytes": None,   # each target's own is in its section
                    "target_created": any(t.created for t in self.targets),
                    "prefilled_bytes": sum(t.prefilled_bytes for t in self.targets),
                    "unwritten_bytes": sum(t.unwritten_bytes for t in self.targets),
                    "targets": [t.facts() | {"workers": rows.stop - rows.start, "cpus": self.cpus[rows]}
                                for t, rows in zip(self.targets, self.rows())]}
        return out

    def close(self) -> None:
        for target in self.targets:
            target.close()


def prepare(spec: DiskSpec, opener: Callable[[DiskSpec], DiskTarget] | None = None) -> DiskJob:
    """The one way a disk job is prepared, wherever it runs.

    opener(spec) gives the target: by default spec's own paths (a local run: each checked
    before any is written, disk/target.open_targets; an NVMe namespace's ng device under
    --engine nvme, which takes one); an agent's job process passes one that takes the
    descriptor the agent opened."""
    engine, note = choose_engine(spec.engine)
    if opener is None and engine == "nvme":
        opener = nvme.open_nvme_target
    cpus = worker_cpus(spec.common.workers)
    sq_cpu = ring.sq_cpu(spec.sqpoll_cpu, cpus)
    if opener is not None or len(spec.targets) <= 1:
        targets = [(opener or open_target)(spec)]
    else:
        targets = open_targets(spec)
    job = DiskJob(spec, engine, note, targets, cpus, sq_cpu)
    try:
        for target, rows in zip(job.targets, job.rows()):
            ring.check(spec, engine, target.path)
            check_verify_map(spec, target.span_bytes, rows.stop - rows.start)
    except BaseException:
        job.close()
        raise
    return job


VERIFY_MAP_BYTES_PER_BLOCK = 4   # native/verify.h: a uint32 per block


def check_verify_map(spec: DiskSpec, span_bytes: int, workers: int) -> None:
    """--verify keeps a generation per block (4 bytes) and gives each of a target's workers a
    slice of its own: refuse a span too large for the map at this bs, or with fewer blocks than workers."""
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
    if blocks < workers:
        raise UsageError(f"--verify gives each worker blocks of its own: {blocks} blocks for "
                         f"{workers} workers (use fewer --workers or a larger --size)")


def verify_summary(spec: DiskSpec, final: Snapshot) -> dict:
    """What --verify found: the counts, and the first bad blocks in full (native/verify.h)."""
    return {"mode": "read-back" if spec.read_pct == 0 else "inline",
            "checked": final.counter("verify_checked"), "bad": final.counter("verify_bad"),
            "unchecked": final.counter("verify_unchecked"),
            "mismatches": native.mismatches(final.layout, final.words)}


# What a disk job's facts say about its target (DiskTarget.facts), copied into the config.
TARGET_FACTS = ("target_path", "target_kind", "span_bytes", "target_created", "prefilled_bytes", "unwritten_bytes",
                "verify_filled")


def target_rows(facts: dict) -> list[slice]:
    """Each target's rows in the run's stats, from the workers its facts give it (DiskJob.facts)."""
    return stacked_rows([t["workers"] for t in facts["targets"]])


def _crosscheck(disk_delta: dict, part: dict) -> dict:
    """The device's I/Os beside those of the workers in part (a summary or a target's section).
    Warm-up I/Os and those drained after the stop reached the device too, so they count on
    loadgen's side as well; every I/O then counts once on each side."""
    unmeasured = part["warmup_ops"] + part.get("drained_ops", 0)
    return counters.disk_crosscheck(disk_delta, part["read"]["ops"] + unmeasured, part["write"]["ops"])


def _devices_delta(deltas: list[dict]) -> dict:
    """Several disks' deltas as one, for the total's crosscheck: their completed I/Os added."""
    missing = [d.get("missing", "no counters") for d in deltas if "stat" not in d]
    if missing:
        return {"missing": missing[0]}
    return {"stat": {key: sum(d["stat"][key] for d in deltas) for key in ("reads_completed", "writes_completed")}}


def target_sections(spec: DiskSpec, m, facts: dict, measured: dict | None,
                    devices: list[str | None]) -> tuple[list[dict], dict[str, str]]:
    """(a section per target, the total's histograms): each target's facts, its workers'
    counts and latencies (their rows of the final snapshot), its device's counters and
    histograms; the total's histograms are the targets' added bucket by bucket. A device
    under two targets (two files on one disk) counts both, so neither gets a crosscheck."""
    rows = target_rows(facts)
    total, own = result.host_histograms(m.final, rows, histogram_tags(spec))
    sections = []
    for t, r, device, hist in zip(facts["targets"], rows, devices, own):
        section = {"path": t["target_path"], "kind": t["target_kind"], "span_bytes": t["span_bytes"],
                   "created": t["target_created"], "prefilled_bytes": t["prefilled_bytes"],
                   "unwritten_bytes": t["unwritten_bytes"], "workers": t["workers"], "cpus": t["cpus"],
                   **result.disk_part(m.final.rows(r), m.measured_ns), "device": device}
        if measured is not None and device:
            section["counters"] = measured["disks"][device]
            if devices.count(device) == 1:
                section["device_crosscheck"] = _crosscheck(measured["disks"][device], section)
        sections.append(section | {"histograms": hist})
    return sections, total


def disk_document(spec: DiskSpec, out: Outcome, facts: dict, env: dict, where: dict | None = None,
                  hosts: "list[tuple[dict, slice]] | None" = None, measured: dict | None = None,
                  device: str | None = None, target_devices: list[str | None] | None = None) -> dict:
    """The result document of a disk job, from the facts its prepared job gave (DiskJob.facts,
    here or in an agent's "ready"). where: what the config adds about where it ran;
    hosts: each host's section (host, role, clock, agent...) with its workers' rows, when it
    ran on agents; measured: what the kernel counted around a local run, device its disk;
    target_devices: with several targets, each one's disk."""
    m = out.measurement
    config = spec.to_config() | {key: facts.get(key) for key in TARGET_FACTS} | {"cpus": facts.get("cpus")}
    if facts.get("sqpoll"):
        config["sqpoll"] = facts["sqpoll"]     # the CPU the SQ threads were given
    config |= where or {}
    if facts.get("nvme"):   # the namespace and LBA format an nvme job's commands used
        config["nvme"] = facts["nvme"]
    summary = result.disk_summary(m, out.cpu)
    if spec.verify:
        summary["verify"] = verify_summary(spec, m.final)
    extra: dict = {"engine_note": facts.get("engine_note"),
                   "warnings": out.warnings + list(spec.notes) + list(facts.get("target_notes") or [])}
    if measured is not None:
        extra["counters"] = measured
        if device:
            summary["device_crosscheck"] = _crosscheck(measured["disks"][device], summary)
        elif target_devices and all(target_devices):
            distinct = list(dict.fromkeys(target_devices))
            summary["device_crosscheck"] = _crosscheck(_devices_delta([measured["disks"][d] for d in distinct]),
                                                       summary)
    if facts.get("targets"):
        config["targets"] = [t["target_path"] for t in facts["targets"]]
        extra["targets"], extra["histograms"] = target_sections(spec, m, facts, measured,
                                                                target_devices or [None] * len(facts["targets"]))
    elif hosts is None:
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
        # Passthrough commands bypass the block layer's counters (and an ng device's st_dev is
        # only the filesystem holding its node): no disk to count or cross-check for nvme.
        devices = [None if job.engine == "nvme" else sysinfo.block_device_of(t.path) for t in job.targets]
        around = counters.Around([], [d for d in devices if d])
        parts = [(t.path, rows) for t, rows in zip(job.targets, job.rows())] if len(job.targets) > 1 else None
        on = f" on {len(job.targets)} targets" if parts else ""
        out = await measure(starting(job), spec.common, interval_view(spec, parts), hlog_path,
                            f"loadgen disk {spec.rw} bs={spec.bs_bytes} qd={spec.qd}{on}; values in ns",
                            watch, policy=ring.poll_answer(all_failed) if spec.poll else all_failed,
                            metrics=live_metrics.feed(metrics, lambda: [live_metrics.Part("local", "disk")]))
    finally:
        job.close()
    m = out.measurement
    if m.setup_errno and not (m.final.counter("ops_read") + m.final.counter("ops_write")):
        raise SetupError(f"{job.engine} workers could not start: {os.strerror(m.setup_errno)}")
    distinct = list(dict.fromkeys(d for d in devices if d))
    env = sysinfo.run_env(job.engine, disks=distinct)
    if parts:
        return disk_document(spec, out, job.facts(), env, measured=around.finish(), target_devices=devices)
    return disk_document(spec, out, job.facts(), env, measured=around.finish(), device=devices[0])


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
    for device in (run.counters.get("disks") or {}).values():   # the agent counts the one disk under its target
        doc["summary"]["device_crosscheck"] = _crosscheck(device, doc["summary"])
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
