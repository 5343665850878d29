"""Every job option, declared once: name, default, parser, limits, help and metavar.

The CLI builds its disk/net/serve options from these tables, profiles accept
exactly their names, and an agent accepts exactly their names on the wire.

An option has two forms:
  raw    what a person writes: "4k", "10s", "max", or a TOML number or bool.
         value() parses the units and checks the limits.
  typed  the parsed value: bytes, nanoseconds, counts (int), names (str),
         flags (bool); None where the default is decided later ("max", one
         worker per CPU). Specs travel to agents in this form, and
         from_wire() checks its type strictly (a bool is not a number) and
         then the same limits, so a value is never printed to be parsed again.

Limits are inclusive and checked where the value is parsed, so a number that
would overflow a C field or the timeline never reaches a run. Those copied from
the native library (MAX_QD, MAX_FLOWS, MAX_BATCH, the datagram sizes) are
checked against it by tests/test_workload.py.
"""
from dataclasses import dataclass
from typing import Callable

from loadgen.errors import UsageError
from loadgen.units import (format_size, parse_bool, parse_count, parse_duration_ns, parse_percent, parse_rate, parse_ratio,
                           parse_size_bytes)

# Copied from native/loadgen.h (LG_MAX_QD, ...); lg_limit() lets a test compare them.
MAX_QD = 4096
MAX_FLOWS = 65536
MAX_BATCH = 1024
MAX_BATCH_WAIT_NS = 10**9
BATCH_WAIT_AUTO = -1            # LG_BATCH_WAIT_AUTO
PKT_HEADER_BYTES = 32
PKT_MAX_BYTES = 65507   # the largest UDP payload over IPv4

# Python's own bounds: far above any real run, far below what overflows.
MAX_BS_BYTES = 64 << 20
MAX_SIZE_BYTES = 1 << 50         # 1 PiB: span arithmetic stays far inside uint64
MAX_RATE = 10**9                 # per second: one op per ns is beyond any engine here
MAX_WORKERS = 1024
MAX_RUN_NS = 30 * 86400 * 10**9  # ramp + duration; with the timeout, end_ns fits int64 for centuries of uptime
MAX_TIMEOUT_NS = 3600 * 10**9
MIN_INTERVAL_NS = 100_000_000    # each interval costs the controller a snapshot and an .hlog entry per tag
MAX_INTERVAL_NS = 3600 * 10**9
MAX_SEED = 2**64 - 1             # the native seed is a uint64
MAX_PORT = 65535
MAX_CPU = 4095                   # CPU numbers, as the kernel's cpumask allows by default (NR_CPUS)


def format_duration(ns: int) -> str:
    """10**9 -> '1s': the largest unit that divides it, as a person would write it."""
    if ns == 0:
        return "0s"
    for suffix, unit in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9),
                         ("ms", 10**6), ("us", 10**3)):
        if ns >= unit and ns % unit == 0:
            return f"{ns // unit}{suffix}"
    return f"{ns}ns"


def format_count(n: int) -> str:
    for suffix, unit in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def _choice(*choices: str) -> Callable[[object, str], str]:
    def parse(raw, option: str) -> str:
        if raw not in choices:
            raise UsageError(f"invalid {option}: {raw!r} (one of {', '.join(choices)})")
        return raw

    parse.choices = choices
    return parse


def _sq_cpu(raw, option: str) -> int:
    """--sqpoll's CPU: a number, or any (-1: a CPU without a worker, see loadgen/disk/ring.py)."""
    if isinstance(raw, str) and raw.strip().lower() == "any":
        return -1
    try:
        return parse_count(raw, option)
    except UsageError:
        raise UsageError(f"invalid {option}: {raw!r} (a CPU number, or any)") from None


