"""`loadgen serve` end to end, in a subprocess, on loopback only.

serve takes every run's datagrams (run_tag 0) and prints, per listener and per
interval, the received rate and what its sequence trackers saw: holes ("lost"),
reordered, duplicated and foreign datagrams. Real `loadgen net` runs check that
it counts and echoes; hand-made datagrams (the wire header from
native.pkt_encode, sent from a Python socket) check its accounting exactly.
"""
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from netfixtures import (LISTENING, LOOPBACK, RUN_TIMEOUT_S, WAIT_S, HeldUdpPort, assert_one_line_error, datagram,
                         finish, loadgen_argv, run_net, start_net)
from netns import wait_until

RUN_TAG_A, RUN_TAG_B = 0x1111_1111, 0x2222_2223



@pytest.fixture
def client():
    """A plain UDP socket on loopback to send hand-made datagrams from."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOPBACK, 0))
    s.settimeout(WAIT_S)
    yield s
    s.close()


def send_all(sock: socket.socket, port: int, payloads: list[bytes]) -> None:
    for p in payloads:
        sock.sendto(p, (LOOPBACK, port))


def run_serve(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv("serve", *args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)


# ---- with real runs -----------------------------------------------------------------------------------

def test_serve_counts_a_stream_and_echoes_another_run(tmp_path, serve):
    # serve binds both ports itself (0: any free one) and says which: no free-port race.
    srv = serve("--port", "0", "--echo-port", "0", "--duration", "10s", "--workers", "1")
    ports = srv.wait_listening(("stream", "echo"))
    port, echo_port = ports["stream"], ports["echo"]
    assert port != echo_port

    # Both runs at once, so that they fit well inside serve's 10 s even on a loaded machine.
    stream = start_net(tmp_path, "--target", f"{LOOPBACK}:{port}", "--pps", "2k", json_name="stream.json")
    echo = start_net(tmp_path, "--target", f"{LOOPBACK}:{echo_port}", "--mode", "echo", "--pps", "2k",
                     json_name="echo.json")
    stream_done, echo_done = finish(*stream), finish(*echo)

    assert echo_done.returncode == 0, echo_done.stderr
    e = echo_done.summary
    assert e["sent"] > 0
    assert e["received"] == e["sent"] and e["lost"] == 0
    assert e["latency_ns"]["count"] == e["received"]
    assert (e["duplicated"], e["foreign"]) == (0, 0)

    assert stream_done.returncode == 0, stream_done.stderr
    s = stream_done.summary
    assert s["sent"] > 0 and s["errors"] == 0 and s["received"] is None

    # serve stops by itself after its duration.
    assert srv.proc.wait(timeout=RUN_TIMEOUT_S) == 0
    srv.out.rest()
    assert srv.proc.stderr.read() == ""
    for kind in ("stream", "echo"):
        rows = srv.intervals(kind)
        assert rows, f"no interval lines for the {kind} port: {srv.out.lines}"
        assert {r["port"] for r in rows} == {port if kind == "stream" else echo_port}
        assert any(r["rate"] != "0" and r["lost"] == 0 for r in rows), rows
        assert all((r["reordered"], r["duplicated"], r["foreign"]) == (0, 0, 0) for r in rows), rows
    # Every line is a listening line or an interval line.
    assert len(srv.out.lines) == 2 + len(srv.intervals("stream")) + len(srv.intervals("echo"))


# ---- with hand-made datagrams -----------------------------------------------------------------------

def test_serve_accounts_holes_duplicates_reordering_and_foreign_datagrams(serve, client):
    srv = serve("--port", "0", "--workers", "1", "--interval", "100ms", "--max-flows", "4")
    port = srv.wait_listening(("stream",))["stream"]

    # Each line carries the counts so far, so a hole filled in a later interval is accounted for.
    send_all(client, port, [
        *(datagram(0, seq, RUN_TAG_A) for seq in (0, 1, 3, 3, 6)),     # holes 2, 4, 5; 3 twice
        *(datagram(2, seq, RUN_TAG_A) for seq in (0, 1, 2)),           # a second flow, complete
        b"\x00" * 64,                                                  # no magic
        datagram(1, 0, RUN_TAG_A)[:31],                                # shorter than a header
    ])
    assert srv.wait_totals("stream", {"lost": 3, "duplicated": 1, "foreign": 2}) == {
        "lost": 3, "reordered": 0, "duplicated": 1, "foreign": 2}

    send_all(client, port, [datagram(1, seq, RUN_TAG_A) for seq in (0, 2, 1, 1)])  # 1 fills a hole, then again
    totals = srv.wait_totals("stream", {"reordered": 1, "duplicated": 2})
    assert (totals["reordered"], totals["duplicated"], totals["foreign"]) == (1, 2, 2)

    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(timeout=RUN_TIMEOUT_S) == 130


def test_serve_echo_port_returns_datagrams_unchanged(serve, client):
    srv = serve("--echo-port", "0", "--workers", "1", "--interval", "100ms")
    port = srv.wait_listening(("echo",))["echo"]
    sent = [datagram(0, seq, RUN_TAG_A, size_bytes=size) for seq, size in enumerate((32, 64, 1500, 9000))]
    send_all(client, port, sent)
    back = [client.recvfrom(65535) for _ in sent]
    assert sorted(data for data, _ in back) == sorted(sent)
    assert all(addr == (LOOPBACK, port) for _, addr in back)
    totals = srv.wait_totals("echo", {})
    assert totals == {"lost": 0, "reordered": 0, "duplicated": 0, "foreign": 0}


def test_serve_keeps_concurrent_runs_apart(serve, client):
    """Two runs sending to one serve at once both use flow id 0: flows are told apart by run tag."""
    srv = serve("--port", "0", "--workers", "1", "--interval", "100ms")
    port = srv.wait_listening(("stream",))["stream"]
    interleaved = [datagram(0, seq, tag) for seq in range(3) for tag in (RUN_TAG_A, RUN_TAG_B)]
    send_all(client, port, [*interleaved, b"\x00" * 64])  # the foreign one marks the end
    totals = srv.wait_totals("stream", {"foreign": 1})
    assert totals == {"lost": 0, "reordered": 0, "duplicated": 0, "foreign": 1}


def test_serve_counts_flows_beyond_its_table_as_foreign(serve, client):
    """--max-flows 1 tracks at least one flow (and at most twice that); the rest are foreign."""
    srv = serve("--port", "0", "--workers", "1", "--interval", "100ms", "--max-flows", "1")
    port = srv.wait_listening(("stream",))["stream"]
    send_all(client, port, [datagram(flow, 0, RUN_TAG_A) for flow in range(16)])
    totals = srv.wait_totals("stream", {"foreign": 14})
    assert 14 <= totals["foreign"] <= 15
    assert (totals["lost"], totals["reordered"], totals["duplicated"]) == (0, 0, 0)


# ---- exits ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    ([], "serve needs --port, --echo-port or both"),
    (["--port", "70000"], "invalid port"),
    (["--echo-port", "-1"], "invalid echo-port"),
    (["--port", "0", "--max-flows", "0"], "invalid max-flows"),
    (["--port", "0", "--interval", "1ms"], "invalid interval"),
    (["--port", "0", "--duration", "bogus"], "invalid duration"),
    (["--port", "0", "--workers", "0x"], "invalid"),
    (["--port", "abc"], "invalid port"),
    (["--port", "7000", "--echo-port", "7000"], "--port and --echo-port are both 7000"),
    (["--port", "0", "--duration", "10000000000h"], "invalid duration"),
    (["--port", "0", "--workers", "18446744073709551617"], "invalid workers"),
])
def test_usage_errors(tmp_path, args, says):
    done = run_serve(tmp_path, *args)
    assert says in assert_one_line_error(done.returncode, done.stderr, 2)
    assert done.stdout == ""


def test_port_in_use(tmp_path):
    with HeldUdpPort() as held:
        done = run_serve(tmp_path, "--port", str(held.port), "--duration", "1s")
    line = assert_one_line_error(done.returncode, done.stderr, 1)
    assert "in use" in line and str(held.port) in line


def reuseport_socket(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """What a second run's receiver looks like to the kernel: a bound SO_REUSEPORT socket, same user."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    return s


