"""--json-stream: the run as NDJSON, one JSON object per line, written as it happens.

The lines, in order:
- one per interval, as it ends: {"type": "interval", ...} followed by exactly
  the fields of that interval's row in the document's "intervals";
- the last: {"type": "result", ...} followed by the whole result document, the
  same fields --json writes. `jq 'select(.type == "result") | del(.type)'`
  gives back the document; `select(.type == "interval")` the rows.

Each line is parseable by itself and written whole with one write(), so a
reader (tail -f, a FIFO, a pipe) sees each interval when it ends. The
destination follows loadgen.output's rules for streams ("-" is stdout, a FIFO
or device is written in place, a file is created at its name). A write that
fails stops the stream; the run goes on, and the failure is printed, kept in
the document's warnings and makes the exit code 1; with no --json, the
document then goes to a fallback file (loadgen.output.fallback) and its name
is printed. A run that fails or is interrupted still ends its stream with the
result line.
"""
import asyncio
import json

from loadgen import output
from loadgen.run.controller import Interval
from loadgen.run.stats import Snapshot


def line(kind: str, fields: dict) -> str:
    """One NDJSON line: "type" first, then the fields."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")) + "\n"


class JsonStream:
    """An interval observer (loadgen.run.job.IntervalObserver) that also ends the stream with the result."""

    def __init__(self, stream: output.Stream) -> None:
        self.stream = stream

    @classmethod
    def open(cls, path: str) -> "JsonStream":
        """Open path for the stream; OSError names path."""
        return cls(output.Stream.open(path))

    @property
    def error(self) -> str | None:
        """Why a write failed, once one has; the stream stopped there."""
        return self.stream.error

    async def interval(self, row: dict, interval: Interval, cumulative: Snapshot) -> None:
        # Off the event loop: a pipe's reader may be slow, and the controller must not wait on it.
        await asyncio.to_thread(self.stream.write, line("interval", row))

    def result(self, doc: dict) -> None:
        """Write the last line, the document; OSError if it could not be."""
        self.stream.write(line("result", doc))

    def close(self) -> None:
        self.stream.close()