def _batch_wait(raw, option: str) -> int:
    """--batch-wait: a duration (0: off), or auto (-1: native/disk.c picks it, LG_BATCH_WAIT_AUTO)."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return BATCH_WAIT_AUTO
    try:
        return parse_duration_ns(raw, option)
    except UsageError:
        raise UsageError(f"invalid {option}: {raw!r} (a duration such as 20us, 0 for off, or auto)") from None


def format_batch_wait(ns: int) -> str:
    return "auto" if ns == BATCH_WAIT_AUTO else format_duration(ns)


def _format_cpu(cpu: int) -> str:
    return "any" if cpu < 0 else str(cpu)


def _text(raw, option: str) -> str:
    if not isinstance(raw, str):
        raise UsageError(f"invalid {option}: {raw!r} (a string)")
    return raw


@dataclass(frozen=True)
class Option:
    name: str                  # profile and wire key; the CLI flag is --name, "_" written "-"
    default: object            # raw, as --help shows it; None: decided later (default_help says how)
    parse: Callable            # (raw, name) -> typed, UsageError naming the option on bad input
    type: type                 # of the typed value: int, str or bool
    help: str
    metavar: str | None = None
    lo: int | None = None      # inclusive limits of the typed value
    hi: int | None = None
    fmt: Callable = str        # typed -> text, for the limits in messages and help
    default_help: str | None = None
    flag: str | None = None    # a bool's CLI form, such as "--direct/--buffered"

    @property
    def label(self) -> str:
        """The name as messages spell it: the CLI's (a profile accepts it too)."""
        return self.name.replace("_", "-")

    @property
    def nullable(self) -> bool:
        """Whether None is a typed value: "decide later", or a rate's "max"."""
        return self.default is None or self.parse is parse_rate

    def limits(self) -> str:
        if self.lo is None:
            return ""
        if self.parse is _batch_wait:
            return f"auto, or {format_duration(0)} to {self.fmt(self.hi)}"
        return f"{self.fmt(self.lo)} to {self.fmt(self.hi)}" + (", or max" if self.parse is parse_rate else "")

    def value(self, raw):
        """A raw value -> the checked typed value. None is the default; so is "" where the
        default is decided later (--seed "" as no seed), and elsewhere it is refused."""
        if raw is None or (raw == "" and self.default is None):
            raw = self.default
            if raw is None:
                return None
        if isinstance(raw, bool) and self.type is not bool:
            raise UsageError(f"invalid {self.label}: {raw!r}")
        return self._check(self.parse(raw, self.label), raw)

    def from_wire(self, typed):
        """A typed value from an agent's job: its exact type, then the same checks."""
        if typed is None and self.nullable:
            return None
        if type(typed) is not self.type:  # exact: a bool is an int to isinstance
            raise UsageError(f"invalid {self.label}: {typed!r} (expected {self.type.__name__}"
                             f"{' or null' if self.nullable else ''})")
        if self.type is str:
            return self.value(typed)  # names are their own typed form: same check
        return self._check(typed, typed)

    def _check(self, typed, raw):
        if typed is not None and self.lo is not None and not self.lo <= typed <= self.hi:
            what = f"rate: {self.label}" if self.parse is parse_rate else f"{self.label}:"
            raise UsageError(f"invalid {what} {raw!r} ({self.limits()})")
        return typed


def _options(*opts: Option) -> dict[str, Option]:
    return {o.name: o for o in opts}


COMMON = _options(
    Option("workers", None, parse_count, int, "Worker threads, one per core; 0: the default.", "N", 0,
           MAX_WORKERS, default_help="one per usable CPU"),
    Option("duration", "10s", parse_duration_ns, int, "Measured time, after the ramp.", "DURATION", 1, MAX_RUN_NS,
           format_duration),
    Option("ramp", "1s", parse_duration_ns, int, "Warm-up left out of the results.", "DURATION", 0, MAX_RUN_NS,
           format_duration),
    Option("interval", "1s", parse_duration_ns, int, "Snapshot and progress interval.", "DURATION", MIN_INTERVAL_NS,
           MAX_INTERVAL_NS, format_duration),
    Option("busy_poll", False, parse_bool, bool,
           "Spin between operations instead of sleeping: less jitter, a core burnt per worker.",
           flag="--busy-poll"),
)

