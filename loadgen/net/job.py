"""The net job: a NetSpec in, a result document out.

prepare_send() and prepare_receive() are the one preparation of senders and
receivers, wherever they run: a local run (prepare(), both in one run when the
receiver is embedded), a paired run's local senders, an agent's job process, a
fleet's worker. net_document() builds the document, with host sections or not.

Workers 0 .. senders-1 send; the rest, when the receiver is embedded, receive
on loopback. A sender's "received" counts echoes, a receiver's counts arrivals;
the document names which side measured what.
"""
import ctypes
import os
import socket
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

from loadgen.errors import SetupError, UsageError
from loadgen.facts import counters, sysinfo
from loadgen.facts.sysinfo import basic_env
from loadgen.net.endpoints import LOOPBACK, close_all, receiver_sockets, resolve, sender_sockets
from loadgen.results import histogram, result
from loadgen.run import metrics as live_metrics, native
from loadgen.run.controller import CompositeRun, Timeline, stacked_rows, worker_cpus
from loadgen.run.intervals import IntervalView
from loadgen.run.job import Outcome, Watch, measure, starting
from loadgen.run.stats import Snapshot
from loadgen.units import format_ns
from loadgen.workload import NetSpec, format_host_port

if TYPE_CHECKING:
    from loadgen.net.packet import PacketSenders
    from loadgen.net.xdp import XdpSenders
    from loadgen.net.packetrx import PacketReceivers

# Bytes a datagram adds on an Ethernet wire besides its payload: UDP 8, Ethernet
# header 14 and FCS 4, preamble 8, inter-frame gap 12; frames are at least 64 bytes.
UDP_HEADER_BYTES, ETH_FRAME_OVERHEAD_BYTES, ETH_GAP_BYTES, ETH_MIN_FRAME_BYTES = 8, 18, 20, 64
IP_HEADER_BYTES = {socket.AF_INET: 20, socket.AF_INET6: 40}


def wire_bytes(size_bytes: int, family: int) -> int:
    """Bytes one datagram occupies on an Ethernet wire, gap and preamble included."""
    frame = size_bytes + UDP_HEADER_BYTES + IP_HEADER_BYTES.get(family, 20) + ETH_FRAME_OVERHEAD_BYTES
    return max(frame, ETH_MIN_FRAME_BYTES) + ETH_GAP_BYTES


NET_HISTOGRAMS = {"latency": ("latency_packet",), "service": ("service_packet",)}


def histogram_tags(spec: NetSpec) -> dict[str, tuple[str, ...]]:
    """The histograms a document embeds, by tag: round trips in echo mode, one way otherwise."""
    prefix = "" if spec.echo else "oneway-"
    return {prefix + tag: names for tag, names in NET_HISTOGRAMS.items()}


class Sides:
    """Which rows of a snapshot are senders and which receivers."""

    def __init__(self, senders: int) -> None:
        self.senders = slice(0, senders)
        self.receivers = slice(senders, None)

    def send(self, s: Snapshot) -> Snapshot:
        return s.rows(self.senders)

    def recv(self, s: Snapshot) -> Snapshot:
        return s.rows(self.receivers)


def _unique(s: Snapshot) -> int:
    return s.counter("received") - s.counter("duplicated")


def measured_by(spec: NetSpec, sides: Sides, embedded: bool, s: Snapshot) -> Snapshot | None:
    """The rows that saw datagrams arrive: senders timing echoes, else the receivers
    when they are ours; None when only sending was measured."""
    if spec.echo:
        return sides.send(s)
    return sides.recv(s) if embedded else None


def interval_view(spec: NetSpec, sides: Sides, embedded: bool) -> IntervalView:
    def measuring(d: Snapshot) -> Snapshot | None:
        return measured_by(spec, sides, embedded, d)

    def tags(d: Snapshot):
        m = measuring(d)
        if m is None:
            return []
        prefix = "" if spec.echo else "oneway-"
        return [(f"{prefix}latency", m.hist("latency_packet")), (f"{prefix}service", m.hist("service_packet"))]

    def extra(d: Snapshot, length_s: float) -> dict:
        m = measuring(d)
        if m is None:
            return {}
        received = _unique(m)
        return {"received": received, "received_pps": round(received / length_s, 3) if length_s else 0.0}

    return IntervalView(
        tags=tags,
        ops_and_bytes=lambda d: (sides.send(d).counter("sent"), sides.send(d).counter("sent_bytes")),
        rate_unit="pps",
        extra=extra,
    )


