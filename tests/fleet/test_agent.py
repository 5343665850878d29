"""The agent for real: `loadgen serve --listen` on 127.0.0.1, driven by `loadgen net/disk` and by raw clients.

Every agent listens on 127.0.0.1:0 and every datagram goes to 127.0.0.1; loads
last at most 3 s at 10k pps (the long runs are cut short by the test). The raw
client speaks loadgen.fleet.protocol over a plain socket, to hold a session, to send
what no controller would, and to check the replies. Waits are bounded so a hung
child fails the test; nothing asserts a time.
"""
import json
import os
import random
import signal
import shutil
import socket
import subprocess

import pytest

from loadgen.fleet import protocol
from loadgen.net.job import wire_bytes
from netns import Agent, Controller, clean_env, is_agent_job, run_loadgen, wait_for_pause, wait_until, write_token

LOOPBACK = "127.0.0.1"
SHORT = ["--duration", "1s", "--ramp", "0s"]
IO_TIMEOUT_S = 10


@pytest.fixture
def token(tmp_path):
    return write_token(tmp_path / "token")


@pytest.fixture
def agents(tmp_path):
    """agents(*args, name=...) starts `loadgen serve --listen 127.0.0.1:0 *args`; all are stopped in teardown."""
    started: list[Agent] = []

    def start(*args: str, name: str = "agent", listen: str = f"{LOOPBACK}:0", env: dict | None = None) -> Agent:
        a = Agent(tmp_path, listen, *args, name=f"{name}{len(started)}", env=env)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


@pytest.fixture
def agent(agents, token):
    return agents("--token-file", str(token))


@pytest.fixture
def controllers(tmp_path):
    """Background controllers; every one still running at teardown is killed."""
    started: list[Controller] = []

    def start(*args: str, name: str = "controller", tty: bool = False) -> Controller:
        c = Controller(tmp_path, *args, name=f"{name}{len(started)}", tty=tty)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def paired_net(tmp_path, agent: Agent, token, *args: str, json_name: str = "r.json"):
    """`loadgen net --peer AGENT --pps 10k SHORT *args --json` in tmp_path: (Finished, document or None)."""
    json_path = tmp_path / json_name
    done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "10k", *SHORT,
                       "--token-file", str(token), "--quiet", "--json", str(json_path), *args)
    return done, (json.loads(json_path.read_text()) if json_path.exists() else None)


def assert_paired_ok(done, doc) -> dict:
    assert done.returncode == 0, done.stderr
    assert doc is not None and not doc["failed"] and not doc["interrupted"], doc and doc["stop_reason"]
    return doc["summary"]


def agent_sections(doc: dict) -> list[dict]:
    return [h for h in doc["hosts"] if h["host"] != "local"]


def assert_agent_clocks(doc: dict) -> None:
    sections = agent_sections(doc)
    assert sections
    for h in sections:
        clock = h["clock"]
        assert set(clock) == {"offset_ns", "rtt_ns", "error_ns"}, h
        assert clock["rtt_ns"] >= 0 and clock["error_ns"] == (clock["rtt_ns"] + 1) // 2, clock


# ---- a raw client ----------------------------------------------------------------------------------

class Closed(Exception):
    """The agent closed the connection."""


class RawClient:
    """A controller written by hand: one TCP connection, loadgen.fleet.protocol frames, blocking reads."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOOPBACK, port), timeout=IO_TIMEOUT_S)
        self.decoder = protocol.FrameDecoder()
        self.frames: list[dict] = []
        self.next_id = 1000
        self.challenge = self.recv()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg: dict) -> None:
        self.send_raw(protocol.encode(msg))

    def recv(self) -> dict:
        while not self.frames:
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                raise Closed()
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def recv_reply(self) -> dict:
        """The next frame that is not a job's report (snapshots and such carry no id)."""
        while True:
            f = self.recv()
            if f.get("type") not in ("snapshot", "done", "job-failed"):
                return f

    def authenticate(self, token: bytes | None, mac: str | None = None) -> dict:
        nonce = protocol.new_nonce()
        msg = {"type": "auth", "version": protocol.VERSION, "nonce": nonce}
        if token is not None:
            msg["mac"] = protocol.controller_proof(token, self.challenge["nonce"], nonce)
        if mac is not None:
            msg["mac"] = mac
        self.send(msg)
        reply = self.recv()
        if reply.get("type") == "welcome" and token is not None:
            assert protocol.verify(protocol.agent_proof(token, self.challenge["nonce"], nonce), reply.get("mac"))
        return reply

    def request(self, msg: dict) -> dict:
        rid = self.next_id
        self.next_id += 1
        self.send(dict(msg, id=rid))
        reply = self.recv_reply()
        assert reply.get("id") == rid, (msg, reply)
        return reply

    def ping(self) -> dict:
        return self.request({"type": "ping"})

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def token_bytes(path) -> bytes:
    return path.read_bytes().strip()