DISK = _options(
    Option("target", None, _text, str, "File or block device; several: A,B,C or a glob ('/dev/nvme*n1'), "
           "with the workers spread over them, at least one each.", "PATH[,PATH...]",
           default_help="a temporary file here"),
    Option("size", None, parse_size_bytes, int,
           "Size of the temporary file or of a target file to create; a cap on an existing target's span.", "SIZE", 0,
           MAX_SIZE_BYTES, format_size, default_help="1g"),
    Option("iops", "max", parse_rate, int, "Target rate (50k, 1.5M), or max for closed loop at qd.", "RATE",
           1, MAX_RATE, format_count),
    Option("rw", "randread", _choice("randread", "randwrite", "read", "write", "randrw", "rw"), str,
           "Access pattern.", "MODE"),
    Option("mix", None, parse_count, int, "Read share in percent for randrw and rw.", "PCT", 0, 100,
           default_help="50"),
    Option("bs", "4k", parse_size_bytes, int, "Block size.", "SIZE", 1, MAX_BS_BYTES, format_size),
    Option("qd", "32", parse_count, int, "I/Os in flight per worker.", "N", 1, MAX_QD),
    Option("batch_submit", None, parse_count, int,
           "Closed loop: SQEs queued before one io_uring_enter submits them (fio's iodepth_batch_submit).", "N",
           1, MAX_QD, default_help="qd/4, at least 1"),
    Option("batch_complete", None, parse_count, int,
           "Closed loop: completions one io_uring_enter waits for (fio's iodepth_batch_complete_min).", "N",
           1, MAX_QD, default_help="qd/4, at least 1"),
    Option("batch_wait", "auto", _batch_wait, int,
           "Closed loop: a wait for completions asks for every I/O in flight and ends this long after it "
           "began with whatever has completed, so the worker wakes on its own timer rather than being woken by "
           "whoever completes a batch (Linux >= 6.12). auto: batch-complete times the time per I/O, while the "
           "kernel's io-wq helpers run on CPUs without a worker; 0: off.", "DURATION|auto",
           BATCH_WAIT_AUTO, MAX_BATCH_WAIT_NS, format_batch_wait),
    Option("poll", False, parse_bool, bool,
           "Polled I/O (IORING_SETUP_IOPOLL): needs O_DIRECT and a device with poll queues "
           "(/sys/block/X/queue/io_poll is 1; NVMe: nvme.poll_queues); workers spin for completions.",
           flag="--poll"),
    Option("sqpoll", None, _sq_cpu, int,
           "A kernel thread per worker submits (IORING_SETUP_SQPOLL), pinned to CPU; any or no value: a CPU "
           "without a worker, if there is one.", "[CPU]", -1, MAX_CPU, _format_cpu, default_help="off"),
    Option("register_ring", True, parse_bool, bool,
           "Register each ring's fd (IORING_REGISTER_RING_FDS, Linux >= 5.18), so io_uring_enter skips the fd "
           "lookup.", flag="--register-ring/--no-register-ring"),
    *COMMON.values(),
    Option("direct", True, parse_bool, bool, "O_DIRECT, or through the page cache.",
           flag="--direct/--buffered"),
    Option("engine", "auto", _choice("auto", "io_uring", "psync", "nvme"), str,
           "I/O engine; nvme: NVMe passthrough commands on a namespace's /dev/ngXnY.", "ENGINE"),
    Option("allow_destroy", False, parse_bool, bool, "Write even to a device that holds data.",
           flag="--allow-destroy"),
    Option("seed", None, parse_count, int, "Seed for offsets and the read/write mix.", "N", 0, MAX_SEED,
           default_help="random"),
    Option("prefill", False, parse_bool, bool,
           "Before the run, write the target's unwritten extents, so every read reaches a real block.",
           flag="--prefill"),
    Option("allow_sparse", False, parse_bool, bool,
           "Read a target with unwritten extents as it is (those reads never reach the device).",
           flag="--allow-sparse"),
    Option("verify", False, parse_bool, bool,
           "Stamp every written block with a header (offset, seed, generation, crc32c) and check every read "
           "of a block this run knows; a write-only run reads back what it wrote. Any bad block: exit 1.",
           flag="--verify"),
)

