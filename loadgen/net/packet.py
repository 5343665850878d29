"""The packet engine's senders, prepared: path, frames and AF_PACKET sockets.

prepare_frames() (path and frames) is shared with the xdp engine (loadgen/net/xdp.py).

A packet-engine sending job holds what a socket-engine one holds, a connected
UDP socket per flow, though it never sends on them: they reserve the flows'
source ports (each flow its own, so RSS spreads them) and tell the source
address the stack would use. Beside them it holds one AF_PACKET socket per
sender worker, bound to the egress interface the kernel routes the target
through (loadgen/net/route.py); native/packet.c puts a TX ring on each. Frames are
built here once (loadgen/net/frames.py), addressed to the next hop's MAC.

How many senders there are and where they run is decided here too, once the
egress interface is known (loadgen/net/queues.py): by default one per TX queue,
pinned to a CPU whose frames the kernel sends to that queue, near its IRQ.

Its facts go into the result's config under "packet": the interface, its
driver and TX queues, each sender's CPU, queue and IRQ, what decides the queue,
the next hop, whether qdisc bypass was granted, and zero_copy (false: the kernel
copies every AF_PACKET frame, see native/packet.c).
"""
import os
import ipaddress
import socket
from dataclasses import dataclass

from loadgen.errors import SetupError, UsageError
from loadgen.facts import sysinfo
from loadgen.net import frames, queues, route
from loadgen.net.endpoints import close_all, packet_bind, packet_sockets
from loadgen.options import PKT_HEADER_BYTES
from loadgen.run import native

MAX_FRAME_BYTES = 65535   # native/loadgen.h LG_PACKET_MAX_FRAME_BYTES


@dataclass(frozen=True)
class Frames:
    """What both raw engines (packet, xdp) send: the path, the template frame and each flow's patches."""
    path: route.Path
    template: frames.Template
    src_ports: list[int]         # per flow
    csum_base: list[int]         # per flow

    def facts(self, interface_facts: dict | None = None) -> dict:
        """The result's fields about the path, for config.packet or config.xdp."""
        nic = sysinfo.nic(self.path.interface) if interface_facts is None else interface_facts
        return {
            "interface": self.path.interface,
            "driver": nic.get("driver") or self.path.kind,
            "mtu": self.path.mtu,
            "next_hop": self.path.next_hop,
            "next_hop_mac": self.path.next_hop_mac,
            "local_delivery": self.path.local,
        }


def prepare_frames(udp_socks: list[socket.socket], size_bytes: int, engine: str, max_frame_bytes: int) -> Frames:
    """The path to the flows' destination, as the kernel routes it, and the frames to send there:
    SetupError when the path cannot be used, UsageError when size_bytes does not fit a frame."""
    src_ip, dst = udp_socks[0].getsockname()[0], udp_socks[0].getpeername()
    dst_ip, dst_port = dst[0].split("%")[0], dst[1]
    path = route.resolve_path(dst_ip)
    if path.local:
        why = route.local_delivery_refusal(dst_ip, engine=engine)
        if why:
            raise SetupError(why)
    version = ipaddress.ip_address(dst_ip).version
    most = min(frames.max_payload_bytes(path.mtu, version),
               frames.max_payload_bytes(max_frame_bytes - frames.ETH_HEADER_BYTES, version))
    if size_bytes > most:
        raise UsageError(f"invalid size: {size_bytes} (--engine {engine} sends unfragmented frames: "
                         f"{PKT_HEADER_BYTES} to {most} on {path.interface}, MTU {path.mtu})")
    template = frames.build(path.src_mac, path.next_hop_mac, src_ip, dst_ip, dst_port, size_bytes)
    ports = [s.getsockname()[1] for s in udp_socks]
    return Frames(path, template, ports, [frames.csum_base(template, p) for p in ports])


@dataclass
class PacketSenders:
    socks: list[socket.socket]   # AF_PACKET, one per sender worker
    cpus: list[int]              # per sender worker: the CPU it is pinned to
    frames: Frames
    facts: dict
    engine: str = "packet"       # the result's config key for facts

    def config(self) -> native.PacketConfig:
        t = self.frames.template
        return native.packet_config([s.fileno() for s in self.socks], t.frame, t.udp_offset, self.frames.src_ports,
                                    self.frames.csum_base)

    def close(self) -> None:
        close_all(self.socks)


def prepare(udp_socks: list[socket.socket], workers: int | None, size_bytes: int) -> PacketSenders:
    """The packet senders for flows whose connected UDP sockets are udp_socks: workers of
    them, or with None one per TX queue (at most one per flow and one per CPU)."""
    raw, bypass = packet_sockets(1)   # first: without CAP_NET_RAW nothing else is worth doing
    try:
        sent = prepare_frames(udp_socks, size_bytes, "packet", MAX_FRAME_BYTES)
        place = queues.plan(sent.path.interface, sorted(os.sched_getaffinity(0)), workers, bypass)
        place = queues.Plan(place.places[:len(udp_socks)], place.tx_queues, place.decided, place.irqs)
        more, more_bypass = packet_sockets(len(place.places) - 1)
        raw += more
        bypass = bypass and more_bypass
        packet_bind(raw, sent.path.interface)
    except BaseException:
        close_all(raw)
        raise
    facts = sent.facts() | {"qdisc_bypass": bypass, "zero_copy": False} | place.facts()
    return PacketSenders(raw, [p.cpu for p in place.places], sent, facts)
