"""Stalls and shortfalls: what a run failed to do, judged from what it measured.

Vocabulary:
  progress   (t_ns, operations completed so far) sampled by the controller at
             ramp_end_ns, at every snapshot and at stop_ns. Failed operations
             count: the device answered.
  stall      a span between two progress samples in which the schedule
             required operations and none completed. A closed loop always
             requires some; an open loop at rate R requires some when at least
             STALL_MIN_DUE operations fell due in the span (one alone may
             rightly complete just after it). Adjacent stalled spans are one
             stall, and one shorter than STALL_MIN_NS is none: in a few ms
             (the short last interval of a run, say) ops in flight may rightly
             all still be in the device. The resolution is the controller's
             snapshot interval: a stall shorter than that, or one with
             completions on both sides of it inside the same interval, is not
             seen; and progress is summed over workers, so one stuck worker
             beside busy ones is not seen either.
  held       the controller late by HELD_NS or more, waking or at work: it
             was itself off the CPU. When the whole process is held (SIGSTOP, a
             paused VM) its snapshots straddle the hold, so this is how it shows.
  shortfall  an achieved rate below SHORTFALL_RATIO of the requested one, or
             datagrams the schedule required and the sender never sent. Its likely
             limit is a guess from the result's own numbers: loadgen's CPU time
             against its cores, and the I/Os in flight (Little's law: rate x mean
             service time) against qd x workers and the device's queue.

Everything here is arithmetic on numbers a result already holds: no clock,
no native code.
"""
from dataclasses import dataclass

from loadgen.units import format_ns, format_si

STALL_MIN_DUE = 2
STALL_MIN_NS = 100_000_000
SHORTFALL_RATIO = 0.99
# A thread at this share of its core is taken to be CPU bound.
BUSY_RATIO = 0.9
# At this share of qd x workers in flight, the queue is taken to be full.
FULL_QUEUE_RATIO = 0.9
# Spans listed in a result; count and totals always cover all of them.
MAX_SPANS = 100


def stall_spans(progress: list[tuple[int, int]], rate_per_s: int | None) -> list[tuple[int, int]]:
    """(start_ns, end_ns) of every stall in a run's progress samples; rate None: closed loop."""
    spans: list[tuple[int, int]] = []
    for (t0, done0), (t1, done1) in zip(progress, progress[1:]):
        if t1 <= t0 or done1 != done0:
            continue
        if rate_per_s is not None and rate_per_s * (t1 - t0) < STALL_MIN_DUE * 1_000_000_000:
            continue
        if spans and spans[-1][1] == t0:
            spans[-1] = (spans[-1][0], t1)
        else:
            spans.append((t0, t1))
    return [(a, b) for a, b in spans if b - a >= STALL_MIN_NS]


def _spans_section(spans: list[tuple[int, int]], origin_ns: int) -> dict:
    lengths = [end - start for start, end in spans]
    return {
        "count": len(spans),
        "total_ns": sum(lengths),
        "longest_ns": max(lengths, default=0),
        "spans": [{"start_s": round((start - origin_ns) / 1e9, 3), "length_s": round((end - start) / 1e9, 3)}
                  for start, end in spans[:MAX_SPANS]],
    }


def clip(spans: list[tuple[int, int]], start_ns: int, end_ns: int) -> list[tuple[int, int]]:
    """The parts of spans inside [start_ns, end_ns)."""
    out = [(max(a, start_ns), min(b, end_ns)) for a, b in spans]
    return [(a, b) for a, b in out if b > a]


def stalls_section(progress: list[tuple[int, int]], held: list[tuple[int, int]], rate_per_s: int | None,
                   origin_ns: int, stop_ns: int, resolution_ns: int) -> dict:
    """summary.stalls: the workers' stalls, and the controller's own holds inside the measured
    window [origin_ns, stop_ns) (times from origin_ns)."""
    section = _spans_section(stall_spans(progress, rate_per_s), origin_ns)
    section["resolution_ns"] = resolution_ns
    section["controller_held"] = _spans_section(clip(held, origin_ns, stop_ns), origin_ns)
    return section


