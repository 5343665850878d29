"""UDP endpoints: resolving the target and opening the sockets the native workers use.

Sockets are made here, at the I/O edge, so that errors such as an unknown host
or a port in use become one-line messages; the native side only gets fds.

Receivers share a port through SO_REUSEPORT, one socket per receiver thread, so
the kernel spreads flows over them. Linux lets any socket of the same user join
such a group, so another run (`serve --port P` beside `net --port P`) would get
half the datagrams and neither would notice. So after binding, the group checks
the kernel's table of UDP sockets (/proc/net/udp and udp6) for any other socket
on its port and address: if there is one, the port is in use. Whichever of two
runs binds second sees the first; both fail only if they bind at the same moment.
"""
import errno
import ipaddress
import os
import socket
import struct
import sys

from loadgen.errors import SetupError, UsageError

SOCKET_BUFFER_BYTES = 8 << 20
RECV_TIMEOUT_US = 50_000  # receivers wake at least this often to see a stop
LOOPBACK = "127.0.0.1"


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(family, sockaddr) of a UDP endpoint; UsageError when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve {host}: {e.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _grow_buffers(sock: socket.socket) -> None:
    """Large buffers absorb bursts; as root the FORCE options pass net.core.*mem_max."""
    for force, plain in ((32, socket.SO_SNDBUF), (33, socket.SO_RCVBUF)):  # SO_SNDBUFFORCE, SO_RCVBUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER_BYTES)


def sender_sockets(family: int, sockaddr: tuple, flows: int) -> list[socket.socket]:
    """One connected, non-blocking socket per flow, each on its own source port."""
    socks = []
    try:
        for _ in range(flows):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            _grow_buffers(s)
            s.setblocking(False)
            s.connect(sockaddr)
    except OSError as e:
        for s in socks:
            s.close()
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            raise SetupError(f"cannot reach {sockaddr[0]}:{sockaddr[1]}: {os.strerror(e.errno)}") from None
        raise SetupError(f"cannot open UDP sockets: {e.strerror}") from None
    return socks


def receiver_sockets(host: str, port: int, n: int) -> list[socket.socket]:
    """n sockets sharing host:port through SO_REUSEPORT, with a bounded receive wait.
    SetupError when any other socket holds the port (port 0: another free one is tried)."""
    for _ in range(PORT_ZERO_TRIES if port == 0 else 1):
        socks = _bind_group(host, port, n)
        if not _others_on(socks):
            return socks
        close_all(socks)
    raise SetupError(f"port {port} is in use on {host}")


# Port 0 with SO_REUSEPORT may be handed a port another same-user group holds; try again.
PORT_ZERO_TRIES = 8


def _bind_group(host: str, port: int, n: int) -> list[socket.socket]:
    family, sockaddr = resolve(host, port)
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _grow_buffers(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, RECV_TIMEOUT_US))
            s.bind(sockaddr)
            sockaddr = s.getsockname()  # port 0 chose one: the others join it
    except OSError as e:
        close_all(socks)
        if e.errno == errno.EADDRINUSE:
            raise SetupError(f"port {port} is in use on {host}") from None
        if e.errno == errno.EACCES:
            raise SetupError(f"no permission to bind port {port}") from None
        raise SetupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return socks


def _others_on(group: list[socket.socket]) -> bool:
    """Whether a UDP socket outside group is bound where group receives (the same port, on
    the same address or a wildcard that covers it). False when the table cannot be read."""
    addr, port = group[0].getsockname()[:2]
    ours = {os.fstat(s.fileno()).st_ino for s in group}
    return any(inode not in ours and addresses_overlap(addr, other)
               for other, inode in bound_udp_sockets(port))


def bound_udp_sockets(port: int, tables=("/proc/net/udp", "/proc/net/udp6")) -> list[tuple[str, int]]:
    """(local address, socket inode) of every UDP socket bound to port in this network namespace."""
    out = []
    for path in tables:
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            try:
                addr_hex, port_hex = fields[1].split(":")
                if int(port_hex, 16) == port:
                    out.append((_proc_address(addr_hex), int(fields[9])))
            except (IndexError, ValueError):
                continue
    return out


def _proc_address(addr_hex: str) -> str:
    """/proc/net/udp's address: hex of each 32-bit word as the host stores it."""
    raw = bytes.fromhex(addr_hex)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw))


def addresses_overlap(a: str, b: str) -> bool:
    """Whether sockets bound to a and b on one port take the same datagrams: equal addresses,
    or a wildcard of the family (an IPv6 wildcard also covers IPv4, unless IPV6_V6ONLY, which
    /proc does not show: counted as covering)."""
    x, y = (_unmapped(ipaddress.ip_address(v.split("%")[0])) for v in (a, b))
    if x.version == y.version:
        return x == y or x.is_unspecified or y.is_unspecified
    return (x if x.version == 6 else y).is_unspecified


def _unmapped(ip):
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


SOL_PACKET = 263           # linux/socket.h
PACKET_QDISC_BYPASS = 20   # linux/if_packet.h, Linux >= 3.14


def packet_sockets(n: int) -> tuple[list[socket.socket], bool]:
    """n AF_PACKET raw sockets, with qdisc bypass where the kernel allows it (and whether it
    did for every one); packet_bind binds them. Without CAP_NET_RAW: SetupError naming it."""
    socks, bypass = [], True
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            socks.append(s)
            # Its send buffer bounds the frames in flight (taken from the ring, not yet freed).
            _grow_buffers(s)
            try:
                s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            except OSError:
                bypass = False
    except PermissionError:
        close_all(socks)
        raise SetupError("--engine packet needs CAP_NET_RAW to open AF_PACKET sockets") from None
    except OSError as e:
        close_all(socks)
        raise SetupError(f"cannot open AF_PACKET sockets: {e.strerror}") from None
    return socks, bypass


def packet_bind(socks: list[socket.socket], interface: str) -> None:
    """Bind raw sockets to the egress interface for sending only: protocol 0 receives nothing."""
    try:
        for s in socks:
            s.bind((interface, 0))
    except OSError as e:
        raise SetupError(f"cannot bind AF_PACKET sockets to {interface}: {e.strerror}") from None
