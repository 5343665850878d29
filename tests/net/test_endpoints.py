"""loadgen.net.endpoints: receiver groups share a port through SO_REUSEPORT only among themselves.

Every socket here is bound by the test itself on loopback, so no port is picked, released and
hoped to stay free.
"""
import ipaddress
import socket
import sys

import pytest

from loadgen.errors import SetupError
from loadgen.net.endpoints import _proc_address, addresses_overlap, bound_udp_sockets, close_all, receiver_sockets

LOOPBACK = "127.0.0.1"


@pytest.fixture
def group():
    """receiver_sockets(...) whose sockets are closed at the end."""
    made: list = []

    def make(host: str, port: int, n: int = 2) -> list[socket.socket]:
        socks = receiver_sockets(host, port, n)
        made.append(socks)
        return socks

    yield make
    for socks in made:
        close_all(socks)


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("a, b, overlap", [
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("127.0.0.1", "0.0.0.0", True),
    ("0.0.0.0", "10.1.2.3", True),
    ("::1", "::1", True),
    ("::1", "::", True),
    ("::", "127.0.0.1", True),           # a dual-stack wildcard takes IPv4 too
    ("0.0.0.0", "::1", False),           # an IPv4 wildcard does not take IPv6
    ("127.0.0.1", "::1", False),
    ("::ffff:127.0.0.1", "127.0.0.1", True),
    ("fe80::1%eth0", "fe80::1", True),
])
def test_addresses_overlap(a, b, overlap):
    assert addresses_overlap(a, b) is overlap
    assert addresses_overlap(b, a) is overlap


@pytest.mark.parametrize("word, address", [
    ("0100007F", "127.0.0.1"),
    ("00000000", "0.0.0.0"),
    ("00000000000000000000000001000000", "::1"),
    ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
])
def test_proc_address(word, address):
    if sys.byteorder != "little":
        pytest.skip("the table's words are written for a little-endian host")
    assert ipaddress.ip_address(_proc_address(word)) == ipaddress.ip_address(address)


def test_the_table_lists_a_bound_socket_with_its_inode():
    import os

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
        assert (LOOPBACK, os.fstat(s.fileno()).st_ino) in bound_udp_sockets(port)


def test_a_group_shares_its_port_among_its_own_sockets(group):
    socks = group(LOOPBACK, 0, 4)
    assert len({s.getsockname() for s in socks}) == 1


def test_a_second_group_on_the_same_port_is_refused(group):
    port = group(LOOPBACK, 0)[0].getsockname()[1]
    with pytest.raises(SetupError, match=f"port {port} is in use"):
        group(LOOPBACK, port)
    with pytest.raises(SetupError, match=f"port {port} is in use"):
        group("0.0.0.0", port)          # a wildcard would take the first group's datagrams too


def test_a_reuseport_socket_of_the_same_user_is_seen(group):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("0.0.0.0", 0))
        port = other.getsockname()[1]
        with pytest.raises(SetupError, match=f"port {port} is in use"):
            group(LOOPBACK, port)


def test_a_plain_socket_on_the_port_is_in_use(group):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((LOOPBACK, 0))
        port = other.getsockname()[1]
        with pytest.raises(SetupError, match=f"port {port} is in use"):
            group(LOOPBACK, port)


def test_other_addresses_on_the_same_port_are_free(group):
    port = group(LOOPBACK, 0)[0].getsockname()[1]
    group("127.0.0.2", port)
    if has_ipv6_loopback():
        group("::1", port)
