"""The packet engine (--engine packet): its frames, its options, and runs between namespaces.

The frame tests need nothing: native.packet_frame patches the template as the senders do,
and the checksums are checked here with RFC 1071 arithmetic of the test's own. The runs need
root (namespaces, veths, AF_PACKET) and skip without it: a sender namespace and a receiving
one on netns.Hub's bridge, 10.77.0.0/24 only, loads of 20k pps for 1 s. Counts are asserted
exactly; rates and times never.
"""
import json
import struct
import subprocess

import pytest

from loadgen import workload
from loadgen.errors import UsageError
from loadgen.net import frames, packet, route
from loadgen.results import documents
from loadgen.run import native
from netfixtures import run_without_net_raw
from netns import Agent, Controller, Hub, Finished, netns_unavailable, run_loadgen, udp_in_datagrams, wait_until, \
    write_token

HEADER = struct.Struct("<IIIIqq")
SHORT = ["--pps", "20k", "--duration", "1s", "--ramp", "0s"]
AGENT_PORT = 7070
SERVE_PORT = 9000


def rfc1071(data: bytes) -> int:
    """The ones' complement sum's complement, written out again here (not frames.py's)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_checksum_ok(frame: bytes, udp_offset: int, version: int) -> bool:
    ip, udp = frame[14:udp_offset], frame[udp_offset:]
    if version == 4:
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    else:
        pseudo = ip[8:40] + struct.pack("!I3xB", len(udp), 17)
    return rfc1071(pseudo + udp) == 0


def make_config(t: frames.Template, ports: list[int], size: int, flow_base: int = 0, run_tag: int = 77):
    pc = native.packet_config([3], t.frame, t.udp_offset, ports, [frames.csum_base(t, p) for p in ports])
    cfg = native.NetConfig(senders=1, flows=len(ports), size_bytes=size, batch=1, run_tag=run_tag,
                           flow_base=flow_base, engine=native.NET_ENGINE_PACKET)
    cfg.packet = native.ctypes.pointer(pc)
    return cfg


ADDRESSES = {4: ("10.77.0.2", "10.77.0.1"), 6: ("fd00::2", "fd00::1")}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("size", [32, 64, 1000, 1472])
def test_patched_frames_carry_the_header_and_correct_checksums(version, size):
    src, dst = ADDRESSES[version]
    t = frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", src, dst, 9000, size)
    ports = [40000, 40001, 65535, 1]
    cfg = make_config(t, ports, size, flow_base=100)
    for flow, seq, sched, send in [(0, 0, 0, 0), (1, 1, 10, 12), (2, 2**32 - 1, 2**40, 2**40 + 5),
                                   (3, 12345, -5, 7), (0, 0xFFFF, 0xFFFF, 0xFFFF)]:
        frame = native.packet_frame(cfg, flow, seq, sched, send)
        assert len(frame) == len(t.frame) == t.udp_offset + 8 + size
        assert udp_checksum_ok(frame, t.udp_offset, version), (flow, seq)
        sport, dport, length, csum = struct.unpack("!HHHH", frame[t.udp_offset:t.udp_offset + 8])
        assert (sport, dport, length) == (ports[flow], 9000, 8 + size) and csum != 0
        payload = frame[t.udp_offset + 8:]
        assert HEADER.unpack(payload[:32]) == (native.PKT_MAGIC, 100 + flow, seq, 77, sched, send)
        assert payload[32:] == frames.padding(size)
        # everything before the UDP header is the template's, unchanged
        assert frame[:t.udp_offset] == t.frame[:t.udp_offset]


def test_ipv4_header():
    t = frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", "10.77.0.2", "10.77.0.1", 9000, 64)
    eth, ip = t.frame[:14], t.frame[14:34]
    assert eth == bytes.fromhex("020000000001" "020000000002" "0800")
    assert rfc1071(ip) == 0
    version_ihl, _, total, ident, frag, ttl, proto = struct.unpack("!BBHHHBB", ip[:10])
    assert (version_ihl, total, ident, frag, proto) == (0x45, 20 + 8 + 64, 0, 0x4000, 17) and ttl > 0
    assert t.udp_offset == 34


def test_ipv6_header():
    t = frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", "fd00::2", "fd00::1", 9000, 64)
    assert t.frame[12:14] == b"\x86\xdd" and t.udp_offset == 54
    first, length, nxt = struct.unpack("!IHB", t.frame[14:21])
    assert (first >> 28, length, nxt) == (6, 8 + 64, 17)


def test_mixed_families_are_refused():
    with pytest.raises(ValueError):
        frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1", "fd00::1", 9, 64)


def test_a_bad_frame_description_is_refused():
    t = frames.build("02:00:00:00:00:02", "02:00:00:00:00:01", "10.77.0.2", "10.77.0.1", 9000, 64)
    cfg = make_config(t, [40000], 65)   # the frame is one byte short of that payload
    with pytest.raises(OSError):
        native.packet_frame(cfg, 0, 0, 0, 0)


def test_limits_agree_with_the_library():
    assert packet.MAX_FRAME_BYTES == native.limit("packet_max_frame_bytes")


@pytest.mark.parametrize("options, says", [
    ({"engine": "packet", "gso": True}, "--gso"),
    ({"engine": "raw"}, "invalid engine"),
])
def test_options_that_do_not_go_together(options, says):
    with pytest.raises(UsageError, match=says):
        workload.parse_net(**options)


def test_engine_defaults_to_socket_and_travels_to_agents():
    spec = workload.parse_net()
    assert spec.engine == "socket" and spec.to_config()["engine"] == "socket"
    packet_spec = workload.parse_net(engine="packet", target="10.77.0.1:9")
    assert workload.NetSpec.from_wire(packet_spec.to_wire()).engine == "packet"


@pytest.mark.parametrize("settings, refused", [
    ({}, ["route_localnet", "accept_local"]),
    ({"net/ipv4/conf/lo/route_localnet": "1"}, ["accept_local"]),
    ({"net/ipv4/conf/all/route_localnet": "1", "net/ipv4/conf/lo/accept_local": "1"}, []),
])
def test_local_delivery_needs_both_settings(settings, refused):
    why = route.local_delivery_refusal("127.0.0.1", read=settings.get)
    if not refused:
        assert why is None
    else:
        assert all(k in why for k in refused) and why.count("=1") == len(refused)


def test_local_delivery_of_ipv6_is_refused():
    assert "IPv6" in route.local_delivery_refusal("::1", read=lambda _: "1")


# ---- runs between namespaces ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    h = Hub()
    try:
        h.add("recv", 1)
        h.add("send", 2)
        yield h
    finally:
        h.close()


def assert_exact(s: dict, scheduled: int) -> None:
    assert s["sent"] > 0 and s["sent"] + s["schedule_lag_ns"]["unsent"] == scheduled
    assert s["errors"] == 0 and s["errors_by_errno"] == {}


def test_paired_run_counts_every_frame(hub, tmp_path):
    token = write_token(tmp_path / "token")
    recv = Agent(tmp_path, f"{hub.addresses['recv']}:{AGENT_PORT}", "--token-file", str(token), ns=hub.ns("recv"))
    try:
        done = run_loadgen(tmp_path, "net", "--peer", recv.address, "--engine", "packet", *SHORT, "--batch", "1024",
                           "--token-file", str(token), "--quiet", "--json", "r.json", ns=hub.ns("send"))
    finally:
        recv.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")   # and it fits the schema
    s = doc["summary"]
    assert doc["engine"] == "packet" and doc["config"]["engine"] == "packet"
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0, s
    assert (s["duplicated"], s["reordered"], s["foreign"], s["too_old"]) == (0, 0, 0, 0)
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["received"] == s["sent"]
    # The receiver timed every frame; the summary keeps the delays only when the agent's clock
    # is known well enough beside them (net._judge_one_way), as for the socket engine.
    if "oneway" in s:
        assert s["oneway"]["latency_ns"]["count"] == s["received"]
        assert "oneway-latency" in receiver["histograms"]
    else:
        assert s["oneway_omitted"]
    p = doc["config"]["packet"]
    assert (p["interface"], p["next_hop"], p["local_delivery"]) == ("eth0", hub.addresses["recv"], False)
    assert p["driver"] == "veth" and p["tx_queues"] >= 1 and isinstance(p["qdisc_bypass"], bool)


def test_a_sending_agent_runs_the_packet_engine(hub, tmp_path):
    """--clients: the agent in the sending namespace prepares the packet senders for its job."""
    token = write_token(tmp_path / "token")
    agents = [Agent(tmp_path, f"{hub.addresses[m]}:{AGENT_PORT}", "--token-file", str(token), ns=hub.ns(m),
                    name=f"agent-{m}-") for m in ("recv", "send")]
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agents[0].address, "--clients", agents[1].address,
                           "--engine", "packet", *SHORT, "--batch", "1024", "--token-file", str(token), "--quiet",
                           "--json", "r.json", ns=hub.ns("send"))
    finally:
        for a in agents:
            a.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert doc["engine"] == "packet"
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0 and (s["duplicated"], s["reordered"]) == (0, 0)


def test_external_receiver_counts_every_frame_after_a_neighbour_probe(hub, tmp_path):
    """To a plain `serve`: the sender resolves the receiver's MAC itself (its entry deleted first),
    and the receiving namespace's UDP stack takes every frame: checksums and addresses are right."""
    subprocess.run(["ip", "-n", hub.ns("send"), "neigh", "del", hub.addresses["recv"], "dev", "eth0"],
                   capture_output=True)
    serve = Controller(tmp_path, "serve", "--port", str(SERVE_PORT), "--host", hub.addresses["recv"],
                       "--workers", "1", "--duration", "30s", ns=hub.ns("recv"), name="serve")
    try:
        wait_until(lambda: "listening" in serve.out_path.read_text(), 20, "serve to listen")
        before = udp_in_datagrams(serve.proc.pid)
        done = run_loadgen(tmp_path, "net", "--target", f"{hub.addresses['recv']}:{SERVE_PORT}", "--engine", "packet",
                           *SHORT, "--batch", "1024", "--quiet", "--json", "r.json", ns=hub.ns("send"))
        assert done.returncode == 0, done.stderr
        doc = json.loads((tmp_path / "r.json").read_text())
        sent = doc["summary"]["sent"]
        assert_exact(doc["summary"], 20_000)
        wait_until(lambda: udp_in_datagrams(serve.proc.pid) - before >= sent, 10, "every frame to arrive")
        assert udp_in_datagrams(serve.proc.pid) - before == sent
        assert doc["config"]["packet"]["next_hop_mac"] == json.loads(subprocess.run(
            ["ip", "-j", "-n", hub.ns("recv"), "link", "show", "eth0"], capture_output=True, text=True).stdout)[0]["address"]
    finally:
        serve.kill()


