"""The xdp engine (--engine xdp): its options, its queue placement, and runs between namespaces.

The runs need root (namespaces, veth, AF_XDP) and skip without it: two namespaces of this
test's own, lgt-xdp-<pid>-tx and -rx, joined by a veth pair (xdp<pid>t / xdp<pid>r,
10.76.0.0/30, only inside them), with 1 or 2 queues. veth has no zero-copy AF_XDP, so the
kernel binds in copy mode; copy mode sends with nothing loaded on either side (no XDP
program, no NAPI on the peer): the frames go through veth_xmit to the peer's backlog. Loads
are 20k pps for 1 s, and one --pps max run of 1 s; counts are asserted exactly, rates and
times never.
"""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadgen import workload
from loadgen.errors import UsageError
from loadgen.net import queues, xdp
from loadgen.results import documents
from loadgen.run import native
from netfixtures import run_without_net_raw
from netns import (Agent, Controller, Finished, _ip, delete_namespaces, netns_unavailable, run_loadgen,
                   udp_in_datagrams, wait_until, write_token)

SHORT = ["--pps", "20k", "--duration", "1s", "--ramp", "0s"]
AGENT_PORT = 7070
SERVE_PORT = 9000
TX_IP, RX_IP = "10.76.0.1", "10.76.0.2"


def test_limits_agree_with_the_library():
    assert xdp.MAX_FRAME_BYTES == native.limit("xdp_max_frame_bytes")


@pytest.mark.parametrize("options, says", [
    ({"engine": "xdp", "mode": "echo"}, "--engine xdp sends one way"),
    ({"engine": "xdp", "gso": True}, "the xdp engine builds every frame itself"),
])
def test_options_that_do_not_go_together(options, says):
    with pytest.raises(UsageError, match=says):
        workload.parse_net(**options)


def test_without_workers_a_sender_per_queue_travels_to_agents():
    spec = workload.parse_net(engine="xdp", target=f"{RX_IP}:9")
    assert spec.per_queue and spec.to_wire()["workers"] == 0
    assert workload.NetSpec.from_wire(spec.to_wire()).engine == "xdp"


@pytest.mark.parametrize("err, line", [
    (errno.EPERM, xdp.NO_CAPABILITY),
    (errno.EAFNOSUPPORT, "--engine xdp is unavailable: this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"),
    (errno.EBUSY, None),
    (errno.EINVAL, None),
])
def test_which_errors_mean_no_xdp_here(err, line):
    assert xdp.unavailable_reason(err) == line


def fake_queues(root: Path, dev: str, tx: int, irqs: dict[int, tuple[int, str]] = {}) -> Path:
    for q in range(tx):
        (root / "sys/class/net" / dev / "queues" / f"tx-{q}").mkdir(parents=True)
    (root / "proc").mkdir()
    lines = ["            CPU0       CPU1"] + [f" {irq}:  0  0  PCI-MSIX  {q}-edge  {dev}-TxRx-{q}"
                                                for q, (irq, _) in irqs.items()]
    (root / "proc/interrupts").write_text("\n".join(lines) + "\n")
    for irq, cpus in irqs.values():
        (root / "proc/irq" / str(irq)).mkdir(parents=True)
        (root / "proc/irq" / str(irq) / "smp_affinity_list").write_text(cpus + "\n")
    return root


@pytest.mark.parametrize("tx, cpus, workers, irqs, expected", [
    # one per queue, capped by the CPUs
    (4, [0, 1], None, {}, [(0, 0), (1, 1)]),
    (1, [0, 1, 2], None, {}, [(0, 0)]),
    # each near its queue's IRQ when one is there
    (2, [0, 1, 2, 3], None, {0: (50, "3"), 1: (51, "2")}, [(3, 0), (2, 1)]),
    # --workers N: queues 0 .. N-1
    (4, [0, 1, 2, 3], 2, {}, [(0, 0), (1, 1)]),
    # more senders than CPUs share them
    (3, [5], 3, {}, [(5, 0), (5, 1), (5, 2)]),
])
def test_bound_plan(tmp_path, tx, cpus, workers, irqs, expected):
    root = fake_queues(tmp_path, "eth0", tx, irqs)
    plan = queues.bound_plan("eth0", cpus, workers, root)
    assert [(p.cpu, p.queue) for p in plan.places] == expected
    assert plan.decided == "bind" and plan.tx_queues == tx
    assert plan.facts()["senders"][0]["irq"] == (irqs[0][0] if irqs else None)


def test_bound_plan_takes_one_sender_per_queue(tmp_path):
    root = fake_queues(tmp_path, "eth0", 2)
    with pytest.raises(ValueError, match="eth0 has 2 TX queues"):
        queues.bound_plan("eth0", [0, 1, 2], 3, root)


