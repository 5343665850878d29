"""Verdicts: a result against a claim, and one result against a baseline.

Pure functions of result documents (dicts) and claims; no I/O. The format_*
functions give the text `loadgen check` and `compare` print. Vocabulary:
- verdict: "pass", "fail" or "not comparable" (the result cannot speak to
  the claim: another instance type, a missing metric, no baseline), with why.
- overhead: how much worse a result is than its baseline, in percent: for a
  rate (base - other) / base, for a latency (other - base) / base.
- performance loss: how much lower the performance is, in percent, the measure
  the tiers are given in; for a rate, its overhead; for a latency, whose inverse
  is the performance, (other - base) / other.
- tier: the band of the virtualization table in profiles/README.md (the
  published figures and their sources) that an overhead falls into.
- knee: a search result's search.knee_pps or search.knee_iops (loadgen/search.py), the
  highest rate whose trials passed; only a search result (kind "search") has one, and
  the rest of that document is its knee trial's, so summary claims read that trial.
- closed and open loop: a run at rate "max" is closed loop and its achieved rate
  measures the system; a run at a fixed rate is open loop, the schedule set its
  rate, and only its latency (and what a receiver saw) measures the system.

Documents reach here checked against the result schema (loadgen.results.documents), so
the numbers they hold are finite and the summary's known ones are not negative.
These functions still refuse to make a verdict out of anything else: a value that
is not a finite number of at least zero, or a ratio against zero, is "not
comparable", never nan or inf.
"""
import fnmatch
import math
from dataclasses import dataclass

from loadgen.profiles import Claim
from loadgen.units import format_bytes_per_s, format_ns, format_si

# (upper bound of overhead in percent, tier): profiles/README.md, "Virtualization tiers".
TIERS = [
    (0.0, "no overhead: at least as fast as the baseline"),
    (0.5, "virtualized in hardware (VT-x, SR-IOV, Nitro): 0.1-0.5% lower"),
    (1.0, "within Nitro's claim: under 1% overhead"),
    (10.0, "between hardware-virtualized (<1%) and paravirtualized (10-50%)"),
    (50.0, "paravirtualized (Xen PV, PV drivers): 10-50% lower"),
    (90.0, "virtualized in software (emulation, binary translation): 2-10x slower"),
    (float("inf"), "slower than software virtualization's 10x"),
]

# Config keys that name where or how a run happened rather than what it did.
INCIDENTAL_CONFIG = {"target", "target_path", "target_kind", "span_bytes", "cpus", "seed", "interval_ns",
                     "target_address", "send_cpus", "recv_cpus", "peer", "clients", "on", "port", "engine",
                     "controller_cpus", "embedded_receiver"}
# How long a run lasted: compare sets per-second rates and percentiles side by side, which
# a longer run does not change; a claim's metric may be a count, so check() keeps them.
DURATION_CONFIG = frozenset({"duration_ns", "ramp_ns"})


@dataclass(frozen=True)
class Verdict:
    verdict: str            # pass, fail, not comparable
    why: str
    measured: float | None = None
    claimed: float | None = None
    ratio: float | None = None


def metric(doc: dict, path: str):
    """The value at a dotted path ("summary.read.rate"), or None. Keys may hold
    dots themselves ("p99.9"): at each step the longest key that fits wins."""
    node, parts = doc, path.split(".")
    while parts:
        if not isinstance(node, dict):
            return None
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in node:
                node, parts = node[key], parts[n:]
                break
        else:
            return None
    return node


def lower_is_better(path: str) -> bool:
    """Latencies (any *_ns on the path) and losses are better low; rates are better high."""
    parts = path.split(".")
    return any(p.endswith("_ns") for p in parts) or parts[-1] in ("loss_ratio", "lost", "errors")


