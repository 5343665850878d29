"""Workload specs: raw or typed option values in, a validated DiskSpec or NetSpec out.

Each option's name, default, parser and limits live in loadgen/options.py;
this module adds the rules that join options (a block fits the size, flows
cover the workers, the ramp and duration fit the run limit). parse_disk and
parse_net take raw values from the CLI and profiles; DiskSpec.from_wire and
NetSpec.from_wire take the typed values an agent receives, which to_wire()
produced. Both paths meet in one builder per kind, so a spec valid on the
controller is valid on the agent. Nothing here touches the target or the clock,
but for one directory listing: a --target glob is expanded by parse_disk, so a
spec names every target it will open (target_names says how).
"""
import glob
from dataclasses import asdict, dataclass, field, replace

from loadgen import options
from loadgen.errors import UsageError
from loadgen.options import MAX_FLOWS, MAX_RUN_NS, format_duration
from loadgen.options import PKT_HEADER_BYTES, PKT_MAX_BYTES  # noqa: F401 (the datagram's bounds, as tests read them)
from loadgen.units import format_size

RW_MODES = {"randread": (100, False), "randwrite": (0, False), "read": (100, True),
            "write": (0, True), "randrw": (None, False), "rw": (None, True)}
DIRECT_ALIGN_BYTES = 512
DEFAULT_TEMP_SIZE_BYTES = 1 << 30


@dataclass(frozen=True)
class CommonSpec:
    duration_ns: int
    ramp_ns: int
    interval_ns: int
    workers: int
    busy_poll: bool = False     # workers spin between ops instead of sleeping (burns cores, less jitter)


VERIFY_MIN_BS_BYTES = 64   # a block header (struct lg_block_header, 40 bytes) with room to spare


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
    prefill: bool = False       # write the target's unwritten extents before the run
    allow_sparse: bool = False  # read a target with unwritten extents as it is
    batch_submit: int = 1       # closed loop: SQEs queued per io_uring_enter (native/disk.c)
    batch_complete: int = 1     # closed loop: completions one io_uring_enter waits for
    batch_wait_ns: int = options.BATCH_WAIT_AUTO    # closed loop: a wait's cut-off (native/disk.c); 0: off
    poll: bool = False          # IORING_SETUP_IOPOLL
    sqpoll_cpu: int | None = None   # IORING_SETUP_SQPOLL on this CPU; -1: any; None: off
    register_ring: bool = True  # register each ring's fd
    verify: bool = False        # block headers on writes, checked on reads (native/verify.h)
    wire: dict = field(repr=False, compare=False, default_factory=dict)  # typed options, defaults resolved
    # The paths --target names, in order ((): a temporary file); several: workers spread over them.
    targets: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()     # what the result's warnings should say about the spec itself

    @property
    def writes(self) -> bool:
        return self.read_pct < 100

    @classmethod
    def from_wire(cls, wire) -> "DiskSpec":
        """Typed options from to_wire(), checked as strictly as parse_disk checks raw ones.

        An agent takes the target as one path, never a list or a glob: it opens it beneath
        its allowed directories, and a controller sends it one target (cli.py refuses more)."""
        v = options.from_wire(options.DISK, wire, "disk")
        return _disk(v, (v["target"],) if v["target"] else ())

    def to_wire(self, **overrides) -> dict:
        """The spec as the typed options an agent's disk job takes."""
        return self.wire | overrides

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
            "prefill": self.prefill,
            "allow_sparse": self.allow_sparse,
            # the batches a closed loop uses; a paced run submits each op when due (null here)
            "batch_submit": None if self.rate_ops_per_s else self.batch_submit,
            "batch_complete": None if self.rate_ops_per_s else self.batch_complete,
            "batch_wait": None if self.rate_ops_per_s else options.format_batch_wait(self.batch_wait_ns),
            "poll": self.poll,
            "sqpoll": None if self.sqpoll_cpu is None else {"requested": "any" if self.sqpoll_cpu < 0
                                                           else self.sqpoll_cpu},
            "register_ring": self.register_ring,
            "verify": self.verify,
            **{k: v for k, v in asdict(self.common).items()},
        }