# ---- runs between namespaces ----------------------------------------------------------------------

class VethPair:
    """Two namespaces of this test's own joined by one veth pair with `queues` queues each way."""

    def __init__(self, queues: int) -> None:
        tag = f"{os.getpid() % 100000}{queues}"
        self.tx, self.rx = f"lgt-xdp-{tag}-tx", f"lgt-xdp-{tag}-rx"
        self.tx_dev, self.rx_dev = f"xdp{tag}t", f"xdp{tag}r"
        self._created: list[str] = []
        try:
            for ns in (self.tx, self.rx):
                _ip("netns", "add", ns)
                self._created.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.tx, "link", "add", self.tx_dev, "numtxqueues", str(queues), "numrxqueues", str(queues),
                "type", "veth", "peer", "name", self.rx_dev, "netns", self.rx, "numtxqueues", str(queues),
                "numrxqueues", str(queues))
            for ns, dev, address in ((self.tx, self.tx_dev, TX_IP), (self.rx, self.rx_dev, RX_IP)):
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
            # a permanent neighbour: the first frames do not wait on ARP (the engine would probe)
            mac = json.loads(_ip("-j", "-n", self.rx, "link", "show", self.rx_dev))[0]["address"]
            _ip("-n", self.tx, "neigh", "replace", RX_IP, "lladdr", mac, "dev", self.tx_dev, "nud", "permanent")
        except BaseException:
            self.close()
            raise

    def rx_packets(self) -> int:
        return int(_ip("netns", "exec", self.rx, "cat", f"/sys/class/net/{self.rx_dev}/statistics/rx_packets"))

    def close(self) -> None:
        delete_namespaces(self._created)


def make_pair(queues: int):
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    pair = VethPair(queues)
    probe = subprocess.run(["ip", "netns", "exec", pair.tx, sys.executable, "-c",
                            "import socket; socket.socket(44, socket.SOCK_RAW, 0).close()"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode:
        pair.close()
        pytest.skip(f"no AF_XDP sockets here: {probe.stderr.strip().splitlines()[-1]}")
    return pair


@pytest.fixture(scope="module")
def pair():
    p = make_pair(1)
    try:
        yield p
    finally:
        p.close()


def paired_run(pair: VethPair, tmp_path: Path, *args: str) -> tuple[Finished, dict | None]:
    """`loadgen net --peer AGENT --engine xdp ARGS` from tx to an agent in rx."""
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, f"{RX_IP}:{AGENT_PORT}", "--token-file", str(token), ns=pair.rx)
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--engine", "xdp", *args, "--token-file",
                           str(token), "--quiet", "--json", "r.json", ns=pair.tx)
    finally:
        agent.stop()
    return done, documents.load_result(tmp_path / "r.json") if done.returncode == 0 else None


def assert_exact(s: dict, scheduled: int) -> None:
    assert s["sent"] > 0 and s["sent"] + s["schedule_lag_ns"]["unsent"] == scheduled
    assert s["errors"] == 0 and s["errors_by_errno"] == {}


def test_paced_run_to_an_agent_counts_every_frame(pair, tmp_path):
    done, doc = paired_run(pair, tmp_path, *SHORT)
    assert done.returncode == 0, done.stderr
    s = doc["summary"]
    assert doc["engine"] == "xdp" and doc["config"]["engine"] == "xdp"
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0, s
    assert (s["duplicated"], s["reordered"], s["foreign"], s["too_old"]) == (0, 0, 0, 0)
    # lag is reported as for sockets: each frame's scheduled time against its send
    lag = s["schedule_lag_ns"]
    assert {"max", "mean", "late_ops"} <= set(lag) and lag["max"] >= lag["mean"] >= 0
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["received"] == s["sent"]
    x = doc["config"]["xdp"]
    # veth has no zero-copy AF_XDP (no ndo_xsk_wakeup): the kernel binds in copy mode
    assert x["mode"] == "copy" and x["zero_copy"] is False
    assert (x["interface"], x["driver"], x["next_hop"], x["local_delivery"]) == (pair.tx_dev, "veth", RX_IP, False)
    assert x["tx_queues"] == 1 and x["queue_decided_by"] == "bind"
    assert [p["queue"] for p in x["senders"]] == [0]


def test_a_sending_agent_runs_the_xdp_engine(pair, tmp_path):
    """--clients: the agent in the sending namespace opens the AF_XDP sockets for its job."""
    token = write_token(tmp_path / "token")
    agents = [Agent(tmp_path, f"{address}:{AGENT_PORT}", "--token-file", str(token), ns=ns, name=f"agent-{role}-")
              for role, ns, address in (("rx", pair.rx, RX_IP), ("tx", pair.tx, TX_IP))]
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agents[0].address, "--clients", agents[1].address,
                           "--engine", "xdp", *SHORT, "--token-file", str(token), "--quiet", "--json", "r.json",
                           ns=pair.tx)
    finally:
        for a in agents:
            a.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    s = doc["summary"]
    assert doc["engine"] == "xdp"
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0 and (s["duplicated"], s["reordered"]) == (0, 0)


