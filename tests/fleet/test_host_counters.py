"""Each host's counters in paired, echo and remote documents, as a local run has its own.

An agent's job reads its NICs or its disk around its run (facts.counters) and sends
the differences in its final frame; the protocol checks them (check_counters) and
the controller puts them in the host's section, with any ENA allowance counters
that moved. The checks here:
- the protocol's bounds, on crafted blocks, and what the controller records when
  a block is malformed, absent (an older agent) or never came;
- what each kind of job counts (counted_by), on this host's own routes and disks;
- for real, on agents at 127.0.0.1: every host of a paired stream run, an echo run
  with local senders and a remote disk run has counters whose figures cover its own
  work (loopback counts every datagram it carries; other traffic only adds), and
  each document passes the schema.
"""
import os

import pytest

from loadgen.facts import counters, sysinfo
from loadgen.fleet import agentjob, protocol
from loadgen.fleet.remote import RemoteRun
from loadgen.results import documents
from netns import Agent, run_loadgen, write_token

LOOPBACK = "127.0.0.1"
SHORT = ["--duration", "1s", "--ramp", "0s"]
PPS = 5_000


# ---- the protocol's bounds -------------------------------------------------------------------------

def test_real_counters_pass_the_protocol(tmp_path):
    measured = counters.Around(["lo", "nosuchnic0"], [sysinfo.block_device_of(str(tmp_path)) or "nosuchdisk"]).finish()
    (frame,) = protocol.FrameDecoder().feed(protocol.encode({"type": "done", "counters": measured}))
    assert protocol.check_counters(frame["counters"]) == measured


@pytest.mark.parametrize("block, says", [
    ([], "object of nics and disks"),
    ({"cpus": {}}, "object of nics and disks"),
    ({"nics": []}, "nics is not an object"),
    ({"nics": {f"n{i}": {} for i in range(protocol.MAX_COUNTER_DEVICES + 1)}}, "at most"),
    ({"nics": {"": {}}}, "bad name"),
    ({"nics": {"x" * (protocol.MAX_COUNTER_NAME_CHARS + 1): {}}}, "bad name"),
    ({"nics": {"eth\n0": {}}}, "bad name"),
    ({"nics": {"lo": []}}, "nics.lo is not an object"),
    ({"nics": {"lo": {"statistics": 5}}}, "not an object of counters"),
    ({"nics": {"lo": {"statistics": {"rx_packets": "5"}}}}, "not a counter difference"),
    ({"nics": {"lo": {"statistics": {"rx_packets": True}}}}, "not a counter difference"),
    ({"nics": {"lo": {"statistics": {"rx_packets": 1.5}}}}, "not a counter difference"),
    ({"nics": {"lo": {"statistics": {"rx_packets": 1 << 64}}}}, "not a counter difference"),
    ({"nics": {"lo": {"statistics": {"rx_packets": -(1 << 64)}}}}, "not a counter difference"),
    ({"disks": {"vda": {"missing": 3}}}, "not a reason"),
    ({"disks": {"vda": {"missing": "x" * (protocol.MAX_REASON_CHARS + 1)}}}, "not a reason"),
    ({"disks": {"vda": {"stat": {f"c{i}": 0 for i in range(protocol.MAX_COUNTER_NAMES + 1)}}}},
     "not an object of counters"),
])
def test_malformed_counters_are_refused(block, says):
    with pytest.raises(protocol.ProtocolError, match=says) as e:
        protocol.check_counters(block)
    assert e.value.code == "malformed"


@pytest.mark.parametrize("block", [
    {}, {"nics": {}, "disks": {}},
    {"nics": {"eth0": {"statistics": {"tx_packets": (1 << 64) - 1}, "missing_driver": "not supported"}}},
    {"nics": {"eth0": {"driver": {"pps_allowance_exceeded": -3}}}},   # a counter that wrapped
    {"disks": {"nvme0n1": {"missing": "/sys/block/nvme0n1/stat: No such file or directory"}}},
])
def test_wellformed_counters_pass(block):
    assert protocol.check_counters(block) == block


class FakeClient:
    name = "hostB:7070"


def remote_run() -> RemoteRun:
    return RemoteRun(FakeClient(), 1, {"workers": 1})


def done_frame(run: RemoteRun, **extra) -> dict:
    from loadgen.run.stats import encode_words

    return {"type": "done", "setup_errno": 0, "words": encode_words(run.read()), **extra}


def test_the_controller_keeps_what_the_final_frame_says():
    run = remote_run()
    assert "without its final report" in run.counters["missing"], "a job that never finished has none, and why"
    block = {"nics": {"lo": {"statistics": {"rx_packets": 7}}}, "disks": {}}
    run.update(done_frame(run, counters=block))
    assert run.done() and run.counters == block


@pytest.mark.parametrize("extra, says", [
    ({}, "sends no counters (an older loadgen)"),
    ({"counters": {"nics": {"lo": {"statistics": {"rx_packets": "many"}}}}}, "sent malformed counters"),
])
def test_missing_or_malformed_counters_cost_only_the_counters(extra, says):
    run = remote_run()
    run.update(done_frame(run, **extra))
    assert run.done() and run.failure() is None, "the run's counts stand"
    assert set(run.counters) == {"missing"} and says in run.counters["missing"]
    assert "hostB:7070" in run.counters["missing"]


