"""Every thread of this process, where it ran and what it cost: the run's thread census.

Issue 9 asks that a run count every thread it makes against the CPUs. Taken at the
end of the measured window, while the workers and the kernel's io-wq helpers are
still alive, from /proc/self/task/TID/{stat,status}:
- role: "worker" (loadgen's native threads, named lg-ROLE-N by native/run.c),
  "io-wq" (iou-wrk-*, the kernel's helpers for I/O that would block), "sq-poll"
  (iou-sqp-TID, a ring's submission thread under --sqpoll: it spins on a CPU), "controller"
  (the main thread), or "other" (Python's helper threads: the metrics server, ...);
- last_cpu: field 39 of stat, the CPU it last ran on; allowed: its affinity;
- cpu_s: its utime + stime so far.
Parsing is pure (text in, dict out) so it is table-tested without a live /proc.
"""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def role_of(name: str, tid: int, pid: int) -> str:
    if tid == pid:
        return "controller"
    if name.startswith("lg-"):
        return "worker"
    if name.startswith("iou-sqp"):
        return "sq-poll"
    if name.startswith("iou-wrk"):
        return "io-wq"
    return "other"


def parse_stat(text: str) -> tuple[str, int, float]:
    """(name, last CPU, cpu seconds) from /proc/.../stat; the name may hold spaces and parentheses."""
    name = text[text.index("(") + 1:text.rindex(")")]
    rest = text[text.rindex(")") + 2:].split()
    # fields after the name start at field 3 (state): utime is 14, stime 15, processor 39
    return name, int(rest[36]), (int(rest[11]) + int(rest[12])) / CLK_TCK


def parse_allowed(status: str) -> str | None:
    for line in status.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return None


def census(proc: str = "/proc/self", pid: int | None = None, cpus: int | None = None) -> dict:
    """{"count": {role: n}, "cpus": usable CPUs, "threads": [{tid, name, role, last_cpu, allowed, cpu_s}]}.

    cpus: the process's usable CPUs when the calling thread's own affinity is narrower (the
    controller moved off its workers' CPUs), else the calling thread's."""
    pid = os.getpid() if pid is None else pid
    threads = []
    try:
        tids = sorted(int(t) for t in os.listdir(f"{proc}/task"))
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"{proc}/task/{tid}/stat") as f:
                name, last_cpu, cpu_s = parse_stat(f.read())
            with open(f"{proc}/task/{tid}/status") as f:
                allowed = parse_allowed(f.read())
        except (OSError, ValueError, IndexError):
            continue            # exited between the listing and the read
        threads.append({"tid": tid, "name": name, "role": role_of(name, tid, pid),
                        "last_cpu": last_cpu, "allowed": allowed, "cpu_s": round(cpu_s, 2)})
    count: dict[str, int] = {}
    for t in threads:
        count[t["role"]] = count.get(t["role"], 0) + 1
    return {"count": count, "cpus": len(os.sched_getaffinity(0)) if cpus is None else cpus, "threads": threads}
