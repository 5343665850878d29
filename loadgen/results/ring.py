"""The "ring" block of a disk summary: what the io_uring workers' rings were and what they cost.

From each worker's counters (native/disk.c, set at setup and at the end of the
measured window):
- setup_flags: the IORING_SETUP_* flags the kernel accepted, by name (optional
  ones it refused were dropped: see native/uring.c);
- registered: how many workers registered their ring fd, the target and the buffers;
- enters: io_uring_enter calls in the measured window, and enters_per_io, the
  syscalls an I/O cost (batching's measure: about 1 / batch in closed loop);
- batch_wait: the closed-loop waits in the window that had a batch wait
  (--batch-wait: the kernel ends the wait that long after it began, with
  whatever has completed), and its mean; null when none had one (paced, off, a
  kernel without IORING_FEAT_MIN_TIMEOUT, or auto with no io-wq helpers or with
  them sharing the workers' CPUs); min_wait_kernel says whether the kernel offers it;
- sq_threads (IORING_SETUP_SQPOLL): each worker's SQ thread, the CPU it last ran
  on and its CPU time from ring setup to the end of the window (warm-up
  included, as summary.cpu is); sq_cpu_s is their total. Those threads belong to
  this process, so summary.cpu counts them too.
Pure: rows of counters in, a dict out.
"""

# <linux/io_uring.h> IORING_SETUP_*; names without the prefix.
SETUP_FLAGS = {
    1 << 0: "IOPOLL", 1 << 1: "SQPOLL", 1 << 2: "SQ_AFF", 1 << 3: "CQSIZE", 1 << 4: "CLAMP",
    1 << 5: "ATTACH_WQ", 1 << 6: "R_DISABLED", 1 << 7: "SUBMIT_ALL", 1 << 8: "COOP_TASKRUN",
    1 << 9: "TASKRUN_FLAG", 1 << 10: "SQE128", 1 << 11: "CQE32", 1 << 12: "SINGLE_ISSUER",
    1 << 13: "DEFER_TASKRUN",
}
# native/loadgen.h LG_REGISTERED_*
REGISTERED = {"ring": 1, "file": 2, "buffers": 4}
COUNTERS = ("enters", "ring_flags", "ring_registered", "sq_tid", "sq_last_cpu", "sq_cpu_ns", "ring_features",
            "batch_waits", "batch_wait_sum_ns")
FEAT_MIN_TIMEOUT = 1 << 15    # <linux/io_uring.h> IORING_FEAT_MIN_TIMEOUT (Linux 6.12)


def flag_names(flags: int) -> list[str]:
    names = [name for bit, name in SETUP_FLAGS.items() if flags & bit]
    rest = flags & ~sum(SETUP_FLAGS)
    return names + ([f"0x{rest:x}"] if rest else [])


def ring_summary(rows: list[dict[str, int]], ops: int) -> dict | None:
    """The block from each worker's counters (COUNTERS), or None when no worker had a ring (psync)."""
    rings = [r for r in rows if r["ring_flags"]]
    if not rings:
        return None
    flags = 0
    for r in rings:
        flags |= r["ring_flags"]
    enters = sum(r["enters"] for r in rings)
    out = {"setup_flags": flag_names(flags),
           "registered": {name: sum(1 for r in rings if r["ring_registered"] & bit) for name, bit in REGISTERED.items()},
           "enters": enters, "enters_per_io": round(enters / ops, 4) if ops else None,
           "min_wait_kernel": all(r["ring_features"] & FEAT_MIN_TIMEOUT for r in rings)}
    waits = sum(r["batch_waits"] for r in rings)
    out["batch_wait"] = {"waits": waits,
                         "mean_ns": round(sum(r["batch_wait_sum_ns"] for r in rings) / waits)} if waits else None
    if flags & 2:   # SQPOLL
        threads = [{"worker": i, "tid": r["sq_tid"] or None, "last_cpu": r["sq_last_cpu"] if r["sq_tid"] else None,
                    "cpu_s": round(r["sq_cpu_ns"] / 1e9, 3)} for i, r in enumerate(rows) if r["ring_flags"]]
        out["sq_threads"] = threads
        out["sq_cpu_s"] = round(sum(t["cpu_s"] for t in threads), 3)
    return out
