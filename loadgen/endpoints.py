"""UDP endpoints: resolving the target and opening the sockets the native workers use.

Sockets are made here, at the I/O edge, so that errors such as an unknown host
or a port in use become one-line messages; the native side only gets fds.
"""
import errno
import os
import socket
import struct

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
    for force, plain in ((33, socket.SO_SNDBUF), (32, socket.SO_RCVBUF)):  # SO_SNDBUFFORCE, SO_RCVBUFFORCE
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
    """n sockets sharing host:port through SO_REUSEPORT, with a bounded receive wait."""
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
        for s in socks:
            s.close()
        if e.errno == errno.EADDRINUSE:
            raise SetupError(f"port {port} on {host} is in use") from None
        if e.errno == errno.EACCES:
            raise SetupError(f"no permission to bind port {port}") from None
        raise SetupError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()