def session(agent: Agent, token) -> RawClient:
    """An authenticated raw session; waits (bounded) while the agent is still busy with a previous one."""
    def attempt():
        c = RawClient(agent.port)
        welcome = c.authenticate(token_bytes(token))
        if welcome.get("type") == "welcome":
            return c
        c.close()
        assert welcome.get("code") == "busy", welcome
        return None

    return wait_until(attempt, 15, "the agent to accept a controller")


# ---- starting ----------------------------------------------------------------------------------------

def serve_briefly(tmp_path, *args: str, env: dict | None = None):
    """`loadgen serve *args`, expected to refuse at once; an agent that starts anyway is killed."""
    try:
        return run_loadgen(tmp_path, "serve", *args, env=env, timeout_s=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve {' '.join(args)} started instead of refusing")


def test_an_agent_without_a_token_refuses_to_start(tmp_path):
    line = serve_briefly(tmp_path, "--listen", f"{LOOPBACK}:0").error_line(2)
    assert "token" in line


def test_an_agent_refuses_a_short_token(tmp_path):
    (tmp_path / "short").write_text("0123456789\n")
    assert "16 bytes" in serve_briefly(tmp_path, "--listen", f"{LOOPBACK}:0", "--token-file",
                                       str(tmp_path / "short")).error_line(2)
    assert "16 bytes" in serve_briefly(tmp_path, "--listen", f"{LOOPBACK}:0",
                                       env=clean_env(LOADGEN_TOKEN="short")).error_line(2)


def test_insecure_no_auth_is_refused_off_loopback(tmp_path):
    line = serve_briefly(tmp_path, "--listen", "0.0.0.0:0", "--insecure-no-auth").error_line(2)
    assert "loopback" in line


def test_insecure_no_auth_on_loopback_serves_without_a_token(agents, tmp_path):
    a = agents("--insecure-no-auth")
    assert "WITHOUT authentication" in a.out_path.read_text()
    c = RawClient(a.port)
    try:
        assert c.challenge["auth"] is False
        assert c.authenticate(None)["type"] == "welcome"
        assert c.ping()["type"] == "pong"
    finally:
        c.close()


def test_the_token_can_come_from_the_environment(agents, token, tmp_path):
    a = agents(env=clean_env(LOADGEN_TOKEN=token.read_text().strip()))
    c = RawClient(a.port)
    try:
        assert c.challenge["auth"] is True
        assert c.authenticate(token_bytes(token))["type"] == "welcome"
    finally:
        c.close()


# ---- authentication ----------------------------------------------------------------------------------

def test_a_wrong_token_is_rejected_and_the_agent_serves_the_right_one_after(agent, token, tmp_path):
    wrong = write_token(tmp_path / "wrong")
    done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "1k", "--duration", "1s",
                       "--token-file", str(wrong), "--quiet")
    assert "authentication failed" in done.error_line(1)

    done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "1k", "--duration", "1s", "--quiet")
    assert "wants a token" in done.error_line(1)

    assert agent.alive()
    # The right token, this time from the environment.
    json_path = tmp_path / "r.json"
    done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "10k", *SHORT, "--quiet",
                       "--json", str(json_path), env=clean_env(LOADGEN_TOKEN=token.read_text().strip()))
    s = assert_paired_ok(done, json.loads(json_path.read_text()))
    assert s["sent"] > 0 and s["received"] == s["sent"]


def test_a_raw_auth_with_a_bad_mac_gets_an_auth_error_and_the_connection_closes(agent, token):
    c = RawClient(agent.port)
    try:
        reply = c.authenticate(None, mac="0" * 64)
        assert (reply["type"], reply["code"]) == ("error", "auth")
        with pytest.raises(Closed):
            c.recv()
    finally:
        c.close()
    c = session(agent, token)   # the agent is not left busy
    c.close()


# ---- paired runs -----------------------------------------------------------------------------------

def test_a_paired_run_counts_on_the_receiving_agent(agent, token, tmp_path):
    done, doc = paired_net(tmp_path, agent, token)
    s = assert_paired_ok(done, doc)
    assert s["measured_at"] == "receiver"
    assert s["sent"] > 0
    assert s["received"] == s["sent"] and s["lost"] == 0
    assert s["duplicated"] == 0 and s["foreign"] == 0

    roles = {h["role"]: h for h in doc["hosts"]}
    assert len(doc["hosts"]) == 2 and set(roles) == {"sender", "receiver"}
    sender, receiver = roles["sender"], roles["receiver"]
    assert sender["host"] == "local" and sender["clock"] is None
    assert sender["sent"] == s["sent"]
    assert receiver["host"] == agent.address
    assert receiver["received"] == s["received"]
    assert receiver["data_port"] == int(doc["config"]["target_address"].rsplit(":", 1)[1])
    assert receiver["agent"]["cpus"] >= 1
    assert_agent_clocks(doc)

    # The job is gone and its port with it; the agent waits for the next controller.
    wait_until(lambda: not agent.jobs(), 15, "the agent's job to exit")
    assert agent.alive()