def test_a_plain_serve_counts_every_frame(pair, tmp_path):
    """To `loadgen serve`: the receiving namespace's UDP stack takes every frame."""
    serve = Controller(tmp_path, "serve", "--port", str(SERVE_PORT), "--host", RX_IP, "--workers", "1",
                       "--duration", "30s", ns=pair.rx, name="serve")
    try:
        wait_until(lambda: "listening" in serve.out_path.read_text(), 20, "serve to listen")
        before = udp_in_datagrams(serve.proc.pid)
        done = run_loadgen(tmp_path, "net", "--target", f"{RX_IP}:{SERVE_PORT}", "--engine", "xdp", *SHORT,
                           "--quiet", "--json", "r.json", ns=pair.tx)
        assert done.returncode == 0, done.stderr
        s = json.loads((tmp_path / "r.json").read_text())["summary"]
        assert_exact(s, 20_000)
        wait_until(lambda: udp_in_datagrams(serve.proc.pid) - before >= s["sent"], 10, "every frame to arrive")
        assert udp_in_datagrams(serve.proc.pid) - before == s["sent"]
    finally:
        serve.kill()


def test_max_rate_run_ends_and_nothing_arrives_uncounted(pair, tmp_path):
    before = pair.rx_packets()
    done, doc = paired_run(pair, tmp_path, "--pps", "max", "--duration", "1s", "--ramp", "0s")
    assert done.returncode == 0, done.stderr
    s = doc["summary"]
    assert s["sent"] > 0 and s["errors"] == 0
    # at full speed the receiver may drop (its socket buffer full), never count more than was sent
    assert 0 < s["received"] <= s["sent"] and s["lost"] == s["sent"] - s["received"]
    assert pair.rx_packets() - before >= s["received"]


def test_more_senders_than_queues_is_one_line(pair, tmp_path):
    done = run_loadgen(tmp_path, "net", "--target", f"{RX_IP}:{SERVE_PORT}", "--engine", "xdp", "--workers", "2",
                       *SHORT, "--quiet", ns=pair.tx)
    assert done.error_line(2) == (f"loadgen: invalid workers: 2 (--engine xdp binds one sender per TX queue: "
                                  f"{pair.tx_dev} has 1 TX queue)")


def test_too_large_a_size_is_one_line(pair, tmp_path):
    done = run_loadgen(tmp_path, "net", "--target", f"{RX_IP}:{SERVE_PORT}", "--engine", "xdp", "--size", "1473",
                       *SHORT, "--quiet", ns=pair.tx)
    assert done.error_line(2) == (f"loadgen: invalid size: 1473 (--engine xdp sends unfragmented frames: "
                                  f"32 to 1472 on {pair.tx_dev}, MTU 1500)")


def test_a_queue_taken_is_one_line(pair):
    """A queue takes one AF_XDP socket with its own UMEM: a second is refused, by name."""
    script = (f"from loadgen.errors import SetupError\nfrom loadgen.net import xdp\n"
              f"held = xdp.open_xsk({pair.tx_dev!r}, 0, 100)\n"
              f"try:\n    xdp.open_xsk({pair.tx_dev!r}, 0, 100)\nexcept SetupError as e:\n    print(e)\n"
              f"held.close()\n")
    p = subprocess.run(["ip", "netns", "exec", pair.tx, sys.executable, "-c", script], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"TX queue 0 of {pair.tx_dev} already has an AF_XDP socket"


def test_two_queues_two_senders_count_every_frame(tmp_path):
    two = make_pair(2)
    try:
        done, doc = paired_run(two, tmp_path, *SHORT, "--workers", "2")
    finally:
        two.close()
    assert done.returncode == 0, done.stderr
    s = doc["summary"]
    assert_exact(s, 20_000)
    assert s["received"] == s["sent"] and s["lost"] == 0 and s["duplicated"] == 0
    x = doc["config"]["xdp"]
    assert x["tx_queues"] == 2 and [p["queue"] for p in x["senders"]] == [0, 1]


def test_without_cap_net_raw_is_one_line(tmp_path):
    p = run_without_net_raw(tmp_path, "net", "--target", "127.0.0.1:9", "--engine", "xdp", *SHORT, "--quiet")
    assert Finished(p.returncode, p.stdout, p.stderr).error_line(1) == f"loadgen: {xdp.NO_CAPABILITY}"