def net_summary(spec: NetSpec, m, sides: Sides, embedded: bool, family: int, cpu: dict) -> dict:
    ns = m.measured_ns
    snd = sides.send(m.final)
    sent = snd.counter("sent")
    rcv = sides.recv(m.final)
    summary = {
        "duration_s": round(ns / 1e9, 6),
        "sent": sent,
        "sent_pps": result.per_s(sent, ns),
        "rate": result.per_s(sent, ns),
        "ops": sent,
        "bits_per_s": result.per_s(snd.counter("sent_bytes") * 8, ns),
        "wire_bits_per_s": result.per_s(sent * wire_bytes(spec.size_bytes, family) * 8, ns),
        "errors": snd.counter("errors"),
        "errors_by_errno": {result.errno_name(e): n for e, n in sorted(snd.errors_by_errno().items())},
        "refused": snd.counter("refused"),
        "cpu": cpu,
        "schedule_lag_ns": {
            "max": snd.counter("lag_max_ns"),
            "mean": round(snd.counter("lag_sum_ns") / sent, 1) if sent else 0.0,
            "late_ops": snd.counter("late_ops"),
            "unsent": snd.counter("unsent"),
        },
        # Sent ahead of their scheduled time, within the pacing window: each keeps its own time.
        "schedule_early_ns": {
            "max": snd.counter("early_max_ns"),
            "mean": round(snd.counter("early_sum_ns") / sent, 1) if sent else 0.0,
        },
        # Datagrams that went in UDP GSO runs: cut apart by the kernel, each still its own datagram.
        "gso_sent": snd.counter("gso_sent"),
        # Dropped by loadgen's own receiving sockets, their buffers full (the kernel's
        # count, ramp included, as of each socket's last arrival): loss that is not the network's.
        "receiver_socket_drops": rcv.counter("socket_drops") if len(rcv.words) else None,
        "pacing": {**result.pacing_block(m.final), "window_ns": snd.counter("pace_window_ns"),
                   "receiver_window_ns": rcv.counter("pace_window_ns") if len(rcv.words) else None},
    }
    measured = measured_by(spec, sides, embedded, m.final)
    summary["measured_at"] = "echo" if spec.echo else ("receiver" if measured is not None else None)
    if measured is None:
        summary.update({"received": None, "received_pps": None, "lost": None, "loss_ratio": None,
                        "reordered": None, "duplicated": None,
                        "note": "stream mode to an external target: only what was sent is known"})
        return summary
    received = _unique(measured)
    lost = max(0, sent - received)
    summary.update({
        "received": received,
        "received_pps": result.per_s(received, ns),
        "received_bits_per_s": result.per_s(measured.counter("received_bytes") * 8, ns),
        "lost": lost,
        "loss_ratio": round(lost / sent, 9) if sent else 0.0,
        "reordered": measured.counter("reordered"),
        "duplicated": measured.counter("duplicated"),
        "too_old": measured.counter("too_old"),
        "late": measured.counter("late"),
        "foreign": measured.counter("foreign"),
    })
    lat = result.latency_block(measured.hist("latency_packet"))
    svc = result.latency_block(measured.hist("service_packet"))
    if spec.echo:
        summary["latency_ns"], summary["service_ns"] = lat, svc
        # Timed by the kernel: its receive stamp splits the round trip from loadgen's own delay.
        summary["kernel_rtt_ns"] = result.latency_block(measured.hist("kernel_rtt_packet"))
        summary["user_delay_ns"] = result.latency_block(measured.hist("user_delay_packet"))
    else:
        summary["oneway"] = {"latency_ns": lat, "service_ns": svc}
        # Where arrival times came from: the kernel's receive stamp, or loadgen's read.
        stamped = measured.counter("kernel_stamped")
        summary["arrival_clock"] = {"kernel_stamped": stamped,
                                    "user_read": measured.counter("received") - measured.counter("duplicated") - stamped}
    return summary