def test_a_second_serve_on_the_same_port_is_refused(tmp_path, serve):
    first = serve("--port", "0", "--workers", "2", "--interval", "100ms")
    port = first.wait_listening(("stream",))["stream"]
    done = run_serve(tmp_path, "--port", str(port), "--duration", "1s")
    assert f"port {port} is in use" in assert_one_line_error(done.returncode, done.stderr, 1)
    assert first.proc.poll() is None   # the first one serves on


def test_net_on_a_port_serve_holds_is_refused(tmp_path, serve):
    srv = serve("--port", "0", "--workers", "1", "--interval", "100ms")
    port = srv.wait_listening(("stream",))["stream"]
    done = run_net(tmp_path, "--port", str(port), "--pps", "1k")
    assert f"port {port} is in use" in assert_one_line_error(done.returncode, done.stderr, 1)
    assert not done.json_path.exists()


@pytest.mark.parametrize("held_on", [LOOPBACK, "0.0.0.0"])
def test_a_reuseport_socket_of_the_same_user_makes_the_port_in_use(tmp_path, held_on):
    """SO_REUSEPORT would let serve join this socket's group silently and share its datagrams."""
    with reuseport_socket(held_on) as held:
        port = held.getsockname()[1]
        done = run_serve(tmp_path, "--host", LOOPBACK, "--port", str(port), "--duration", "1s")
    assert f"port {port} is in use" in assert_one_line_error(done.returncode, done.stderr, 1)


