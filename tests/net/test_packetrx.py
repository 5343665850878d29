"""The packet receivers (--rx-engine packet): their filter, their options, and their counts.

The filter is run by a classic-BPF interpreter of this test's own on hand-made IP packets.
The runs need root (AF_PACKET, namespaces) and skip without it:
- hand-made datagrams to `serve` on loopback (only this test's port passes the filter),
  counted by the socket and the packet receivers alike, holes, duplicates, reordering and
  foreign datagrams included;
- paced runs between two namespaces joined by a veth pair, both named for rawrx: a
  `loadgen serve --listen` agent receives in one, the controller sends with --engine packet
  from the other, resolving the agent's MAC itself. Counts are asserted exactly, never times.
"""
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest

from loadgen import workload
from loadgen.errors import UsageError
from loadgen.net import frames, packetrx
from loadgen.results import documents
from netfixtures import LOOPBACK, assert_one_line_error, datagram, loadgen_argv, run_without_net_raw
from netns import Agent, Controller, delete_namespaces, netns_unavailable, run_loadgen, wait_until, write_token

RUN_TAG = 0x1111_1111
PORT = 9000


# ---- the filter, on hand-made packets ---------------------------------------------------------------

def run_bpf(prog: list[tuple[int, int, int, int]], packet: bytes, protocol: int, pkttype: int = 0) -> int:
    """What the kernel's classic BPF would return for packet (from its IP header on): the
    bytes to keep, 0 to drop. Only the instructions udp_filter uses; anything else fails."""
    a = x = pc = 0
    ancillary = {(packetrx.SKF_AD_OFF + packetrx.SKF_AD_PROTOCOL) & 0xFFFFFFFF: protocol,
                 (packetrx.SKF_AD_OFF + packetrx.SKF_AD_PKTTYPE) & 0xFFFFFFFF: pkttype}
    sizes = {packetrx.BPF_W: "!I", packetrx.BPF_H: "!H", packetrx.BPF_B: "!B"}
    for _ in range(len(prog)):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls, size, mode = code & 0x07, code & 0x18, code & 0xE0
        if cls == packetrx.BPF_LD and k in ancillary:
            a = ancillary[k]
        elif cls == packetrx.BPF_LD and mode in (packetrx.BPF_ABS, packetrx.BPF_IND):
            at = k + (x if mode == packetrx.BPF_IND else 0)
            fmt = sizes[size]
            if at + struct.calcsize(fmt) > len(packet):
                return 0    # out of bounds: the kernel drops
            a = struct.unpack_from(fmt, packet, at)[0]
        elif code == packetrx.BPF_LDX | packetrx.BPF_B | packetrx.BPF_MSH:
            x = 4 * (packet[k] & 0xF)
        elif code == packetrx.BPF_JMP | packetrx.BPF_JEQ | packetrx.BPF_K:
            pc += jt if a == k else jf
        elif code == packetrx.BPF_JMP | packetrx.BPF_JSET | packetrx.BPF_K:
            pc += jt if a & k else jf
        elif cls == packetrx.BPF_RET:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted here")
    raise AssertionError("ran off the end of the program")


def ip_packet(dst: str, port: int, src: str | None = None) -> bytes:
    v6 = ":" in dst
    t = frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", src or ("fd00::2" if v6 else "10.0.0.2"), dst,
                     port, 64)
    return t.frame[frames.ETH_HEADER_BYTES:]


def with_byte(packet: bytes, at: int, value: int) -> bytes:
    return packet[:at] + bytes([value]) + packet[at + 1:]


def with_ipv4_options(packet: bytes) -> bytes:
    """The same datagram with a 4-byte IPv4 option (NOPs): the UDP header moves."""
    return bytes([0x46]) + packet[1:20] + b"\x01\x01\x01\x01" + packet[20:]


