"""The xdp engine's senders, prepared: the packet engine's path and frames, sent from AF_XDP sockets.

A sending job holds what a packet-engine one holds (loadgen/net/packet.py): a
connected UDP socket per flow, which reserves the flow's source port, and frames
built once for the path the kernel routes the target through. Instead of
AF_PACKET rings it opens one AF_XDP socket per sender (native/xdp.c), each with
its own UMEM, bound to its own TX queue of the egress interface: zero-copy where
the driver supports it, else copy. Sending needs no XDP program.

Queues: one sender per TX queue by default, queues 0, 1, ..., at most one per CPU
this process may use, each pinned near its queue's IRQ where one exists
(queues.bound_plan); --workers N binds N senders to queues 0 .. N-1, so N may not
exceed the queues (a queue takes one AF_XDP socket with its own UMEM).

Its facts go into the result's config under "xdp": the path's (as for packet),
mode ("zerocopy" or "copy", as the kernel bound the sockets), zero_copy,
need_wakeup, and the queues (tx_queues, queue_decided_by "bind", each sender's
CPU, queue and IRQ).

Errors are one line each: without CAP_NET_RAW (AF_XDP sockets need it), where
the kernel has no AF_XDP, where a queue is taken, where UMEM cannot be locked.
"""
import errno
import os
import socket
from dataclasses import dataclass

from loadgen.errors import SetupError, UsageError
from loadgen.net import queues
from loadgen.net.packet import Frames, prepare_frames
from loadgen.run import native

AF_XDP = 44                  # linux/socket.h
MAX_FRAME_BYTES = 4096       # native/loadgen.h LG_XDP_MAX_FRAME_BYTES: a UMEM chunk is at most a page
NO_CAPABILITY = "--engine xdp needs CAP_NET_RAW to open AF_XDP sockets"


@dataclass
class XdpSenders:
    xsks: list[native.Xsk]       # one per sender worker, sender i on queue i
    cpus: list[int]              # per sender worker: the CPU it is pinned to
    frames: Frames
    facts: dict
    engine: str = "xdp"          # the result's config key for facts

    def config(self) -> native.PacketConfig:
        t = self.frames.template
        return native.packet_config(None, t.frame, t.udp_offset, self.frames.src_ports, self.frames.csum_base,
                                    xsks=self.xsks)

    def close(self) -> None:
        for x in self.xsks:
            x.close()


def unavailable_reason(err: int) -> str | None:
    """The one line for an errno that means this host cannot run the xdp engine at all, or None."""
    if err == errno.EPERM or err == errno.EACCES:
        return NO_CAPABILITY
    if err in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        return "--engine xdp is unavailable: this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"
    return None


def check_available() -> None:
    """One AF_XDP socket opened and closed: SetupError naming what is missing."""
    try:
        socket.socket(AF_XDP, socket.SOCK_RAW, 0).close()
    except OSError as e:
        raise SetupError(unavailable_reason(e.errno) or f"cannot open an AF_XDP socket: {e.strerror}") from None


def open_xsk(interface: str, queue: int, frame_bytes: int) -> native.Xsk:
    """An AF_XDP socket on the interface's TX queue; SetupError with the reason."""
    try:
        return native.Xsk(socket.if_nametoindex(interface), queue, frame_bytes)
    except OSError as e:
        why = unavailable_reason(e.errno)
        if why:
            raise SetupError(why) from None
        if e.errno == errno.EBUSY:
            raise SetupError(f"TX queue {queue} of {interface} already has an AF_XDP socket") from None
        if e.errno == errno.ENOBUFS:
            raise SetupError("cannot lock AF_XDP UMEM: raise the memlock limit (ulimit -l) or grant "
                             "CAP_IPC_LOCK") from None
        raise SetupError(f"cannot bind an AF_XDP socket to {interface} queue {queue}: {e.strerror}") from None


def mode_name(xsks: list[native.Xsk]) -> str:
    """zerocopy, copy, or mixed when the kernel bound the queues differently."""
    zc = {x.zero_copy for x in xsks}
    return "mixed" if len(zc) > 1 else "zerocopy" if zc == {True} else "copy"


def prepare(udp_socks: list[socket.socket], workers: int | None, size_bytes: int) -> XdpSenders:
    """The xdp senders for flows whose connected UDP sockets are udp_socks: workers of them
    bound to queues 0 .. workers-1, or with None one per TX queue (at most one per flow and CPU)."""
    check_available()   # first: without CAP_NET_RAW or AF_XDP nothing else is worth doing
    sent = prepare_frames(udp_socks, size_bytes, "xdp", MAX_FRAME_BYTES)
    dev = sent.path.interface
    try:
        place = queues.bound_plan(dev, sorted(os.sched_getaffinity(0)), workers)
    except ValueError as e:
        raise UsageError(f"invalid workers: {workers} (--engine xdp binds one sender per TX queue: {e})") from None
    place = queues.Plan(place.places[:len(udp_socks)], place.tx_queues, place.decided, place.irqs)
    xsks: list[native.Xsk] = []
    try:
        for p in place.places:
            xsks.append(open_xsk(dev, p.queue, len(sent.template.frame)))
    except BaseException:
        for x in xsks:
            x.close()
        raise
    facts = sent.facts() | {"mode": mode_name(xsks), "zero_copy": all(x.zero_copy for x in xsks),
                            "need_wakeup": all(x.need_wakeup for x in xsks)} | place.facts()
    return XdpSenders(xsks, [p.cpu for p in place.places], sent, facts)