def thread_cpus(pid: int, prefix: str) -> dict[str, str]:
    """Each of pid's threads whose name starts with prefix: the CPUs it may run on."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if name.startswith(prefix):
            allowed = [ln for ln in (task / "status").read_text().splitlines() if ln.startswith("Cpus_allowed_list")]
            out[name] = allowed[0].split(":")[1].strip()
    return out


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one out")
def test_receivers_are_pinned_within_the_cpus_serve_was_given(tmp_path):
    """`taskset -c N loadgen serve` keeps its receivers on N, as a user leaving the other CPUs
    to a sender expects; they were pinned to CPUs 0.. whatever the affinity."""
    cpu = max(os.sched_getaffinity(0))
    proc = subprocess.Popen(loadgen_argv("serve", "--host", LOOPBACK, "--port", "0", "--workers", "2",
                                         "--duration", "20s"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        assert LISTENING.match(proc.stdout.readline())
        wait_until(lambda: len(thread_cpus(proc.pid, "lg-recv-")) == 2, WAIT_S, "two receiver threads")
        assert thread_cpus(proc.pid, "lg-recv-") == {"lg-recv-0": str(cpu), "lg-recv-1": str(cpu)}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=RUN_TIMEOUT_S)


def voluntary_switches(pid: int, name: str) -> int:
    """How often pid's thread called name has blocked (given up its CPU of its own accord)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            line = [ln for ln in (task / "status").read_text().splitlines() if ln.startswith("voluntary_ctxt")]
            return int(line[0].split(":")[1])
    raise AssertionError(f"no thread {name} in {pid}")


@pytest.mark.parametrize("busy_poll", [True, False])
def test_busy_poll_receivers_spin_instead_of_blocking(tmp_path, serve, busy_poll):
    """--busy-poll: serve's receiver spins on its socket. It echoes a paced run whole without once
    blocking, where a blocking receiver sleeps between datagrams, and whoever delivers the next
    (on loopback and veth, the sender's own CPU) pays for waking it."""
    srv = serve("--echo-port", "0", "--duration", "30s", "--workers", "1", *(["--busy-poll"] if busy_poll else []))
    port = srv.wait_listening(("echo",))["echo"]
    wait_until(lambda: thread_cpus(srv.proc.pid, "lg-recv-0"), WAIT_S, "the receiver thread")
    before = voluntary_switches(srv.proc.pid, "lg-recv-0")
    done = run_net(tmp_path, "--target", f"{LOOPBACK}:{port}", "--mode", "echo", "--pps", "2k")
    blocked = voluntary_switches(srv.proc.pid, "lg-recv-0") - before
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert s["sent"] >= 1000 and s["received"] == s["sent"] and s["lost"] == 0
    # 2k datagrams a second, 0.5 ms apart: blocking, the receiver sleeps before nearly every one
    assert blocked < 20 if busy_poll else blocked > s["sent"] // 4, blocked


def test_sigint_exits_130(serve):
    srv = serve("--port", "0", "--echo-port", "0", "--interval", "100ms", "--workers", "1")
    srv.wait_listening(("stream", "echo"))
    srv.out.wait_for(lambda line: " stream: received " in line)  # inside the serving loop
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(timeout=RUN_TIMEOUT_S) == 130
    assert "Traceback" not in srv.proc.stderr.read()
