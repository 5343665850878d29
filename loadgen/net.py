"""The net job: a NetSpec in, a result document out.

Workers 0 .. senders-1 send; the rest, when the receiver is embedded, receive
on loopback. A sender's "received" counts echoes, a receiver's counts arrivals;
the document names which side measured what.
"""
import os
import socket

from loadgen import native, results
from loadgen.controller import Timeline, worker_cpus
from loadgen.endpoints import LOOPBACK, close_all, receiver_sockets, resolve, sender_sockets
from loadgen.intervals import IntervalView
from loadgen.job import measure
from loadgen.stats import Snapshot
from loadgen.sysinfo import basic_env
from loadgen.workload import NetSpec

# Bytes a datagram adds on an Ethernet wire besides its payload: UDP 8, Ethernet
# header 14 and FCS 4, preamble 8, inter-frame gap 12; frames are at least 64 bytes.
UDP_HEADER_BYTES, ETH_FRAME_OVERHEAD_BYTES, ETH_GAP_BYTES, ETH_MIN_FRAME_BYTES = 8, 18, 20, 64
IP_HEADER_BYTES = {socket.AF_INET: 20, socket.AF_INET6: 40}


def wire_bytes(size_bytes: int, family: int) -> int:
    """Bytes one datagram occupies on an Ethernet wire, gap and preamble included."""
    frame = size_bytes + UDP_HEADER_BYTES + IP_HEADER_BYTES.get(family, 20) + ETH_FRAME_OVERHEAD_BYTES
    return max(frame, ETH_MIN_FRAME_BYTES) + ETH_GAP_BYTES


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


def interval_view(spec: NetSpec, sides: Sides, embedded: bool) -> IntervalView:
    def measuring(d: Snapshot) -> Snapshot | None:
        if spec.echo:
            return sides.send(d)
        return sides.recv(d) if embedded else None

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
    per_s = (lambda n: round(n * 1e9 / ns, 3)) if ns > 0 else (lambda n: 0.0)
    snd = sides.send(m.final)
    sent = snd.counter("sent")
    summary = {
        "duration_s": round(ns / 1e9, 6),
        "sent": sent,
        "sent_pps": per_s(sent),
        "rate": per_s(sent),
        "ops": sent,
        "bits_per_s": per_s(snd.counter("sent_bytes") * 8),
        "wire_bits_per_s": per_s(sent * wire_bytes(spec.size_bytes, family) * 8),
        "errors": snd.counter("errors"),
        "errors_by_errno": {results.errno_name(e): n for e, n in sorted(snd.errors_by_errno().items())},
        "refused": snd.counter("refused"),
        "cpu": cpu,
        "schedule_lag_ns": {
            "max": snd.counter("lag_max_ns"),
            "mean": round(snd.counter("lag_sum_ns") / sent, 1) if sent else 0.0,
            "late_ops": snd.counter("late_ops"),
        },
    }
    if spec.echo:
        measured, where = snd, "echo"
    elif embedded:
        measured, where = sides.recv(m.final), "receiver"
    else:
        measured, where = None, None
    summary["measured_at"] = where
    if measured is None:
        summary.update({"received": None, "received_pps": None, "lost": None, "loss_ratio": None,
                        "reordered": None, "duplicated": None,
                        "note": "stream mode to an external target: only what was sent is known"})
        return summary
    received = _unique(measured)
    lost = max(0, sent - received)
    summary.update({
        "received": received,
        "received_pps": per_s(received),
        "received_bits_per_s": per_s(measured.counter("received_bytes") * 8),
        "lost": lost,
        "loss_ratio": round(lost / sent, 9) if sent else 0.0,
        "reordered": measured.counter("reordered"),
        "duplicated": measured.counter("duplicated"),
        "too_old": measured.counter("too_old"),
        "late": measured.counter("late"),
        "foreign": measured.counter("foreign"),
    })
    lat = results.latency_block(measured.hist("latency_packet"))
    svc = results.latency_block(measured.hist("service_packet"))
    if spec.echo:
        summary["latency_ns"], summary["service_ns"] = lat, svc
    else:
        summary["oneway"] = {"latency_ns": lat, "service_ns": svc}
    return summary


def net_config(spec: NetSpec, timeline: Timeline, run_tag: int, senders: list, receivers: list,
               send_cpus: list[int], recv_cpus: list[int]) -> native.NetConfig:
    """The native config for senders (one socket per flow) and receivers (one socket each)."""
    return native.NetConfig(
        senders=len(send_cpus) if senders else 0, receivers=len(receivers), flows=spec.flows,
        size_bytes=spec.size_bytes, batch=spec.batch, echo=int(spec.echo), run_tag=run_tag, first_seq=0,
        rate_pps=spec.rate_pps or 0, start_ns=timeline.start_ns, ramp_end_ns=timeline.ramp_end_ns,
        end_ns=timeline.end_ns, grace_ns=spec.timeout_ns,
        send_fds=native.int32_array(s.fileno() for s in senders),
        recv_fds=native.int32_array(s.fileno() for s in receivers),
        send_cpus=native.int32_array(send_cpus), recv_cpus=native.int32_array(recv_cpus),
    )  # the native run copies the config and its arrays


async def run_net(spec: NetSpec, hlog_path: str | None = None, quiet: bool = False) -> dict:
    """Run one net job and return its result document (interrupted or not)."""
    embedded = spec.target is None
    receivers = receiver_sockets(LOOPBACK, spec.port, spec.receivers) if embedded else []
    try:
        if embedded:
            host, port = receivers[0].getsockname()[:2]
        else:
            host, port = spec.target
        family, sockaddr = resolve(host, port)
        senders = sender_sockets(family, sockaddr, spec.flows)
    except BaseException:
        close_all(receivers)
        raise
    n_send = spec.common.workers
    sides = Sides(n_send)
    send_cpus, recv_cpus = worker_cpus(n_send), worker_cpus(len(receivers), offset=n_send)
    run_tag = int.from_bytes(os.urandom(4), "little") | 1

    def start(timeline: Timeline) -> native.Run:
        return native.start_net(net_config(spec, timeline, run_tag, senders, receivers, send_cpus, recv_cpus))

    try:
        out = await measure(start, spec.common, interval_view(spec, sides, embedded), hlog_path,
                            f"loadgen net {spec.mode} size={spec.size_bytes} flows={spec.flows}; values in ns",
                            quiet)
    finally:
        close_all(senders)
        close_all(receivers)
    m = out.measurement
    config = spec.to_config() | {"target_address": f"{host}:{port}", "embedded_receiver": embedded,
                                 "senders": n_send, "send_cpus": send_cpus, "recv_cpus": recv_cpus}
    return results.document("net", config, "udp", m, basic_env(),
                            net_summary(spec, m, sides, embedded, family, out.cpu), out.rows)
