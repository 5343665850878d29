"""The disk workers' io_uring ring: the setup choices a job makes before its run.

- Polled I/O (--poll, IORING_SETUP_IOPOLL) is asked of the block device under the
  target: the kernel polls only a queue map with poll queues, which the device
  says in /sys/block/X/queue/io_poll ("1"). zram, loop devices, virtio disks and
  NVMe without nvme.poll_queues say 0; a file on no block device (tmpfs,
  overlay) has none to ask. Either way the job stops before it starts, with one
  line saying why (SetupError: exit 1). A device that says 1 and still refuses
  answers each I/O with EOPNOTSUPP, which the run counts and its policy reports.
- The SQ thread (--sqpoll, IORING_SETUP_SQPOLL) runs on the CPU asked for, or with
  "any" on the first CPU this process may use that carries no worker, since the
  thread spins there; when every CPU has a worker it is not pinned. A CPU this
  process may not use is bad input (UsageError: exit 2).

Reading the sysfs tree is the only I/O here; the root is a parameter, so tests
give a fake tree.
"""
import errno
import os
from pathlib import Path

from loadgen.errors import SetupError, UsageError
from loadgen.facts.sysinfo import block_device_of

# The SQ thread sleeps after this long without work (the kernel's own default is one
# second too); a paced run's thread then waits for a wake-up in io_uring_enter.
SQ_IDLE_MS = 1000
SQ_CPU_ANY = -1     # native/loadgen.h LG_SQ_CPU_ANY


def poll_refusal(target_path: str, sys_root: Path = Path("/sys")) -> str | None:
    """Why polled I/O cannot run on target_path, or None when its device has poll queues."""
    name = block_device_of(target_path)
    if name is None:
        return f"--poll needs a block device with poll queues; {target_path} is on none"
    try:
        io_poll = (sys_root / "block" / name / "queue" / "io_poll").read_text().strip()
    except OSError:
        return f"--poll needs a block device with poll queues; {name} has no queue/io_poll"
    if io_poll != "1":
        return (f"--poll needs a block device with poll queues; {name} has none (queue/io_poll is {io_poll}; "
                "NVMe gets them with nvme.poll_queues=N)")
    return None


def check(spec, engine: str, target_path: str) -> None:
    """Refuse what this host cannot do for the spec's ring, in one line (SetupError)."""
    if engine == "psync" and (spec.poll or spec.sqpoll_cpu is not None):
        raise SetupError(f"--{'poll' if spec.poll else 'sqpoll'} needs io_uring, and this run fell back to psync")
    if engine == "nvme" and spec.poll:
        # the kernel polls passthrough commands too (Linux >= 6.1), but no NVMe here has tested it
        raise SetupError("--poll is not offered with --engine nvme yet: it was never run against an NVMe device")
    if spec.poll:
        why = poll_refusal(target_path)
        if why:
            raise SetupError(why)


def poll_answer(policy):
    """policy, but a polled run whose every I/O the kernel answered EOPNOTSUPP is told apart:
    the device said it polls (queue/io_poll) and the kernel still refused."""
    def judge(cumulative) -> str | None:
        why = policy(cumulative)
        if why and set(cumulative.errors_by_errno()) == {errno.EOPNOTSUPP}:
            return "--poll: the kernel refused polled I/O on this target (EOPNOTSUPP on every I/O)"
        return why

    return judge


def sq_cpu(requested: int | None, worker_cpus: list[int], usable: set[int] | None = None) -> int | None:
    """The CPU the SQ threads are pinned to: requested, or for "any" (-1) a usable CPU with no
    worker, else SQ_CPU_ANY (not pinned); None when there is no SQ thread."""
    if requested is None:
        return None
    usable = set(os.sched_getaffinity(0)) if usable is None else usable
    if requested >= 0:
        if requested not in usable:
            raise UsageError(f"invalid sqpoll: CPU {requested} is not one this process may use "
                             f"({','.join(map(str, sorted(usable)))})")
        return requested
    free = sorted(usable - set(worker_cpus))
    return free[0] if free else SQ_CPU_ANY


def sqpoll_facts(requested: int | None, cpu: int | None) -> dict | None:
    """What the document's config says of the SQ threads: asked for, given, and their idle time."""
    if requested is None:
        return None
    return {"requested": "any" if requested < 0 else requested, "cpu": None if cpu is None or cpu < 0 else cpu,
            "idle_ms": SQ_IDLE_MS}