@dataclass
class Senders:
    """A sending job's open sockets: a connected UDP socket per flow, and for a raw engine
    its frames and AF_PACKET sockets (loadgen/net/packet.py) or AF_XDP sockets (loadgen/net/xdp.py)."""
    socks: list
    cpus: list[int]                       # per sender worker: the CPU it is pinned to
    packet: "PacketSenders | XdpSenders | None" = None

    def facts(self) -> dict:
        """What the result's config says about how they send: config.packet or config.xdp."""
        return {self.packet.engine: self.packet.facts} if self.packet else {}

    def close(self) -> None:
        close_all(self.socks)
        if self.packet:
            self.packet.close()


def open_senders(spec: NetSpec, family: int, sockaddr: tuple) -> Senders:
    """The sockets for spec's senders to sockaddr, whichever engine sends: the one place
    a local run, a paired run's local side and an agent's udp-send job prepare them."""
    socks = sender_sockets(family, sockaddr, spec.flows)
    if spec.engine == "socket":
        return Senders(socks, worker_cpus(spec.common.workers))
    from loadgen.net import packet, xdp

    try:
        engine = xdp if spec.engine == "xdp" else packet
        prepared = engine.prepare(socks, None if spec.per_queue else spec.common.workers, spec.size_bytes)
        return Senders(socks, prepared.cpus, prepared)
    except BaseException:
        close_all(socks)
        raise


def net_config(spec: NetSpec, timeline: Timeline, run_tag: int, senders: Senders | None, receivers: list,
               send_cpus: list[int], recv_cpus: list[int], flow_base: int = 0,
               packet_rx: "PacketReceivers | None" = None) -> native.NetConfig:
    """The native config for senders (one socket per flow) and receivers (one socket each:
    UDP, or with packet_rx its AF_PACKET sockets)."""
    socks = senders.socks if senders else []
    packet = senders.packet if senders else None
    return native.NetConfig(
        senders=len(send_cpus) if socks else 0, receivers=len(receivers), flows=spec.flows,
        size_bytes=spec.size_bytes, batch=spec.batch, echo=int(spec.echo), run_tag=run_tag, first_seq=0,
        flow_base=flow_base, busy_poll=int(spec.common.busy_poll), gso=int(spec.gso),
        engine=native.NET_ENGINES[spec.engine] if packet else native.NET_ENGINE_SOCKET,
        rate_pps=spec.rate_pps or 0, start_ns=timeline.start_ns, ramp_end_ns=timeline.ramp_end_ns,
        end_ns=timeline.end_ns, grace_ns=spec.timeout_ns,
        send_fds=native.int32_array(s.fileno() for s in socks),
        recv_fds=native.int32_array(s.fileno() for s in receivers),
        send_cpus=native.int32_array(send_cpus), recv_cpus=native.int32_array(recv_cpus),
        packet=ctypes.pointer(packet.config()) if packet else None,
        rx_engine=native.NET_RX_ENGINE_PACKET if packet_rx and receivers else native.NET_RX_ENGINE_SOCKET,
        packet_rx=ctypes.pointer(packet_rx.rx) if packet_rx and receivers else None,
    )  # the native run copies the config and its arrays


def engine_name(spec: NetSpec) -> str:
    """The document's engine: udp for UDP sockets, packet for AF_PACKET rings, xdp for AF_XDP sockets."""
    return "udp" if spec.engine == "socket" else spec.engine


def check_started(spec: NetSpec, m, sides: "Sides") -> None:
    """A run whose senders all failed at setup (a TX ring the kernel refused) measured nothing."""
    if m.setup_errno and not sides.send(m.final).counter("sent"):
        raise SetupError(f"the {spec.engine} senders could not start: {os.strerror(m.setup_errno)}")


def new_run_tag() -> int:
    """A run's tag, in every datagram: a receiver counts others' as foreign. Odd, so never 0."""
    return int.from_bytes(os.urandom(4), "little") | 1