def measurement(value) -> float | int | None:
    """value when it can be a measurement (a finite number, at least zero), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _ratio(a: float, b: float) -> float | None:
    """a / b, or None where it has no finite value."""
    if not b:
        return None
    r = a / b
    return r if math.isfinite(r) else None


def tier(overhead_pct: float) -> str:
    for bound, name in TIERS:
        if overhead_pct <= bound:
            return name
    return TIERS[-1][1]


def overhead_pct(base: float, other: float, higher_is_better: bool) -> float | None:
    """None when there is no overhead to speak of: a base of zero, or values that are no measurements."""
    if measurement(base) is None or measurement(other) is None:
        return None
    r = _ratio((base - other) if higher_is_better else (other - base), base)
    return None if r is None else 100.0 * r


def performance_loss_pct(base: float, other: float, higher_is_better: bool) -> float | None:
    """How much lower the other run's performance is, in percent, as the tiers are given
    ("10-50% lower", "2-10x slower" = 50-90% lower). For a rate that is its overhead; a
    latency is the inverse of a performance, so a latency twice as long is 50% lower,
    not 100%. None where overhead_pct is None, or the other latency is zero."""
    if higher_is_better:
        return overhead_pct(base, other, True)
    if measurement(base) is None or measurement(other) is None or not base:
        return None
    r = _ratio(other - base, other)
    return None if r is None else 100.0 * r


def in_scope(doc: dict, claim: Claim) -> tuple[bool, str]:
    """Whether the result's machine is one the claim speaks of, and why not."""
    types = claim.scope.get("instance_types")
    if types:
        product = metric(doc, "env.instance_type") or metric(doc, "env.hypervisor.dmi_product")
        if not product:
            why = (metric(doc, "env.hypervisor.missing.dmi_product") or "not recorded")
            why += "; set LOADGEN_INSTANCE_TYPE when the machine does not say"
            return False, (f"the claim applies to {', '.join(types)}; this result's machine has no instance "
                           f"type ({why})")
        if not any(fnmatch.fnmatch(product, pattern) for pattern in types):
            return False, f"the claim applies to {', '.join(types)}; this result ran on {product}"
    hv = claim.scope.get("hypervisor")
    if hv:
        name = metric(doc, "env.hypervisor.name")
        if name != hv:
            return False, f"the claim applies under {hv}; this result ran under {name or 'no known hypervisor'}"
    return True, ""