def test_echo_across_the_agent(agent, token, tmp_path):
    done, doc = paired_net(tmp_path, agent, token, "--mode", "echo")
    s = assert_paired_ok(done, doc)
    assert s["measured_at"] == "echo"
    assert s["sent"] > 0 and s["received"] == s["sent"]
    assert s["latency_ns"]["count"] == s["received"]
    sender = next(h for h in doc["hosts"] if h["role"] == "sender")
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert sender["received"] == s["received"]
    assert sender["latency_ns"]["count"] == s["received"]
    assert receiver["received"] == s["sent"]    # every datagram arrived there and was echoed
    assert_agent_clocks(doc)


def test_a_paired_run_over_ipv6_counts_ipv6_headers_on_the_wire(agents, token, tmp_path):
    """The receiving agent on ::1: the wire rate counts 40-byte IPv6 headers, not IPv4's 20."""
    agent = agents("--token-file", str(token), listen="[::1]:0")
    json_path = tmp_path / "r.json"
    done = run_loadgen(tmp_path, "net", "--peer", f"[::1]:{agent.port}", "--pps", "10k", *SHORT,
                       "--token-file", str(token), "--quiet", "--json", str(json_path))
    s = assert_paired_ok(done, json.loads(json_path.read_text()) if json_path.exists() else None)
    assert s["sent"] > 0 and s["received"] == s["sent"]
    size_bytes = json.loads(json_path.read_text())["config"]["size_bytes"]
    v6, v4 = (wire_bytes(size_bytes, family) * 8 for family in (socket.AF_INET6, socket.AF_INET))
    assert v6 - v4 == 20 * 8
    assert s["wire_bits_per_s"] == pytest.approx(s["sent_pps"] * v6, rel=1e-6)


# ---- disk jobs ---------------------------------------------------------------------------------------

