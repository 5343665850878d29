"""The path to a destination as the kernel routes it: egress interface, next hop and the next hop's MAC.

The packet engine writes whole Ethernet frames, so it must decide what the stack
otherwise decides per datagram: the route (RTM_GETROUTE, what `ip route get`
asks) and the next hop's link-layer address, from the neighbour table
(RTM_GETNEIGH). A next hop the table does not know yet is probed: one UDP
datagram to it (the discard port) makes the kernel resolve it (ARP, or IPv6
neighbour discovery), and the table is read again until it answers or
PROBE_TIMEOUT_S passes (the kernel gives up after 3 probes 1 s apart by default).

A destination on this host routes through lo, whose frames the kernel takes as
its own only when net.ipv4.conf.lo.route_localnet and accept_local are both 1:
otherwise it drops them as martians (a local or loopback source arriving on an
interface). loadgen never changes those settings; local_delivery_refusal() says
which are missing.

Netlink goes through iproute2's `ip -j` (JSON out): pyroute2 0.9 runs its own
asyncio loop and cannot be used while loadgen's event loop runs (it raises
"this event loop is already running", and uvloop refuses AF_NETLINK endpoints).
Errors are SetupError, one line each.
"""
import json
import socket
import subprocess
import time
from dataclasses import dataclass

from loadgen.errors import SetupError

PROBE_TIMEOUT_S = 3.5
PROBE_POLL_S = 0.05
IP_TIMEOUT_S = 10
DISCARD_PORT = 9
# Neighbour states with a usable address (ip neigh's names for linux/neighbour.h's NUD_*).
NUD_VALID = {"REACHABLE", "STALE", "DELAY", "PROBE", "NOARP", "PERMANENT"}
LOCAL_SYSCTLS = ("route_localnet", "accept_local")


@dataclass(frozen=True)
class Path:
    interface: str
    kind: str | None     # the link's kind (veth, bridge...), None for a plain device
    mtu: int
    src_mac: str
    next_hop: str        # the gateway, or the destination itself when it is on the link
    next_hop_mac: str
    local: bool          # the destination is this host: frames go through lo


def ip_json(*args: str) -> list:
    """`ip -j ARGS` parsed; SetupError with ip's own message when it fails."""
    try:
        p = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except FileNotFoundError:
        raise SetupError("--engine packet and xdp need iproute2's ip to read routes and neighbours") from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"ip {' '.join(args)} did not answer") from None
    if p.returncode:
        raise SetupError(f"ip {' '.join(args)}: {p.stderr.strip() or 'failed'}")
    return json.loads(p.stdout or "[]")


def resolve_path(dst_ip: str) -> Path:
    """The route and next hop's MAC for dst_ip; SetupError when the kernel has none."""
    try:
        route = ip_json("route", "get", dst_ip)[0]
    except SetupError as e:
        raise SetupError(f"no route to {dst_ip} ({e})") from None
    dev = route["dev"]
    link = ip_json("-d", "link", "show", "dev", dev)[0]
    src_mac = link.get("address") or "00:00:00:00:00:00"
    kind = (link.get("linkinfo") or {}).get("info_kind")
    if route.get("type") == "local":
        return Path(dev, kind, link["mtu"], src_mac, dst_ip, src_mac, True)
    next_hop = route.get("gateway") or dst_ip
    mac = _neighbour(next_hop, dev)
    if mac is None:
        _probe(next_hop, dev)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while mac is None and time.monotonic() < deadline:
            time.sleep(PROBE_POLL_S)
            mac = _neighbour(next_hop, dev)
    if mac is None:
        raise SetupError(f"cannot resolve the next hop's MAC for {next_hop} via {dev}")
    return Path(dev, kind, link["mtu"], src_mac, next_hop, mac, False)


def _neighbour(address: str, dev: str) -> str | None:
    """The neighbour table's usable MAC for address on dev, or None."""
    for n in ip_json("neigh", "show", "to", address, "dev", dev):
        if n.get("lladdr") and NUD_VALID & set(n.get("state", [])):
            return n["lladdr"]
    return None


def _probe(address: str, interface: str) -> None:
    """One datagram to address on the interface: the kernel resolves its MAC to send it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        except OSError:
            pass  # without the privilege: the route chose this interface anyway
        try:
            s.sendto(b"\0", (address, DISCARD_PORT))
        except OSError:
            pass  # unreachable now: the table read that follows says so


def local_delivery_refusal(dst_ip: str, read=None, engine: str = "packet") -> str | None:
    """Why engine's frames to this host's own dst_ip would be dropped, or None when the settings allow them."""
    if ":" in dst_ip:
        return f"--engine {engine} cannot send to {dst_ip} on this host: IPv6 frames injected on lo are dropped"
    read = read or _read_sysctl
    missing = [k for k in LOCAL_SYSCTLS if read(f"net/ipv4/conf/lo/{k}") != "1"
               and read(f"net/ipv4/conf/all/{k}") != "1"]
    if not missing:
        return None
    settings = " and ".join(f"net.ipv4.conf.lo.{k}=1" for k in missing)
    return (f"--engine {engine} cannot send to {dst_ip} on this host without {settings}: "
            "the kernel drops frames injected on lo as martians; use --peer or --target across a link")


def _read_sysctl(path: str) -> str | None:
    try:
        with open(f"/proc/sys/{path}") as f:
            return f.read().strip()
    except OSError:
        return None