def udp6_in_datagrams(pid: int) -> int:
    """Datagrams delivered to UDP sockets over IPv6 so far in pid's network namespace (/proc/net/snmp6)."""
    with open(f"/proc/{pid}/net/snmp6") as f:
        return int(next(line.split()[1] for line in f if line.startswith("Udp6InDatagrams")))


def test_ipv6_frames_arrive_with_their_checksums(hub, tmp_path):
    """IPv6 makes the UDP checksum mandatory: the receiving stack drops a frame whose sum is wrong."""
    addresses = {"recv": "fd77::1", "send": "fd77::2"}
    for member, address in addresses.items():
        subprocess.run(["ip", "-n", hub.ns(member), "addr", "replace", f"{address}/64", "dev", "eth0", "nodad"],
                       check=True)
    serve = Controller(tmp_path, "serve", "--port", str(SERVE_PORT), "--host", addresses["recv"], "--workers", "1",
                       "--duration", "30s", ns=hub.ns("recv"), name="serve6")
    try:
        wait_until(lambda: "listening" in serve.out_path.read_text(), 20, "serve to listen")
        before = udp6_in_datagrams(serve.proc.pid)
        done = run_loadgen(tmp_path, "net", "--target", f"[{addresses['recv']}]:{SERVE_PORT}", "--engine", "packet",
                           *SHORT, "--batch", "1024", "--quiet", "--json", "r.json", ns=hub.ns("send"))
        assert done.returncode == 0, done.stderr
        s = json.loads((tmp_path / "r.json").read_text())["summary"]
        assert_exact(s, 20_000)
        wait_until(lambda: udp6_in_datagrams(serve.proc.pid) - before >= s["sent"], 10, "every frame to arrive")
        assert udp6_in_datagrams(serve.proc.pid) - before == s["sent"]
    finally:
        serve.kill()