@dataclass
class NetJob:
    """Net workers ready to start as one native run: senders (their rows first), receivers,
    or both (a local run's embedded receiver). prepare_send and prepare_receive make them."""
    spec: NetSpec
    run_tag: int
    receivers: list = field(default_factory=list)
    recv_cpus: list[int] = field(default_factory=list)
    senders: Senders | None = None
    send_cpus: list[int] = field(default_factory=list)
    family: int | None = None        # of the address the senders send to
    flow_base: int = 0               # the senders' first flow number (a client's share of a paired run)
    packet_rx: "PacketReceivers | None" = None   # --rx-engine packet: receivers are its AF_PACKET sockets

    @property
    def workers(self) -> int:
        return len(self.send_cpus) + len(self.receivers)

    @property
    def interval_ns(self) -> int:
        return self.spec.common.interval_ns

    def address(self) -> tuple[str, int]:
        """Where the receivers listen."""
        if self.packet_rx:
            return self.packet_rx.address()
        return self.receivers[0].getsockname()[:2]

    def start(self, timeline: Timeline) -> native.Run:
        return native.start_net(net_config(self.spec, timeline, self.run_tag, self.senders, self.receivers,
                                           self.send_cpus, self.recv_cpus, flow_base=self.flow_base,
                                           packet_rx=self.packet_rx))

    def facts(self) -> dict:
        """The receivers' port, the workers' CPUs, the senders' family and engine, the packet
        receivers' capture: what a "ready" says."""
        out = {"port": self.address()[1]} if self.receivers else {}
        out["cpus"] = self.send_cpus + self.recv_cpus
        if self.senders:
            out |= {"family": int(self.family), **self.senders.facts()}
        if self.packet_rx:
            out["packet_rx"] = self.packet_rx.facts
        return out

    def close(self) -> None:
        if self.senders:
            self.senders.close()
        if self.packet_rx:
            self.packet_rx.close()
        else:
            close_all(self.receivers)


def prepare_receive(spec: NetSpec, bind: str, run_tag: int, cpu_offset: int = 0) -> NetJob:
    """spec.receivers sockets bound to bind:spec.port (0: a free port); their workers take the
    CPUs from the cpu_offset-th on (after a local run's senders)."""
    if spec.rx_engine == "packet":
        from loadgen.net import packetrx

        rx = packetrx.prepare(bind, spec.port, spec.receivers)
        return NetJob(spec, run_tag, receivers=rx.socks, recv_cpus=worker_cpus(len(rx.socks), offset=cpu_offset),
                      packet_rx=rx)
    socks = receiver_sockets(bind, spec.port, spec.receivers)
    return NetJob(spec, run_tag, receivers=socks, recv_cpus=worker_cpus(len(socks), offset=cpu_offset))


def prepare_send(spec: NetSpec, host: str, port: int, run_tag: int, flow_base: int = 0,
                 receiving: NetJob | None = None) -> NetJob:
    """spec's senders to host:port, flows numbered from flow_base. receiving: receivers of
    this same run (prepare_receive), which the returned job then owns and closes."""
    family, sockaddr = resolve(host, port)
    senders = open_senders(spec, family, sockaddr)
    return replace(receiving or NetJob(spec, run_tag), senders=senders, send_cpus=senders.cpus,
                   family=family, flow_base=flow_base)


def prepare(spec: NetSpec) -> NetJob:
    """A local run's job: senders to spec.target, or to receivers of its own on loopback."""
    run_tag = new_run_tag()
    if spec.target is not None:
        if spec.rx_engine != "socket":
            raise UsageError("--rx-engine is for loadgen's own receivers (the embedded one, or --peer's), "
                             "not a --target")
        return prepare_send(spec, *spec.target, run_tag)
    receiving = prepare_receive(spec, LOOPBACK, run_tag, cpu_offset=spec.common.workers)
    try:
        return prepare_send(spec, *receiving.address(), run_tag, receiving=receiving)
    except BaseException:
        receiving.close()
        raise


