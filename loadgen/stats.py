"""Snapshots of the workers' stats records, and the differences between them.

A snapshot is a copy of every worker's record (rows: workers, columns: uint64
words laid out by native.Layout). Counters and HDR counts only grow, so an
interval is the difference of two snapshots and the total is the last one;
intervals therefore add up to the total exactly.
"""
import base64
import zlib
from dataclasses import dataclass

import numpy as np

from loadgen.native import STATE_FAILED, Layout

# Counters that hold a maximum rather than a sum.
# pace_tolerance_ns, pace_window_ns, busy_poll and cpu are set once at start: a maximum keeps them.
_MAX_COUNTERS = {"lag_max_ns", "early_max_ns", "state", "setup_errno", "pace_tolerance_ns", "pace_window_ns",
                 "busy_poll", "cpu"}


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
