"""Frames for the packet engine: Ethernet, IPv4 or IPv6, and UDP, built once as a template.

Vocabulary:
- template   one whole frame as the packet engine's senders copy it into every
             ring slot: the IP header complete with its checksum, the UDP header
             with its source port and checksum zero, and a payload whose first
             LG_PKT_HEADER_BYTES (the datagram header, pkt.h) are zero and whose
             padding is the socket senders' pattern (0xa5 ^ offset).
- csum_base  per flow: the ones' complement sum (RFC 1071), folded to 16 bits, of
             the UDP pseudo-header and the template's UDP header and payload with
             the flow's source port in place. The native sender adds the datagram
             header's words and complements it: the UDP checksum of the whole
             datagram, computed incrementally for IPv4 and IPv6 alike.

Rules: pure arithmetic on bytes; no sockets, no clock. IPv4 datagrams carry DF
and ID 0 (RFC 6864: an atomic datagram's ID has no meaning), so the IP header is
the same for every datagram of a run.
"""
import ipaddress
import struct
from dataclasses import dataclass

from loadgen.options import PKT_HEADER_BYTES

ETH_HEADER_BYTES = 14
IPV4_HEADER_BYTES = 20
IPV6_HEADER_BYTES = 40
UDP_HEADER_BYTES = 8
ETHERTYPE_IPV4, ETHERTYPE_IPV6 = 0x0800, 0x86DD
IPPROTO_UDP = 17
TTL = 64
IPV4_DF = 0x4000


@dataclass(frozen=True)
class Template:
    frame: bytes          # the whole frame, from the destination MAC on
    udp_offset: int       # where the UDP header starts
    pseudo_sum: int       # the unfolded sum of the pseudo-header's words


def checksum_words(data: bytes) -> int:
    """The unfolded sum of data's 16-bit big-endian words (an odd tail is padded with zero)."""
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def fold(total: int) -> int:
    """A sum of words folded to 16 bits, end-around carry included."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of data: 0 when data includes a correct checksum."""
    return ~fold(checksum_words(data)) & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    """'aa:bb:cc:dd:ee:ff' -> 6 bytes."""
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def padding(size_bytes: int) -> bytes:
    """The payload after the datagram header, as the socket senders fill it (net.c batch_alloc)."""
    return bytes((0xA5 ^ j) & 0xFF for j in range(PKT_HEADER_BYTES, size_bytes))


def build(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, dst_port: int, size_bytes: int) -> Template:
    """The template frame for UDP payloads of size_bytes from src_ip to dst_ip:dst_port."""
    src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
    if src.version != dst.version:
        raise ValueError(f"{src_ip} and {dst_ip} are of different IP versions")
    payload = bytes(PKT_HEADER_BYTES) + padding(size_bytes)
    udp_len = UDP_HEADER_BYTES + size_bytes
    udp = struct.pack("!HHHH", 0, dst_port, udp_len & 0xFFFF, 0) + payload
    if dst.version == 4:
        ether_type = ETHERTYPE_IPV4
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IPV4_HEADER_BYTES + udp_len, 0, IPV4_DF, TTL, IPPROTO_UDP, 0,
                         src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_UDP, udp_len)
    else:
        ether_type = ETHERTYPE_IPV6
        ip = struct.pack("!IHBB16s16s", 6 << 28, udp_len, IPPROTO_UDP, TTL, src.packed, dst.packed)
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", udp_len, IPPROTO_UDP)
    eth = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ether_type)
    return Template(eth + ip + udp, ETH_HEADER_BYTES + len(ip), checksum_words(pseudo))


def csum_base(t: Template, src_port: int) -> int:
    """The flow's csum_base (see the module's docstring) for its source port."""
    return fold(t.pseudo_sum + checksum_words(t.frame[t.udp_offset:]) + src_port)


def max_payload_bytes(mtu: int, version: int) -> int:
    """The largest UDP payload one unfragmented IP datagram carries over a link of this MTU."""
    return mtu - (IPV4_HEADER_BYTES if version == 4 else IPV6_HEADER_BYTES) - UDP_HEADER_BYTES
