"""Paired runs between network namespaces: agents and controllers that reach each other only over veths.

Each namespace (netns.Hub) has one veth on a bridge and an address in
10.77.0.0/24: the receiving agent is .1, sending agents .2 and .3, the
controller .10. Agents listen on the fixed port 7070 of their own namespace.
Nothing leaves the namespaces the tests create; loads are 20k pps for 1 s,
except the run that is cut off, whose link goes down once its datagrams flow.
Root only: the tests skip when namespaces cannot be made.
"""
import json

import pytest

from netns import (Agent, Controller, Hub, netns_unavailable, run_loadgen, udp_sockets, wait_for_traffic, wait_until,
                   write_token)

AGENT_PORT = 7070
SHORT = ["--pps", "20k", "--duration", "1s", "--ramp", "0s"]


@pytest.fixture(scope="module")
def netns_ok():
    why = netns_unavailable()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def hub(netns_ok):
    """recv (.1), send1 (.2), send2 (.3) and ctrl (.10) on one bridge, shared by the tests that leave it intact."""
    h = Hub()
    try:
        for name, host in (("recv", 1), ("send1", 2), ("send2", 3), ("ctrl", 10)):
            h.add(name, host)
        yield h
    finally:
        h.close()


@pytest.fixture
def token(tmp_path):
    return write_token(tmp_path / "token")


@pytest.fixture
def agents(tmp_path, token):
    """agents(hub, member, *args): an agent in that member's namespace on its address:7070; stopped in teardown."""
    started: list[Agent] = []

    def start(h: Hub, member: str, *args: str) -> Agent:
        a = Agent(tmp_path, f"{h.addresses[member]}:{AGENT_PORT}", "--token-file", str(token), *args,
                  ns=h.ns(member), name=f"agent-{member}-")
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def controller(h: Hub, tmp_path, token, *args: str, json_name: str = "r.json"):
    """`loadgen *args --json` from the ctrl namespace: (Finished, document or None)."""
    json_path = tmp_path / json_name
    done = run_loadgen(tmp_path, *args, "--token-file", str(token), "--quiet", "--json", str(json_path),
                       ns=h.ns("ctrl"))
    return done, (json.loads(json_path.read_text()) if json_path.exists() else None)


def assert_ok(done, doc) -> dict:
    assert done.returncode == 0, done.stderr
    assert doc is not None and not doc["failed"] and not doc["interrupted"], doc and doc["stop_reason"]
    return doc["summary"]


def counts(doc: dict) -> dict:
    """The counters a failed assertion should show: the total's and each host's."""
    keys = ("sent", "received", "lost", "duplicated", "reordered", "foreign", "late", "too_old", "errors")
    return {"summary": {k: doc["summary"].get(k) for k in keys},
            "hosts": [{k: h.get(k) for k in ("host", "role", "clock", *keys) if k in h} for h in doc["hosts"]]}


def assert_agent_clocks(doc: dict) -> None:
    for h in doc["hosts"]:
        if h["host"] != "local":
            assert set(h["clock"]) == {"offset_ns", "rtt_ns", "error_ns"}, h


def test_stream_counted_on_the_far_side(hub, agents, tmp_path, token):
    recv = agents(hub, "recv")
    done, doc = controller(hub, tmp_path, token, "net", "--peer", recv.address, *SHORT)
    s = assert_ok(done, doc)
    assert s["measured_at"] == "receiver"
    assert s["sent"] > 0
    assert s["received"] == s["sent"] and s["lost"] == 0 and s["loss_ratio"] == 0, counts(doc)
    assert (s["duplicated"], s["reordered"], s["foreign"]) == (0, 0, 0), counts(doc)
    sender = next(h for h in doc["hosts"] if h["role"] == "sender")
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert sender["host"] == "local" and sender["sent"] == s["sent"]
    assert receiver["host"] == f"{hub.addresses['recv']}:{AGENT_PORT}"
    assert receiver["received"] == s["received"] and receiver["received_pps"] == s["received_pps"] > 0
    assert doc["config"]["target_address"] == f"{hub.addresses['recv']}:{receiver['data_port']}"
    assert_agent_clocks(doc)


