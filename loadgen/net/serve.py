"""`loadgen serve`: a standalone UDP receiver and echo server.

It takes datagrams from any loadgen run (run_tag 0), tracks each flow's
sequence numbers, and prints per interval what arrived and what is missing.
Without the sender's count it can only see holes: sequence numbers skipped and
not filled later. Datagrams lost after a flow's last arrival are invisible here;
the sender's own summary (echo mode) or a paired run accounts for those.
"""
import asyncio
import signal
import sys
from dataclasses import dataclass

from loadgen import options
from loadgen.errors import UsageError
from loadgen.net.endpoints import close_all, receiver_sockets
from loadgen.run import native
from loadgen.run.controller import worker_cpus
from loadgen.run.stats import Snapshot
from loadgen.units import format_si
from loadgen.workload import default_workers

DRAIN_NS = 100_000_000
FOREVER_NS = 10 * 365 * 86400 * 10**9


@dataclass(frozen=True)
class ServeSpec:
    host: str
    port: int | None        # counts only
    echo_port: int | None   # counts and sends every datagram back
    workers: int
    max_flows: int
    duration_ns: int        # 0: until SIGINT/SIGTERM
    interval_ns: int
    rx_engine: str = "socket"   # packet: AF_PACKET RX rings (loadgen/net/packetrx.py), --port only
    busy_poll: bool = False     # socket receivers spin on recvmmsg instead of blocking


def parse_serve(host: str, **raw) -> ServeSpec:
    """Raw options (names as in options.SERVE) into a ServeSpec, or UsageError."""
    v = options.values(options.SERVE, raw, "serve")
    if v["port"] is not None and v["port"] == v["echo_port"] and v["port"] != 0:
        raise UsageError(f"--port and --echo-port are both {v['port']}; each listener needs its own port")
    if v["rx_engine"] == "packet" and v["echo_port"] is not None:
        raise UsageError("--rx-engine packet counts one way (its rings only read frames); "
                         "--echo-port needs --rx-engine socket")
    if v["rx_engine"] == "packet" and v["busy_poll"]:
        raise UsageError("--busy-poll spins socket receivers; --rx-engine packet's rings wait on their own")
    return ServeSpec(host=host, port=v["port"], echo_port=v["echo_port"], workers=v["workers"] or default_workers(),
                     max_flows=v["max_flows"], duration_ns=v["duration"], interval_ns=v["interval"],
                     rx_engine=v["rx_engine"], busy_poll=v["busy_poll"])


@dataclass
class Listener:
    name: str
    run: native.Run
    socks: list             # what to close: the UDP sockets, or the packet receivers
    previous: Snapshot


def start_listener(spec: ServeSpec, port: int, echo: bool) -> Listener:
    packet_rx = None
    if spec.rx_engine == "packet":
        from loadgen.net import packetrx

        packet_rx = packetrx.prepare(spec.host, port, spec.workers)
        socks, bound = packet_rx.socks, packet_rx.address()
    else:
        socks = receiver_sockets(spec.host, port, spec.workers)
        bound = socks[0].getsockname()
    try:
        cfg = native.NetConfig(
            senders=0, receivers=len(socks), flows=spec.max_flows, size_bytes=options.PKT_MAX_BYTES, batch=32,
            echo=int(echo), run_tag=0, first_seq=0, rate_pps=0, start_ns=0, ramp_end_ns=0,
            end_ns=2**62, grace_ns=0,
            send_fds=None, recv_fds=native.int32_array(s.fileno() for s in socks),
            send_cpus=None, recv_cpus=native.int32_array(worker_cpus(len(socks))),
            rx_engine=native.NET_RX_ENGINES[spec.rx_engine],
            packet_rx=native.ctypes.pointer(packet_rx.rx) if packet_rx else None, busy_poll=int(spec.busy_poll),
        )
        run = native.start_net(cfg)
    except BaseException:
        if packet_rx:
            packet_rx.close()
        else:
            close_all(socks)
        raise
    zero = Snapshot.zero(run.layout, run.workers, native.now_ns())
    return Listener(f"{bound[0]}:{bound[1]} {'echo' if echo else 'stream'}", run,
                    [packet_rx] if packet_rx else socks, zero)


def interval_line(name: str, elapsed_s: float, d: Snapshot, total: Snapshot, length_s: float) -> str:
    """Rates for the interval; losses so far, since a hole may be filled in a later interval."""
    received = d.counter("received") - d.counter("duplicated")
    all_received = total.counter("received") - total.counter("duplicated")
    holes = max(0, total.counter("skipped") - total.counter("reordered"))
    expected = all_received + holes
    loss_pct = 100.0 * holes / expected if expected else 0.0
    mbit = d.counter("received_bytes") * 8 / length_s / 1e6 if length_s else 0.0
    return (f"[{elapsed_s:7.1f}s] {name}: received {format_si(received / length_s if length_s else 0)} pps "
            f"{mbit:.1f} Mbit/s; so far lost {holes} ({loss_pct:.3f}%), reordered {total.counter('reordered')}, "
            f"duplicated {total.counter('duplicated')}, foreign {total.counter('foreign')}")


async def serve(spec: ServeSpec, out=sys.stdout) -> bool:
    """Serve until the duration ends or a signal arrives; True when interrupted."""
    if spec.port is None and spec.echo_port is None:
        raise UsageError("serve needs --port, --echo-port or both")
    listeners: list[Listener] = []
    try:
        for port, echo in ((spec.port, False), (spec.echo_port, True)):
            if port is not None:
                listeners.append(start_listener(spec, port, echo))
        for lst in listeners:
            out.write(f"loadgen serve: listening on {lst.name}, {spec.workers} receiver(s)\n")
        out.flush()
        return await _loop(spec, listeners, out)
    finally:
        for lst in listeners:
            lst.run.stop(native.now_ns() - DRAIN_NS)
            lst.run.free()
            close_all(lst.socks)


async def _loop(spec: ServeSpec, listeners: list[Listener], out) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    start = native.now_ns()
    end = start + (spec.duration_ns or FOREVER_NS)
    tick = start + spec.interval_ns
    try:
        while not stop.is_set():
            now = native.now_ns()
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0, min(tick, end) - now) / 1e9)
            except TimeoutError:
                pass
            now = native.now_ns()
            for lst in listeners:
                snap = Snapshot(lst.run.layout, lst.run.read(), now)
                d = snap.since(lst.previous)
                out.write(interval_line(lst.name, (now - start) / 1e9, d, snap, (now - lst.previous.t_ns) / 1e9) + "\n")
                lst.previous = snap
            out.flush()
            if now >= end:
                return False
            tick += spec.interval_ns
        return True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