# ---- what each job counts --------------------------------------------------------------------------

def test_a_sending_job_counts_the_nic_toward_its_target():
    around = agentjob.counted_by({"kind": "udp-send", "options": {"target": f"{LOOPBACK}:9"}})
    assert (around.nics, around.disks) == ([sysinfo.nic_for(LOOPBACK)], []) == (["lo"], [])


def test_a_receiving_job_counts_the_nic_it_was_reached_at():
    around = agentjob.counted_by({"kind": "udp-receive", "bind": "0.0.0.0", "reached_at": LOOPBACK})
    assert (around.nics, around.disks) == (["lo"], [])
    assert agentjob.counted_by({"kind": "udp-receive", "bind": LOOPBACK}).nics == ["lo"]


def test_a_disk_job_counts_the_disk_under_its_descriptor(tmp_path):
    target = tmp_path / "t.dat"
    target.write_bytes(b"\0" * 4096)
    fd = os.open(target, os.O_RDONLY)
    try:
        around = agentjob.counted_by({"kind": "disk", "target_fd": fd})
    finally:
        os.close(fd)
    device = sysinfo.block_device_of(str(target))
    assert around.nics == [] and around.disks == ([device] if device else [])


# ---- for real, on agents at 127.0.0.1 --------------------------------------------------------------

@pytest.fixture
def token(tmp_path):
    return write_token(tmp_path / "token")


@pytest.fixture
def agents(tmp_path, token):
    started: list[Agent] = []

    def start(*args: str) -> Agent:
        a = Agent(tmp_path, f"{LOOPBACK}:0", "--token-file", str(token), *args, name=f"agent{len(started)}")
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def finished_doc(tmp_path, *args: str) -> dict:
    done = run_loadgen(tmp_path, *args, "--token-file", str(tmp_path / "token"), *SHORT, "--quiet",
                       "--json", "r.json")
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")   # the schema knows the host's counters
    assert not doc["failed"] and not doc["interrupted"], doc["stop_reason"]
    return doc


def loopback_of(section: dict) -> dict:
    c = section["counters"]
    assert "missing" not in c, c
    assert list(c["nics"]) == ["lo"] and c["disks"] == {}, c
    return c["nics"]["lo"]["statistics"]


def test_every_host_of_a_paired_run_has_its_counters(tmp_path, agents):
    receiver, a, b = agents(), agents(), agents()
    doc = finished_doc(tmp_path, "net", "--peer", receiver.address, "--clients", f"{a.address},{b.address}",
                       "--pps", f"{PPS // 1000}k")
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert set(hosts) == {receiver.address, a.address, b.address}
    for address in (a.address, b.address):
        sender = hosts[address]
        assert loopback_of(sender)["tx_packets"] >= sender["sent"] > 0, "every datagram it sent crossed lo"
        assert "allowance_exceeded" not in sender, "loopback has no ENA allowances"
    got = hosts[receiver.address]
    assert loopback_of(got)["rx_packets"] >= got["received"] > 0, "every datagram it received crossed lo"
    assert "counters" not in doc, "the controller's own host took no part"


def test_an_echo_run_with_local_senders_has_both_hosts_counters(tmp_path, agents):
    receiver = agents()
    doc = finished_doc(tmp_path, "net", "--peer", receiver.address, "--mode", "echo", "--pps", f"{PPS // 1000}k")
    local, far = doc["hosts"]
    assert (local["host"], far["host"]) == ("local", receiver.address)
    # On one machine both hosts share lo, which carries each datagram out and its echo back.
    assert loopback_of(local)["tx_packets"] >= local["sent"] + local["received"] > 0
    assert loopback_of(far)["rx_packets"] >= far["received"] > 0


def test_a_remote_disk_run_has_its_hosts_disk_counters(tmp_path, agents):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    agent = agents("--allow-path", str(allowed))
    doc = finished_doc(tmp_path, "disk", "--on", agent.address, "--target", str(allowed / "t.dat"), "--size", "16m")
    (host,) = doc["hosts"]
    c = host["counters"]
    assert "missing" not in c and c["nics"] == {}, c
    device = sysinfo.block_device_of(str(allowed))
    if device is None:
        assert c["disks"] == {} and "device_crosscheck" not in doc["summary"]
        pytest.skip("the agent's target has no block device to count I/Os on")
    assert list(c["disks"]) == [device]
    s = doc["summary"]
    check = s["device_crosscheck"]
    if "missing" in check:
        pytest.skip(f"the disk's counters are not readable: {check['missing']}")
    stat = c["disks"][device]["stat"]
    # As a local run's: the device's count beside loadgen's, warm-up included.
    assert check == counters.disk_crosscheck(c["disks"][device], s["read"]["ops"] + s["warmup_ops"] + s["drained_ops"],
                                             s["write"]["ops"])
    assert check["device_ios"] == stat["reads_completed"] + stat["writes_completed"]
    assert check["loadgen_ios"] == s["read"]["ops"] + s["write"]["ops"] + s["warmup_ops"] + s["drained_ops"] > 0