@pytest.fixture
def disk_dirs(tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    for d in (allowed, other):   # written, not truncated: a sparse target is refused for reads
        (d / "t.dat").write_bytes(b"\1" * (16 << 20))
    return allowed, other


def remote_disk(tmp_path, agent: Agent, token, target, *args: str, direct_io: bool = True):
    json_path = tmp_path / "d.json"
    json_path.unlink(missing_ok=True)
    done = run_loadgen(tmp_path, "disk", "--on", agent.address, "--target", str(target), *SHORT, "--size", "16m",
                       *([] if direct_io else ["--buffered"]), "--token-file", str(token), "--quiet",
                       "--json", str(json_path), *args)
    return done, (json.loads(json_path.read_text()) if json_path.exists() else None)


def test_disk_on_an_agent_under_its_allowed_path(agents, token, tmp_path, disk_dirs, direct_io):
    allowed, _ = disk_dirs
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    done, doc = remote_disk(tmp_path, a, token, allowed / "t.dat", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    assert not doc["failed"]
    assert doc["summary"]["ops"] > 0 and doc["summary"]["errors"] == 0
    assert doc["config"]["on"] == a.address
    assert doc["config"]["target_path"] == str((allowed / "t.dat").resolve())
    [host] = doc["hosts"]
    assert host["role"] == "disk" and host["host"] == a.address
    assert_agent_clocks(doc)


def test_disk_outside_the_allowed_paths_is_refused(agents, token, tmp_path, disk_dirs, direct_io):
    allowed, other = disk_dirs
    (allowed / "escape.dat").symlink_to(other / "t.dat")
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    for target in (other / "t.dat", allowed / ".." / "other" / "t.dat", allowed / "escape.dat"):
        done, doc = remote_disk(tmp_path, a, token, target, direct_io=direct_io)
        line = done.error_line(1)
        assert "outside the allowed paths" in line and str(target) in line
        assert doc is None
    assert a.alive() and not a.jobs()


def test_a_temp_target_on_an_agent_is_made_beneath_the_allowed_path_and_leaves_nothing(agents, token, tmp_path,
                                                                                        disk_dirs, direct_io):
    allowed, _ = disk_dirs
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    json_path = tmp_path / "d.json"
    done = run_loadgen(tmp_path, "disk", "--on", a.address, "--rw", "randwrite", "--size", "8m", *SHORT,
                       *([] if direct_io else ["--buffered"]), "--token-file", str(token), "--quiet",
                       "--json", str(json_path))
    assert done.returncode == 0, done.stderr
    doc = json.loads(json_path.read_text())
    assert doc["config"]["target_kind"] == "temp" and doc["config"]["span_bytes"] == 8 << 20
    assert doc["summary"]["write"]["ops"] > 0, {k: doc[k] for k in ("warnings", "stop_reason", "intervals")}
    assert doc["config"]["target_path"].startswith(str(allowed))
    assert sorted(p.name for p in allowed.iterdir()) == ["t.dat"]


@pytest.mark.parametrize("target, args, message", [
    ("missing.dat", [], "target not found"),
    (None, ["--size", "1000t"], "does not fit"),
    ("t.dat", ["--qd", "4096", "--bs", "64m", "--workers", "1"], "I/O buffers"),
])
def test_an_input_error_found_by_the_agent_exits_2_like_locally(agents, token, tmp_path, disk_dirs, target, args,
                                                               message):
    allowed, _ = disk_dirs
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    where = ["--target", str(allowed / target)] if target else []
    common = [*SHORT, "--buffered", "--quiet", *args]
    remote = run_loadgen(tmp_path, "disk", "--on", a.address, "--token-file", str(token), *where, *common)
    local = run_loadgen(allowed, "disk", *where, *common)
    assert message in remote.error_line(2) and message in local.error_line(2)
    assert sorted(p.name for p in allowed.iterdir()) == ["t.dat"]     # nothing was made or left
    assert a.alive()


@pytest.mark.parametrize("target, where", [
    (None, ("/srv/a", "")),                          # a temp target: the first allowed directory
    ("/srv/a/t.dat", ("/srv/a", "t.dat")),
    ("/srv/b/d/t.dat", ("/srv/b", "d/t.dat")),
    ("t.dat", ("/srv/a", "t.dat")),                  # relative: beneath the first
    ("d/../t.dat", ("/srv/a", "t.dat")),
    ("/srv/a/../b/t.dat", ("/srv/b", "t.dat")),      # ".." is folded before the check
    ("/srv/a/../c/t.dat", None),
    ("../c", None),
    ("/srv/a", None),                                # the directory itself is no target
    ("/srv/ab/t.dat", None),                         # a sibling whose name starts the same
    ("/etc/passwd", None),
])
def test_locate_a_target_beneath_the_allowed_directories(target, where):
    from pathlib import Path

    from loadgen.fleet.agent import locate

    found = locate(target, [Path("/srv/a"), Path("/srv/b")])
    assert (None if found is None else (str(found[0]), found[1])) == where


def test_allow_paths_resolve_to_directories(tmp_path):
    from loadgen.errors import UsageError
    from loadgen.fleet.agent import allowed_roots

    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    assert allowed_roots([str(tmp_path / "d" / ".." / "d")]) == [(tmp_path / "d").resolve()]
    assert allowed_roots([]) == []
    for bad in ("f", "missing"):
        with pytest.raises(UsageError, match=f"^--allow-path {tmp_path / bad} is not a directory$"):
            allowed_roots([str(tmp_path / bad)])


def test_an_agent_without_allow_path_refuses_disk_jobs(agent, token, tmp_path, disk_dirs, direct_io):
    allowed, _ = disk_dirs
    done, _ = remote_disk(tmp_path, agent, token, allowed / "t.dat", direct_io=direct_io)
    assert "allows no disk jobs" in done.error_line(1)
    assert agent.alive()


# ---- one controller at a time ----------------------------------------------------------------------

def test_a_second_controller_is_told_busy(agent, token, tmp_path):
    first = session(agent, token)
    try:
        done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "1k", "--duration", "1s",
                           "--token-file", str(token), "--quiet")
        assert "another controller" in done.error_line(1)
        c = RawClient(agent.port)
        reply = c.authenticate(token_bytes(token))
        c.close()
        assert (reply["type"], reply["code"]) == ("error", "busy")
        assert first.ping()["type"] == "pong"     # the first one is undisturbed
    finally:
        first.close()
    session(agent, token).close()                 # and once it leaves, the agent is free


# ---- malformed input ---------------------------------------------------------------------------------

TIMELINE = {"start_ns": 1, "ramp_end_ns": 2, "end_ns": 3}

# (request without id, expected error code): each gets an error that repeats its id.
BAD_REQUESTS = [
    ({"type": "frobnicate"}, "unknown"),
    ({"type": "welcome"}, "unknown"),
    ({"type": "start"}, "bad-job"),
    ({"type": "start", "job": [1]}, "bad-job"),
    ({"type": "start", "job": "udp-receive"}, "bad-job"),
    ({"type": "start", "job": {"kind": "tcp-flood", "options": {}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive"}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": "pps=1"}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"evil": "1"}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"bind": "0.0.0.0"}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": {"k": 1}}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": [1]}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": -5}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": "lots"}}}, "bad-job"),
    # Options travel typed (loadgen/options.py): a bool or a string where a number goes is refused.
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": True}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": "10k"}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"direct": 1}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"workers": 10**30}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"size": 10**9}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": -1}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"port": 70000}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"pps": 200_000_000}}}, "limit"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": 25 * 3600 * 10**9}}}, "limit"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": 10**30}}}, "bad-job"),
    # More workers than the agent allows on this host (4 per CPU), or than any host may have.
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"workers": 4 * os.cpu_count() + 1}}},
     "limit" if 4 * os.cpu_count() + 1 <= 1024 else "bad-job"),
    ({"type": "start", "job": {"kind": "udp-send", "options": {"pps": 1000}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"target": "/etc/passwd"}}}, "forbidden"),
    ({"type": "start", "job": {"kind": "disk", "options": {"rw": "shred"}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"qd": -1}}}, "bad-job"),
    # Wrongly typed fields: each is answered, none kills the handler's task (issue 8, item 7).
    ({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": True}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"duration": True}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"bs": True}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"duration": [1]}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "disk", "options": {"duration": {"s": 1}}}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {}, "run_tag": True}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {}, "run_tag": "x"}}, "bad-job"),
    ({"type": "start", "job": {"kind": "udp-receive", "options": {}, "flow_base": [3]}}, "bad-job"),
    # More I/O buffer memory (qd x bs x workers) than the host has (issue 8, item 16).
    ({"type": "start", "job": {"kind": "disk", "options": {"qd": 4096, "bs": 64 << 20, "workers": 1}}}, "limit"),
    ({"type": "go", "job": 999, "timeline": TIMELINE}, "no-job"),
    ({"type": "go"}, "no-job"),
    ({"type": "go", "job": [1], "timeline": TIMELINE}, "malformed"),
    ({"type": "go", "job": {"a": 1}}, "malformed"),
    ({"type": "stop", "job": 999}, "no-job"),
    ({"type": "stop", "job": None, "stop_ns": 5}, "no-job"),
    ({"type": "stop", "job": "1"}, "no-job"),
]

# Requests without a usable id: an error without an id.
NO_ID = [{"type": "ping"}, {"type": "ping", "id": "7"}, {"type": "ping", "id": 1.5}, {"type": "ping", "id": None},
         {"type": "start", "id": [1], "job": {}}, {"type": "stop", "id": {"x": 1}}]


def test_malformed_requests_get_errors_and_the_session_stays_usable(agents, token, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    c = session(a, token)
    wrong = []
    try:
        for msg, code in BAD_REQUESTS:
            reply = c.request(msg)
            if (reply.get("type"), reply.get("code"), reply.get("kind")) != ("error", code, protocol.ERROR_KINDS[code]):
                wrong.append((msg, reply))
            assert c.ping()["type"] == "pong", msg
        for msg in NO_ID:
            c.send(msg)
            reply = c.recv_reply()
            if (reply.get("type"), reply.get("code"), "id" in reply) != ("error", "malformed", False):
                wrong.append((msg, reply))
            assert c.ping()["type"] == "pong", msg

        # A real job: go with a timeline out of bounds is refused, and the job can still be stopped.
        started = c.request({"type": "start", "job": {"kind": "udp-receive", "options": {"duration": 10**9}}})
        assert started["type"] == "started", started
        jid = started["job"]
        assert started["ready"]["port"] > 0
        for timeline, code in ((None, "bad-job"), ({"start_ns": 1}, "bad-job"), ("soon", "bad-job"),
                               (TIMELINE, "limit"),
                               ({"start_ns": 10**30, "ramp_end_ns": 10**30, "end_ns": 10**30}, "limit")):
            reply = c.request({"type": "go", "job": jid, "timeline": timeline})
            if (reply.get("type"), reply.get("code")) != ("error", code):
                wrong.append((timeline, reply))
        assert c.request({"type": "stop", "job": jid})["type"] == "ok"
        assert c.ping()["type"] == "pong"
    finally:
        c.close()
    assert not wrong, "\n".join(f"{m!r} -> {r!r}" for m, r in wrong)
    assert a.alive()


def test_a_non_json_frame_in_a_session_gets_a_malformed_error(agent, token):
    c = session(agent, token)
    try:
        c.send_raw(protocol.HEADER.pack(8) + b"not json")
        reply = c.recv_reply()
        assert (reply["type"], reply["code"]) == ("error", "malformed")
    finally:
        c.close()
    session(agent, token).close()


def test_a_non_finite_number_is_malformed_json_and_only_that_session_ends(agent, token):
    """Infinity is not JSON: the frame is refused like any undecodable one (an error, then the
    connection closes, since its id cannot be trusted); the agent serves the next session."""
    c = session(agent, token)
    try:
        body = b'{"type":"start","id":7,"job":{"kind":"udp-receive","options":{},"run_tag":Infinity}}'
        c.send_raw(protocol.HEADER.pack(len(body)) + body)
        try:
            reply = c.recv_reply()
        except Closed:
            reply = None
        assert reply is not None and (reply["type"], reply["code"]) == ("error", "malformed"), reply
    finally:
        c.close()
    fresh = session(agent, token)
    try:
        assert fresh.ping()["type"] == "pong"
    finally:
        fresh.close()


def test_a_job_that_would_outlive_the_duration_limit_is_refused(agent, token):
    c = session(agent, token)
    try:
        reply = c.request({"type": "start", "job": {"kind": "udp-receive",
                                                     "options": {"duration": 24 * 3600 * 10**9,
                                                                 "timeout": 3600 * 10**9}}})
        assert (reply["type"], reply.get("code")) == ("error", "limit"), reply
    finally:
        c.close()


# ---- the barrage ---------------------------------------------------------------------------------------

FUZZ_SEED = 20240611
PRE_AUTH_CONNECTIONS = 1800
SESSIONS, REQUESTS_PER_SESSION = 30, 50

# Option values that every job kind refuses, whatever else the options hold.
POISON_OPTIONS = [
    {"evil": "1"}, {"__class__": "x"}, {"pps": {"nested": {"deeper": 1}}}, {"size": [64]},
    {"pps": -1}, {"pps": 10**30}, {"workers": -3}, {"workers": 10**30}, {"duration": -5},
    {"duration": 10**30}, {"interval": 0}, {"qd": -1}, {"size": "big"}, {"batch": 0},
    {"bs": 10**30}, {"rw": "shred"}, {"flows": 10**30}, {"mode": "flood"}, {"port": -1},
]
BASE_OPTIONS = [{}, {"pps": 1000, "duration": 10**9}, {"target": "127.0.0.1:9"}, {"size": 16 << 20, "rw": "read"}]
KINDS = ["udp-receive", "udp-send", "disk"]


def junk_job(rng: random.Random):
    choice = rng.randrange(4)
    if choice == 0:
        return rng.choice([None, 5, "udp-receive", [], ["udp-receive"], {"kind": "x"}])
    if choice == 1:
        return {"kind": rng.choice(["tcp", "", None, 7, ["disk"], "udp-receive "]),
                "options": rng.choice(BASE_OPTIONS)}
    options = dict(rng.choice(BASE_OPTIONS))
    for poison in rng.sample(POISON_OPTIONS, rng.randint(1, 3)):
        options.update(poison)
    job = {"kind": rng.choice(KINDS), "options": options}
    if choice == 3:
        job.update(run_tag=rng.choice([-1, 2**70, "x", 0]), flow_base=rng.choice([-5, 2**70, 3]))
    return job


def junk_request(rng: random.Random) -> tuple[dict, bool]:
    """An authenticated request the agent must refuse with an error; (request, whether the client adds an id)."""
    kind = rng.randrange(6)
    if kind == 0:
        return {"type": rng.choice(["", "auth", "welcome", "pong", "shutdown", "x" * 300]), "extra": rng.random()}, True
    if kind == 1:
        return {"type": rng.choice(["go", "stop"]), "job": rng.choice([0, 999, -1, 2**40, None, "1", 1.5]),
                "timeline": rng.choice([None, {}, TIMELINE, [1, 2, 3]]), "stop_ns": rng.choice([None, -1, 2**70])}, True
    if kind == 2:
        # No id, or one that is not an integer: an error without an id.
        msg = {"type": rng.choice(["ping", "start", "go", "stop", "nonsense"]), "job": junk_job(rng)}
        if rng.random() < 0.7:
            msg["id"] = rng.choice(["1", 1.5, None, [1], {"id": 1}, -0.0])
        return msg, False
    return {"type": "start", "job": junk_job(rng)}, True


def pre_auth_frame(rng: random.Random, challenge_nonce: str) -> tuple[bytes, bool]:
    """Something a stranger might send first; (bytes, whether the agent can tell it is complete)."""
    kind = rng.randrange(9)
    if kind == 0:
        return rng.randbytes(rng.randint(1, 200)), False
    if kind == 1:
        n = rng.randint(0, 300)
        return protocol.HEADER.pack(n) + rng.randbytes(n), True
    if kind == 2:
        return protocol.HEADER.pack(rng.randint(65 << 10, 2**32 - 1)) + rng.randbytes(16), True
    if kind == 3:
        body = rng.choice([b"[1,2]", b"\"auth\"", b"42", b"null", b"{}", b"{\"type\":7}", b"true"])
        return protocol.HEADER.pack(len(body)) + body, True
    if kind == 4:
        return protocol.encode({"type": rng.choice(["ping", "start", "go", "stop"]), "id": 1,
                                "job": {"kind": "udp-receive", "options": {}}}), True
    if kind == 5:
        return protocol.encode({"type": "auth", "version": protocol.VERSION, "nonce": protocol.new_nonce(),
                                "mac": rng.randbytes(32).hex()}), True
    if kind == 6:
        return protocol.encode({"type": "auth", "version": rng.choice([0, 2, "1", None]),
                                "nonce": rng.choice(["", "zz", challenge_nonce, 5])}), True
    if kind == 7:
        # Bodies that break the JSON decoder itself (deep nesting, over-long integers): survival only.
        body = rng.choice([b"[" * 50_000, b"{\"type\":\"auth\",\"v\":" + b"9" * 5000 + b"}"])
        return protocol.HEADER.pack(len(body)) + body, True
    return b"", False    # connect and leave


def test_a_barrage_of_garbage_leaves_the_agent_serving(agents, token, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    a = agents("--token-file", str(token), "--allow-path", str(allowed))
    rng = random.Random(FUZZ_SEED)
    frames = 0

    for _ in range(PRE_AUTH_CONNECTIONS):
        c = RawClient(a.port)
        try:
            data, complete = pre_auth_frame(rng, c.challenge["nonce"])
            if data:
                c.send_raw(data)
                frames += 1
            if complete:
                try:
                    reply = c.recv()
                except Closed:
                    reply = None      # a decoder error the agent did not translate: see test_protocol.py
                assert reply is None or reply.get("type") == "error", reply
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            c.close()

    wrong = []
    for _ in range(SESSIONS):
        c = session(a, token)
        try:
            for _ in range(REQUESTS_PER_SESSION):
                msg, with_id = junk_request(rng)
                frames += 1
                if with_id:
                    reply = c.request(msg)
                    ok = reply.get("type") == "error"
                else:
                    c.send(msg)
                    reply = c.recv_reply()
                    ok = reply.get("type") == "error" and "id" not in reply
                if not ok:
                    wrong.append((msg, reply))
            assert c.ping()["type"] == "pong"
            # Framing errors end the session; the agent must say so first.
            c.send_raw(rng.choice([protocol.HEADER.pack(1 << 20), protocol.HEADER.pack(3) + b"[1]"]))
            frames += 1
            reply = c.recv_reply()
            assert reply.get("type") == "error", reply
        finally:
            c.close()

    assert frames >= 3000
    assert not wrong, "\n".join(f"{m!r} -> {r!r}" for m, r in wrong[:10])
    assert a.alive(), a.stderr()
    assert not a.jobs()
    done, doc = paired_net(tmp_path, a, token)
    s = assert_paired_ok(done, doc)
    assert s["sent"] > 0 and s["received"] == s["sent"]


# ---- failures mid-run ------------------------------------------------------------------------------------

def running_job(agent: Agent, controller: Controller) -> tuple[int, int]:
    """(pid, UDP port) of the agent's job, once the controller's progress line shows datagrams sent.

    The datagrams all go to 127.0.0.1, where any other process may be sending too, so the
    run's own report is the one sure sign that it is under way."""
    pid, port = wait_until(agent.job_with_socket, 20, "the agent's job to open its socket")
    wait_until(controller.measuring, 20, "the controller to report datagrams sent")
    assert is_agent_job(pid)
    return pid, port


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))   # no SO_REUSEPORT: refused while any socket holds it
        except OSError:
            return False
    return True


def test_a_controller_killed_mid_run_has_its_job_stopped(agent, token, tmp_path, controllers):
    c = controllers("net", "--peer", agent.address, "--pps", "10k", "--duration", "20s", "--ramp", "0s",
                    "--token-file", str(token), tty=True)
    job_pid, port = running_job(agent, c)
    assert not udp_port_free(port)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(timeout=10)

    wait_until(lambda: not agent.jobs() and not os.path.exists(f"/proc/{job_pid}"), 10,
               "the agent to end the job of a controller that died")
    assert udp_port_free(port)
    assert agent.alive()

    # A new controller is served, and can have a job take the freed port.
    c = session(agent, token)
    try:
        started = c.request({"type": "start", "job": {"kind": "udp-receive",
                                                       "options": {"port": port, "duration": 10**9}}})
        assert started["type"] == "started" and started["ready"]["port"] == port, started
    finally:
        c.close()


def test_an_agent_killed_mid_run_fails_the_run_with_what_was_measured(agent, token, tmp_path, controllers):
    json_path = tmp_path / "r.json"
    c = controllers("net", "--peer", agent.address, "--pps", "10k", "--duration", "10s", "--ramp", "0s",
                    "--token-file", str(token), "--json", str(json_path), tty=True)
    job_pid, _ = running_job(agent, c)
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)

    line = c.finish(timeout_s=20).error_line(1)
    assert "lost the connection" in line or "stopped answering" in line
    assert agent.address in line
    doc = json.loads(json_path.read_text())
    assert doc["failed"] is True and not doc["interrupted"]
    assert doc["stop_reason"] in line
    s = doc["summary"]
    assert s["sent"] > 0
    assert "note" in s
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["host"] == agent.address and 0 <= receiver["received"] <= s["sent"]

    # The orphaned job sees its stdin close and ends by itself.
    wait_until(lambda: not is_agent_job(job_pid), 10, "the orphaned job to exit")


