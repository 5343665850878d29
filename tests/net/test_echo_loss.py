"""Echo mode against real loss: a peer on 127.0.0.1 that drops or holds back chosen datagrams.

The README promises that echo mode works with any RFC 862 server and that
"packets not back within --timeout count as lost". The peer here is such a
server with a rule: it reads each datagram's wire header (flow, seq), and by
that alone decides, deterministically, to echo at once, to drop, or to echo
only after a delay beyond --timeout. It counts what it did, and the test
asserts that loadgen's lost, late and received counts equal those counts
exactly.

Exactness needs every datagram to reach the peer and every prompt echo to
return within --timeout, whatever the host's load: the peer's receive buffer
holds the whole run (as root, with SO_RCVBUFFORCE; without root the buffer is
capped at net.core.rmem_max, and a run where the kernel dropped datagrams before
the peer could read them is skipped, saying so), and the timeouts are generous
beside a Python thread's turnaround. Held-back echoes are chosen among the
datagrams sent early, so that they come back while the sender still reads.
Nothing here asserts a time.
"""
import heapq
import os
import select
import socket
import struct
import threading
import time

import pytest

from loadgen.run import native
from netfixtures import LOOPBACK, run_net

HEADER = struct.Struct("<IIII")          # magic, flow, seq, run_tag: native/net.c struct pkt_header
SO_RCVBUFFORCE = 33                      # <asm-generic/socket.h>; Python's socket module lacks it
PEER_BUFFER_BYTES = 64 << 20             # 30k datagrams of 64 bytes take ~25 MB of skb truesize


class RuleEcho:
    """An RFC 862 echo server whose every decision is a function of (flow, seq).

    rule(flow, seq) returns "echo", "drop" or "hold"; held datagrams go back hold_s after they arrived."""

    def __init__(self, rule, hold_s: float = 0.0) -> None:
        self.rule, self.hold_s = rule, hold_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, PEER_BUFFER_BYTES)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_BUFFER_BYTES)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.counts = {"seen": 0, "echo": 0, "drop": 0, "hold": 0, "foreign": 0}
        self._held: list[tuple[float, int, bytes, tuple]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="rule-echo", daemon=True)

    def _serve(self) -> None:
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            while self._held and self._held[0][0] <= now:
                _, _, data, peer = heapq.heappop(self._held)
                self.sock.sendto(data, peer)
            wait_s = min(0.05, max(0.0, self._held[0][0] - now)) if self._held else 0.05
            readable, _, _ = select.select([self.sock], [], [], wait_s)
            if not readable:
                continue
            while True:
                try:
                    data, peer = self.sock.recvfrom(65535)
                except BlockingIOError:
                    break
                self._take(data, peer, n)
                n += 1

    def _take(self, data: bytes, peer: tuple, n: int) -> None:
        if len(data) < HEADER.size or HEADER.unpack_from(data)[0] != native.PKT_MAGIC:
            self.counts["foreign"] += 1
            return
        _, flow, seq, _ = HEADER.unpack_from(data)
        self.counts["seen"] += 1
        action = self.rule(flow, seq)
        self.counts[action] += 1
        if action == "echo":
            self.sock.sendto(data, peer)
        elif action == "hold":
            heapq.heappush(self._held, (time.monotonic() + self.hold_s, n, data, peer))

    def dropped_before_the_peer(self) -> int:
        """Datagrams the kernel dropped on this socket's receive queue (/proc/net/udp "drops")."""
        inode = os.fstat(self.sock.fileno()).st_ino
        for line in open("/proc/net/udp").read().splitlines()[1:]:
            f = line.split()
            if int(f[9]) == inode:
                return int(f[12])
        return 0

    def __enter__(self) -> "RuleEcho":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


def assert_every_datagram_reached_the_peer(peer: "RuleEcho", kernel_drops: int, sent: int) -> None:
    why = f"{kernel_drops} datagrams dropped before the peer read them; it saw {peer.counts['seen']} of {sent}"
    if kernel_drops and os.geteuid() != 0:
        pytest.skip(f"needs root for a receive buffer that holds the whole run: {why}")
    assert kernel_drops == 0 and peer.counts["seen"] == sent, why


def every_tenth_dropped(flow: int, seq: int) -> str:
    return "drop" if seq % 10 == 9 else "echo"


def test_echo_loss_equals_what_the_peer_dropped(tmp_path):
    # One worker, one flow: seq runs 0..9999 over the run. --timeout is far beyond any prompt
    # echo's round trip, so nothing the peer echoed can be counted late.
    with RuleEcho(every_tenth_dropped) as peer:
        done = run_net(tmp_path, "--target", f"{LOOPBACK}:{peer.port}", "--mode", "echo", "--pps", "10k",
                       "--workers", "1", "--flows", "1", "--timeout", "2s", "--batch", "1024")
        kernel_drops = peer.dropped_before_the_peer()
    assert done.returncode == 0, done.stderr
    s, c = done.summary, peer.counts
    assert_every_datagram_reached_the_peer(peer, kernel_drops, s["sent"])
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 10_000
    assert c["drop"] == sum(1 for seq in range(s["sent"]) if seq % 10 == 9) > 0
    assert s["lost"] == c["drop"]
    assert s["received"] == c["echo"] == s["sent"] - c["drop"]
    assert s["loss_ratio"] == round(c["drop"] / s["sent"], 9)
    assert s["late"] == 0 and s["duplicated"] == 0 and c["foreign"] == 0
    assert s["latency_ns"]["count"] == s["service_ns"]["count"] == s["received"]
    # Each tenth datagram is missing from the sequence the sender sees come back: holes, not reordering.
    assert s["reordered"] == 0
    assert sum(r["received"] for r in done.doc["intervals"]) == s["received"]


HOLD_S = 1.5
TIMEOUT = "500ms"
HELD_BEFORE_SEQ = 5000    # sent in the first 0.5 s of 3 s at 10k pps: back by ~2 s, read until ~3.5 s


def some_held_back(flow: int, seq: int) -> str:
    return "hold" if seq % 10 == 4 and seq < HELD_BEFORE_SEQ else "echo"


def test_echoes_later_than_the_timeout_are_late_and_lost(tmp_path):
    with RuleEcho(some_held_back, hold_s=HOLD_S) as peer:
        done = run_net(tmp_path, "--target", f"{LOOPBACK}:{peer.port}", "--mode", "echo", "--pps", "10k",
                       "--duration", "3s", "--workers", "1", "--flows", "1", "--timeout", TIMEOUT,
                       "--batch", "1024")
        kernel_drops = peer.dropped_before_the_peer()
    assert done.returncode == 0, done.stderr
    s, c = done.summary, peer.counts
    assert_every_datagram_reached_the_peer(peer, kernel_drops, s["sent"])
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 30_000
    assert c["hold"] == HELD_BEFORE_SEQ // 10 and c["drop"] == 0
    # Every held echo came back, 1 s past the timeout: counted late, and lost, never timed.
    assert s["late"] == c["hold"]
    assert s["lost"] == c["hold"]
    assert s["received"] == c["echo"] == s["sent"] - c["hold"]
    assert s["latency_ns"]["count"] == s["service_ns"]["count"] == s["received"]
    # What was timed came back within the timeout, measured from the actual send (service);
    # HdrHistogram reports the top of max's bucket, at most 1/1000 above it (3 digits).
    assert s["service_ns"]["max"] <= 500_000_000 * 1.001
    assert s["duplicated"] == 0 and c["foreign"] == 0