def default_workers() -> int:
    """One per CPU this process may run on."""
    import os

    return len(os.sched_getaffinity(0))


def parse_common(**raw) -> CommonSpec:
    """duration, ramp, interval and workers, raw, into a CommonSpec."""
    return _common(options.values(options.COMMON, raw, "common"))


def _common(v: dict, workers_default: int | None = None) -> CommonSpec:
    if v["ramp"] + v["duration"] > MAX_RUN_NS:
        raise UsageError(f"invalid duration: ramp and duration together are over {format_duration(MAX_RUN_NS)}")
    workers = v["workers"] or workers_default or default_workers()
    return CommonSpec(v["duration"], v["ramp"], v["interval"], workers, v["busy_poll"])


def parse_disk(**raw) -> DiskSpec:
    """Raw option values (CLI or profile; names as in options.DISK) into a DiskSpec,
    or UsageError with a one-line reason."""
    v = options.values(options.DISK, raw, "disk")
    return _disk(v, target_names(v["target"]))


TARGET_SEPARATOR = ","
GLOB_CHARS = "*?["


def target_names(text: str | None) -> tuple[str, ...]:
    """--target's paths: "A,B,C" in that order; an item with a glob character (* ? [) is
    expanded here, sorted, and must match something. A path cannot hold a comma, and a
    path with a glob character is always taken as a pattern. None or "": no target."""
    if not text:
        return ()
    names: list[str] = []
    for item in text.split(TARGET_SEPARATOR):
        item = item.strip()
        if not item:
            raise UsageError(f"invalid target: {text!r} (an empty name in the list)")
        if any(c in item for c in GLOB_CHARS):
            matched = sorted(glob.glob(item))
            if not matched:
                raise UsageError(f"no target matches {item}")
            names += matched
        else:
            names.append(item)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"target {twice[0]} is named twice")
    return tuple(names)


def is_target_list(text: str | None) -> bool:
    """Whether --target names a list or a glob (target_names expands it) rather than one path."""
    return bool(text) and (TARGET_SEPARATOR in text or any(c in text for c in GLOB_CHARS))


