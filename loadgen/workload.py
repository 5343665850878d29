"""Workload specs: every option's name, default and validation, declared once.

The CLI and profiles both hand raw values (strings such as "4k" or "10s", or
numbers) to DiskSpec.from_options, which parses units and checks ranges, so a
profile key and a CLI option can never disagree. Nothing here touches the
target or the clock.
"""
from dataclasses import asdict, dataclass, field

from loadgen.errors import UsageError
from loadgen.units import format_size, parse_bool, parse_count, parse_duration_ns, parse_rate, parse_size_bytes

RW_MODES = {"randread": (100, False), "randwrite": (0, False), "read": (100, True),
            "write": (0, True), "randrw": (None, False), "rw": (None, True)}
ENGINE_CHOICES = ("auto", "io_uring", "psync")
MAX_QD = 4096
MAX_BS_BYTES = 64 << 20
DIRECT_ALIGN_BYTES = 512


@dataclass(frozen=True)
class CommonSpec:
    duration_ns: int
    ramp_ns: int
    interval_ns: int
    workers: int
    busy_poll: bool = False     # workers spin between ops instead of sleeping (burns cores, less jitter)


@dataclass(frozen=True)
class DiskSpec:
    target: str | None          # None: a temporary file in the current directory
    size_bytes: int             # temp file size, or a cap on the span of an existing target
    size_given: bool
    rw: str
    read_pct: int               # share of reads, 0..100
    sequential: bool
    bs_bytes: int
    qd: int
    rate_ops_per_s: int | None  # None: closed loop ("max")
    direct: bool
    engine: str
    allow_destroy: bool
    seed: int
    common: CommonSpec = field(repr=False)

    @property
    def writes(self) -> bool:
        return self.read_pct < 100

    def to_config(self) -> dict:
        """The resolved workload, as the result document's "config" shows it."""
        return {
            "target": self.target,
            "size_bytes": self.size_bytes,
            "rw": self.rw,
            "read_pct": self.read_pct,
            "bs": format_size(self.bs_bytes),
            "bs_bytes": self.bs_bytes,
            "qd": self.qd,
            "iops": self.rate_ops_per_s if self.rate_ops_per_s else "max",
            "direct": self.direct,
            "engine": self.engine,
            "seed": self.seed,
            **{k: v for k, v in asdict(self.common).items()},
        }


def default_workers() -> int:
    """One per CPU this process may run on."""
    import os

    return len(os.sched_getaffinity(0))


def parse_common(duration="10s", ramp="1s", interval="1s", workers=None, busy_poll=False) -> CommonSpec:
    duration_ns = parse_duration_ns(duration)
    ramp_ns = parse_duration_ns(ramp)
    interval_ns = parse_duration_ns(interval)
    if duration_ns <= 0:
        raise UsageError(f"invalid duration: {duration!r} must be above zero")
    if ramp_ns < 0:
        raise UsageError(f"invalid ramp: {ramp!r}")
    if interval_ns < 100_000_000:
        # each interval costs the controller a snapshot and an .hlog entry per tag
        raise UsageError(f"invalid interval: {interval!r} must be at least 100ms")
    n = default_workers() if workers in (None, "", 0, "0") else parse_count(workers)
    if n < 1 or n > 1024:
        raise UsageError(f"invalid workers: {workers!r} (1 to 1024)")
    return CommonSpec(duration_ns, ramp_ns, interval_ns, n, parse_bool(busy_poll, "busy_poll"))


DEFAULT_TEMP_SIZE = "1g"


def parse_disk(target=None, size=None, rw="randread", mix=None, bs="4k", qd=32, iops="max",
               direct=True, engine="auto", allow_destroy=False, seed=None, duration="10s",
               ramp="1s", interval="1s", workers=None, busy_poll=False) -> DiskSpec:
    """Validate raw option values into a DiskSpec; raises UsageError with a one-line reason."""
    if rw not in RW_MODES:
        raise UsageError(f"invalid rw: {rw!r} (one of {', '.join(RW_MODES)})")
    read_pct, sequential = RW_MODES[rw]
    if read_pct is None:
        read_pct = 50 if mix in (None, "") else parse_count(mix)
        if not 0 <= read_pct <= 100:
            raise UsageError(f"invalid mix: {mix!r} (the read share, 0 to 100)")
    elif mix not in (None, ""):
        raise UsageError(f"--mix applies to randrw and rw, not {rw}")
    bs_bytes = parse_size_bytes(bs, "bs")
    direct = parse_bool(direct, "direct")
    if bs_bytes <= 0 or bs_bytes > MAX_BS_BYTES:
        raise UsageError(f"invalid bs: {bs!r} (1 byte to 64m)")
    if direct and bs_bytes % DIRECT_ALIGN_BYTES:
        raise UsageError(f"bs {bs} is not a multiple of {DIRECT_ALIGN_BYTES} bytes, which direct I/O needs (or use --buffered)")
    qd_n = parse_count(qd)
    if not 1 <= qd_n <= MAX_QD:
        raise UsageError(f"invalid qd: {qd!r} (1 to {MAX_QD})")
    size_bytes = parse_size_bytes(DEFAULT_TEMP_SIZE if size in (None, "") else size)
    if size_bytes < bs_bytes:
        raise UsageError(f"size {size} is smaller than one block of {bs}")
    if engine not in ENGINE_CHOICES:
        raise UsageError(f"invalid engine: {engine!r} (one of {', '.join(ENGINE_CHOICES)})")
    return DiskSpec(
        target=str(target) if target not in (None, "") else None,
        size_bytes=size_bytes - size_bytes % bs_bytes,
        size_given=size not in (None, ""),
        rw=rw, read_pct=read_pct, sequential=sequential, bs_bytes=bs_bytes, qd=qd_n,
        rate_ops_per_s=parse_rate(iops), direct=direct, engine=engine,
        allow_destroy=parse_bool(allow_destroy, "allow_destroy"),
        seed=parse_count(seed) if seed not in (None, "") else _random_seed(),
        common=parse_common(duration, ramp, interval, workers, busy_poll),
    )


