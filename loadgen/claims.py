"""Verdicts: a result against a claim, and one result against a baseline.

Pure functions of result documents (dicts) and claims; no I/O. Vocabulary:
- verdict: "pass", "fail" or "not comparable" (the result cannot speak to
  the claim: another instance type, a missing metric, no baseline), with why.
- overhead: how much worse a result is than its baseline, in percent: for a
  rate (base - other) / base, for a latency (other - base) / base.
- tier: the band of ../shared/CLAIMS.md's virtualization table that an
  overhead falls into.

Documents reach here checked against the result schema (loadgen.documents), so
the numbers they hold are finite and the summary's known ones are not negative.
These functions still refuse to make a verdict out of anything else: a value that
is not a finite number of at least zero, or a ratio against zero, is "not
comparable", never nan or inf.
"""
import fnmatch
import math
from dataclasses import dataclass

from loadgen.profiles import Claim

# (upper bound of overhead in percent, tier): CLAIMS.md, "Virtualization tiers".
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
                     "target_address", "send_cpus", "recv_cpus", "peer", "clients", "on", "port", "engine"}


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
    if kind and doc.get("kind") != kind:
        return Verdict("not comparable", f"the claim is about a {kind} run; this result is a {doc.get('kind')} run")
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
        return Verdict("pass" if passed else "fail",
                       f"overhead {over:.2f}% against the baseline's {base:g} ({tier(over)})",
                       measured=round(over, 4), claimed=claim.value,
                       ratio=_rounded(_ratio(measured, base)))
    passed = measured >= claim.value if claim.op == ">=" else measured <= claim.value
    ratio = _rounded(_ratio(measured, claim.value))
    return Verdict("pass" if passed else "fail",
                   f"measured {measured:g} {'meets' if passed else 'misses'} {claim.op} {claim.value:g}",
                   measured=measured, claimed=claim.value, ratio=ratio)


def _rounded(r: float | None) -> float | None:
    return None if r is None else round(r, 6)


def same_workload(base: dict, other: dict) -> str | None:
    """None when two results ran the same workload, else what differs."""
    if base.get("kind") != other.get("kind"):
        return f"different kinds of run: {base.get('kind')} and {other.get('kind')}"
    a, b = base.get("config", {}), other.get("config", {})
    differ = sorted(k for k in set(a) | set(b)
                    if k not in INCIDENTAL_CONFIG and a.get(k) != b.get(k))
    if differ:
        shown = ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in differ[:4])
        return f"different workloads: {shown}"
    return None


# What compare sets side by side: (label, path, higher is better).
RATE_ROWS = {
    "disk": [("IOPS", "summary.rate", True), ("bytes/s", "summary.bytes_per_s", True)],
    "net": [("sent pps", "summary.sent_pps", True), ("received pps", "summary.received_pps", True),
            ("loss ratio", "summary.loss_ratio", False)],
}
LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def latency_path(doc: dict) -> str | None:
    for path in ("summary.latency_ns", "summary.oneway.latency_ns"):
        if isinstance(metric(doc, path), dict):
            return path
    return None


def compare(base: dict, other: dict) -> dict:
    """Rates and latency percentiles side by side, overheads, and the tier of the main rate."""
    problem = same_workload(base, other)
    if problem:
        raise ValueError(problem)
    rows = []
    for label, path, higher in RATE_ROWS.get(base["kind"], []):
        rows.append(_row(label, metric(base, path), metric(other, path), higher))
    lat = latency_path(base)
    if lat and latency_path(other) == lat:
        # Percentile names hold dots ("p99.9"): take the block, then the key.
        a, b = metric(base, lat), metric(other, lat)
        for key in LATENCY_KEYS:
            rows.append(_row(f"latency {key} (ns)", a.get(key), b.get(key), False))
    main = rows[0] if rows else None
    over = main["overhead_pct"] if main else None
    return {"kind": base["kind"], "rows": rows,
            "overhead_pct": over, "tier": tier(over) if over is not None else None,
            "base_env": _env_line(base), "other_env": _env_line(other)}


def _row(label: str, base, other, higher_is_better: bool) -> dict:
    over = overhead_pct(base, other, higher_is_better)
    return {"metric": label, "base": base, "other": other,
            "overhead_pct": round(over, 4) if over is not None else None}


def _env_line(doc: dict) -> str:
    env = doc.get("env", {})
    hv = env.get("hypervisor", {})
    where = hv.get("dmi_product") or hv.get("name") or "bare metal or unknown"
    return f"{env.get('hostname', '?')} ({where}, kernel {env.get('kernel', '?')})"