def spread_workers(workers: int, targets: int) -> list[int]:
    """How many of the workers each target gets: as even as can be, the first ones one more."""
    return [workers // targets + (1 if i < workers % targets else 0) for i in range(targets)]


def _disk(v: dict, targets: tuple[str, ...]) -> DiskSpec:
    rw, mix, bs_bytes = v["rw"], v["mix"], v["bs"]
    read_pct, sequential = RW_MODES[rw]
    if read_pct is None:
        read_pct = 50 if mix is None else mix
    elif mix is not None:
        raise UsageError(f"--mix applies to randrw and rw, not {rw}")
    if v["direct"] and bs_bytes % DIRECT_ALIGN_BYTES:
        raise UsageError(f"bs {format_size(bs_bytes)} is not a multiple of {DIRECT_ALIGN_BYTES} bytes, "
                         "which direct I/O needs (or use --buffered)")
    size_given = v["size"] is not None
    size_bytes = v["size"] if size_given else DEFAULT_TEMP_SIZE_BYTES
    if size_bytes < bs_bytes:
        raise UsageError(f"size {format_size(size_bytes)} is smaller than one block of {format_size(bs_bytes)}")
    if v["engine"] == "nvme":
        _check_nvme(v)
        if is_target_list(v["target"]):   # disk/nvme.py opens the one ng device --target names
            raise UsageError("--engine nvme runs on one /dev/ngXnY: give --target one path, not a list or a glob")
    if v["verify"] and v["engine"] == "nvme":
        raise UsageError("--verify needs the block layer's reads and writes: it does not run with --engine nvme")
    if v["verify"] and bs_bytes < VERIFY_MIN_BS_BYTES:
        raise UsageError(f"--verify needs blocks of at least {VERIFY_MIN_BS_BYTES} bytes for their header, "
                         f"not {format_size(bs_bytes)}")
    common = _common(v)
    notes = ()
    if len(targets) > common.workers:
        # Every target needs a worker of its own: more workers, not a target left idle.
        notes = (f"{len(targets)} targets and {common.workers} worker{'s' if common.workers > 1 else ''}: "
                 f"running {len(targets)} workers, one per target",)
        common = replace(common, workers=len(targets))
    batch_submit, batch_complete = _batches(v)
    if v["poll"] and not v["direct"]:
        raise UsageError("--poll needs O_DIRECT (drop --buffered)")
    for name, on in (("poll", v["poll"]), ("sqpoll", v["sqpoll"] is not None)):
        if on and v["engine"] == "psync":
            raise UsageError(f"--{name} needs the io_uring engine, not psync")
    seed = _random_seed() if v["seed"] is None else v["seed"]
    return DiskSpec(
        target=v["target"] or None,
        size_bytes=size_bytes - size_bytes % bs_bytes, size_given=size_given,
        rw=rw, read_pct=read_pct, sequential=sequential, bs_bytes=bs_bytes, qd=v["qd"],
        rate_ops_per_s=v["iops"], direct=v["direct"], engine=v["engine"], allow_destroy=v["allow_destroy"],
        seed=seed, common=common, prefill=v["prefill"], allow_sparse=v["allow_sparse"],
        batch_submit=batch_submit, batch_complete=batch_complete, batch_wait_ns=v["batch_wait"],
        poll=v["poll"], sqpoll_cpu=v["sqpoll"],
        register_ring=v["register_ring"], verify=v["verify"], wire=v | {"seed": seed, "workers": common.workers},
        targets=targets, notes=notes,
    )


def _check_nvme(v: dict) -> None:
    """--engine nvme sends commands to one NVMe namespace, past the page cache and the filesystem."""
    if not v["target"]:
        raise UsageError("--engine nvme needs --target /dev/ngXnY (an NVMe namespace's generic char device)")
    if not v["direct"]:
        raise UsageError("--buffered does not apply to --engine nvme: passthrough commands never use the page cache")
    if v["prefill"] or v["allow_sparse"]:
        raise UsageError("--prefill and --allow-sparse are for files; --engine nvme reads a namespace as it is")


def default_batch(qd: int) -> int:
    """A closed loop's batch, of submissions and of completions, when not given: a quarter of
    the queue (fio's tuned runs at qd32 take 8 completions a batch), at least 1."""
    return max(1, qd // 4)


def _batches(v: dict) -> tuple[int, int]:
    qd, out = v["qd"], []
    for name in ("batch_submit", "batch_complete"):
        n = default_batch(qd) if v[name] is None else v[name]
        if n > qd:
            raise UsageError(f"--{name.replace('_', '-')} {n} is more than --qd {qd}: a batch fits the queue")
        out.append(n)
    return out[0], out[1]


def _random_seed() -> int:
    import os

    return int.from_bytes(os.urandom(8), "little")


NET_MODES = ("stream", "echo")


RAW_ENGINES = ("packet", "xdp")   # net engines that build whole frames: one way, a sender per TX queue


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
    gso: bool                        # paced one-way senders send runs of datagrams by UDP GSO
    common: CommonSpec = field(repr=False)
    engine: str = "socket"           # socket: UDP sockets; packet: AF_PACKET TX rings (loadgen/net/packet.py);
                                     # xdp: AF_XDP sockets (loadgen/net/xdp.py)
    per_queue: bool = False          # a raw engine without --workers: a sender per TX queue (loadgen/net/queues.py)
    rx_engine: str = "socket"        # socket: UDP sockets; packet: AF_PACKET RX rings (loadgen/net/packetrx.py)
    wire: dict = field(repr=False, compare=False, default_factory=dict)  # typed options, defaults resolved

    @property
    def echo(self) -> bool:
        return self.mode == "echo"

    @classmethod
    def from_wire(cls, wire) -> "NetSpec":
        """Typed options from to_wire(), checked as strictly as parse_net checks raw ones."""
        return _net(options.from_wire(options.NET, wire, "net"))

    def to_wire(self, **overrides) -> dict:
        """The spec as the typed options an agent's UDP job takes; overrides are typed too."""
        return self.wire | overrides

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
            "gso": self.gso,
            "engine": self.engine,
            "rx_engine": self.rx_engine,
            **{k: v for k, v in asdict(self.common).items()},
        }


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"invalid address: {text!r} (expected HOST:PORT)")
    bracketed = host.startswith("[") and host.endswith("]")
    if (":" in host or "[" in host or "]" in host) and not bracketed:
        raise UsageError(f"invalid address: {text!r} (an IPv6 address goes in brackets: [::1]:9000)")
    return host[1:-1] if bracketed else host, int(port)