NET = _options(
    Option("pps", "max", parse_rate, int, "Target rate over all flows (100k, 2M), or max.", "RATE", 1, MAX_RATE,
           format_count),
    Option("target", None, _text, str, "HOST:PORT of any UDP endpoint.", "HOST:PORT",
           default_help="an embedded receiver on 127.0.0.1"),
    Option("size", "64", parse_size_bytes, int, "UDP payload bytes.", "BYTES", PKT_HEADER_BYTES, PKT_MAX_BYTES),
    Option("flows", None, parse_count, int, "Distinct 5-tuples (source ports), at least one per worker.", "N",
           1, MAX_FLOWS, default_help="one per worker"),
    Option("mode", "stream", _choice("stream", "echo"), str, "stream (one way) or echo (time every round trip).",
           "MODE"),
    Option("timeout", "1s", parse_duration_ns, int,
           "Echoes later than this count as lost; the receiver drains this long.", "DURATION", 1, MAX_TIMEOUT_NS,
           format_duration),
    Option("batch", "32", parse_count, int, "Datagrams per sendmmsg/recvmmsg.", "N", 1, MAX_BATCH),
    Option("receivers", None, parse_count, int, "Embedded receiver threads.", "N", 1, MAX_WORKERS,
           default_help="as many as senders"),
    Option("port", "0", parse_count, int, "Embedded receiver port; 0: any free one.", "PORT", 0, MAX_PORT),
    Option("gso", False, parse_bool, bool,
           "Paced one-way streams send runs of datagrams by UDP GSO: far less CPU per datagram, but the "
           "stack and a NIC's packet counters see one packet per run.", flag="--gso"),
    Option("engine", "socket", _choice("socket", "packet", "xdp"), str,
           "How senders send: socket (a UDP socket per flow, sendmmsg), packet (an AF_PACKET TX ring per "
           "sender with frames loadgen builds, echoes returning to the flows' UDP sockets; needs CAP_NET_RAW; "
           "without --workers a sender per TX queue) or xdp (the same frames from an AF_XDP socket bound to "
           "each TX queue, zero-copy where the driver allows, else copy; one way only; needs CAP_NET_RAW).",
           "ENGINE"),
    Option("rx_engine", "socket", _choice("socket", "packet"), str,
           "How loadgen's receivers receive (the embedded one, or --peer's): socket (UDP sockets, recvmmsg) or "
           "packet (an AF_PACKET RX ring per receiver in one fanout group; one way only, needs CAP_NET_RAW).",
           "ENGINE"),
    *COMMON.values(),
)

SERVE = _options(
    Option("port", None, parse_count, int, "UDP port that counts arrivals; 0: any free one.", "PORT", 0, MAX_PORT),
    Option("echo_port", None, parse_count, int, "UDP port that counts and echoes every datagram back.", "PORT",
           0, MAX_PORT),
    Option("workers", None, parse_count, int, "Receiver threads per port.", "N", 1, MAX_WORKERS,
           default_help="one per usable CPU"),
    Option("max_flows", "1024", parse_count, int, "Flow ids tracked per receiver.", "N", 1, MAX_FLOWS),
    Option("rx_engine", "socket", _choice("socket", "packet"), str,
           "socket (UDP sockets, recvmmsg) or packet (AF_PACKET RX rings in one fanout group; --port only, "
           "needs CAP_NET_RAW).", "ENGINE"),
    Option("duration", "0", parse_duration_ns, int, "Stop after this long; 0: until Ctrl-C.", "DURATION", 0, MAX_RUN_NS,
           format_duration),
    COMMON["interval"],
    Option("busy_poll", False, parse_bool, bool,
           "Receivers spin on their sockets instead of blocking: a core burnt per receiver, and no wake-ups for "
           "the sender to pay (on loopback and veth the kernel delivers in the sender's context). "
           "--rx-engine socket only.", flag="--busy-poll"),
)


# Running across a Ray cluster (fleet/ray_fleet.py). These choose where a job runs, not what it
# does: they never travel to a node.
_SELECTOR_HELP = ("LABEL=VALUE (a node label, or the custom resource LABEL_VALUE) or RESOURCE "
                  "(a custom resource's name)")
RAY = Option("ray", None, _text, str, "Run across the Ray cluster at this address (HOST:PORT), or auto: one loadgen "
             "actor per chosen node.", "ADDRESS|auto", default_help="no Ray")
