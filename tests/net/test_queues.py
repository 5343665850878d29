"""Where the packet engine's senders run and which TX queue each feeds (loadgen/net/queues.py).

The placement is read from fake sysfs/procfs trees (a virtio NIC, ixgbe-, ena- and mlx5-style
interrupt names, XPS maps, an IRQ pinned to one CPU); the run needs root and skips without
it: two namespaces joined by a 2-queue veth pair (10.78.0.0/30, only inside them), a paired run
at 20k pps for 1 s whose counts are asserted exactly and whose config names each sender's queue.
"""
import itertools
import os
from pathlib import Path

import pytest

from loadgen.net import queues
from loadgen.results import documents
from netns import Agent, _ip, netns_unavailable, run_loadgen, write_token


@pytest.mark.parametrize("text, cpus", [
    ("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-1,8,10-11\n", [0, 1, 8, 10, 11]), ("", []),
])
def test_parse_cpu_list(text, cpus):
    assert queues.parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text, cpus", [
    ("0\n", set()), ("3", {0, 1}), ("00000000,00000001", {0}), ("00000001,00000000", {32}), ("a", {1, 3}),
])
def test_parse_cpu_mask(text, cpus):
    assert queues.parse_cpu_mask(text) == cpus


def fake_tree(root: Path, dev: str = "eth0", tx: int = 1, device: str | None = None, interrupts: list[str] = (),
              affinity: dict[int, str] | None = None, xps: dict[int, str] | None = None) -> Path:
    base = root / "sys/class/net" / dev
    (base / "queues").mkdir(parents=True)
    for q in range(tx):
        (base / "queues" / f"tx-{q}").mkdir()
        (base / "queues" / f"rx-{q}").mkdir()
        if tx > 1:   # the kernel has xps_cpus only on multi-queue devices
            (base / "queues" / f"tx-{q}" / "xps_cpus").write_text((xps or {}).get(q, "0") + "\n")
    if device:
        (root / "sys/devices" / device).mkdir(parents=True)
        os.symlink(f"../../../devices/{device}", base / "device")
    (root / "proc").mkdir(exist_ok=True)
    lines = ["            CPU0       CPU1"] + [
        f" {irq}:          0          0  PCI-MSIX   {i}-edge      {name}" for i, (irq, name) in
        enumerate(n.split(":", 1) for n in interrupts)] + ["NMI:  0  0  Non-maskable interrupts"]
    (root / "proc/interrupts").write_text("\n".join(lines) + "\n")
    for irq, cpus in (affinity or {}).items():
        (root / "proc/irq" / str(irq)).mkdir(parents=True)
        (root / "proc/irq" / str(irq) / "smp_affinity_list").write_text(cpus + "\n")
    return root


@pytest.mark.parametrize("device, names, expected", [
    # virtio_net: the names are the virtio device's, one per queue and direction
    ("virtio2", ["38:virtio2-input.0", "39:virtio2-output.0", "40:virtio2-config", "41:virtio21-output.0"], {0: 39}),
    # a queue pair's shared interrupt, named after the interface (ixgbe, ena)
    ("0000:00:05.0", ["50:eth0-TxRx-0", "51:eth0-TxRx-1", "52:eth0", "53:eth01-TxRx-2"], {0: 50, 1: 51}),
    ("0000:00:05.0", ["60:ena-mgmnt@pci:0000:00:05.0", "61:eth0-Tx-Rx-0", "62:eth0-Tx-Rx-1"], {0: 61, 1: 62}),
    # completion vectors named after the PCI function (mlx5)
    ("0000:00:05.0", ["70:mlx5_async0@pci:0000:00:05.0", "71:mlx5_comp0@pci:0000:00:05.0",
                      "72:mlx5_comp1@pci:0000:00:05.0"], {0: 71, 1: 72}),
    # separate TX and RX interrupts: the TX one wins over a shared one
    (None, ["80:eth0-rx-0", "81:eth0-tx-0", "82:eth0-TxRx-0", "83:eth0-TxRx-1"], {0: 81, 1: 83}),
    # a virtual device has none
    (None, ["90:virtio2-output.0", "91:eth1-TxRx-0"], {}),
])
def test_queue_irqs_by_name(tmp_path, device, names, expected):
    root = fake_tree(tmp_path, device=device, interrupts=names)
    assert queues.queue_irqs("eth0", root) == expected


@pytest.mark.parametrize("cpu, n, xps, bypass, queue", [
    (0, 1, {}, True, 0), (3, 2, {}, True, 1), (2, 4, {}, True, 2), (5, 4, {}, True, 1),
    (1, 4, {}, False, None),                      # through the qdisc without XPS: the flow hash
    (1, 4, {1: {3}}, False, 3), (1, 4, {1: {3}}, True, 3),   # XPS decides both ways
    (1, 4, {1: {2, 3}}, True, None),              # XPS spreads over two by hash
    (0, 4, {1: {3}}, True, 0),                    # a CPU without a map: skb_tx_hash of cpu % n
])
def test_kernel_queue(cpu, n, xps, bypass, queue):
    assert queues.kernel_queue(cpu, n, xps, bypass) == queue


