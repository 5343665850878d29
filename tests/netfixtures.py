"""Helpers for the net and serve tests: loadgen in a subprocess, and tiny UDP peers on loopback.

Every address here is 127.0.0.1 and every load is short (SHORT_NET: one second,
no ramp); options a test gives come after SHORT_NET and override it (click keeps
the last occurrence of an option). The peers are plain Python sockets in a
thread: an RFC 862 echo server and a sink that never reads. Nothing here
asserts a time; waits are bounded only so that a hung child fails the test.
"""
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen.run import native

LOOPBACK = "127.0.0.1"
SHORT_NET = ["--duration", "1s", "--ramp", "0s"]
RUN_TIMEOUT_S = 60
WAIT_S = 15.0   # bound on waiting for a child's output; never asserted

# The latency block of a summary, in the document's order.
LATENCY_KEYS = ["min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"]


def loadgen_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "loadgen", *args]


@dataclass
class NetRun:
    """A finished `loadgen net` process."""

    returncode: int
    stdout: str
    stderr: str
    json_path: Path

    @property
    def doc(self) -> dict:
        assert self.json_path.exists(), f"no JSON document; exit {self.returncode}, stderr: {self.stderr!r}"
        return json.loads(self.json_path.read_text())

    @property
    def summary(self) -> dict:
        return self.doc["summary"]