def _random_seed() -> int:
    import os

    return int.from_bytes(os.urandom(8), "little")


NET_MODES = ("stream", "echo")
PKT_HEADER_BYTES = 32
PKT_MAX_BYTES = 65507   # the largest UDP payload over IPv4
MAX_FLOWS = 65536
MAX_BATCH = 1024


@dataclass(frozen=True)
class NetSpec:
    target: tuple[str, int] | None   # None: the embedded receiver on loopback
    rate_pps: int | None             # None: as fast as possible ("max")
    size_bytes: int                  # UDP payload
    flows: int
    mode: str
    timeout_ns: int                  # echo: later returns count as lost; both: receiver drain time
    batch: int
    receivers: int
    port: int                        # embedded receiver's port, 0: any free one
    common: CommonSpec = field(repr=False)

    @property
    def echo(self) -> bool:
        return self.mode == "echo"

    def to_config(self) -> dict:
        return {
            "target": f"{self.target[0]}:{self.target[1]}" if self.target else None,
            "pps": self.rate_pps if self.rate_pps else "max",
            "size_bytes": self.size_bytes,
            "flows": self.flows,
            "mode": self.mode,
            "timeout_ns": self.timeout_ns,
            "batch": self.batch,
            "receivers": self.receivers if self.target is None else 0,
            **{k: v for k, v in asdict(self.common).items()},
        }


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid address: {text!r} (expected HOST:PORT)")
    return host.strip("[]"), int(port)


def parse_net(target=None, pps="max", size="64", flows=None, mode="stream", timeout="1s", batch="32",
              receivers=None, port="0", duration="10s", ramp="1s", interval="1s", workers=None,
              busy_poll=False) -> NetSpec:
    """Validate raw option values into a NetSpec; raises UsageError with a one-line reason."""
    if workers in (None, "", 0, "0") and target in (None, "") and parse_rate(pps):
        # Paced with the embedded receivers, which are pinned threads too: senders
        # and receivers (as many as senders) take one CPU each (2 CPUs: 1 + 1).
        # Blast keeps a sender per CPU: on loopback each sender runs the receive
        # path itself, so senders on every CPU are what reaches the top rate.
        workers = str(max(1, default_workers() // 2))
    common = parse_common(duration, ramp, interval, workers, busy_poll)
    size_bytes = parse_size_bytes(size, "size")
    if not PKT_HEADER_BYTES <= size_bytes <= PKT_MAX_BYTES:
        raise UsageError(f"invalid size: {size!r} (UDP payload of {PKT_HEADER_BYTES} to {PKT_MAX_BYTES} bytes)")
    if mode not in NET_MODES:
        raise UsageError(f"invalid mode: {mode!r} (stream or echo)")
    n_flows = common.workers if flows in (None, "") else parse_count(flows)
    if not common.workers <= n_flows <= MAX_FLOWS:
        raise UsageError(f"invalid flows: {flows!r} ({common.workers} to {MAX_FLOWS}: at least one per worker)")
    n_batch = parse_count(batch)
    if not 1 <= n_batch <= MAX_BATCH:
        raise UsageError(f"invalid batch: {batch!r} (1 to {MAX_BATCH})")
    n_receivers = max(1, common.workers) if receivers in (None, "") else parse_count(receivers)
    if not 1 <= n_receivers <= 1024:
        raise UsageError(f"invalid receivers: {receivers!r} (1 to 1024)")
    port_n = parse_count(port)
    if not 0 <= port_n < 65536:
        raise UsageError(f"invalid port: {port!r}")
    timeout_ns = parse_duration_ns(timeout)
    if timeout_ns <= 0:
        raise UsageError(f"invalid timeout: {timeout!r} must be above zero")
    return NetSpec(
        target=parse_host_port(target) if target not in (None, "") else None,
        rate_pps=parse_rate(pps), size_bytes=size_bytes, flows=n_flows, mode=mode,
        timeout_ns=timeout_ns, batch=n_batch, receivers=n_receivers, port=port_n, common=common,
    )
