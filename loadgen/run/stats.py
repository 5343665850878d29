"""Snapshots of the workers' stats records, and the differences between them.

A snapshot is a copy of every worker's record (rows: workers, columns: uint64
words laid out by native.Layout). Counters and HDR counts only grow, so an
interval is the difference of two snapshots and the total is the last one;
intervals therefore add up to the total exactly.

A copy is consistent when every worker's row was taken between two of its
batches. The native side says so for its own copies but may, when a worker
holds its batch open too long, hand back a torn one; a remote agent's copies
carry no such word at all. So consistency is checked here, from the rows
themselves: a worker counts each operation and records its latency and
service time in one batch, so in a consistent row each histogram's count
equals the counters it goes with (_COUNTED_BY). Only a consistent snapshot
may end an interval.
"""
import base64
import zlib
from dataclasses import dataclass

import numpy as np

from loadgen.run.native import STATE_FAILED, Layout

# Counters that hold a maximum rather than a sum.
# pace_tolerance_ns, pace_window_ns, busy_poll and cpu are set once at start: a maximum keeps them.
# So are the ring's (ring_flags, ring_registered, ring_features, set at setup) and its SQ thread's, set once at the end.
_MAX_COUNTERS = {"lag_max_ns", "early_max_ns", "state", "setup_errno", "pace_tolerance_ns", "pace_window_ns",
                 "busy_poll", "cpu", "ring_flags", "ring_registered", "sq_tid", "sq_last_cpu", "sq_cpu_ns",
                 "ring_features"}

# Per histogram: the counters whose sum, less the second group's, equals its
# count in every consistent row (native/disk.c complete_op, net.c track_arrival:
# a duplicate is counted received but not timed).
_COUNTED_BY = {
    "latency_read": (("ops_read",), ()),
    "service_read": (("ops_read",), ()),
    "latency_write": (("ops_write",), ()),
    "service_write": (("ops_write",), ()),
    "latency_packet": (("received",), ("duplicated",)),
    "service_packet": (("received",), ("duplicated",)),
}


@dataclass
class Snapshot:
    layout: Layout
    words: np.ndarray  # (workers, layout.words), uint64
    t_ns: int

    @classmethod
    def zero(cls, layout: Layout, workers: int, t_ns: int) -> "Snapshot":
        """Where every run starts: nothing counted yet."""
        return cls(layout, np.zeros((workers, layout.words), dtype=np.uint64), t_ns)

    def counter(self, name: str) -> int:
        column = self.words[:, self.layout.counter(name)]
        return int(column.max() if name in _MAX_COUNTERS else column.sum())

    def hist(self, *names: str) -> np.ndarray:
        """The counts of the named histograms, summed over names and workers."""
        total = np.zeros(self.layout.counts_len, dtype=np.uint64)
        for name in names:
            total += self.words[:, self.layout.hist_slice(name)].sum(axis=0, dtype=np.uint64)
        return total

    def torn_rows(self) -> list[int]:
        """Rows copied in the middle of a worker's batch: counters and histograms disagree."""
        counted = np.zeros(len(self.words), dtype=np.int64)
        torn = np.zeros(len(self.words), dtype=bool)
        for hist, (plus, minus) in _COUNTED_BY.items():
            if hist not in self.layout.hists:
                continue
            counts = self.words[:, self.layout.hist_slice(hist)].sum(axis=1, dtype=np.uint64).astype(np.int64)
            counted[:] = 0
            for name in plus:
                counted += self.words[:, self.layout.counter(name)].astype(np.int64)
            for name in minus:
                counted -= self.words[:, self.layout.counter(name)].astype(np.int64)
            torn |= counts != counted
        return [int(i) for i in np.flatnonzero(torn)]

    def errors_by_errno(self) -> dict[int, int]:
        lo = self.layout.errno_offset
        counts = self.words[:, lo : lo + self.layout.errno_slots].sum(axis=0)
        return {int(e): int(n) for e, n in enumerate(counts) if n}

    def failed_workers(self) -> list[tuple[int, int]]:
        """(worker, errno) for each worker that stopped at setup."""
        state = self.words[:, self.layout.counter("state")]
        err = self.words[:, self.layout.counter("setup_errno")]
        return [(i, int(err[i])) for i in range(len(state)) if state[i] == STATE_FAILED]

    def rows(self, selector: slice) -> "Snapshot":
        """The same snapshot restricted to some workers (say, the senders)."""
        return Snapshot(self.layout, self.words[selector], self.t_ns)

    def same_counts(self, other: "Snapshot") -> bool:
        """True when nothing was counted between other and self (maxima aside)."""
        keep = np.ones(self.layout.words, dtype=bool)
        keep[[self.layout.counter(name) for name in _MAX_COUNTERS]] = False
        return bool(np.array_equal(self.words[:, keep], other.words[:, keep]))

    def since(self, earlier: "Snapshot") -> "Snapshot":
        """The interval from earlier to self (maxima stay cumulative)."""
        words = self.words - earlier.words
        for name in _MAX_COUNTERS:
            col = self.layout.counter(name)
            words[:, col] = self.words[:, col]
        return Snapshot(self.layout, words, self.t_ns)


def encode_words(words: np.ndarray) -> dict:
    """A stats matrix for the wire: mostly zeros, so it compresses to a few KB."""
    raw = np.ascontiguousarray(words, dtype="<u8")
    return {"shape": list(raw.shape), "data": base64.b64encode(zlib.compress(raw.tobytes(), 1)).decode()}


def decode_words(encoded: dict, max_bytes: int = 64 << 20) -> np.ndarray:
    """The inverse of encode_words; ValueError on anything malformed."""
    try:
        rows, cols = (int(x) for x in encoded["shape"])
        inflater = zlib.decompressobj()
        # bounded: a small frame must not inflate into gigabytes
        data = inflater.decompress(base64.b64decode(encoded["data"], validate=True), max_bytes + 1)
    except (KeyError, TypeError, ValueError, zlib.error) as e:
        raise ValueError(f"malformed stats: {e}") from None
    if rows < 0 or cols < 0 or rows * cols * 8 != len(data) or len(data) > max_bytes or inflater.unconsumed_tail:
        raise ValueError("stats shape does not match its data")
    return np.frombuffer(data, dtype="<u8").reshape(rows, cols).astype(np.uint64)
