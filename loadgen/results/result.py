"""Result documents ("loadgen/1") and the human summary printed from them.

The document is built from a controller Measurement; the summary is printed
from the document alone, so what a user reads and what --json holds cannot
disagree.
"""
from __future__ import annotations

import errno as errno_mod
import json
from typing import TYPE_CHECKING

from loadgen.results import histogram, ring, stalls
from loadgen.units import format_bits_per_s, format_bytes_per_s, format_ns, format_si

if TYPE_CHECKING:   # a run hands these in; results never imports the run side (loadgen.results says why)
    from loadgen.run.controller import Measurement
    from loadgen.run.stats import Snapshot

SCHEMA = "loadgen/1"


def errno_name(e: int) -> str:
    return errno_mod.errorcode.get(e, f"errno{e}")


def latency_block(counts) -> dict:
    return histogram.summarize_counts(counts)


def pacing_block(s: Snapshot) -> dict:
    """How the workers paced: sleeping in the kernel or spinning (--busy-poll), the
    tolerance within which due ops shared a batch (the measured wake-up cost), and
    the CPU each worker ran on, in worker order."""
    cpus = [int(c) for c in s.words[:, s.layout.counter("cpu")]] if len(s.words) else []
    return {"mode": "busy_poll" if s.counter("busy_poll") else "sleep",
            "tolerance_ns": s.counter("pace_tolerance_ns"), "worker_cpus": cpus}


def per_s(n: int, measured_ns: int) -> float:
    """A count over the measured span as a rate per second, to the thousandth: every rate in a document."""
    return round(n * 1e9 / measured_ns, 3) if measured_ns > 0 else 0.0


def disk_summary(m: Measurement, cpu: dict) -> dict:
    s: Snapshot = m.final
    ns = m.measured_ns
    ops_r, ops_w = s.counter("ops_read"), s.counter("ops_write")
    ops = ops_r + ops_w
    errors_by_errno = {errno_name(e): n for e, n in sorted(s.errors_by_errno().items())}
    late_ops = s.counter("late_ops")
    summary = {
        "duration_s": round(ns / 1e9, 6),
        "ops": ops,
        "rate": per_s(ops, ns),
        "bytes": s.counter("bytes_read") + s.counter("bytes_write"),
        "bytes_per_s": per_s(s.counter("bytes_read") + s.counter("bytes_write"), ns),
        "errors": s.counter("errors"),
        "errors_by_errno": errors_by_errno,
        "cpu": cpu,
        "latency_ns": latency_block(s.hist("latency_read", "latency_write")),
        "service_ns": latency_block(s.hist("service_read", "service_write")),
        "schedule_lag_ns": {
            "max": s.counter("lag_max_ns"),
            "mean": round(s.counter("lag_sum_ns") / ops, 1) if ops else 0.0,
            "late_ops": late_ops,
        },
        "warmup_ops": s.counter("warmup_ops"),
        "drained_ops": s.counter("drained_ops"),
        "pacing": pacing_block(s),
        "read": _disk_side(s, "read", ns),
        "write": _disk_side(s, "write", ns),
    }
    if all(name in s.layout.counters for name in ring.COUNTERS):
        rows = [{name: int(s.words[i, s.layout.counter(name)]) for name in ring.COUNTERS} for i in range(len(s.words))]
        summary["ring"] = ring.ring_summary(rows, ops)     # null for psync: the same shape either way
    return summary


def _disk_side(s: Snapshot, side: str, ns: int) -> dict:
    ops = s.counter(f"ops_{side}")
    return {"ops": ops, "rate": per_s(ops, ns), "bytes_per_s": per_s(s.counter(f"bytes_{side}"), ns),
            "latency_ns": latency_block(s.hist(f"latency_{side}")),
            "service_ns": latency_block(s.hist(f"service_{side}"))}