def check(doc: dict, claim: Claim, baseline: dict | None = None, kind: str | None = None) -> Verdict:
    """Judge one result against a claim (and, for overhead claims, a baseline);
    kind is the claim's profile's kind, when known."""
    searched = doc.get("kind") == "search"
    if claim.metric.startswith("search.") and not searched:
        return Verdict("not comparable", f"the claim is about a search's knee ({claim.metric}, from loadgen search); "
                                         f"this result is a single {doc.get('kind')} run")
    run_kind = metric(doc, "search.kind") if searched else doc.get("kind")
    if kind and run_kind != kind:
        what = f"a search over {run_kind} runs" if searched else f"a {run_kind} run"
        return Verdict("not comparable", f"the claim is about {kind} runs; this result is {what}")
    for which, d in (("run", doc), ("baseline", baseline)):
        if d is not None and (d.get("interrupted") or d.get("failed")):
            return Verdict("not comparable", f"the {which} did not complete: {d.get('stop_reason')}")
    ok, why = in_scope(doc, claim)
    if not ok:
        return Verdict("not comparable", why)
    measured = metric(doc, claim.metric)
    if measurement(measured) is None:
        if isinstance(measured, (int, float)) and not isinstance(measured, bool):
            return Verdict("not comparable", f"the result's {claim.metric} is {measured!r}, "
                                             "which no rate, count or latency can be")
        if searched and claim.metric.startswith("search.knee"):
            return Verdict("not comparable", f"the search found no knee: {metric(doc, 'search.why')}")
        return Verdict("not comparable", f"the result has no number at {claim.metric}")
    if not math.isfinite(claim.value):
        return Verdict("not comparable", f"the claim's value {claim.value!r} is not a number", measured=measured)
    if claim.op == "overhead<=":
        if baseline is None:
            return Verdict("not comparable", "an overhead claim needs a baseline run (--baseline BASE.json)",
                           measured=measured)
        problem = same_workload(baseline, doc)
        if problem:
            return Verdict("not comparable", problem, measured=measured)
        base = metric(baseline, claim.metric)
        if not measurement(base):
            return Verdict("not comparable", f"the baseline has no number at {claim.metric} to divide by "
                                             f"(it has {base!r})")
        over = overhead_pct(base, measured, higher_is_better=not lower_is_better(claim.metric))
        if over is None:
            return Verdict("not comparable", f"no finite overhead of {measured:g} against the baseline's {base:g}",
                           measured=measured)
        passed = over <= claim.value
        loss = performance_loss_pct(base, measured, higher_is_better=not lower_is_better(claim.metric))
        return Verdict("pass" if passed else "fail",
                       f"overhead {over:.2f}% against the baseline's {base:g}"
                       + (f" ({tier(loss)})" if loss is not None else ""),
                       measured=round(over, 4), claimed=claim.value,
                       ratio=_rounded(_ratio(measured, base)))
    passed = measured >= claim.value if claim.op == ">=" else measured <= claim.value
    ratio = _rounded(_ratio(measured, claim.value))
    return Verdict("pass" if passed else "fail",
                   f"measured {measured:g} {'meets' if passed else 'misses'} {claim.op} {claim.value:g}",
                   measured=measured, claimed=claim.value, ratio=ratio)


def _rounded(r: float | None) -> float | None:
    return None if r is None else round(r, 6)


def same_workload(base: dict, other: dict, ignore: frozenset = frozenset()) -> str | None:
    """None when two results ran the same workload, else what differs; config keys in
    `ignore` may differ too."""
    if base.get("kind") != other.get("kind"):
        return f"different kinds of run: {base.get('kind')} and {other.get('kind')}"
    a, b = base.get("config", {}), other.get("config", {})
    differ = sorted(k for k in set(a) | set(b)
                    if k not in INCIDENTAL_CONFIG and k not in ignore and a.get(k) != b.get(k))
    if differ:
        shown = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in differ[:4])
        return f"different workloads: {shown}"
    return None


# What compare sets side by side. A run leaves one thing free and fixes the rest:
# in closed loop (rate "max") the rate is what the system achieved, so rates are
# compared; in open loop the schedule set the rate, so a rate the schedule set
# (sent pps, IOPS) says nothing of the system and is left out, and latency is
# compared instead. Every rate in a summary is per second, so runs of different
# durations compare. Rows: (label, path, unit, higher is better).
CLOSED_LOOP_ROWS = {
    "disk": [("IOPS", "summary.rate", "ops/s", True), ("bandwidth", "summary.bytes_per_s", "bytes/s", True)],
    "net": [("received pps", "summary.received_pps", "pps", True), ("sent pps", "summary.sent_pps", "pps", True),
            ("loss", "summary.loss_ratio", "ratio", False)],
}
# What the receiver saw is measured even when the sender kept a schedule.
OPEN_LOOP_ROWS = {
    "disk": [],
    "net": [("received pps", "summary.received_pps", "pps", True), ("loss", "summary.loss_ratio", "ratio", False)],
}
LATENCY_KEYS = ("p50", "p99", "p99.9", "p99.99")
# The latency an open-loop tier is named from: the tail every request risks, with
# enough samples behind it in a run of seconds (p99.99 of 10k samples is one sample).
OPEN_LOOP_TIER_KEY = "p99"
RATE_OPTION = {"disk": "iops", "net": "pps"}
RATE_UNITS = ("ops/s", "bytes/s", "pps")


