"""What people see while a run goes: a live table on a terminal, plain lines elsewhere.

Two displays, one contract (Display), chosen by for_stream():
- LineDisplay, when the stream is a pipe or a file: the job's header first,
  then one line per interval as it ends, as iperf3 prints, each flushed at once
  so `| tee` and `| grep --line-buffered` see it live. Nothing is rewritten, so
  a log holds exactly what was printed.
- LiveDisplay, on a terminal: a rich table redrawn in place each interval: the
  rate, throughput, p50/p99/max of the interval's latency, the rate received,
  and in paired runs a row per host ("send HOST", "recv HOST") for the latest
  interval. It redraws only when told (no refresh thread), so a stalled
  controller shows a stalled table rather than a moving one that lies.

Both take the row the document keeps (loadgen.run.intervals), so what is shown is
what is recorded. Network throughput is in bits, disk throughput in bytes (MiB/s).
"""
from typing import Protocol, TextIO

from loadgen.units import format_bits_per_s, format_bytes_per_s, format_ns, format_si

LIVE_ROWS = 8   # intervals the live table keeps on screen


class Display(Protocol):
    def start(self, header: str, duration_ns: int, ramp_ns: int, interval_ns: int, rate_unit: str) -> None:
        """The run is starting: show what it is."""

    def warming(self, remaining_s: float) -> None:
        """Still in warm-up (called often; only a live display shows it)."""

    def interval(self, row: dict, bytes_per_s: float) -> None:
        """One interval ended; row is its document row."""

    def pause(self) -> None:
        """A line is about to be written to stderr: get out of its way."""

    def close(self) -> None:
        """The run is over (or failed): leave the screen ready for the summary."""


def for_stream(stream: TextIO) -> Display:
    """The live table on a terminal, plain lines anywhere else."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return LiveDisplay(stream) if tty else LineDisplay(stream)


def throughput(bytes_per_s: float, rate_unit: str) -> str:
    """Bits for the network, binary bytes for disks."""
    return format_bits_per_s(bytes_per_s * 8) if rate_unit == "pps" else format_bytes_per_s(bytes_per_s)


def plan_text(duration_ns: int, ramp_ns: int, interval_ns: int) -> str:
    warm = f" after {format_ns(ramp_ns)} of warm-up" if ramp_ns else ""
    return f"{format_ns(duration_ns)}{warm}, reported every {format_ns(interval_ns)}"


def _latency_text(row: dict) -> str:
    lat = row.get("latency_ns")
    if not lat or not lat.get("max"):
        return ""
    return f"  p50 {format_ns(lat['p50'])}  p99 {format_ns(lat['p99'])}  max {format_ns(lat['max'])}"


class LineDisplay:
    """A header, then a line per interval; for pipes and files."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.total_s = 0.0
        self.rate_unit = ""

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, header: str, duration_ns: int, ramp_ns: int, interval_ns: int, rate_unit: str) -> None:
        self.total_s, self.rate_unit = duration_ns / 1e9, rate_unit
        self._line(f"{header}; {plan_text(duration_ns, ramp_ns, interval_ns)}")

    def warming(self, remaining_s: float) -> None:
        pass   # a pipe gets lines that say something; the header told of the warm-up

    def interval(self, row: dict, bytes_per_s: float) -> None:
        text = (f"[{row['t_s']:6.2f}s/{self.total_s:.0f}s] {format_si(row['rate'])} {self.rate_unit}"
                f"  {throughput(bytes_per_s, self.rate_unit)}{_latency_text(row)}")
        if "received_pps" in row:
            text += f"  received {format_si(row['received_pps'])} pps"
        if row.get("errors"):
            text += f"  errors {row['errors']}"
        for host, h in (row.get("hosts") or {}).items():
            text += f"  {host} {'sent' if h['role'] == 'sender' else 'received'} {format_si(h['rate'])}"
        for target, t in (row.get("targets") or {}).items():
            text += f"  {target} {format_si(t['rate'])}"
        self._line(text)

    def pause(self) -> None:
        pass   # every line is already whole

    def close(self) -> None:
        pass


class LiveDisplay:
    """A rich table redrawn in place; for terminals."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console   # rich is typer's: imported only when a terminal watches

        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self.live = None
        self.header = ""
        self.total_s = 0.0
        self.rate_unit = ""
        self.rows: list[tuple[dict, float]] = []

    def _show(self, renderable) -> None:
        from rich.live import Live

        if self.live is None:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        self.live.update(renderable, refresh=True)

    def start(self, header: str, duration_ns: int, ramp_ns: int, interval_ns: int, rate_unit: str) -> None:
        self.header = f"{header}; {plan_text(duration_ns, ramp_ns, interval_ns)}"
        self.total_s, self.rate_unit = duration_ns / 1e9, rate_unit

    def warming(self, remaining_s: float) -> None:
        from rich.text import Text

        self._show(Text(f"{self.header}\nwarm-up, {remaining_s:4.1f} s left"))

    def table(self):
        """The table as it stands: the last LIVE_ROWS intervals, then the latest one per host or
        per target (a disk run's --target A,B)."""
        from rich.table import Table

        # No borders: eight columns of "480.0 µs" and a host name fit 80 columns only bare.
        table = Table(box=None, pad_edge=False, expand=False, header_style="bold underline")
        table.add_column("time", justify="right", no_wrap=True)   # or a host, whose name must stay whole
        for name in (self.rate_unit, "throughput", "p50", "p99", "max", "recv pps"):
            table.add_column(name, justify="right", no_wrap=True)
        for row, bytes_per_s in self.rows[-LIVE_ROWS:]:
            lat = row.get("latency_ns") or {}
            cells = [format_ns(lat[k]) if lat.get("max") else "-" for k in ("p50", "p99", "max")]
            table.add_row(f"{row['t_s']:.2f}s/{self.total_s:.0f}s", format_si(row["rate"]),
                          throughput(bytes_per_s, self.rate_unit), *cells,
                          format_si(row["received_pps"]) if "received_pps" in row else "-")
        if self.rows and self.rows[-1][0].get("hosts"):
            table.add_section()
            for host, h in self.rows[-1][0]["hosts"].items():
                sent = h["role"] == "sender"
                table.add_row(f"{'send' if sent else 'recv'} {host}", format_si(h["rate"]) if sent else "",
                              "", "", "", "", "" if sent else format_si(h["rate"]))
        if self.rows and self.rows[-1][0].get("targets"):
            table.add_section()
            for target, t in self.rows[-1][0]["targets"].items():
                table.add_row(target, format_si(t["rate"]), "", "", "", "", "")
        return table

    def screen(self):
        """The header (as wide as the terminal allows), then the table."""
        from rich.console import Group
        from rich.text import Text

        return Group(Text(self.header), self.table())

    def interval(self, row: dict, bytes_per_s: float) -> None:
        self.rows.append((row, bytes_per_s))
        self._show(self.screen())

    def pause(self) -> None:
        self.close()   # the table is drawn again, below the warning, at the next interval

    def close(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()
            self.console.file.flush()