def run_net(cwd: Path, *args: str, quiet: bool = True, json_name: str = "r.json") -> NetRun:
    """`loadgen net SHORT_NET *args --json cwd/json_name [--quiet]`, run in cwd."""
    json_path = cwd / json_name
    argv = ["net", *SHORT_NET, *args, "--json", str(json_path), *(["--quiet"] if quiet else [])]
    p = subprocess.run(loadgen_argv(*argv), cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    return NetRun(p.returncode, p.stdout, p.stderr, json_path)


def start_net(cwd: Path, *args: str, json_name: str = "r.json") -> tuple[subprocess.Popen, Path]:
    """The same as run_net, quiet, without waiting: (process, where its JSON will be)."""
    json_path = cwd / json_name
    argv = ["net", *SHORT_NET, *args, "--json", str(json_path), "--quiet"]
    proc = subprocess.Popen(loadgen_argv(*argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return proc, json_path


def finish(proc: subprocess.Popen, json_path: Path) -> NetRun:
    out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    return NetRun(proc.returncode, out, err, json_path)


def assert_one_line_error(returncode: int, stderr: str, code: int) -> str:
    """The CLI's error contract: the exit code, one "loadgen: " line on stderr, no traceback."""
    assert returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: "), stderr
    return lines[0]


def port_is_bound(port: int) -> bool:
    """Whether some socket holds this UDP port (a bind without SO_REUSEPORT is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
        return False


class UdpEcho:
    """An RFC 862 echo server on 127.0.0.1: every datagram goes back unchanged."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)  # wakes to see the stop
        self.port = self.sock.getsockname()[1]
        self.echoed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="udp-echo", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                self.sock.sendto(data, peer)
                self.echoed += 1
            except OSError:
                pass  # a sender that closed its socket: nothing to return to

    def __enter__(self) -> "UdpEcho":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class HeldUdpPort:
    """A UDP socket bound on loopback without SO_REUSEPORT: its port is in use, and it never reads."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> "HeldUdpPort":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class NoListenerPort:
    """A UDP port on loopback that nobody else can take and where nothing listens.

    Its socket is connected to another port, so Linux matches it only to datagrams from
    that port: any other sender's datagram finds no socket and gets ICMP port unreachable."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.connect((LOOPBACK, 9))    # discard: never the sender under test
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> "NoListenerPort":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


def datagram(flow: int, seq: int, run_tag: int, size_bytes: int = 64) -> bytes:
    """A loadgen datagram scheduled and sent at its run's start (wire times count from it)."""
    return native.pkt_encode(flow, seq, run_tag, 0, 0).ljust(size_bytes, b"\xa5")


class LineReader:
    """Collects a child's stdout lines in a thread, so a test can wait for one without blocking forever."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def next_line(self, timeout_s: float = WAIT_S) -> str | None:
        """The next line, or None at the end of the stream; fails the test if none comes."""
        try:
            line = self._new.get(timeout=timeout_s)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout_s:.1f} s; got {self.lines[-10:]}") from None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, predicate, timeout_s: float = WAIT_S) -> str:
        """Read until a line satisfies predicate; returns it. Fails the test after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self.next_line(max(0.0, deadline - time.monotonic()))
            assert line is not None, f"stream ended before the line was seen; got {self.lines}"
            if predicate(line):
                return line
            assert time.monotonic() < deadline, f"no such line within {timeout_s} s; got {self.lines[-10:]}"

    def rest(self, timeout_s: float = WAIT_S) -> list[str]:
        """Every line up to the end of the stream."""
        while self.next_line(timeout_s) is not None:
            pass
        return self.lines


# `loadgen serve` output (loadgen/net/serve.py).
LISTENING = re.compile(r"^loadgen serve: listening on 127\.0\.0\.1:(\d+) (stream|echo), (\d+) receiver\(s\)$")
INTERVAL = re.compile(
    r"^\[\s*[\d.]+s\] 127\.0\.0\.1:(?P<port>\d+) (?P<kind>stream|echo): received (?P<rate>\S+) pps "
    r"[\d.]+ Mbit/s; so far lost (?P<lost>\d+) \([\d.]+%\), reordered (?P<reordered>\d+), "
    r"duplicated (?P<duplicated>\d+), foreign (?P<foreign>\d+)$")


class Serve:
    """A running `loadgen serve`; its listening ports are read from its own output."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(loadgen_argv("serve", *args), cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out = LineReader(self.proc.stdout)
        self.ports: dict[str, int] = {}

    def wait_listening(self, kinds: tuple[str, ...]) -> dict[str, int]:
        while set(self.ports) != set(kinds):
            line = self.out.next_line()
            assert line is not None, f"serve ended early: {self.proc.wait()} {self.proc.stderr.read()}"
            m = LISTENING.match(line)
            assert m, f"expected a listening line, got {line!r}"
            self.ports[m.group(2)] = int(m.group(1))
        return self.ports

    def intervals(self, kind: str) -> list[dict]:
        """The interval lines seen so far for one listener, parsed."""
        rows = []
        for line in self.out.lines:
            m = INTERVAL.match(line)
            if m and m.group("kind") == kind:
                rows.append({k: (v if k in ("kind", "rate") else int(v)) for k, v in m.groupdict().items()})
        return rows

    def totals(self, kind: str) -> dict[str, int]:
        """The counts so far: each line carries them cumulatively, so the last line has them."""
        rows = self.intervals(kind)
        keys = ("lost", "reordered", "duplicated", "foreign")
        return {k: rows[-1][k] for k in keys} if rows else dict.fromkeys(keys, 0)

    def wait_totals(self, kind: str, expected: dict[str, int]) -> dict[str, int]:
        """Read interval lines until the sums reach expected, then one more line: no late over-count."""
        def reached(_line: str) -> bool:
            t = self.totals(kind)
            return all(t[k] >= v for k, v in expected.items())

        if not reached(""):
            self.out.wait_for(reached)
        self.out.wait_for(lambda line: bool(INTERVAL.match(line)) and f" {kind}:" in line)
        return self.totals(kind)

    def stop(self) -> None:
        """Teardown: end the child if a test left it running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=RUN_TIMEOUT_S)
        self.proc.stderr.close()


def run_without_net_raw(cwd, *args: str) -> subprocess.CompletedProcess:
    """`loadgen ARGS` run as root with CAP_NET_RAW dropped (capsh or setpriv); skips the
    calling test where that cannot be arranged."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("needs root to drop CAP_NET_RAW from a child (without root it is never held)")
    argv = loadgen_argv(*args)
    if shutil.which("capsh"):   # capsh runs /bin/bash with the rest: -c CMD
        argv = ["capsh", "--drop=cap_net_raw", "--", "-c", " ".join(f"'{a}'" for a in argv)]
    elif shutil.which("setpriv"):
        argv = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--", *argv]
    else:
        pytest.skip("needs capsh or setpriv to drop CAP_NET_RAW")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