def closed_loop(doc: dict) -> bool:
    """True when the run went as fast as it could (rate "max"), so its rate is a measurement."""
    return metric(doc, f"config.{RATE_OPTION.get(doc.get('kind'), '')}") == "max"


def latency_path(doc: dict) -> str | None:
    """Where the run's latency from the scheduled time is: round trip, disk, or one way."""
    for path in ("summary.latency_ns", "summary.oneway.latency_ns"):
        if isinstance(metric(doc, path), dict):
            return path
    return None


def compare(base: dict, other: dict) -> dict:
    """Side by side what the workload leaves free, with overheads, and the tier named
    from the first row that measured the system in both runs.

    Raises ValueError when the runs ran different workloads (durations may differ)."""
    problem = same_workload(base, other, ignore=DURATION_CONFIG)
    if problem:
        raise ValueError(problem)
    kind, closed = base["kind"], closed_loop(base)
    rows = [_row(label, unit, metric(base, path), metric(other, path), higher)
            for label, path, unit, higher in (CLOSED_LOOP_ROWS if closed else OPEN_LOOP_ROWS).get(kind, [])]
    latency_rows = []
    lat = latency_path(base)
    if lat and latency_path(other) == lat:
        # Percentile names hold dots ("p99.9"): take the block, then the key.
        a, b = metric(base, lat), metric(other, lat)
        latency_rows = [_row(f"latency {key}", "ns", a.get(key), b.get(key), False) for key in LATENCY_KEYS]
    rows += latency_rows
    if closed:   # the first achieved rate both runs measured (an external target measures no arrivals)
        tier_row = next((r for r in rows if r["unit"] in RATE_UNITS and r["overhead_pct"] is not None), None)
    else:
        tier_row = next((r for r in latency_rows if r["metric"] == f"latency {OPEN_LOOP_TIER_KEY}"), None)
    over = tier_row["overhead_pct"] if tier_row else None
    loss = None if tier_row is None else performance_loss_pct(tier_row["base"], tier_row["other"],
                                                              tier_row["unit"] != "ns")
    return {"kind": kind, "notes": _notes(base, other), "loop": "closed" if closed else "open", "rows": rows,
            "overhead_pct": over, "performance_loss_pct": None if loss is None else round(loss, 4),
            "tier": tier(loss) if loss is not None else None,
            "tier_metric": tier_row["metric"] if loss is not None else None,
            "rate_fixed": None if closed else metric(base, f"config.{RATE_OPTION.get(kind, '')}"),
            "base_env": _env_line(base), "other_env": _env_line(other),
            "tiers_differ": tier_differences(base, other)}


def tier_differences(base: dict, other: dict) -> list[dict]:
    """The components whose virtualization tier (env.virtualization) differs between two runs,
    each with both tiers and the reason each run gave first; none when either run lacks tiers."""
    a, b = metric(base, "env.virtualization"), metric(other, "env.virtualization")
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    out = []
    for name in sorted(set(a) & set(b)):
        ta, tb = (part if isinstance(part, dict) else {} for part in (a[name], b[name]))
        if ta.get("tier") != tb.get("tier"):
            out.append({"component": name, "base": ta.get("tier"), "other": tb.get("tier"),
                        "base_reason": (ta.get("reasons") or [None])[0],
                        "other_reason": (tb.get("reasons") or [None])[0]})
    return out


def _notes(base: dict, other: dict) -> list[str]:
    """What a reader of the comparison should know that the rows do not say."""
    notes = []
    durations = [metric(d, "config.duration_ns") for d in (base, other)]
    if durations[0] != durations[1]:
        notes.append("the runs lasted differently long; every rate compared is per second")
    for which, d in (("base", base), ("other", other)):
        if d.get("interrupted") or d.get("failed"):
            notes.append(f"the {which} run did not complete: {d.get('stop_reason')}")
    return notes