def net_document(spec: NetSpec, out: Outcome, sides: Sides, embedded: bool, family: int, config: dict, env: dict,
                 hosts: "list[tuple[dict, slice]] | None" = None, measured: dict | None = None,
                 host_fields: list[dict] | None = None) -> dict:
    """The result document of a net job, run here or across agents.

    hosts: each part of a paired run (its meta: host, role, clock...) with its rows, which
    get a section each, plus host_fields (its counters) if given; measured: what the kernel
    counted around a local run."""
    m = out.measurement
    check_started(spec, m, sides)
    summary = net_summary(spec, m, sides, embedded, family, out.cpu)
    extra: dict = {}
    if measured is not None:
        exceeded = {n: counters.allowance_exceeded(d) for n, d in measured["nics"].items()}
        if any(exceeded.values()):
            summary["allowance_exceeded"] = exceeded
        extra["counters"] = measured
    if hosts is None:
        measuring = measured_by(spec, sides, embedded, m.final)
        extra["histograms"] = result.total_histograms(measuring, histogram_tags(spec)) if measuring is not None else {}
    else:
        _judge_one_way(summary, [meta for meta, _ in hosts])
        if m.failed:
            summary["note"] = ("a host failed mid-run: each host's counts end at its last report, so "
                               "received and lost are approximate near the end")
        extra["hosts"] = [_host_section(spec, m, meta, rows) for meta, rows in hosts]
        for section, fields in zip(extra["hosts"], host_fields or []):
            section |= fields       # what each host's own counters say (facts/counters.py)
        extra["histograms"] = _paired_histograms(spec, summary, m.final, hosts, extra["hosts"])
    return result.document("net", config, engine_name(spec), m, env, summary, out.rows, **extra,
                           warnings=out.warnings)


async def run_net(spec: NetSpec, hlog_path: str | None = None, watch: Watch | None = None,
                  metrics: "live_metrics.Exporter | None" = None) -> dict:
    """Run one net job and return its result document (interrupted or not)."""
    embedded = spec.target is None
    job = prepare(spec)
    sides = Sides(len(job.send_cpus))     # the packet engine may choose one sender per queue
    parts = [live_metrics.Part("local", "sender", sides.senders, spec.echo)]
    if embedded:
        parts.append(live_metrics.Part("local", "receiver", sides.receivers))
    try:
        host, port = job.address() if embedded else spec.target
        nic = sysinfo.nic_for(host)
        around = counters.Around([nic] if nic else [], [])
        out = await measure(starting(job), spec.common, interval_view(spec, sides, embedded), hlog_path,
                            f"loadgen net {spec.mode} size={spec.size_bytes} flows={spec.flows}; values in ns",
                            watch, metrics=live_metrics.feed(metrics, lambda: parts))
    finally:
        job.close()
    config = spec.to_config() | {"target_address": f"{host}:{port}", "embedded_receiver": embedded,
                                 "senders": len(job.send_cpus), "send_cpus": job.send_cpus,
                                 "recv_cpus": job.recv_cpus} | job.senders.facts() | \
        ({"packet_rx": job.packet_rx.facts} if job.packet_rx else {})
    return net_document(spec, out, sides, embedded, job.family, config,
                        sysinfo.run_env(engine_name(spec), nics=[nic] if nic else []), measured=around.finish())


PAIRED_LEAD_NS = 3_000_000_000  # remote jobs start in child processes: give them time