RAY_NET = _options(
    RAY,
    Option("ray_senders", None, _text, str, f"Ray nodes that send: {_SELECTOR_HELP}.", "SELECTOR",
           default_help="every node but the receiver"),
    Option("ray_receivers", None, _text, str, f"The Ray node that receives: {_SELECTOR_HELP}.", "SELECTOR",
           default_help="the first node by IP"),
)
RAY_DISK = _options(
    RAY,
    Option("ray_nodes", None, _text, str, f"Ray nodes that run the disk job: {_SELECTOR_HELP}.", "SELECTOR",
           default_help="every node"),
)


def _percent_list(raw, option: str) -> tuple[int, ...]:
    """'10,50,100' -> (10, 50, 100): whole percentages of 1 to 100; '' or none: no points."""
    text = str(raw).strip().lower()
    if text in ("", "none"):
        return ()
    try:
        pcts = tuple(int(p.strip().rstrip("%")) for p in text.split(","))
    except ValueError:
        raise UsageError(f"invalid {option}: {raw!r} (whole percentages such as 10,50,80,90,100)") from None
    if not all(1 <= p <= 100 for p in pcts):
        raise UsageError(f"invalid {option}: {raw!r} (each percentage 1 to 100)")
    return pcts


def _format_pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


# `loadgen search`: RFC 2544's binary search for the knee (loadgen/search.py).
SEARCH = _options(
    Option("max_loss", "0", parse_ratio, float, "A trial passes with at most this share lost (0.001 or 0.1%).",
           "RATIO", 0, 1, _format_pct),
    Option("max_p99", None, parse_duration_ns, int, "A trial passes with p99 latency at most this.", "DURATION",
           1, MAX_TIMEOUT_NS, format_duration, default_help="latency does not judge"),
    Option("trial", "60s", parse_duration_ns, int, "Each trial's measured time (RFC 2544 asks 60 s).", "DURATION",
           1, MAX_RUN_NS, format_duration),
    Option("resolution", "1%", parse_percent, float, "Stop when the pass/fail bounds are this close.", "PCT",
           0.0001, 0.5, _format_pct),
    Option("confirm", "1", parse_count, int, "Trials again at the knee before it counts.", "N", 0, 100),
    Option("floor", "1", parse_count, int, "The lowest rate searched.", "RATE", 1, MAX_RATE, format_count),
    Option("ceiling", "max", parse_rate, int, "The highest rate searched, or max: a first closed-loop trial's.",
           "RATE", 1, MAX_RATE, format_count),
    Option("load_curve", "10,50,80,90,100", _percent_list, tuple,
           "Latency at these percentages of the knee, after it (RFC 2544 26.2); none: no curve.", "PCTS"),
    Option("max_trials", "40", parse_count, int, "Stop the search after this many trials (the curve's aside).",
           "N", 1, 1000),
)


def values(table: dict[str, Option], raw: dict, kind: str) -> dict:
    """Raw options (CLI or profile) -> typed values; unknown names are an error."""
    unknown = set(raw) - set(table)
    if unknown:
        raise UsageError(f"unknown {kind} options: {', '.join(sorted(unknown))}")
    return {name: opt.value(raw.get(name)) for name, opt in table.items()}


def help_text(opt: Option) -> str:
    """The option's help with its limits and a default decided later, for --help."""
    limits = opt.limits() or ", ".join(getattr(opt.parse, "choices", ()))
    text = opt.help + (f" [{limits}]" if limits else "")
    return text + (f" [default: {opt.default_help}]" if opt.default_help else "")


def from_wire(table: dict[str, Option], wire, kind: str) -> dict:
    """Typed options from an agent's job -> the same values, checked; a missing name takes its default."""
    if not isinstance(wire, dict):
        raise UsageError("job options must be an object")
    unknown = set(wire) - set(table)
    if unknown:
        raise UsageError(f"unknown {kind} options: {', '.join(sorted(unknown))}")
    return {name: opt.from_wire(wire[name]) if name in wire else opt.value(None) for name, opt in table.items()}