def stall_warnings(stalls: dict) -> list[str]:
    out = []
    if stalls["count"]:
        first = stalls["spans"][0]
        out.append(f"stall: {stalls['count']} time(s) no operation completed while the schedule required "
                   f"some, {format_ns(stalls['total_ns'])} in all (longest {format_ns(stalls['longest_ns'])}, "
                   f"first at {first['start_s']:.3f} s; seen at {format_ns(stalls['resolution_ns'])} resolution)")
    held = stalls["controller_held"]
    if held["count"]:
        first = held["spans"][0]
        out.append(f"stall: loadgen itself was held off the CPU {held['count']} time(s), "
                   f"{format_ns(held['total_ns'])} in all (longest {format_ns(held['longest_ns'])}, "
                   f"first at {first['start_s']:.3f} s): operations due then start late and count it as latency")
    return out


@dataclass
class Facts:
    """What a result says about the limits a rate may have hit."""
    cpu_s: float | None            # CPU time of loadgen's threads, None when they ran elsewhere
    wall_s: float                  # over this much time
    cores: int                     # cores those threads could use: min(threads, usable CPUs)
    qd_total: int | None = None    # disk: I/Os allowed in flight, qd x workers
    service_mean_ns: float | None = None
    device_queue: int | None = None  # disk: requests the device's own queue holds (nr_requests)


def likely_limit(achieved_per_s: float, facts: Facts) -> tuple[str, str]:
    """(limit, why): cpu, device (its own queue full), queue_depth (ours full), or
    schedule (behind with neither full)."""
    if facts.cpu_s is not None and facts.wall_s > 0 and facts.cores > 0:
        busy = facts.cpu_s / facts.wall_s / facts.cores
        if busy >= BUSY_RATIO:
            return "cpu", f"loadgen's threads used {busy:.0%} of the {facts.cores} core(s) they may run on"
    if facts.qd_total and facts.service_mean_ns:
        # Little's law: operations in flight = rate x time each spends in the device.
        in_flight = achieved_per_s * facts.service_mean_ns / 1e9
        if in_flight >= FULL_QUEUE_RATIO * facts.qd_total and facts.device_queue and \
                in_flight >= FULL_QUEUE_RATIO * facts.device_queue:
            return "device", (f"{in_flight:.1f} I/Os in flight on average fill the device's own queue "
                              f"(nr_requests {facts.device_queue}) at a mean service time of "
                              f"{format_ns(facts.service_mean_ns)}: a deeper queue would only wait there")
        if in_flight >= FULL_QUEUE_RATIO * facts.qd_total:
            return "queue_depth", (f"{in_flight:.1f} I/Os in flight on average of the {facts.qd_total} allowed "
                                   f"(qd x workers) at a mean service time of {format_ns(facts.service_mean_ns)}: "
                                   "a deeper queue helps unless the device is saturated")
    return "schedule", ("the workers fell behind the schedule with neither their cores nor the queue full: "
                        "other load on the machine, or scheduling delays")


def shortfall_section(requested_per_s: int | None, achieved_per_s: float, unsent: int, late_ops: int,
                      facts: Facts) -> dict | None:
    """summary.shortfall, or None when the run did what was asked (or asked for max)."""
    if not requested_per_s:
        return None
    ratio = achieved_per_s / requested_per_s
    if ratio >= SHORTFALL_RATIO and not unsent:
        return None
    limit, why = likely_limit(achieved_per_s, facts)
    return {"requested": requested_per_s, "achieved": achieved_per_s, "ratio": round(ratio, 6),
            "unsent": unsent, "late_ops": late_ops, "likely_limit": limit, "why": why}


def shortfall_warning(shortfall: dict, unit: str) -> str:
    unsent = f", {shortfall['unsent']} never sent" if shortfall["unsent"] else ""
    return (f"shortfall: requested {format_si(shortfall['requested'])} {unit}, achieved "
            f"{format_si(shortfall['achieved'])} ({shortfall['ratio']:.1%}){unsent}; "
            f"likely limit: {shortfall['likely_limit']} ({shortfall['why']})")