def test_unresolvable_next_hop_is_one_line(hub, tmp_path):
    done = run_loadgen(tmp_path, "net", "--target", "10.77.0.99:9000", "--engine", "packet", *SHORT, "--quiet",
                       ns=hub.ns("send"))
    assert done.error_line(1) == "loadgen: cannot resolve the next hop's MAC for 10.77.0.99 via eth0"


def test_loopback_needs_the_local_settings(hub, tmp_path):
    """The embedded receiver is on 127.0.0.1: refused until lo takes injected frames, then exact."""
    h = hub
    done = run_loadgen(tmp_path, "net", "--engine", "packet", *SHORT, "--quiet", ns=h.ns("send"))
    line = done.error_line(1)
    assert "route_localnet" in line and "accept_local" in line
    for key in ("route_localnet", "accept_local"):
        subprocess.run(["ip", "netns", "exec", h.ns("send"), "sysctl", "-qw", f"net.ipv4.conf.lo.{key}=1"], check=True)
    try:
        done = run_loadgen(tmp_path, "net", "--engine", "packet", *SHORT, "--batch", "1024", "--quiet",
                           "--json", "r.json", ns=h.ns("send"))
    finally:
        for key in ("route_localnet", "accept_local"):
            subprocess.run(["ip", "netns", "exec", h.ns("send"), "sysctl", "-qw", f"net.ipv4.conf.lo.{key}=0"])
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0 and s["duplicated"] == 0
    assert doc["config"]["packet"]["interface"] == "lo" and doc["config"]["packet"]["local_delivery"] is True


def test_without_cap_net_raw_is_one_line(tmp_path):
    p = run_without_net_raw(tmp_path, "net", "--target", "127.0.0.1:9", "--engine", "packet", *SHORT, "--quiet")
    line = Finished(p.returncode, p.stdout, p.stderr).error_line(1)
    assert line == "loadgen: --engine packet needs CAP_NET_RAW to open AF_PACKET sockets"
