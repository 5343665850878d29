"""The knee is found: loadgen search through a veth path whose rate a tbf qdisc caps.

Two namespaces on a netns.Hub bridge: the far one runs a loadgen agent (it receives),
the near one runs `loadgen search net --peer` (it sends), and the near one's egress
is capped by tbf at CAP_PPS of 64-byte datagrams. tbf meters the bytes of each frame
as the qdisc sees it: the Ethernet header and what it carries, with no preamble,
gap or FCS, so a datagram costs 64 + 8 (UDP) + 20 (IPv4) + 14 (Ethernet) bytes.

The queue (tbf latency) has two jobs. It absorbs the sender's catch-up bursts below
the cap: on a busy machine a sender that fell tens of ms behind sends what fell due at
once, and a queue of 5 ms lost several % at half the cap. And it must fill within the
ramp at rates above the cap, so the measured second loses what exceeds it: a queue of
QUEUE_MS at a rate (1 + x) x cap fills in QUEUE_MS / x, 1.6 s of the 2 s ramp at 5% over,
so the knee lies between the cap and about 3% above it. The search must find the cap
within +-5% (an accuracy bound on a known path, not a speed). The cap is low so a busy
2-CPU machine can send it; trials are 1 s and their count is capped. No netem.
Root only: the test skips when namespaces cannot be made.
"""
import json
import subprocess

import pytest

from netns import Agent, Hub, netns_unavailable, run_loadgen, write_token

AGENT_PORT = 7070
CAP_PPS = 20_000
PAYLOAD_BYTES = 64
FRAME_BYTES = PAYLOAD_BYTES + 8 + 20 + 14          # what tbf counts per datagram
BURST_FRAMES = 64                                   # one sender batch (32) passes unthrottled, twice over
QUEUE_MS = 80                                       # tbf latency: the queue tbf keeps above the burst
RAMP = "2s"
MAX_TRIALS = 14
TOLERANCE = 0.05


def tc(ns: str, *args: str) -> None:
    p = subprocess.run(["ip", "netns", "exec", ns, "tc", *args], capture_output=True, text=True, timeout=30)
    if p.returncode:
        pytest.skip(f"tc {' '.join(args)}: {p.stderr.strip()}")


@pytest.fixture
def capped_hub():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    h = Hub()
    try:
        h.add("recv", 1)
        h.add("send", 2)
        tc(h.ns("send"), "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", f"{CAP_PPS * FRAME_BYTES * 8}bit",
           "burst", str(BURST_FRAMES * FRAME_BYTES), "latency", f"{QUEUE_MS}ms")
        yield h
    finally:
        h.close()


def test_search_finds_the_tbf_cap_within_5_percent(capped_hub, tmp_path):
    h = capped_hub
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, f"{h.addresses['recv']}:{AGENT_PORT}", "--token-file", str(token), ns=h.ns("recv"))
    try:
        done = run_loadgen(
            tmp_path, "search", "net", "--peer", f"{h.addresses['recv']}:{AGENT_PORT}", "--token-file", str(token),
            "--size", str(PAYLOAD_BYTES), "--max-loss", "0.001", "--trial", "1s", "--ramp", RAMP,
            "--floor", str(CAP_PPS // 4), "--ceiling", str(CAP_PPS * 2), "--max-trials", str(MAX_TRIALS),
            "--load-curve", "none", "--json", str(tmp_path / "knee.json"),
            ns=h.ns("send"), timeout_s=MAX_TRIALS * 30)
    finally:
        agent.stop()
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "knee.json").read_text())
    search = doc["search"]
    lines = done.stdout
    knee = search["knee_pps"]
    assert knee is not None, f"no knee: {search['why']}\n{lines}"
    assert abs(knee - CAP_PPS) <= TOLERANCE * CAP_PPS, f"knee {knee} pps against a cap of {CAP_PPS}\n{lines}"
    # The path, not the sender, set the knee: the trials above the cap failed for their loss.
    above = [t for t in search["trials"] if t["rate"] and t["rate"] > CAP_PPS * (1 + TOLERANCE)]
    assert above and all(not t["passed"] and t["loss_ratio"] > 0.001 for t in above), lines
    # Each trial was a paired run: the agent's receiver counted the arrivals.
    peer = f"{h.addresses['recv']}:{AGENT_PORT}"
    for t in search["trials"]:
        received = [x for x in t["hosts"] if x["role"] == "receiver"]
        assert [x["host"] for x in received] == [peer] and received[0]["received"] == t["summary"]["received"]
    assert doc["hosts"] and doc["config"]["peer"] == f"{h.addresses['recv']}:{AGENT_PORT}"


@pytest.fixture
def open_hub():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    h = Hub()
    try:
        h.add("recv", 1)
        h.add("client", 3)
        h.add("ctrl", 10)
        yield h
    finally:
        h.close()


def test_search_drives_sending_agents_with_clients(open_hub, tmp_path):
    """--peer with --clients: every trial's datagrams come from the client agent, none from the controller."""
    h = open_hub
    token = write_token(tmp_path / "token")
    agents = [Agent(tmp_path, f"{h.addresses[m]}:{AGENT_PORT}", "--token-file", str(token), ns=h.ns(m), name=m)
              for m in ("recv", "client")]
    try:
        done = run_loadgen(
            tmp_path, "search", "net", "--peer", f"{h.addresses['recv']}:{AGENT_PORT}",
            "--clients", f"{h.addresses['client']}:{AGENT_PORT}", "--token-file", str(token),
            "--max-loss", "1%", "--trial", "1s", "--ramp", "0s", "--floor", "2k", "--ceiling", "4k",
            "--resolution", "50%", "--max-trials", "3", "--load-curve", "none", "--json", str(tmp_path / "c.json"),
            ns=h.ns("ctrl"), timeout_s=3 * 60)
    finally:
        for a in agents:
            a.stop()
    assert done.returncode == 0, done.stderr
    search = json.loads((tmp_path / "c.json").read_text())["search"]
    assert 1 <= len(search["trials"]) <= 3
    client = f"{h.addresses['client']}:{AGENT_PORT}"
    for t in search["trials"]:
        assert t["rate"] in range(2_000, 4_001)
        senders = [x for x in t["hosts"] if x["role"] == "sender"]
        assert [x["host"] for x in senders] == [client] and senders[0]["sent"] == t["summary"]["sent"] > 0
