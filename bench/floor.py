"""This machine's wake-up floor: how late a plain timed sleep wakes here.

A paced tool cannot start an operation before the kernel wakes it, so no
schedule lag can be lower than the machine's own wake-up lateness over the same
time. The pacing section prints this beside loadgen's lag: a lag near the floor
is the platform's (a hypervisor descheduling the vCPU, the guest's own kernel
threads); a lag well above it is loadgen's.

It times back-to-back relative clock_nanosleep calls of 100 us with 1 ns of
timer slack, in C (loadgen's probe), for a given wall time, and prints JSON:
the count, percentiles and max of the overshoot in ns.

    python3 -m bench.floor --seconds 5 > floor.json
    python3 -m bench.floor --show floor.json       # one line for the section's output
"""
import argparse
import json
import sys

import numpy as np

REQUEST_NS = 100_000


def measure(seconds: float) -> dict:
    from loadgen.run import native

    chunk = 2000                        # about 0.2-0.3 s per call
    parts, spent_ns = [], 0
    while spent_ns < seconds * 1e9:
        o = native.probe_sleep(REQUEST_NS, chunk)
        parts.append(o)
        spent_ns += int(o.sum()) + REQUEST_NS * len(o)
    return summary(np.concatenate(parts))


def summary(overshoot_ns: np.ndarray) -> dict:
    o = np.sort(overshoot_ns)
    pick = lambda q: int(o[min(len(o) - 1, int(q * len(o)))])      # noqa: E731
    return {"request_ns": REQUEST_NS, "count": int(len(o)), "p50_ns": pick(0.5), "p99_ns": pick(0.99),
            "p99.9_ns": pick(0.999), "max_ns": int(o[-1]),
            "over_1ms": int((o > 1_000_000).sum())}


def line(floor: dict) -> str:
    if "error" in floor:
        return f"wake-up floor: not measured ({floor['error']})"
    us = lambda k: f"{floor[k] / 1e3:,.1f}"                           # noqa: E731
    return (f"wake-up floor: {floor['count']:,} sleeps of {floor['request_ns'] // 1000} us here woke late by "
            f"p50 {us('p50_ns')}, p99 {us('p99_ns')}, p99.9 {us('p99.9_ns')}, max {us('max_ns')} us "
            f"({floor['over_1ms']:,} over 1 ms): no paced tool's schedule lag can be lower")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--show", metavar="JSON", help="print the line for a stored measurement")
    args = ap.parse_args(argv)
    if args.show:
        try:
            with open(args.show) as f:
                print(line(json.load(f)))
        except (OSError, ValueError, KeyError) as e:
            print(f"wake-up floor: not readable ({e})")
        return 0
    try:
        json.dump(measure(args.seconds), sys.stdout)
    except Exception as e:          # the bench goes on without the floor
        json.dump({"error": f"{type(e).__name__}: {e}"}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
