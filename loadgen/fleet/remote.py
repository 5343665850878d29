"""The controller's side of the agent protocol: AgentClient and RemoteRun.

A RemoteRun looks like a native.Run to the controller: read() returns the
latest cumulative stats matrix the agent sent, stop() asks the agent, wait()
awaits the job's final matrix. A connection that breaks, or an agent silent
for longer than SILENCE_S, fails every run on it; failure() then says why.
"""
import asyncio
import ssl
from typing import Protocol

import numpy as np

from loadgen.errors import LoadgenError, SetupError, UsageError
from loadgen.fleet import protocol
from loadgen.fleet.clock import ClockEstimate, estimate
from loadgen.run import native
from loadgen.run.stats import decode_words

PING_INTERVAL_S = 1.0
SILENCE_S = 3.0
CONNECT_TIMEOUT_S = 10.0
CLOCK_SAMPLES = 8


class AgentBusy(SetupError):
    """The agent serves another controller, or is still ending the session of the last one."""


class RemoteRun:
    def __init__(self, client: "AgentClient", jid: int, ready: dict) -> None:
        self.client, self.jid, self.ready = client, jid, ready
        self.layout = native.Layout()
        self.workers = int(ready["workers"])
        self._words = np.zeros((self.workers, self.layout.words), dtype=np.uint64)
        self._done = asyncio.Event()
        self.setup_errno = 0
        self.error: str | None = None
        # The host's counters over the run, from the job's final frame (protocol.check_counters).
        self.counters: dict = {"missing": f"the job on {client.name} ended without its final report"}

    def update(self, frame: dict) -> None:
        try:
            words = decode_words(frame["words"])
        except (KeyError, ValueError) as e:
            self.fail(f"bad stats from {self.client.name}: {e}")
            return
        if words.shape == self._words.shape:
            self._words = words
        if frame.get("type") == "done":
            self.setup_errno = int(frame.get("setup_errno") or 0)
            self.counters = self._counters(frame)
            self._done.set()

    def _counters(self, frame: dict) -> dict:
        """The done frame's counters; a malformed block costs the counters, never the run's counts."""
        if "counters" not in frame:
            return {"missing": f"the agent at {self.client.name} sends no counters (an older loadgen)"}
        try:
            return protocol.check_counters(frame["counters"])
        except protocol.ProtocolError as e:
            return {"missing": f"the agent at {self.client.name} sent malformed counters: {e}"}

    def fail(self, why: str) -> None:
        if self.error is None and not self._done.is_set():
            self.error = why
        self._done.set()

    def read(self) -> np.ndarray:
        return self._words.copy()

    def stop(self, stop_ns: int) -> None:
        self.client.spawn(self.client.quiet_request({"type": "stop", "job": self.jid,
                                                     "stop_ns": self.client.clock.to_agent(stop_ns)}))

    def done(self) -> bool:
        return self._done.is_set()

    def failure(self) -> str | None:
        return self.error

    async def wait(self) -> int:
        await self._done.wait()
        return -self.setup_errno

    def free(self) -> None:
        pass