async def run_net_paired(spec: NetSpec, peer: tuple[str, int], clients: list[tuple[str, int]], connect,
                         hlog_path: str | None = None, watch: Watch | None = None,
                         metrics: "live_metrics.Exporter | None" = None) -> dict:
    """Receivers on the peer's agent; senders here, or on each client's agent.

    connect(host, port) returns an AgentClient. Every job is prepared first
    (processes, sockets, ports), then all are told the same timeline, so the
    senders start together. The document has a section per host and a total;
    histograms merge by adding counts."""
    agents = {}
    local_jobs: list[NetJob] = []
    try:
        for addr in [peer, *clients]:
            if addr not in agents:
                agents[addr] = await connect(*addr)
        plan = await _prepare_paired(spec, peer, clients, agents, local_jobs)
        local_counters = counters.route_to(peer[0]) if not clients else None   # the agents read their own
        sides = Sides(sum(p.workers for p, meta in zip(plan.parts, plan.meta) if meta["role"] == "sender"))

        async def start(timeline: Timeline) -> CompositeRun:
            for part, meta in zip(plan.parts, plan.meta):
                if meta["host"] != "local":
                    await agents[meta["addr"]].go(part, timeline)
            return CompositeRun([part.start(timeline) if meta["host"] == "local" else part
                                 for part, meta in zip(plan.parts, plan.meta)])

        view = interval_view(spec, sides, True)
        view.extra = _with_hosts(spec, view.extra, plan)
        out = await measure(start, spec.common, view, hlog_path,
                            f"loadgen net {spec.mode} size={spec.size_bytes} paired; values in ns",
                            watch, lead_ns=PAIRED_LEAD_NS, metrics=live_metrics.feed(metrics, lambda: _metric_parts(spec, plan)))
    finally:
        for job in local_jobs:
            job.close()
        for a in agents.values():
            await a.close()
    config = spec.to_config() | {"peer": f"{peer[0]}:{peer[1]}", "clients": [f"{h}:{p}" for h, p in clients],
                                 "embedded_receiver": False, "senders": sides.senders.stop,
                                 "target_address": f"{peer[0]}:{plan.data_port}"}
    for job in local_jobs:
        config |= job.senders.facts()
    host_counters = [counters.host_fields(local_counters.finish() if meta["host"] == "local" else part.counters)
                     for part, meta in zip(plan.parts, plan.meta)]
    return net_document(spec, out, sides, True, plan.family, config, basic_env(), hosts=plan.hosts(),
                        host_fields=host_counters)


def _measuring_role(spec: NetSpec) -> str:
    """Who times datagrams in a paired run: the senders their echoes, else the receiver arrivals."""
    return "sender" if spec.echo else "receiver"


def _paired_histograms(spec: NetSpec, summary: dict, final: Snapshot, hosts: list[tuple[dict, slice]],
                       sections: list[dict]) -> dict:
    """The document's total histograms; each measuring host's own go into its section.

    One-way delays the summary dropped (clocks aligned too coarsely) are dropped here too:
    a histogram the summary disowns would be drawn as if it meant something."""
    if not spec.echo and "oneway" not in summary:
        return {}
    role = _measuring_role(spec)
    measuring = [i for i, (meta, _) in enumerate(hosts) if meta["role"] == role]
    total, per_host = result.host_histograms(final, [hosts[i][1] for i in measuring], histogram_tags(spec))
    for i, hists in zip(measuring, per_host):
        sections[i]["histograms"] = hists
    return total


@dataclass(frozen=True)
class PairedPlan:
    """Every part of a paired run, prepared before the timeline is fixed, and not changed after:
    starting the run reads it, and so does everything that reports per host."""
    parts: list            # sender parts first, the receiver last: an agent's RemoteRun, or the local NetJob
    meta: list[dict]       # per part: host, role, clock...
    data_port: int
    family: int            # of the receiver's data address: it sizes the headers on the wire
    rows: list[slice]      # per part, its workers' rows in the run's snapshots (CompositeRun stacks them so)

    def hosts(self) -> list[tuple[dict, slice]]:
        return list(zip(self.meta, self.rows))


def split_rate(rate_pps: int, parts: int) -> list[int]:
    """rate_pps shared by parts senders, adding up exactly: the first rate_pps % parts send one more."""
    each, extra = divmod(rate_pps, parts)
    return [each + (i < extra) for i in range(parts)]