def _row(label: str, unit: str, base, other, higher_is_better: bool) -> dict:
    over = overhead_pct(base, other, higher_is_better)
    return {"metric": label, "unit": unit, "base": base, "other": other,
            "overhead_pct": round(over, 4) if over is not None else None}


def _env_line(doc: dict) -> str:
    env = doc.get("env", {})
    hv = env.get("hypervisor", {})
    where = hv.get("dmi_product") or hv.get("name") or "bare metal or unknown"
    return f"{env.get('hostname', '?')} ({where}, kernel {env.get('kernel', '?')})"


# ---- for people: what `loadgen check` and `loadgen compare` print ----------------------------------

def format_measure(value, unit: str) -> str:
    """A compared value in the unit people read it in; '-' when a run has none."""
    if measurement(value) is None:
        return "-" if value is None else str(value)
    if unit == "ns":
        return format_ns(value)
    if unit == "bytes/s":
        return format_bytes_per_s(value)
    if unit == "ratio":
        return f"{value:.3%}"
    return format_si(value)


def format_verdict(claim: Claim, name: str | None, v: Verdict) -> str:
    """The claim, its source, what was measured and the verdict, as `loadgen check` prints them."""
    # A duration also in the unit it fills; an overhead's measure is a percentage, not the metric.
    in_ns = any(part.endswith("_ns") for part in claim.metric.split("."))
    human = (lambda value: f" ({format_ns(value)})") if in_ns else (lambda value: "")
    lines = [f"claim ({name}): {claim.metric} {claim.op} {claim.value:,.10g}"
             + ("%" if claim.op == "overhead<=" else human(claim.value)),
             f"  source: {claim.source}"]
    if v.measured is not None:
        ratio = f", ratio {v.ratio:.4f}" if v.ratio is not None else ""
        shown = f"{v.measured:,.10g}%" if claim.op == "overhead<=" and v.claimed is not None else \
            f"{v.measured:,.10g}{human(v.measured)}"
        lines.append(f"  measured: {shown}{ratio}")
    lines.append(f"  verdict: {v.verdict.upper()} ({v.why})")
    return "\n".join(lines)


def format_comparison(c: dict, base: str, other: str) -> str:
    """compare()'s answer as the table `loadgen compare` prints; base and other name the two results."""
    lines = [f"base:  {base}: {c['base_env']}", f"other: {other}: {c['other_env']}"]
    lines.extend(f"{d['component']}: {d['base']} vs {d['other']} ({d['base_reason']}; {d['other_reason']})"
                 for d in c["tiers_differ"])
    if c["loop"] == "closed":
        lines.append("closed loop (rate max): the achieved rate measures the system")
    else:
        unit = "IOPS" if c["kind"] == "disk" else "pps"
        lines.append(f"open loop ({format_measure(c['rate_fixed'], 'ops/s')} {unit} set by the schedule): "
                     "latency measures the system, the schedule's own rate is left out")
    lines.extend(f"note: {note}" for note in c["notes"])
    lines.append(f"{'metric':<16}{'base':>14}{'other':>14}{'overhead':>11}")
    for row in c["rows"]:
        over = "-" if row["overhead_pct"] is None else f"{row['overhead_pct']:+.2f}%"
        lines.append(f"{row['metric']:<16}{format_measure(row['base'], row['unit']):>14}"
                     f"{format_measure(row['other'], row['unit']):>14}{over:>11}")
    if c["tier"]:
        loss = ("" if c["performance_loss_pct"] == c["overhead_pct"]
                else f", performance {c['performance_loss_pct']:.2f}% lower")
        lines.append(f"tier: {c['tier']} (from {c['tier_metric']}: overhead {c['overhead_pct']:+.2f}%{loss})")
    else:
        measured = "the achieved rate" if c["loop"] == "closed" else f"latency {OPEN_LOOP_TIER_KEY}"
        lines.append(f"tier: not named ({measured} is missing or zero in one of the runs)")
    return "\n".join(lines)