V4, V6 = packetrx.ETH_P_IP, packetrx.ETH_P_IPV6
FILTER_CASES = [
    # (family, filter address, packet, protocol, pkttype, passes)
    (socket.AF_INET, "10.0.0.1", ip_packet("10.0.0.1", PORT), V4, 0, True),
    (socket.AF_INET, "10.0.0.1", ip_packet("10.0.0.1", PORT + 1), V4, 0, False),
    (socket.AF_INET, "10.0.0.1", ip_packet("10.0.0.3", PORT), V4, 0, False),
    (socket.AF_INET, None, ip_packet("10.0.0.3", PORT), V4, 0, True),                  # wildcard
    (socket.AF_INET, "10.0.0.1", with_byte(ip_packet("10.0.0.1", PORT), 9, 6), V4, 0, False),   # TCP
    (socket.AF_INET, "10.0.0.1", with_byte(ip_packet("10.0.0.1", PORT), 6, 0x60), V4, 0, False),  # DF + MF
    (socket.AF_INET, "10.0.0.1", with_byte(ip_packet("10.0.0.1", PORT), 7, 0x10), V4, 0, False),  # an offset
    (socket.AF_INET, "10.0.0.1", with_ipv4_options(ip_packet("10.0.0.1", PORT)), V4, 0, True),
    (socket.AF_INET, "10.0.0.1", ip_packet("10.0.0.1", PORT), V4, packetrx.PACKET_OUTGOING, False),
    (socket.AF_INET, "10.0.0.1", ip_packet("10.0.0.1", PORT), 0x0806, 0, False),       # not IPv4
    (socket.AF_INET6, "fd00::1", ip_packet("fd00::1", PORT), V6, 0, True),
    (socket.AF_INET6, "fd00::1", ip_packet("fd00::1", PORT + 1), V6, 0, False),
    (socket.AF_INET6, "fd00::1", ip_packet("fd00::3", PORT), V6, 0, False),
    (socket.AF_INET6, None, ip_packet("fd00::3", PORT), V6, 0, True),
    (socket.AF_INET6, "fd00::1", with_byte(ip_packet("fd00::1", PORT), 6, 44), V6, 0, False),   # a fragment header
    (socket.AF_INET6, "fd00::1", ip_packet("fd00::1", PORT), V4, 0, False),
]


@pytest.mark.parametrize("family, address, packet, protocol, pkttype, passes", FILTER_CASES)
def test_the_filter_passes_udp_to_the_address_and_port_only(family, address, packet, protocol, pkttype, passes):
    kept = run_bpf(packetrx.udp_filter(family, address, PORT), packet, protocol, pkttype)
    assert kept == (packetrx.ACCEPT_BYTES if passes else 0)


def test_the_holder_filter_drops_everything():
    assert run_bpf(packetrx.DROP_ALL, ip_packet("10.0.0.1", PORT), V4) == 0


def test_jumps_stay_inside_the_program():
    for family, address in ((socket.AF_INET, "10.0.0.1"), (socket.AF_INET6, "fd00::1"), (socket.AF_INET, None)):
        prog = packetrx.udp_filter(family, address, PORT)
        assert prog[-1][0] & 0x07 == packetrx.BPF_RET
        for i, (code, jt, jf, _) in enumerate(prog):
            if code & 0x07 == packetrx.BPF_JMP:
                assert i + 1 + max(jt, jf) < len(prog) and max(jt, jf) <= 255


# ---- options -----------------------------------------------------------------------------------------

def test_rx_engine_defaults_to_socket_and_travels_to_agents():
    assert workload.parse_net().rx_engine == "socket"
    spec = workload.parse_net(rx_engine="packet")
    assert spec.to_config()["rx_engine"] == "packet"
    assert workload.NetSpec.from_wire(spec.to_wire()).rx_engine == "packet"


def test_echo_needs_socket_receivers():
    with pytest.raises(UsageError, match="one way"):
        workload.parse_net(rx_engine="packet", mode="echo")


