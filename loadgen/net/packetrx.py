"""The packet engine's receivers, prepared: AF_PACKET RX rings in one fanout group, their
filter, and the UDP socket that holds the port (--rx-engine packet).

Vocabulary:
- holder   one UDP socket bound where the socket receivers would bind (the same port
           check: no other run may receive there). It reserves the port and keeps the
           kernel from answering each datagram with an ICMP port unreachable; its socket
           filter drops every datagram, so the stack discards them at that socket (the
           namespace's Udp InErrors count them) instead of queueing them for nobody.
- capture  where the rings listen: the interface that holds the bound address (lo for
           loopback), or every interface for a wildcard address. Frames from this host
           to its own address come through lo only.
- filter   a classic BPF program (SO_ATTACH_FILTER, no new dependency): IPv4 or IPv6
           UDP to the bound address (any, for a wildcard) and port, arriving (not
           outgoing), IPv4 unfragmented (the group reassembles fragments first), IPv6
           without extension headers. The rings see nothing else.
- group    the receivers' sockets share one PACKET_FANOUT_HASH group, numbered by the
           kernel, so each flow reaches one receiver (native/packetrx.c).

udp_filter() is pure: it returns the program as (code, jt, jf, k) tuples.
"""
import ipaddress
import socket
import struct
from dataclasses import dataclass

from loadgen.errors import SetupError
from loadgen.net.endpoints import close_all, receiver_sockets
from loadgen.run import native

ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
IPPROTO_UDP = 17
IPV4_FRAGMENT_MASK = 0x3FFF    # MF and the fragment offset

# Classic BPF (linux/filter.h): instruction classes, sizes, modes and jumps.
BPF_LD, BPF_LDX, BPF_JMP, BPF_RET = 0x00, 0x01, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_ABS, BPF_MSH, BPF_IND = 0x20, 0xA0, 0x40
BPF_JEQ, BPF_JSET, BPF_K = 0x10, 0x40, 0x00
# Ancillary loads: the skb's protocol (its ethertype) and packet type.
SKF_AD_OFF, SKF_AD_PROTOCOL, SKF_AD_PKTTYPE = -0x1000, 0, 4
ACCEPT_BYTES = 0xFFFFFFFF      # ret: keep the whole frame

DROP_ALL = [(BPF_RET | BPF_K, 0, 0, 0)]


def udp_filter(family: int, address: str | None, port: int) -> list[tuple[int, int, int, int]]:
    """The program that passes UDP to address:port (None: any address of the family), its
    offsets counted from the IP header (a SOCK_DGRAM packet socket's view)."""
    prog: list = []   # (code, target when true or None, target when false or None, k)

    def load(size: int, offset: int) -> None:
        prog.append((BPF_LD | size | BPF_ABS, None, None, offset & 0xFFFFFFFF))

    def must_equal(k: int) -> None:
        prog.append((BPF_JMP | BPF_JEQ | BPF_K, None, "drop", k))

    load(BPF_W, SKF_AD_OFF + SKF_AD_PKTTYPE)
    prog.append((BPF_JMP | BPF_JEQ | BPF_K, "drop", None, PACKET_OUTGOING))
    load(BPF_W, SKF_AD_OFF + SKF_AD_PROTOCOL)
    if family == socket.AF_INET:
        must_equal(ETH_P_IP)
        load(BPF_B, 9)
        must_equal(IPPROTO_UDP)
        load(BPF_H, 6)
        prog.append((BPF_JMP | BPF_JSET | BPF_K, "drop", None, IPV4_FRAGMENT_MASK))
        if address is not None:
            load(BPF_W, 16)
            must_equal(int(ipaddress.IPv4Address(address)))
        prog.append((BPF_LDX | BPF_B | BPF_MSH, None, None, 0))    # x = the IP header's length
        prog.append((BPF_LD | BPF_H | BPF_IND, None, None, 2))      # the UDP destination port
    else:
        must_equal(ETH_P_IPV6)
        load(BPF_B, 6)
        must_equal(IPPROTO_UDP)
        if address is not None:
            for i, word in enumerate(struct.unpack("!4I", ipaddress.IPv6Address(address).packed)):
                load(BPF_W, 24 + 4 * i)
                must_equal(word)
        load(BPF_H, 40 + 2)
    must_equal(port)
    prog.append((BPF_RET | BPF_K, None, None, ACCEPT_BYTES))
    prog.append((BPF_RET | BPF_K, None, None, 0))
    drop = len(prog) - 1
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        rel = {None: 0, "drop": drop - i - 1}
        out.append((code, rel[jt], rel[jf], k))
    return out


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel copies the program, so the buffer need only live for the call."""
    import ctypes

    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf)))


@dataclass
class PacketReceivers:
    holder: socket.socket            # UDP, bound: holds the port, drops what it is given
    socks: list[socket.socket]       # AF_PACKET, one per receiver worker
    rx: native.PacketRxConfig
    facts: dict

    def address(self) -> tuple[str, int]:
        return self.holder.getsockname()[:2]

    def close(self) -> None:
        close_all(self.socks)
        self.holder.close()


def capture_interface(address: str) -> str | None:
    """The interface whose frames carry datagrams to address: lo for loopback, the one that
    holds it, or None (every interface) for a wildcard; SetupError when none holds it."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.is_unspecified:
        return None
    if ip.is_loopback:
        return "lo"
    from loadgen.net.route import ip_json

    for link in ip_json("addr", "show"):
        if any(a.get("local") == str(ip) for a in link.get("addr_info", [])):
            return link["ifname"]
    raise SetupError(f"--rx-engine packet: no interface holds {address}")


def prepare(host: str, port: int, receivers: int) -> PacketReceivers:
    """receivers packet receivers of UDP to host:port (0: a free port), with the holder."""
    holder = receiver_sockets(host, port, 1)[0]
    socks: list[socket.socket] = []
    try:
        attach_filter(holder, DROP_ALL)
        address, bound_port = holder.getsockname()[:2]
        family = holder.family
        interface = capture_interface(address)
        ifindex = socket.if_nametoindex(interface) if interface else 0
        wildcard = ipaddress.ip_address(address.split("%")[0]).is_unspecified
        prog = udp_filter(family, None if wildcard else address.split("%")[0], bound_port)
        rx = native.PacketRxConfig(block_bytes=native.limit("packet_rx_block_bytes"),
                                   blocks=native.limit("packet_rx_blocks"))
        group = None
        for _ in range(receivers):
            try:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            except PermissionError:
                raise SetupError("--rx-engine packet needs CAP_NET_RAW to open AF_PACKET sockets") from None
            socks.append(s)
            attach_filter(s, prog)
            try:
                group = native.packet_rx_open(s.fileno(), ifindex, ETH_P_IP if family == socket.AF_INET else ETH_P_IPV6,
                                              rx, group)
            except OSError as e:
                raise SetupError(f"cannot set up the packet receivers' rings on {interface or 'every interface'}: "
                                 f"{e.strerror}") from None
    except BaseException:
        close_all(socks)
        holder.close()
        raise
    facts = {
        "interface": interface,
        "fanout": "hash",
        "fanout_group": group,
        "receivers": receivers,
        "ring_bytes": rx.block_bytes * rx.blocks,
        "udp_port_holder": True,
    }
    return PacketReceivers(holder, socks, rx, facts)