class AgentClient:
    def __init__(self, name: str, reader, writer) -> None:
        self.name, self.reader, self.writer = name, reader, writer
        self.decoder = protocol.FrameDecoder()
        self.pending: dict[int, asyncio.Future] = {}
        self.runs: dict[int, RemoteRun] = {}
        self.next_id = 1
        self.clock = ClockEstimate(0, 0, 0)
        self.info: dict = {}
        self.error: str | None = None
        self.last_heard = asyncio.get_running_loop().time()
        self._tasks: set[asyncio.Task] = set()
        self._early: list[dict] = []
        self.tls = False
        self._heard_anything = False

    @classmethod
    async def connect(cls, host: str, port: int, token: bytes | None,
                      ssl_context: ssl.SSLContext | None = None) -> "AgentClient":
        name = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl_context), CONNECT_TIMEOUT_S)
        except ssl.SSLError as e:
            raise SetupError(describe_tls_failure(name, e)) from None
        except (OSError, TimeoutError) as e:
            raise SetupError(f"cannot connect to the agent at {name}: {getattr(e, 'strerror', None) or e or 'timed out'}") from None
        client = cls(name, reader, writer)
        client.tls = ssl_context is not None
        try:
            await asyncio.wait_for(client._handshake(token), CONNECT_TIMEOUT_S)
        except TimeoutError:
            writer.close()
            raise SetupError(f"the agent at {name} did not finish the handshake") from None
        except BaseException:
            writer.close()
            raise
        for frame in client._early:
            client._dispatch(frame)
        client.spawn(client._read_loop())
        client.spawn(client._heartbeat())
        client.clock = await client.measure_clock()
        return client

    async def _next_frame(self) -> dict:
        """The next frame during the handshake, before the read loop owns the stream."""
        while not self._early:
            try:
                data = await self.reader.read(65536)
            except ConnectionResetError:
                data = b""
            if not self._heard_anything and not self.tls and (not data or data[:2] == TLS_ALERT_PREFIX):
                # A loadgen agent speaks first; one that closes (or sends a TLS alert) on our hello
                # is waiting for a TLS ClientHello.
                raise SetupError(f"the agent at {self.name} closed the connection at once: the agent expects TLS "
                                 "(use --tls or --tls-ca)")
            if not data:
                raise SetupError(f"the agent at {self.name} closed the connection")
            self._heard_anything = True
            self._early.extend(self.decoder.feed(data))
        return self._early.pop(0)

    async def _handshake(self, token: bytes | None) -> None:
        # Speak first, so that a TLS agent answers a plaintext controller at once instead of
        # both sides waiting (protocol.py); a loadgen agent skips the hello.
        self.writer.write(protocol.encode(protocol.hello()))
        await self.writer.drain()
        challenge = await self._next_frame()
        if challenge.get("type") != "challenge" or challenge.get("version") != protocol.VERSION:
            raise SetupError(f"{self.name} is not a loadgen agent of protocol version {protocol.VERSION}")
        if challenge.get("auth") and token is None:
            raise SetupError(f"the agent at {self.name} wants a token (--token-file or LOADGEN_TOKEN)")
        if token is not None and not challenge.get("auth"):
            # It could not prove it holds the token: it may not be the agent we think.
            raise SetupError(f"the agent at {self.name} runs without authentication; "
                             "refusing it while holding a token")
        nonce = protocol.new_nonce()
        auth = {"type": "auth", "version": protocol.VERSION, "nonce": nonce}
        if token is not None:
            auth["mac"] = protocol.controller_proof(token, challenge["nonce"], nonce)
        self.writer.write(protocol.encode(auth))
        await self.writer.drain()
        welcome = await self._next_frame()
        if welcome.get("type") == "error":
            refused = AgentBusy if welcome.get("code") == "busy" else SetupError
            raise refused(f"the agent at {self.name} refused: {welcome.get('message')}")
        if welcome.get("type") != "welcome":
            raise SetupError(f"the agent at {self.name} answered {welcome.get('type')!r}")
        if challenge.get("auth") and not protocol.verify(
                protocol.agent_proof(token, challenge["nonce"], nonce), welcome.get("mac")):
            raise SetupError(f"the agent at {self.name} does not hold the token")
        local = native.Layout()
        layout = welcome.get("layout") or {}
        if layout.get("counters") != local.counters or layout.get("hists") != local.hists:
            raise SetupError(f"the agent at {self.name} runs an incompatible loadgen ({welcome.get('loadgen')})")
        self.info = {k: welcome.get(k) for k in ("loadgen", "hostname", "cpus")}

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail_all(self, why: str) -> None:
        if self.error is None:
            self.error = why
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(SetupError(why))
        for run in self.runs.values():
            run.fail(why)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.reader.read(1 << 20)
                if not data:
                    self._fail_all(f"lost the connection to the agent at {self.name}")
                    return
                self.last_heard = loop.time()
                for frame in self.decoder.feed(data):
                    self._dispatch(frame)
        except (ConnectionError, OSError, protocol.ProtocolError, ssl.SSLError) as e:
            self._fail_all(f"lost the connection to the agent at {self.name}: {e}")

    def _dispatch(self, frame: dict) -> None:
        rid = frame.get("id")
        if rid in self.pending:
            fut = self.pending.pop(rid)
            if not fut.done():
                fut.set_result(frame)
            return
        run = self.runs.get(frame.get("job"))
        if run is None:
            return
        if frame.get("type") in ("snapshot", "done"):
            run.update(frame)
        elif frame.get("type") == "job-failed":
            run.fail(f"{self.name}: {frame.get('message')}")

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while self.error is None:
            await asyncio.sleep(PING_INTERVAL_S)
            if loop.time() - self.last_heard > SILENCE_S:
                self._fail_all(f"the agent at {self.name} stopped answering ({SILENCE_S:.0f}s without a heartbeat)")
                return
            self.spawn(self.quiet_request({"type": "ping"}))

    async def quiet_request(self, msg: dict) -> None:
        """A request whose failure shows up elsewhere (heartbeats, stops)."""
        try:
            await self.request(msg)
        except LoadgenError:
            pass

    async def request(self, msg: dict) -> dict:
        if self.error:
            raise SetupError(self.error)
        rid = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            self.writer.write(protocol.encode(dict(msg, id=rid)))
            await self.writer.drain()
        except (ConnectionError, OSError) as e:
            self.pending.pop(rid, None)
            self._fail_all(f"lost the connection to the agent at {self.name}: {e}")
            raise SetupError(self.error) from None
        reply = await fut
        if reply.get("type") == "error":
            # Bad input is exit 2 wherever it is found; anything else the agent refuses is exit 1.
            error = UsageError if protocol.error_kind(reply) == "usage" else SetupError
            raise error(f"the agent at {self.name}: {reply.get('message')}")
        return reply

    async def measure_clock(self) -> ClockEstimate:
        samples = []
        for _ in range(CLOCK_SAMPLES):
            t0 = native.now_ns()
            reply = await self.request({"type": "ping"})
            t1 = native.now_ns()
            samples.append((t0, int(reply["agent_ns"]), t1))
        return estimate(samples)

    async def prepare(self, job: dict) -> RemoteRun:
        """Have the agent set a job up (sockets, target); it starts on go()."""
        reply = await self.request({"type": "start", "job": job})
        run = RemoteRun(self, int(reply["job"]), reply["ready"])
        self.runs[run.jid] = run
        return run

    async def go(self, run: RemoteRun, timeline) -> None:
        """Start a prepared job on a timeline in the controller's clock; the agent gets its own."""
        t = {k: self.clock.to_agent(getattr(timeline, k)) for k in ("start_ns", "ramp_end_ns", "end_ns")}
        await self.request({"type": "go", "job": run.jid, "timeline": t})

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass


