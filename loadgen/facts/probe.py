"""`loadgen probe`: what this machine's virtualization costs, measured, and the tier of each component.

Vocabulary:
  figure     one operation's cost in ns (a syscall, a clock read, a sleep's
             overshoot, a cpuid, a context switch, a page fault), measured in C
             over many samples (native/probe.c) and summarised here.
  sample     one timing of `batch` operations back to back; its cost per
             operation is the sample's ns / batch.
  summary    median, p10, p90, min and max of the per-operation costs of the
             samples, and spread = (p90 - p10) / median: how far to trust the median.

Rules: the native side times, this module only divides and summarises, so a
figure is exactly what the samples say; summarise() is pure. The clocksource is
never switched (that needs root and changes the machine for everyone): the
current one is timed, the others are listed as not measured. A figure that
cannot be measured here (cpuid off x86, a second CPU on one) is absent and
`missing` says why.
"""
import errno
import os
import time

import numpy as np

from loadgen.facts import sysinfo, virtualization
from loadgen.run import native

# Samples per figure at repetitions=1; `--repetitions` multiplies them.
SAMPLES = 200
# Operations per sample: enough that one sample lasts ~10-100 us and its two clock reads
# (~20-50 ns in a guest) weigh under 1%.
SYSCALL_BATCH = 1000
CLOCK_BATCH = 1000
CPUID_BATCH = 100
PINGPONG_BATCH = 50
FAULT_PAGES = 256
SLEEPS_NS = (10_000, 100_000)

# (key, label, what one operation is) in the order the table shows them.
FIGURES = [
    ("syscall_ns", "syscall (getppid)", "one syscall(SYS_getppid)"),
    ("clock_ns", "clock read", "one clock_gettime(CLOCK_MONOTONIC) on the current clocksource"),
    ("sleep_10us_overshoot_ns", "sleep 10 us: overshoot", "a 10 us clock_nanosleep's lateness, 1 ns slack"),
    ("sleep_100us_overshoot_ns", "sleep 100 us: overshoot", "a 100 us clock_nanosleep's lateness, 1 ns slack"),
    ("cpuid_ns", "cpuid", "one cpuid instruction (leaf 0)"),
    ("context_switch_cross_cpu_ns", "context switch, 2 CPUs", "half a pipe round trip between threads on two CPUs"),
    ("context_switch_same_cpu_ns", "context switch, 1 CPU", "half a pipe round trip between threads on one CPU"),
    ("page_fault_ns", "page fault", "the first touch of a fresh anonymous 4 KiB page"),
]


def summarise(sample_ns, per_sample: int = 1) -> dict:
    """The summary of samples that each timed per_sample operations; costs in ns per operation."""
    costs = np.asarray(sample_ns, dtype=np.float64) / per_sample
    if costs.size == 0:
        raise ValueError("no samples")
    p10, median, p90 = np.percentile(costs, [10, 50, 90])
    return {"median": round(float(median), 1), "p10": round(float(p10), 1), "p90": round(float(p90), 1),
            "min": round(float(costs.min()), 1), "max": round(float(costs.max()), 1),
            "spread": round(float((p90 - p10) / median), 4) if median > 0 else None,
            "samples": int(costs.size), "per_sample": per_sample}


def _cpu_pair() -> tuple[int, int] | None:
    """Two CPUs this process may run on, or None when it has one."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) > 1 else None


def measure(repetitions: int = 1) -> tuple[dict, dict]:
    """(figures by key, why each absent figure is missing). Bounded: at repetitions=1 about
    half a second on an idle guest, most of it in the sleeps and the ping-pongs."""
    n = SAMPLES * repetitions
    figures, missing = {}, {}
    figures["syscall_ns"] = summarise(native.probe_syscall(n, SYSCALL_BATCH), SYSCALL_BATCH)
    figures["clock_ns"] = summarise(native.probe_clock(time.CLOCK_MONOTONIC, n, CLOCK_BATCH), CLOCK_BATCH)
    for sleep_ns in SLEEPS_NS:
        figures[f"sleep_{sleep_ns // 1000}us_overshoot_ns"] = summarise(native.probe_sleep(sleep_ns, n))
    cpuid = native.probe_cpuid(n, CPUID_BATCH)
    if cpuid is None:
        missing["cpuid_ns"] = "no cpuid instruction on this architecture"
    else:
        figures["cpuid_ns"] = summarise(cpuid, CPUID_BATCH)
    pair = _cpu_pair() or (None, None)
    one = min(os.sched_getaffinity(0))
    if pair[0] is None:
        missing["context_switch_cross_cpu_ns"] = "this process may run on one CPU only"
    for key, (cpu_a, cpu_b) in (("context_switch_cross_cpu_ns", pair), ("context_switch_same_cpu_ns", (one, one))):
        if cpu_a is None:
            continue
        try:
            rounds = native.probe_context_switch(cpu_a, cpu_b, n, PINGPONG_BATCH)
        except OSError as e:   # a cpuset may refuse a pin the affinity mask allowed (EINVAL)
            if e.errno != errno.EINVAL:
                raise
            missing[key] = f"threads could not be pinned to CPUs {cpu_a} and {cpu_b}"
            continue
        # A round trip is two switches: the "round trip / 2".
        figures[key] = summarise(rounds, 2 * PINGPONG_BATCH)
    figures["page_fault_ns"] = summarise(native.probe_page_fault(n, FAULT_PAGES), FAULT_PAGES)
    return figures, missing


def probe(repetitions: int = 1) -> dict:
    """The whole probe: figures, clocksources, and each component's tier with its reasons."""
    figures, missing = measure(repetitions)
    for key, _, what in FIGURES:
        if key in figures:
            figures[key]["what"] = what
    ev = virtualization.evidence()
    cs = sysinfo.clocksource()
    current = cs.get("current")
    clocksources = {
        "current": current, "available": cs.get("available", []),
        "measured": current,
        "note": "only the current clocksource is timed: switching it needs root and changes the machine "
                "for every process, so loadgen does not",
    }
    return {"schema": "loadgen-probe/1", "repetitions": repetitions,
            "figures": figures, "missing": missing, "clocksources": clocksources,
            "components": virtualization.classify(ev, figures),
            "env": sysinfo.basic_env()}