@pytest.mark.parametrize("args, says", [
    (["net", "--target", "127.0.0.1:9", "--rx-engine", "packet"], "--rx-engine is for loadgen's own receivers"),
    (["net", "--rx-engine", "packet", "--mode", "echo"], "--rx-engine packet counts one way"),
    (["serve", "--echo-port", "0", "--rx-engine", "packet"], "--echo-port needs --rx-engine socket"),
    (["serve", "--port", "0", "--rx-engine", "xdp"], "invalid rx-engine"),
])
def test_refusals_are_one_line(tmp_path, args, says):
    p = subprocess.run(loadgen_argv(*args, "--duration", "1s"), cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert says in assert_one_line_error(p.returncode, p.stderr, 2)


def test_without_cap_net_raw_is_one_line(tmp_path):
    p = run_without_net_raw(tmp_path, "net", "--rx-engine", "packet", "--pps", "1k", "--duration", "1s", "--quiet")
    line = assert_one_line_error(p.returncode, p.stderr, 1)
    assert line == "loadgen: --rx-engine packet needs CAP_NET_RAW to open AF_PACKET sockets"


# ---- hand-made datagrams to serve on loopback ----------------------------------------------------------

def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for AF_PACKET sockets (CAP_NET_RAW)")



@pytest.mark.parametrize("rx_engine", ["socket", "packet"])
def test_both_receivers_count_the_same_datagrams_alike(serve, rx_engine):
    """The same hand-made traffic, holes, copies, reordering and foreign datagrams, counted
    by either receiver: the totals are the same numbers (arrival.h counts for both)."""
    if rx_engine == "packet":
        needs_root()
    srv = serve("--port", "0", "--workers", "2", "--interval", "100ms", "--rx-engine", rx_engine)
    port = srv.wait_listening(("stream",))["stream"]
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        client.bind((LOOPBACK, 0))
        for payload in hand_made():
            client.sendto(payload, (LOOPBACK, port))
    finally:
        client.close()
    assert srv.wait_totals("stream", HAND_MADE_TOTALS) == HAND_MADE_TOTALS


def hand_made() -> list[bytes]:
    return [
        *(datagram(0, seq, RUN_TAG) for seq in (0, 1, 3, 3, 6)),     # holes 2, 4, 5; 3 twice
        *(datagram(2, seq, RUN_TAG) for seq in (0, 1, 2)),           # a second flow, complete
        *(datagram(1, seq, RUN_TAG) for seq in (0, 2, 1, 1)),        # 1 fills a hole, then again
        datagram(3, 0, RUN_TAG), datagram(3, 1, RUN_TAG, size_bytes=9000), datagram(3, 2, RUN_TAG),
        # the large one goes as IPv4 fragments on a veth: missed, it would be a hole
        b"\x00" * 64,                                                # no magic
        datagram(1, 0, RUN_TAG)[:31],                                # shorter than a header
    ]


HAND_MADE_TOTALS = {"lost": 3, "reordered": 1, "duplicated": 2, "foreign": 2}


# ---- two namespaces and a veth pair -------------------------------------------------------------------

SEND, RECV = "10.79.0.2", "10.79.0.1"
AGENT_PORT = 7070
PACED = ["--pps", "20k", "--duration", "1s", "--ramp", "0s"]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class VethPair:
    """Namespaces rawrx-PID-send and rawrx-PID-recv, joined by a veth pair rawrx-sN/rawrx-rN
    (10.79.0.2 and 10.79.0.1, only inside them); no neighbour entries: the sender resolves."""

    def __init__(self) -> None:
        tag = os.getpid() % 1_000_000
        self.ns = {"send": f"rawrx-{tag}-send", "recv": f"rawrx-{tag}-recv"}
        self.dev = {"send": f"rawrx-s{tag}", "recv": f"rawrx-r{tag}"}
        self._made: list[str] = []
        try:
            for side in ("send", "recv"):
                _ip("netns", "add", self.ns[side])
                self._made.append(self.ns[side])
                _ip("-n", self.ns[side], "link", "set", "lo", "up")
            _ip("-n", self.ns["send"], "link", "add", self.dev["send"], "type", "veth", "peer", "name",
                self.dev["recv"], "netns", self.ns["recv"])
            for side, address in (("send", SEND), ("recv", RECV)):
                _ip("-n", self.ns[side], "addr", "add", f"{address}/24", "dev", self.dev[side])
                _ip("-n", self.ns[side], "link", "set", self.dev[side], "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill what still runs inside (only this test's children), then delete both (the veth goes too)."""
        delete_namespaces(self._made)


@pytest.fixture(scope="module")
def pair():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    p = VethPair()
    try:
        yield p
    finally:
        p.close()


def udp_counters(pid: int) -> dict[str, int]:
    """The Udp: line of /proc/<pid>/net/snmp: pid's network namespace's UDP counters."""
    lines = [line.split() for line in open(f"/proc/{pid}/net/snmp") if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


@pytest.mark.parametrize("rx_engine", ["socket", "packet"])
def test_paired_packet_engine_across_namespaces_loses_nothing(pair, tmp_path, rx_engine):
    """`loadgen net --peer AGENT --engine packet`: the agent receives (by either engine), every
    frame sent arrives and is counted once; with packet receivers the agent's UDP socket only
    holds the port, and the stack drops each datagram there."""
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, f"{RECV}:{AGENT_PORT}", "--token-file", str(token), ns=pair.ns["recv"])
    try:
        before = udp_counters(agent.pid)
        done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--engine", "packet", "--rx-engine", rx_engine,
                           *PACED, "--flows", "4", "--receivers", "2", "--token-file", str(token), "--quiet",
                           "--json", "r.json", ns=pair.ns["send"])
        after = udp_counters(agent.pid)
    finally:
        agent.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert s["sent"] > 0 and s["sent"] + s["schedule_lag_ns"]["unsent"] == 20_000
    assert s["errors"] == 0
    assert s["received"] == s["sent"] and s["lost"] == 0, s
    assert (s["duplicated"], s["reordered"], s["too_old"], s["foreign"]) == (0, 0, 0, 0)
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["received"] == s["sent"]
    assert doc["config"]["packet"]["next_hop_mac"] == json.loads(subprocess.run(
        ["ip", "-j", "-n", pair.ns["recv"], "link", "show", pair.dev["recv"]], capture_output=True, text=True,
        timeout=30).stdout)[0]["address"]
    delivered = after["InDatagrams"] - before["InDatagrams"]
    dropped = after["InErrors"] - before["InErrors"]
    if rx_engine == "packet":
        rx = receiver["packet_rx"]
        assert (rx["interface"], rx["fanout"], rx["receivers"]) == (pair.dev["recv"], "hash", 2)
        assert (delivered, dropped) == (0, s["sent"])
    else:
        assert "packet_rx" not in receiver
        assert (delivered, dropped) == (s["sent"], 0)


def test_embedded_packet_receivers_count_a_local_run(pair, tmp_path):
    """Socket senders to the packet receivers on the namespace's loopback, two of them in one
    fanout group: every datagram counted once, timed by the kernel's stamp."""
    done = run_loadgen(tmp_path, "net", "--rx-engine", "packet", *PACED, "--workers", "1", "--receivers", "2",
                       "--flows", "8", "--quiet", "--json", "r.json", ns=pair.ns["send"])
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert s["sent"] > 0 and s["sent"] + s["schedule_lag_ns"]["unsent"] == 20_000
    assert s["received"] == s["sent"] and s["lost"] == 0
    assert (s["duplicated"], s["reordered"], s["too_old"], s["foreign"]) == (0, 0, 0, 0)
    assert s["arrival_clock"] == {"kernel_stamped": s["received"], "user_read": 0}
    assert s["oneway"]["latency_ns"]["count"] == s["received"]
    assert s["receiver_socket_drops"] == 0
    assert doc["config"]["rx_engine"] == "packet"
    assert doc["config"]["packet_rx"]["interface"] == "lo" and doc["config"]["packet_rx"]["receivers"] == 2


def test_echo_with_the_packet_engine_times_every_return(pair, tmp_path):
    """--engine packet --mode echo: the agent's socket receivers send each frame's datagram back
    to its source, the flow's UDP socket, where the packet senders drain and time it."""
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, f"{RECV}:{AGENT_PORT}", "--token-file", str(token), ns=pair.ns["recv"])
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--engine", "packet", "--mode", "echo",
                           "--pps", "2k", "--duration", "1s", "--ramp", "0s", "--flows", "4", "--workers", "1",
                           "--token-file", str(token), "--quiet", "--json", "r.json", ns=pair.ns["send"])
    finally:
        agent.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert doc["engine"] == "packet" and s["measured_at"] == "echo"
    assert s["sent"] > 0 and s["sent"] + s["schedule_lag_ns"]["unsent"] == 2_000
    assert s["received"] == s["sent"] and s["lost"] == 0, s
    assert (s["duplicated"], s["late"], s["foreign"]) == (0, 0, 0)
    assert s["latency_ns"]["count"] == s["received"]
    assert s["kernel_rtt_ns"]["count"] == s["received"]
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["received"] == s["sent"]