def places(plan):
    return [(p.cpu, p.queue, p.irq) for p in plan.places]


def test_one_sender_per_queue_capped_by_the_cpus(tmp_path):
    root = fake_tree(tmp_path, tx=4)
    plan = queues.plan("eth0", [0, 1], None, True, root)
    assert places(plan) == [(0, 0, None), (1, 1, None)] and plan.decided == "cpu"
    facts = plan.facts()
    assert facts["tx_queues"] == 4 and "veth" in facts["irq_note"]
    assert facts["senders"] == [{"cpu": 0, "queue": 0, "irq": None}, {"cpu": 1, "queue": 1, "irq": None}]


def test_a_sender_goes_near_its_queues_irq(tmp_path):
    # 2 queues, 4 CPUs: CPUs 0 and 2 both feed tx-0; tx-0's IRQ fires on CPU 2
    root = fake_tree(tmp_path, tx=2, interrupts=["50:eth0-TxRx-0", "51:eth0-TxRx-1"], affinity={50: "2", 51: "0-3"})
    plan = queues.plan("eth0", [0, 1, 2, 3], None, True, root)
    assert places(plan) == [(2, 0, 50), (1, 1, 51)]
    assert plan.facts()["irq_note"] is None


def test_xps_maps_decide_the_queue(tmp_path):
    # tx-0 is CPU 1's, tx-1 CPU 0's: each queue's sender runs where XPS sends to it
    root = fake_tree(tmp_path, tx=2, xps={0: "2", 1: "1"})
    plan = queues.plan("eth0", [0, 1], None, True, root)
    assert places(plan) == [(1, 0, None), (0, 1, None)] and plan.decided == "xps"


def test_without_bypass_or_xps_no_queue_is_claimed(tmp_path):
    root = fake_tree(tmp_path, tx=2)
    plan = queues.plan("eth0", [0, 1], None, False, root)
    assert places(plan) == [(0, None, None), (1, None, None)] and plan.decided == "flow hash"


def test_a_queue_no_free_cpu_reaches_gets_no_sender(tmp_path):
    # XPS sends both CPUs to tx-1: tx-0 and tx-2 are unreachable by a pinned sender
    root = fake_tree(tmp_path, tx=3, xps={1: "3"})
    plan = queues.plan("eth0", [0, 1], None, True, root)
    assert places(plan) == [(0, 1, None)]


def test_workers_given_are_placed_round_robin_and_their_queues_recorded(tmp_path):
    root = fake_tree(tmp_path, tx=2)
    plan = queues.plan("eth0", [0, 1], 3, True, root)
    assert places(plan) == [(0, 0, None), (1, 1, None), (0, 0, None)]


def test_a_single_queue_device_gets_one_sender(tmp_path):
    root = fake_tree(tmp_path, tx=1, device="virtio2", interrupts=["39:virtio2-output.0"], affinity={39: "1"})
    plan = queues.plan("eth0", [0, 1], None, True, root)
    assert places(plan) == [(1, 0, 39)]   # tx-0 is every CPU's queue: the sender goes where its IRQ fires


# ---- a run on a 2-queue veth between namespaces ------------------------------------------------

_ids = itertools.count()


@pytest.fixture
def two_queue_veth():
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    prefix = f"lgq-{os.getpid()}-{next(_ids)}"
    send, recv = f"{prefix}-s", f"{prefix}-r"
    created = []
    try:
        for ns in (send, recv):
            _ip("netns", "add", ns)
            created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", "veth-s", "numtxqueues", "2", "numrxqueues", "2", "netns", send, "type", "veth",
            "peer", "name", "veth-r", "numtxqueues", "2", "numrxqueues", "2", "netns", recv)
        for ns, dev, addr in ((send, "veth-s", "10.78.0.1"), (recv, "veth-r", "10.78.0.2")):
            _ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield send, recv
    finally:
        for ns in created:
            _ip("netns", "del", ns)


def test_a_sender_per_queue_on_a_two_queue_veth(two_queue_veth, tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs for a sender per queue")
    send, recv = two_queue_veth
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, "10.78.0.2:7071", "--token-file", str(token), ns=recv)
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--engine", "packet", "--pps", "20k",
                           "--duration", "1s", "--ramp", "0s", "--flows", "2", "--token-file", str(token),
                           "--quiet", "--json", "r.json", ns=send)
    finally:
        agent.stop()
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")   # and it fits the schema
    p, s = doc["config"]["packet"], doc["summary"]
    assert p["tx_queues"] == 2 and p["queue_decided_by"] == "cpu" and p["zero_copy"] is False
    assert sorted(x["queue"] for x in p["senders"]) == [0, 1]
    assert all(x["queue"] == x["cpu"] % 2 and x["irq"] is None for x in p["senders"])
    assert "veth" in p["irq_note"] and doc["config"]["senders"] == 2
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 20_000
    assert s["received"] == s["sent"] and s["lost"] == 0
