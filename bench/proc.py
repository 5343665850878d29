"""CPU time of whole process trees, read from /proc/PID/stat.

Vocabulary:
- a *tree* is a set of root pids and every live descendant of them, found through the
  ppid field of /proc/*/stat (a tool's client and server, loadgen and its agent/job
  children, the `timeout` wrappers bench.sh starts them under);
- a tree's *CPU time* is the sum over its processes of utime + stime + cutime + cstime.
  A process's utime/stime already include every thread of it, live or exited (the kernel
  sums the thread group), so /proc/PID/task/*/stat would add nothing; cutime/cstime hold
  the children it has reaped, so a child that exits between two samples is still counted;
- *cores* is the difference of two samples of one tree over the wall time between them.

Rules: /proc/stat is never used (its per-CPU tick counts miss threads that sleep often);
samples are taken after a warm-up the caller chooses, so start-up is not measured. Parsing
is pure (takes the text of a stat file) so it is table-tested without a live /proc.
"""
import argparse
import json
import os
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class NoSample(Exception):
    """The window could not be sampled as planned."""


class TreeGone(NoSample):
    """Every root of the tree exited before a sample was taken."""


def parse_stat(text: str) -> tuple[int, int, int]:
    """(pid, ppid, cpu_ticks) from the text of /proc/PID/stat; cpu = utime+stime+cutime+cstime.

    comm (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
    """
    pid = int(text[:text.index(" ")])
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    return pid, ppid, utime + stime + cutime + cstime


def read_stats(proc: str = "/proc") -> dict[int, tuple[int, int]]:
    """{pid: (ppid, cpu_ticks)} of every process readable now."""
    stats = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", encoding="utf-8", errors="replace") as f:
                pid, ppid, ticks = parse_stat(f.read())
        except (OSError, ValueError, IndexError):
            continue   # exited while we listed, or not ours to read
        stats[pid] = (ppid, ticks)
    return stats


def tree(roots: list[int], stats: dict[int, tuple[int, int]]) -> set[int]:
    """The live roots and all their descendants in stats."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def tree_ticks(roots: list[int], stats: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(cpu_ticks, processes) of the tree; raises TreeGone when no root is alive."""
    pids = tree(roots, stats)
    if not pids:
        raise TreeGone(f"none of the processes {roots} is running")
    return sum(stats[p][1] for p in pids), len(pids)


def sample_cores(roots: list[int], after_s: float, window_s: float, proc: str = "/proc",
                 since_epoch_s: float | None = None) -> dict:
    """Sample the tree at after_s and at after_s + window_s; the CPU used between.

    Both times count from since_epoch_s (wall clock, when the caller started the tool) or
    else from now: on a busy machine this sampler's own start-up can take seconds, and a
    late first sample must shorten the window, not push its end past the tool's run. The
    wall clock only places the samples; the window is timed on the monotonic clock.
    """
    start_s = time.time() if since_epoch_s is None else since_epoch_s
    time.sleep(max(0.0, start_s + after_s - time.time()))
    t0, (ticks0, n0) = time.monotonic(), tree_ticks(roots, read_stats(proc))
    left_s = start_s + after_s + window_s - time.time()
    if left_s < window_s / 2:
        raise NoSample(f"the first sample came {window_s - left_s:.2f}s late, leaving {left_s:.2f}s"
                       f" of a {window_s:g}s window")
    time.sleep(left_s)
    t1, (ticks1, n1) = time.monotonic(), tree_ticks(roots, read_stats(proc))
    cpu_s = (ticks1 - ticks0) / CLK_TCK
    return {"cores": round(cpu_s / (t1 - t0), 4), "cpu_s": round(cpu_s, 3), "window_s": round(t1 - t0, 3),
            "after_s": after_s, "processes": [n0, n1], "roots": roots}


def read_roots(path: str, until_epoch_s: float, poll_s: float = 0.01) -> list[int]:
    """The pids in path (whitespace-separated), waiting for the file until until_epoch_s.

    bench.sh starts this sampler before the tool, so that the sampler's start-up is not
    on the clock, and writes the tool's pids there (atomically, by rename) once it runs.
    """
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            if time.time() >= until_epoch_s:
                raise NoSample(f"no pids in {path} by the first sample") from None
            time.sleep(poll_s)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.proc",
                                 description="CPU cores used by process trees over a window (JSON out).")
    ap.add_argument("--since", type=float, help="epoch seconds the tool started at (default: now)")
    ap.add_argument("--after", type=float, required=True, help="seconds after --since of the first sample")
    ap.add_argument("--window", type=float, required=True, help="seconds between the two samples")
    ap.add_argument("--out", required=True, help="where to write the JSON result")
    ap.add_argument("--roots-file", help="read the root pids from this file, once it exists")
    ap.add_argument("roots", type=int, nargs="*", help="root pids of the tree")
    a = ap.parse_args(argv)
    if bool(a.roots) == bool(a.roots_file):
        ap.error("give root pids or --roots-file, not both")
    since_s = time.time() if a.since is None else a.since
    try:
        roots = a.roots or read_roots(a.roots_file, since_s + a.after)
        doc = sample_cores(roots, a.after, a.window, since_epoch_s=since_s)
    except TreeGone as e:
        doc = {"error": f"process tree ended before the window closed: {e}"}
    except NoSample as e:
        doc = {"error": str(e)}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.write("\n")
    return 0 if "error" not in doc else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