def test_an_agent_killed_before_its_final_report_fails_the_run(agent, token, tmp_path, controllers):
    """The receiver drains for --timeout after the end and only then sends its final counts: an agent
    lost in that window leaves the controller with counts from before the end."""
    json_path = tmp_path / "r.json"
    c = controllers("net", "--peer", agent.address, "--pps", "10k", "--duration", "1s", "--ramp", "0s",
                    "--interval", "200ms", "--timeout", "3s", "--token-file", str(token), "--json", str(json_path),
                    tty=True)
    job_pid, _ = running_job(agent, c)
    # The job reports every 200 ms until it is told to stop at the end, then nothing until its
    # final report 3 s later: a second without a report puts us inside that window.
    wait_for_pause(job_pid, "wchar", quiet_s=1.0)
    assert is_agent_job(job_pid)
    agent.proc.send_signal(signal.SIGKILL)
    agent.proc.wait(timeout=10)

    done = c.finish(timeout_s=20)
    doc = json.loads(json_path.read_text())
    assert doc["failed"] is True, (doc["stop_reason"], doc["summary"])
    line = done.error_line(1)
    assert "lost the connection" in line or "stopped answering" in line


# ---- TLS -----------------------------------------------------------------------------------------------------

def make_certificate(tmp_path, name: str):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / f"{name}-c.pem", tmp_path / f"{name}-k.pem"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                        "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True, timeout=60)
    if p.returncode:
        pytest.skip(f"openssl cannot make a certificate here: {p.stderr.strip()}")
    return cert, key


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path, "agent")