def test_echo_across_namespaces(hub, agents, tmp_path, token):
    recv = agents(hub, "recv")
    done, doc = controller(hub, tmp_path, token, "net", "--peer", recv.address, *SHORT, "--mode", "echo")
    s = assert_ok(done, doc)
    assert s["measured_at"] == "echo"
    assert s["sent"] > 0 and s["received"] == s["sent"] and s["lost"] == 0
    assert s["latency_ns"]["count"] == s["received"]
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["received"] == s["sent"]
    assert_agent_clocks(doc)


def test_disk_on_an_agent_in_another_namespace(hub, agents, tmp_path, token, direct_io):
    allowed = tmp_path / "allowed"
    allowed.mkdir()   # t.dat does not exist: --size makes it there, as in the README
    recv = agents(hub, "recv", "--allow-path", str(allowed))
    done, doc = controller(hub, tmp_path, token, "disk", "--on", recv.address, "--target", str(allowed / "t.dat"),
                           "--size", "16m", "--duration", "1s", "--ramp", "0s",
                           *([] if direct_io else ["--buffered"]))
    s = assert_ok(done, doc)
    assert s["ops"] > 0 and s["errors"] == 0
    [host] = doc["hosts"]
    assert host["role"] == "disk" and host["host"] == recv.address
    assert_agent_clocks(doc)


def test_two_sending_agents_and_a_receiving_one(hub, agents, tmp_path, token):
    recv, send1, send2 = agents(hub, "recv"), agents(hub, "send1"), agents(hub, "send2")
    done, doc = controller(hub, tmp_path, token, "net", "--peer", recv.address,
                           "--clients", f"{send1.address},{send2.address}", *SHORT)
    s = assert_ok(done, doc)
    seen = counts(doc)

    senders = [h for h in doc["hosts"] if h["role"] == "sender"]
    [receiver] = [h for h in doc["hosts"] if h["role"] == "receiver"]
    assert sorted(h["host"] for h in senders) == sorted([send1.address, send2.address])
    assert all(h["sent"] > 0 for h in senders), seen
    assert sum(h["sent"] for h in senders) == s["sent"], seen
    assert receiver["host"] == recv.address and receiver["received"] == s["received"], seen
    # The two clients' flows are distinct: had they shared flow ids, the receiver would see their
    # sequence numbers twice (duplicates) or out of order, and fewer unique datagrams than were sent.
    assert s["received"] == s["sent"] and s["lost"] == 0, seen
    assert (s["duplicated"], s["reordered"], s["foreign"]) == (0, 0, 0), seen
    assert (receiver["duplicated"], receiver["reordered"]) == (0, 0), seen
    assert doc["config"]["clients"] == [send1.address, send2.address]
    assert_agent_clocks(doc)


@pytest.fixture
def pair(netns_ok):
    """A hub of its own (recv .1 and ctrl .10), since the test cuts its controller off."""
    h = Hub()
    try:
        h.add("recv", 1)
        h.add("ctrl", 10)
        yield h
    finally:
        h.close()


def test_a_controller_cut_off_mid_run(pair, agents, tmp_path, token):
    recv = agents(pair, "recv")
    json_path = tmp_path / "r.json"
    # Long enough that the cut, not the end, stops it; no datagram gets through once the link is down.
    c = Controller(tmp_path, "net", "--peer", recv.address, "--pps", "20k", "--duration", "10s", "--ramp", "0s",
                   "--token-file", str(token), "--quiet", "--json", str(json_path), ns=pair.ns("ctrl"))
    try:
        job_pid, data_port = wait_until(recv.job_with_socket, 20, "the agent's job to open its socket")
        wait_for_traffic(job_pid)
        pair.cut("ctrl")

        line = c.finish(timeout_s=30).error_line(1)
        assert recv.address in line
        assert "stopped answering" in line or "lost the connection" in line
        doc = json.loads(json_path.read_text())
        assert doc["failed"] is True and doc["summary"]["sent"] > 0
    finally:
        c.kill()

    # The agent notices its controller is gone, ends the job and frees the data port.
    wait_until(lambda: job_pid not in recv.jobs(), 30, "the agent to end the job of its lost controller")
    assert data_port not in {port for port, _ in udp_sockets(recv.pid)}
    assert recv.alive()