SERVE_LINE = re.compile(r"so far lost (?P<lost>\d+) \([\d.]+%\), reordered (?P<reordered>\d+), "
                        r"duplicated (?P<duplicated>\d+), foreign (?P<foreign>\d+)$")
SEND_SCRIPT = ("import socket, sys\n"
               "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
               "for h in sys.argv[3:]:\n"
               "    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[2])))\n")


def test_packet_receivers_on_a_veth_count_hand_made_datagrams_exactly(pair, tmp_path):
    """The hand-made traffic again, from the other namespace across the veth to `serve
    --rx-engine packet` there: the same totals, and the receiving stack saw each datagram
    once and dropped it at the UDP socket that holds the port (Udp InErrors)."""
    srv = Controller(tmp_path, "serve", "--host", RECV, "--port", str(PORT), "--workers", "2", "--interval", "100ms",
                     "--duration", "30s", "--rx-engine", "packet", ns=pair.ns["recv"], name="serve")
    try:
        wait_until(lambda: "listening" in srv.out_path.read_text(), 20, "serve to listen")
        before = udp_counters(srv.proc.pid)
        payloads = hand_made()
        subprocess.run(["ip", "netns", "exec", pair.ns["send"], sys.executable, "-c", SEND_SCRIPT, RECV, str(PORT),
                        *(p.hex() for p in payloads)], check=True, timeout=60)

        def totals() -> dict | None:
            lines = [m for m in map(SERVE_LINE.search, srv.out_path.read_text().splitlines()) if m]
            last = {k: int(v) for k, v in lines[-1].groupdict().items()} if lines else None
            return last if last and all(last[k] >= v for k, v in HAND_MADE_TOTALS.items()) else None

        wait_until(totals, 20, "serve to count the datagrams")
        time.sleep(0.3)     # a few more intervals: nothing counted twice, nothing late
        after = udp_counters(srv.proc.pid)
        assert totals() == HAND_MADE_TOTALS
        assert (after["InErrors"] - before["InErrors"], after["InDatagrams"] - before["InDatagrams"]) == \
            (len(payloads), 0)
    finally:
        srv.kill()