def test_tls_control_channel(agents, token, tmp_path, certificate):
    cert, key = certificate
    a = agents("--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(key))
    assert "with TLS" in a.out_path.read_text()
    done, doc = paired_net(tmp_path, a, token, "--tls-ca", str(cert))
    s = assert_paired_ok(done, doc)
    assert s["sent"] > 0 and s["received"] == s["sent"]
    assert a.alive()


def test_a_plaintext_controller_is_told_the_agent_expects_tls(agents, token, tmp_path, certificate):
    """The controller speaks first, so the TLS agent's refusal comes at once, not after a timeout."""
    cert, key = certificate
    a = agents("--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(key))
    done = run_loadgen(tmp_path, "net", "--peer", a.address, "--pps", "1k", "--duration", "1s",
                       "--token-file", str(token), "--quiet")
    line = done.error_line(1)
    assert a.address in line and "the agent expects TLS" in line, line
    assert "did not finish the handshake" not in line
    done, doc = paired_net(tmp_path, a, token, "--tls-ca", str(cert))    # and it serves TLS after
    assert_paired_ok(done, doc)


def test_tls_to_an_agent_without_tls_fails_clearly(agent, token, tmp_path):
    done = run_loadgen(tmp_path, "net", "--peer", agent.address, "--pps", "1k", "--duration", "1s",
                       "--token-file", str(token), "--tls", "--quiet")
    line = done.error_line(1)
    assert agent.address in line and "does not speak TLS" in line, line
    assert agent.alive()


def test_a_certificate_the_ca_file_does_not_vouch_for_is_refused(agents, token, tmp_path, certificate):
    cert, key = certificate
    other_cert, _ = make_certificate(tmp_path, "other")
    a = agents("--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(key))
    done = run_loadgen(tmp_path, "net", "--peer", a.address, "--pps", "1k", "--duration", "1s",
                       "--token-file", str(token), "--tls-ca", str(other_cert), "--quiet")
    line = done.error_line(1)
    assert a.address in line and "does not vouch for" in line, line


@pytest.mark.parametrize("make, cause", [
    (lambda p: None, "No such file or directory"),
    (lambda p: p.write_text("not a certificate\n"), "no usable certificate"),
    (lambda p: p.mkdir(), "Is a directory"),
])
def test_a_bad_tls_ca_file_is_named_with_its_cause(tmp_path, token, make, cause):
    ca = tmp_path / "ca.pem"
    make(ca)
    done = run_loadgen(tmp_path, "net", "--peer", "127.0.0.1:9", "--pps", "1k", "--duration", "1s",
                       "--token-file", str(token), "--tls-ca", str(ca), "--quiet")
    line = done.error_line(2)
    assert f"cannot read TLS CA file {ca}: " in line and cause in line, line


def test_a_bad_tls_certificate_or_key_file_is_named_with_its_cause(tmp_path, token, certificate):
    cert, key = certificate
    missing = tmp_path / "nope.pem"
    for args, expected in ((["--tls-cert", str(missing), "--tls-key", str(key)],
                            f"cannot read TLS certificate file {missing}: No such file or directory"),
                           (["--tls-cert", str(cert), "--tls-key", str(missing)],
                            f"cannot read TLS key file {missing}: No such file or directory"),
                           (["--tls-cert", str(cert), "--tls-key", str(cert)],
                            f"cannot load TLS certificate {cert} with key {cert}")):
        done = run_loadgen(tmp_path, "serve", "--listen", "127.0.0.1:0", "--token-file", str(token), *args)
        line = done.error_line(2)
        assert expected in line, line