TLS_ALERT_PREFIX = b"\x15\x03"   # a TLS record of type alert (21), version 3.x (RFC 8446 5.1)
# What OpenSSL says when the bytes it got back are not TLS at all: a plaintext agent's challenge frame.
_NOT_TLS_REASONS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG",
                    "HTTP_REQUEST"}


def describe_tls_failure(name: str, e: ssl.SSLError) -> str:
    """One line for a TLS handshake that failed: a plaintext agent, a certificate, or something else."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the agent at {name} has a certificate the TLS CA file does not vouch for: {e.verify_message}"
    if e.reason in _NOT_TLS_REASONS:
        return f"the agent at {name} does not speak TLS (it runs without --tls-cert): drop --tls and --tls-ca"
    return f"TLS with the agent at {name} failed: {e.reason or e}"


def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS for the control channel. The token authenticates the agent, so the
    certificate is checked against ca_file when given but its name is not."""
    if ca_file:
        try:
            ctx = ssl.create_default_context(cafile=ca_file)
        except ssl.SSLError as e:   # before OSError, which it is a kind of
            raise UsageError(f"cannot read TLS CA file {ca_file}: no usable certificate in it ({e.reason})") from None
        except OSError as e:
            raise UsageError(f"cannot read TLS CA file {ca_file}: {e.strerror}") from None
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if not ca_file:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class HostClient(Protocol):
    """What the runs (net/job.py's paired run, disk/job.py's) and RemoteRun need of a host's
    client: an AgentClient, or a Ray node's (fleet/ray_fleet.py RayClient)."""
    name: str
    clock: ClockEstimate
    info: dict

    async def prepare(self, job: dict) -> RemoteRun: ...
    async def go(self, run: RemoteRun, timeline) -> None: ...
    async def close(self) -> None: ...
    def spawn(self, coro) -> None: ...
    async def quiet_request(self, msg: dict) -> None: ...