async def _prepare_paired(spec: NetSpec, peer, clients, agents, local_jobs: list) -> PairedPlan:
    """Prepare the receiver on the peer, then the senders: on each client, or here (put in
    local_jobs, for the caller to close)."""
    run_tag = new_run_tag()
    n_clients = max(1, len(clients))
    rates = split_rate(spec.rate_pps, n_clients) if spec.rate_pps else [None] * n_clients
    if spec.rate_pps and not all(rates):
        raise UsageError("the rate is below one datagram per second per client")
    receiver = agents[peer]
    recv_run = await receiver.prepare({
        "kind": "udp-receive", "run_tag": run_tag,
        "options": spec.to_wire(flows=spec.flows * n_clients, port=0, workers=spec.receivers, target=None)})
    data_port = int(recv_run.ready["port"])
    parts, meta = [], []
    if clients:
        family, _ = resolve(peer[0], data_port)   # sized as the datagrams the clients send there
    for i, addr in enumerate(clients):
        parts.append(await agents[addr].prepare({
            "kind": "udp-send", "run_tag": run_tag, "flow_base": i * spec.flows,
            "options": spec.to_wire(target=format_host_port(peer[0], data_port), pps=rates[i])}))
        meta.append({"host": agents[addr].name, "addr": addr, "role": "sender",
                     "clock": agents[addr].clock.as_dict(), "agent": agents[addr].info,
                     "env": parts[-1].ready.get("env")})
    if not clients:
        local = prepare_send(spec, peer[0], data_port, run_tag)
        local_jobs.append(local)
        family = local.family
        parts.append(local)
        meta.append({"host": "local", "role": "sender", "clock": None})
    parts.append(recv_run)
    meta.append({"host": receiver.name, "addr": peer, "role": "receiver",
                 "clock": receiver.clock.as_dict(), "agent": receiver.info, "data_port": data_port,
                 "env": recv_run.ready.get("env")} |
                ({"packet_rx": recv_run.ready["packet_rx"]} if recv_run.ready.get("packet_rx") else {}))
    return PairedPlan(parts, meta, data_port, family, stacked_rows([p.workers for p in parts]))


def _with_hosts(spec: NetSpec, extra: Callable, plan: PairedPlan) -> Callable:
    """Interval rows of a paired run also count per host: sent by senders, received by the receiver."""
    def with_hosts(d: Snapshot, length_s: float) -> dict:
        out = extra(d, length_s)
        hosts = {}
        for meta, rows in plan.hosts():
            part = d.rows(rows)
            n = part.counter("sent") if meta["role"] == "sender" else _unique(part)
            hosts[meta["host"]] = {"role": meta["role"], "ops": n, "rate": round(n / length_s, 3) if length_s else 0.0}
            if meta["role"] == _measuring_role(spec):
                hosts[meta["host"]]["latency_ns"] = histogram.interval_summary(part.hist("latency_packet"))
        out["hosts"] = hosts
        return out

    return with_hosts


def _metric_parts(spec: NetSpec, plan: PairedPlan) -> list:
    """Each host's rows for --metrics: per host, as the document's host sections."""
    return [live_metrics.Part(meta["host"], meta["role"], r, spec.echo and meta["role"] == "sender")
            for meta, r in plan.hosts()]


def _judge_one_way(summary: dict, meta: list[dict]) -> None:
    """Keep the receiver's one-way delay only if the clocks are known well enough."""
    from loadgen.fleet.clock import one_way_meaningful

    if "oneway" not in summary:
        return
    # The delay depends on every sender's clock and the receiver's.
    error_ns = sum(m["clock"]["error_ns"] for m in meta if m["clock"])
    median = summary["oneway"]["latency_ns"]["p50"]
    if one_way_meaningful(error_ns, median):
        summary["oneway"]["clock_error_ns"] = error_ns
    else:
        del summary["oneway"]
        summary["oneway_omitted"] = (f"the clocks are aligned only to ± {format_ns(error_ns)}, too coarse "
                                     f"beside a median one-way delay of {format_ns(median)}")


def _host_section(spec: NetSpec, m, meta: dict, rows: slice) -> dict:
    part = m.final.rows(rows)
    ns = m.measured_ns
    section = {k: v for k, v in meta.items() if k != "addr"} | {"workers": rows.stop - rows.start}
    if meta["role"] == "sender":
        section.update(sent=part.counter("sent"), sent_pps=result.per_s(part.counter("sent"), ns),
                       errors=part.counter("errors"))
        if spec.echo:
            section["received"] = _unique(part)
            section["latency_ns"] = result.latency_block(part.hist("latency_packet"))
    else:
        section.update(received=_unique(part), received_pps=result.per_s(_unique(part), ns),
                       reordered=part.counter("reordered"), duplicated=part.counter("duplicated"))
    return section
