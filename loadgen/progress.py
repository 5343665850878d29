"""The live progress line, on a terminal only: one line rewritten in place."""
import sys

from loadgen.units import format_ns, format_si


class Progress:
    def __init__(self, total_s: float, enabled: bool | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total_s = total_s
        self._width = 0

    def _show(self, text: str) -> None:
        if not self.enabled:
            return
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def warming(self, remaining_s: float) -> None:
        self._show(f"[warm-up, {remaining_s:4.1f}s left]")

    def interval(self, elapsed_s: float, rate: float, rate_unit: str, bytes_per_s: float,
                 p50_ns: float | None, p99_ns: float | None, extra: str = "") -> None:
        latency = f"  p50 {format_ns(p50_ns)}  p99 {format_ns(p99_ns)}" if p50_ns is not None else ""
        self._show(f"[{elapsed_s:5.1f}s/{self.total_s:.1f}s] {format_si(rate)} {rate_unit}"
                   f"  {bytes_per_s / 1e6:8.1f} MB/s{latency}{extra}")

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