def host_of(text: str) -> str:
    """The host in 'HOST', 'HOST:PORT', '[v6]', '[v6]:PORT' or a bare IPv6 address."""
    text = str(text).strip()
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not inside or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            raise UsageError(f"invalid address: {text!r} (expected HOST, HOST:PORT or [v6]:PORT)")
        return inside
    if text.count(":") == 1:
        return parse_host_port(text)[0]
    if not text:
        raise UsageError("invalid address: '' (expected HOST, HOST:PORT or [v6]:PORT)")
    return text  # a name, or an IPv6 address without a port


def format_host_port(host: str, port: int) -> str:
    """The inverse of parse_host_port: an IPv6 address goes in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_net(**raw) -> NetSpec:
    """Raw option values (CLI or profile; names as in options.NET) into a NetSpec,
    or UsageError with a one-line reason."""
    return _net(options.values(options.NET, raw, "net"))


def _net(v: dict) -> NetSpec:
    # Paced with the embedded receivers, which are pinned threads too: senders
    # and receivers (as many as senders) take one CPU each (2 CPUs: 1 + 1).
    # Blast keeps a sender per CPU: on loopback each sender runs the receive
    # path itself, so senders on every CPU are what reaches the top rate.
    paced_embedded = v["target"] is None and v["pps"] is not None
    common = _common(v, max(1, default_workers() // 2) if paced_embedded else None)
    flows = common.workers if v["flows"] is None else v["flows"]
    # Per queue, the senders are placed later and at most one per flow.
    raw = v["engine"] in RAW_ENGINES
    per_queue = raw and not v["workers"]
    if flows < common.workers and not per_queue:
        raise UsageError(f"invalid flows: {flows} (at least one per worker: {common.workers} to {MAX_FLOWS})")
    receivers = common.workers if v["receivers"] is None else v["receivers"]
    target = parse_host_port(v["target"]) if v["target"] else None
    if v["engine"] == "xdp" and v["mode"] == "echo":
        raise UsageError("--engine xdp sends one way; --mode echo needs --engine socket or packet")
    if v["rx_engine"] == "packet" and v["mode"] == "echo":
        raise UsageError("--rx-engine packet counts one way (its rings only read frames); "
                         "--mode echo needs --rx-engine socket")
    if raw and v["gso"]:
        raise UsageError(f"--gso is for --engine socket: the {v['engine']} engine builds every frame itself")
    return NetSpec(
        target=target, rate_pps=v["pps"], size_bytes=v["size"], flows=flows, mode=v["mode"],
        timeout_ns=v["timeout"], batch=v["batch"], receivers=receivers, port=v["port"], gso=v["gso"],
        common=common, engine=v["engine"], per_queue=per_queue, rx_engine=v["rx_engine"],
        # per queue: workers 0 on the wire, so a sending agent places senders by its own queues
        wire=v | {"flows": flows, "receivers": receivers, "workers": 0 if per_queue else common.workers,
                  "target": format_host_port(*target) if target else None},
    )