def disk_part(s: Snapshot, ns: int) -> dict:
    """What some of a disk run's workers did (one target's: s holds their rows of the final
    snapshot), measured over ns: the summary's counts, rates and latencies for them alone."""
    ops = s.counter("ops_read") + s.counter("ops_write")
    nbytes = s.counter("bytes_read") + s.counter("bytes_write")
    return {"ops": ops, "rate": per_s(ops, ns), "bytes": nbytes, "bytes_per_s": per_s(nbytes, ns),
            "errors": s.counter("errors"),
            "errors_by_errno": {errno_name(e): n for e, n in sorted(s.errors_by_errno().items())},
            "warmup_ops": s.counter("warmup_ops"), "drained_ops": s.counter("drained_ops"),
            "latency_ns": latency_block(s.hist("latency_read", "latency_write")),
            "service_ns": latency_block(s.hist("service_read", "service_write")),
            "read": _disk_side(s, "read", ns), "write": _disk_side(s, "write", ns)}


def _encode(counts) -> str:
    return histogram.from_counts(counts).encode().decode("ascii")


def total_histograms(final: Snapshot, tags: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """The run's total histograms, encoded as HdrHistogram's compressed base64 (V2)."""
    return {tag: _encode(final.hist(*names)) for tag, names in tags.items()}


def host_histograms(final: Snapshot, hosts: list[slice],
                    tags: dict[str, tuple[str, ...]]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(total, per host) encoded histograms of the hosts whose workers sit at these rows.

    The total is the hosts' counts added, bucket by bucket, so it is exact: decode
    them all and the total's counts equal the sum of the hosts' (no re-recording,
    no rounding)."""
    per_host = [{tag: final.rows(rows).hist(*names) for tag, names in tags.items()} for rows in hosts]
    total = {tag: sum((h[tag] for h in per_host[1:]), per_host[0][tag].copy()) if per_host
             else final.rows(slice(0, 0)).hist(*names) for tag, names in tags.items()}
    return ({tag: _encode(c) for tag, c in total.items()},
            [{tag: _encode(c) for tag, c in h.items()} for h in per_host])


def _facts(kind: str, config: dict, engine: str, m: Measurement, summary: dict, env: dict) -> stalls.Facts:
    """What the summary says about limits; loadgen's own CPU only when its workers ran here."""
    cpu = summary.get("cpu") or {}
    remote = config.get("on") or config.get("peer")
    threads = int(m.final.words.shape[0])
    threads += len((summary.get("ring") or {}).get("sq_threads") or [])    # each spins on a CPU too
    # the CPUs the process may use: the controller's, and its workers' when it was kept off them
    usable = set(m.controller.get("affinity") or []) | set(m.controller.get("kept_off") or [])
    cores = min(threads, len(usable)) or threads
    facts = stalls.Facts(cpu_s=None if remote else cpu.get("user_s", 0) + cpu.get("sys_s", 0),
                         wall_s=cpu.get("wall_s", 0.0), cores=cores)
    if kind == "disk":
        facts.qd_total = (1 if engine == "psync" else int(config["qd"])) * int(config["workers"])
        facts.service_mean_ns = summary["service_ns"]["mean"]
        queues = [(d.get("queue") or {}).get("nr_requests") for d in env.get("disks") or []]
        facts.device_queue = queues[0] if len(queues) == 1 else None
    return facts


def judge(kind: str, config: dict, engine: str, m: Measurement, summary: dict, env: dict) -> list[str]:
    """Add summary.stalls and summary.shortfall; return the warnings they call for.

    A run that failed or was interrupted has its reason as its headline and
    falls short because of it: its sections are filled, but it gets no warnings."""
    rate = config.get("iops" if kind == "disk" else "pps")
    requested = rate if isinstance(rate, int) else None
    summary["stalls"] = stalls.stalls_section(m.progress, m.held, requested, m.timeline.ramp_end_ns,
                                              m.stop_ns, m.timeline.interval_ns)
    lag = summary.get("schedule_lag_ns") or {}
    facts = _facts(kind, config, engine, m, summary, env)
    summary["shortfall"] = stalls.shortfall_section(requested, summary["rate"], lag.get("unsent", 0),
                                                    lag.get("late_ops", 0), facts)
    if m.failed or m.interrupted:
        return []
    warnings = stalls.stall_warnings(summary["stalls"])
    if summary["shortfall"]:
        warnings.append(stalls.shortfall_warning(summary["shortfall"], "IOPS" if kind == "disk" else "pps"))
    return warnings


def falls_short(doc: dict) -> bool:
    """True when the run stalled, was held, or fell short of its rate (what --strict fails on)."""
    s = doc.get("summary") or {}
    stalled = s.get("stalls") or {}
    return bool(s.get("shortfall") or stalled.get("count") or (stalled.get("controller_held") or {}).get("count"))


def document(kind: str, config: dict, engine: str, m: Measurement, env: dict, summary: dict,
             intervals: list[dict], **extra) -> dict:
    warnings = judge(kind, config, engine, m, summary, env)
    # Where the threads ran: the workers' CPUs are in config already; the census has them all.
    config = config | {"controller_cpus": m.controller}
    if m.threads:
        summary["threads"] = m.threads
    doc = {
        "schema": SCHEMA,
        "kind": kind,
        "config": config,
        "engine": engine,
        "interrupted": m.interrupted,
        "failed": m.failed,
        "stop_reason": m.stop_reason,
        "env": env,
        "summary": summary,
        "intervals": intervals,
    }
    doc.update(extra)
    doc["warnings"] = list(doc.get("warnings") or []) + warnings
    return doc


def json_text(doc: dict) -> str:
    """The document as --json writes it (loadgen.output decides where and how safely)."""
    return json.dumps(doc, indent=2) + "\n"


def _latency_line(label: str, lat: dict) -> str:
    keys = ["min", "p50", "p90", "p99", "p99.9", "p99.99", "max"]
    parts = ", ".join(f"{k}={format_ns(lat[k])}" for k in keys)
    return f"    {label:<9} {parts}, mean={format_ns(lat['mean'])} (n={lat['count']})"


def _pacing_note(s: dict) -> str:
    p = s.get("pacing")
    if not p:
        return ""
    if p["mode"] == "busy_poll":
        return "; workers spun (--busy-poll)"
    window = p.get("window_ns") or p["tolerance_ns"]
    note = f"; workers slept, batching what was due within {format_ns(window)}"
    early = s.get("schedule_early_ns", {}).get("max", 0)
    if early:
        note += f", sent up to {format_ns(early)} ahead of schedule"
    return note


def _judgement_lines(s: dict) -> list[str]:
    """Stalls and shortfall, when a run had them (older documents have neither)."""
    lines = []
    st = s.get("stalls") or {}
    if st.get("count"):
        lines.append(f"  stalls: {st['count']}, {format_ns(st['total_ns'])} in all, "
                     f"longest {format_ns(st['longest_ns'])} (seen at {format_ns(st['resolution_ns'])} resolution)")
    if (st.get("controller_held") or {}).get("count"):
        held = st["controller_held"]
        lines.append(f"  loadgen held off the CPU: {held['count']} time(s), {format_ns(held['total_ns'])} in all")
    if s.get("shortfall"):
        sf = s["shortfall"]
        lines.append(f"  shortfall: {sf['ratio']:.1%} of the requested rate; likely limit: {sf['likely_limit']}")
    return lines


# A NIC's statistics that say something went wrong, printed when they moved.
_NIC_TROUBLE = ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors", "rx_missed_errors", "rx_over_errors",
                "rx_fifo_errors", "tx_fifo_errors", "rx_nohandler")


def counters_lines(counters: dict | None, where: str = "") -> list[str]:
    """The devices' counters over the run, a line each: a NIC's packets, any drops or errors and
    any ENA allowance counter that moved; a disk's reads, writes and busy time. Deltas, as the
    JSON's counters are; what could not be read is said."""
    if not counters:
        return []
    if "missing" in counters:
        return [f"  counters{where}: not read ({counters['missing']})"]
    lines = []
    for name, nic in sorted((counters.get("nics") or {}).items()):
        st = nic.get("statistics") or {}
        if not st:
            lines.append(f"  nic {name}{where}: not read ({nic.get('missing_statistics', 'no statistics')})")
            continue
        moved = [f"{k} {st[k]}" for k in _NIC_TROUBLE if st.get(k)]
        moved += [f"{k} {v}" for k, v in sorted((nic.get("driver") or {}).items())
                  if k.endswith("_allowance_exceeded") and v]
        lines.append(f"  nic {name}{where}: rx {st.get('rx_packets', 0)} packets, tx {st.get('tx_packets', 0)} packets; "
                     + (", ".join(moved) if moved else "no drops or errors"))
    for name, disk in sorted((counters.get("disks") or {}).items()):
        st = disk.get("stat") or {}
        if not st:
            lines.append(f"  disk {name}{where}: not read ({disk.get('missing', 'no stat')})")
            continue
        lines.append(f"  disk {name}{where}: {st.get('reads_completed', 0)} reads, {st.get('writes_completed', 0)} writes, "
                     f"busy {format_ns(st.get('io_ms', 0) * 1e6)}")
    return lines


def _host_counters_lines(doc: dict) -> list[str]:
    lines = counters_lines(doc.get("counters"))
    for h in doc.get("hosts") or []:
        lines += counters_lines(h.get("counters"), f" on {h['host']}")
    return lines


def _cpu_line(cpu: dict) -> str:
    return f"  cpu: user={format_ns(cpu['user_s'] * 1e9)} sys={format_ns(cpu['sys_s'] * 1e9)}"


def _threads_note(s: dict) -> str:
    """'; threads: 2 workers on CPUs 0,1, 1 io-wq helper, the controller on 0, of 2 CPUs'."""
    census = s.get("threads")
    if not census:
        return ""
    by_role: dict[str, list] = {}
    for t in census["threads"]:
        by_role.setdefault(t["role"], []).append(t)
    parts = []
    for role, label in (("worker", "worker"), ("io-wq", "io-wq helper"), ("sq-poll", "SQ thread"), ("other", "other")):
        ts = by_role.get(role, [])
        if ts:
            cpus = ",".join(str(c) for c in sorted({t.get("last_cpu") for t in ts if t.get("last_cpu") is not None}))
            parts.append(f"{len(ts)} {label}{'s' if len(ts) > 1 else ''}" + (f" on CPUs {cpus}" if cpus else ""))
    for t in by_role.get("controller", []):
        parts.append(f"the controller on CPU {t.get('last_cpu')}")
    return f"; threads: {', '.join(parts)}, of {census['cpus']} CPUs"


def _clock_note(clock: dict | None) -> str:
    """A host's clock against the controller's: the offset and the bound on its error."""
    if not clock:
        return ""
    return f", clock offset {format_ns(clock['offset_ns'])} ± {format_ns(clock['error_ns'])}"


def verify_line(v: dict) -> str:
    """verify: N blocks checked, M bad; unchecked blocks said, never counted; the first bad block named."""
    line = f"verify: {v['checked']} blocks checked, {v['bad']} bad"
    if v["unchecked"]:
        line += f" ({v['unchecked']} not checked: blocks the run never wrote, or did not read back)"
    for m in v["mismatches"][:3]:
        line += (f"\n    bad block at offset {m['offset_bytes']}: {', '.join(m['reasons'])}; "
                 f"expected {_header_text(m['expected'])}, found {_header_text(m['found'])}")
    return line


def _header_text(h: dict) -> str:
    if h["magic"] != VERIFY_MAGIC:
        return f"no header (magic {h['magic']:#010x})"
    return (f"offset {h['offset_bytes']} seed {h['seed']} generation {h['generation']} "
            f"bs {h['block_bytes']} crc32c {h['crc32c']:#010x}")


VERIFY_MAGIC = 0x4B4C4256   # LG_VERIFY_MAGIC: results import no native code


def format_disk(doc: dict) -> str:
    c, s = doc["config"], doc["summary"]
    rate = c["iops"]
    head = (f"loadgen disk: {c['rw']} bs={c['bs']} qd={c['qd']} workers={c['workers']} "
            f"iops={rate if rate == 'max' else format_si(rate)} engine={doc['engine']} "
            f"{'direct' if c['direct'] else 'buffered'} target={c['target_path']}")
    lines = [head]
    if doc["interrupted"] or doc.get("stop_reason"):
        lines.append(f"  stopped early: {doc['stop_reason']}")
    sides = {100: ["read"], 0: ["write"]}.get(c["read_pct"], ["read", "write"])
    for side in sides:
        part = s[side]
        lines.append(f"  {side}: IOPS={format_si(part['rate'])}, BW={format_bytes_per_s(part['bytes_per_s'])}, "
                     f"{part['ops']} ops in {format_ns(s['duration_s'] * 1e9)}")
        lines.append(_latency_line("latency", part["latency_ns"]))
        lines.append(_latency_line("service", part["service_ns"]))
    for h in doc.get("hosts") or []:   # a run on several hosts at once (disk/job.py run_disk_hosts)
        if "rate" in h:
            lines.append(f"  host {h['host']}: IOPS={format_si(h['rate'])}, {h['ops']} ops, errors {h['errors']}")
    for t in doc.get("targets") or []:   # a run on several targets (disk/job.py)
        lines.append(_target_line(t))
    if c["iops"] != "max":
        lag = s["schedule_lag_ns"]
        lines.append(f"  schedule: requested {format_si(c['iops'])} IOPS, achieved {format_si(s['rate'])}; "
                     f"max lag {format_ns(lag['max'])}, mean lag {format_ns(lag['mean'])}, "
                     f"{lag['late_ops']} ops started late" + _pacing_note(s))
    if s["errors"]:
        detail = ", ".join(f"{k} x{v}" for k, v in s["errors_by_errno"].items())
        lines.append(f"  errors: {s['errors']} ({detail})")
    else:
        lines.append("  errors: 0")
    if "verify" in s:
        lines.append("  " + verify_line(s["verify"]))
    lines += _judgement_lines(s)
    lines += _host_counters_lines(doc)
    lines.append(_cpu_line(s["cpu"]) + _threads_note(s))
    if s.get("ring"):
        lines.append(_ring_line(c, s["ring"]))
    if doc.get("engine_note"):
        lines.append(f"  engine: {doc['engine_note']}")
    return "\n".join(lines)


def _target_line(t: dict) -> str:
    """'  target /dev/zram1 (2 workers): IOPS=..., p50=..., p99=..., 123 ops, errors 0; device 123 I/Os'."""
    lat = t["latency_ns"]
    line = (f"  target {t['path']} ({t['workers']} worker{'s' if t['workers'] != 1 else ''}): "
            f"IOPS={format_si(t['rate'])}, BW={format_bytes_per_s(t['bytes_per_s'])}, "
            f"latency p50={format_ns(lat['p50'])} p99={format_ns(lat['p99'])}, {t['ops']} ops, errors {t['errors']}")
    check = t.get("device_crosscheck") or {}
    if "device_ios" in check:
        line += f"; {t['device']} counted {check['device_ios']} I/Os to loadgen's {check['loadgen_ios']}"
    return line


def _ring_line(c: dict, r: dict) -> str:
    """'  ring: batches 8/8, 0.131 enters per I/O, SQ thread on CPU 1 (1.03 s CPU)'."""
    parts = [f"batches {c['batch_submit']}/{c['batch_complete']}" if c.get("batch_submit") else "paced, no batches"]
    if r["enters_per_io"] is not None:
        parts.append(f"{r['enters_per_io']:.3f} enters per I/O")
    if r.get("batch_wait"):
        parts.append(f"batch wait {format_ns(r['batch_wait']['mean_ns'])} mean")
    if c.get("poll"):
        parts.append("polled")
    for t in r.get("sq_threads") or []:
        parts.append(f"SQ thread of worker {t['worker']} on CPU {t['last_cpu']} ({t['cpu_s']:.2f} s CPU)")
    return "  ring: " + ", ".join(parts)


def format_net(doc: dict) -> str:
    c, s = doc["config"], doc["summary"]
    pps = c["pps"]
    if c.get("peer"):
        where = f"agent {c['peer']}" + (f" from agents {', '.join(c['clients'])}" if c.get("clients") else "")
    else:
        where = "embedded receiver" if c["embedded_receiver"] else c["target_address"]
    lines = [f"loadgen net: {c['mode']} size={c['size_bytes']}B flows={c['flows']} senders={c['senders']} "
             f"pps={pps if pps == 'max' else format_si(pps)} to {where} ({c['target_address']})"]
    if doc["interrupted"] or doc.get("stop_reason"):
        lines.append(f"  stopped early: {doc['stop_reason']}")
    lines.append(f"  sent:     {s['sent']} datagrams, {format_si(s['sent_pps'])} pps, "
                 f"{format_bits_per_s(s['bits_per_s'])} payload, {format_bits_per_s(s['wire_bits_per_s'])} on an Ethernet wire")
    if s["received"] is None:
        lines.append(f"  received: not measured ({s['note']})")
    else:
        side = "echoes back at the sender" if s["measured_at"] == "echo" else "at the receiver"
        lines.append(f"  received: {s['received']} {side}, {format_si(s['received_pps'])} pps; "
                     f"lost {s['lost']} ({s['loss_ratio'] * 100:.3f}%), reordered {s['reordered']}, "
                     f"duplicated {s['duplicated']}" + (f", late {s['late']}" if s.get("late") else ""))
    if "latency_ns" in s:
        lines.append("  round trip:")
        lines.append(_latency_line("latency", s["latency_ns"]))
        lines.append(_latency_line("service", s["service_ns"]))
        if s.get("kernel_rtt_ns", {}).get("count"):
            # the kernel's receive stamp splits the round trip from loadgen's own delay
            lines.append(_latency_line("kernel", s["kernel_rtt_ns"]))
            lines.append(_latency_line("user", s["user_delay_ns"]))
    elif "oneway" in s:
        bound = s["oneway"].get("clock_error_ns")
        lines.append("  one way" + (f" (clocks aligned to ± {format_ns(bound)}):" if bound else " (same host clock):"))
        lines.append(_latency_line("latency", s["oneway"]["latency_ns"]))
        lines.append(_latency_line("service", s["oneway"]["service_ns"]))
    if s.get("oneway_omitted"):
        lines.append(f"  one way: not reported, {s['oneway_omitted']}")
    for h in doc.get("hosts") or []:
        clock = _clock_note(h.get("clock"))
        if h["role"] == "sender":
            lines.append(f"  host {h['host']} (sender): sent {h['sent']}, {format_si(h['sent_pps'])} pps{clock}")
        else:
            lines.append(f"  host {h['host']} (receiver): received {h['received']}, "
                         f"{format_si(h['received_pps'])} pps, reordered {h['reordered']}, "
                         f"duplicated {h['duplicated']}{clock}")
    if pps != "max":
        lag = s["schedule_lag_ns"]
        lines.append(f"  schedule: requested {format_si(pps)} pps, achieved {format_si(s['sent_pps'])}; "
                     f"max lag {format_ns(lag['max'])}, mean lag {format_ns(lag['mean'])}, "
                     f"{lag['late_ops']} datagrams sent late"
                     + (f", {lag['unsent']} never sent (too far behind at the end)" if lag.get("unsent") else "")
                     + _pacing_note(s))
    if s["refused"]:
        lines.append(f"  no listener at the target: {s['refused']} sends refused (ICMP port unreachable)")
    if s["errors"]:
        detail = ", ".join(f"{k} x{v}" for k, v in s["errors_by_errno"].items())
        lines.append(f"  errors: {s['errors']} ({detail})")
    lines += _judgement_lines(s)
    lines += _host_counters_lines(doc)
    lines.append(_cpu_line(s["cpu"]) + _threads_note(s))
    return "\n".join(lines)
