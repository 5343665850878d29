"""`loadgen serve --listen`: the long-lived agent a remote controller drives.

Rules:
- One controller at a time; a second one is told "busy" and closed.
- The controller proves it holds the token (protocol.py) before anything else;
  an agent without a token refuses to start unless told --insecure-no-auth on
  a loopback address.
- It runs only three kinds of job (udp-receive, udp-send, disk), each in a
  child process (agentjob.py) with bounded duration, rate, size, workers and
  buffer memory; every field is type-checked.
- A disk job's target must lie under an --allow-path directory (a relative one
  is taken beneath the first). The agent opens it there in one step without
  following symlinks (disk/beneath.py) and hands the child the open descriptor; the
  child never opens a path by name. A temp target is made the same way and
  unlinked at once. A missing target file is made there with O_EXCL when the
  job gives a size (target.create_beneath); the child fills it, keeps it, and
  removes it only if it cannot.
- Every request gets an answer: an exception in a handler becomes an error
  frame whose "kind" (protocol.ERROR_KINDS) tells the controller whether it
  was bad input (usage), the host (setup) or the protocol.
- A controller silent for HEARTBEAT_TIMEOUT_S, or gone, has its jobs stopped
  and their ports freed.
- With --metrics, the agent serves its own jobs' counts (loadgen.run.metrics) from
  the consistent snapshots it relays, host "local", one series per role. A malformed frame gets an error; a frame that breaks
  the framing closes that connection only.
"""
import asyncio
import errno
import ipaddress
import itertools
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import __version__
from loadgen.disk.target import (check_buffer_memory, create_beneath, open_beneath_target, open_temp_beneath,
                            remove_if_ours)
from loadgen.errors import LoadgenError, UsageError
from loadgen.fleet import protocol
from loadgen.run import metrics as live_metrics, native
from loadgen.workload import DiskSpec, NetSpec

HEARTBEAT_TIMEOUT_S = 5.0
AUTH_TIMEOUT_S = 5.0
JOB_READY_TIMEOUT_S = 30.0
JOB_STOP_GRACE_S = 5.0
MAX_JOBS = 8
START_WINDOW_NS = (-5 * 10**9, 120 * 10**9)   # a job's start, relative to now



@dataclass
class AgentConfig:
    host: str
    port: int
    token: bytes | None
    allow_paths: list[Path] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None
    metrics: live_metrics.Exporter | None = None   # serving --metrics


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
    except (socket.gaierror, ValueError):
        return False


def allowed_roots(paths: list[str]) -> list[Path]:
    """--allow-path values as the resolved directories disk targets must lie beneath."""
    roots = []
    for p in paths:
        root = Path(p).resolve()
        if not root.is_dir():
            raise UsageError(f"--allow-path {p} is not a directory")
        roots.append(root)
    return roots


def check_startup(cfg: AgentConfig, insecure_no_auth: bool) -> None:
    if cfg.token is None and not insecure_no_auth:
        raise UsageError("the agent needs a token (--token-file or LOADGEN_TOKEN)")
    if cfg.token is None and not is_loopback(cfg.host):
        raise UsageError("--insecure-no-auth is allowed only when listening on loopback")
    if cfg.token is not None and len(cfg.token) < 16:
        raise UsageError("the token must be at least 16 bytes")


def validate_timeline(timeline) -> dict:
    """A go request's timeline, in this host's clock: near now, ordered and bounded."""
    try:
        start, ramp_end, end = (int(timeline[k]) for k in ("start_ns", "ramp_end_ns", "end_ns"))
    except (TypeError, KeyError, ValueError, OverflowError):
        raise protocol.ProtocolError("bad-job", "go needs a timeline") from None
    now = native.now_ns()
    if not (START_WINDOW_NS[0] <= start - now <= START_WINDOW_NS[1] and start <= ramp_end <= end
            and end - start <= protocol.MAX_DURATION_NS):
        raise protocol.ProtocolError("limit", "the timeline is not within the agent's limits")
    return {"start_ns": start, "ramp_end_ns": ramp_end, "end_ns": end}


def locate(target: str | None, roots: list[Path]) -> tuple[Path, str] | None:
    """(allowed root, path beneath it) for a target, or None when it lies outside every root.

    Lexical only: ".." is folded here, and the open beneath the root refuses symlinks."""
    if target is None:
        return roots[0], ""
    path = Path(os.path.normpath(os.path.join(roots[0], target)))
    for root in roots:
        if path != root and root in path.parents:
            return root, str(path.relative_to(root))
    return None


def _plain_int(value, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise protocol.ProtocolError("bad-job", f"expected an integer, not {value!r}")
    return value


def validate_job(job: dict, allow_paths: list[Path]) -> tuple[dict, DiskSpec | NetSpec]:
    """Check a job request against the agent's limits; (the job to run, its spec), or ProtocolError."""
    kind, options = job.get("kind"), job.get("options")
    if kind not in ("udp-receive", "udp-send", "disk") or not isinstance(options, dict):
        raise protocol.ProtocolError("bad-job", "job needs kind udp-receive, udp-send or disk, and options")
    try:
        # The accepted names and types are the option table's (loadgen/options.py).
        spec = DiskSpec.from_wire(options) if kind == "disk" else NetSpec.from_wire(options)
    except LoadgenError as e:
        raise protocol.ProtocolError("bad-job", str(e)) from None
    except (TypeError, ValueError, ArithmeticError) as e:
        raise protocol.ProtocolError("bad-job", f"an option has the wrong type: {e}") from None
    common = spec.common
    drain_ns = spec.timeout_ns if kind != "disk" else 0  # receivers and echo senders wait this long after the end
    if common.duration_ns + common.ramp_ns + drain_ns > protocol.MAX_DURATION_NS:
        raise protocol.ProtocolError("limit", "duration, ramp and timeout together are over the agent's limit")
    if common.workers > min(protocol.MAX_WORKERS, 4 * (os.cpu_count() or 1)):
        raise protocol.ProtocolError("limit", "too many workers for this host")
    if kind == "disk":
        if (spec.rate_ops_per_s or 0) > protocol.MAX_IOPS:
            raise protocol.ProtocolError("limit", "rate is over the agent's limit")
        if not allow_paths:
            raise protocol.ProtocolError("forbidden", "this agent allows no disk jobs (no --allow-path)")
        try:
            check_buffer_memory(spec)
        except UsageError as e:
            raise protocol.ProtocolError("limit", str(e)) from None
        where = locate(spec.target, allow_paths)
        if where is None:
            raise protocol.ProtocolError("forbidden", f"{spec.target} is outside the allowed paths")
        if spec.target is not None:
            options = dict(options, target=str(where[0] / where[1]))
    else:
        if (spec.rate_pps or 0) > protocol.MAX_RATE_PPS:
            raise protocol.ProtocolError("limit", "rate is over the agent's limit")
        if kind == "udp-send" and spec.target is None:
            raise protocol.ProtocolError("bad-job", "udp-send needs options.target")
    out = {"type": "job", "kind": kind, "options": options,
           "run_tag": _plain_int(job.get("run_tag"), 0) & 0xFFFFFFFF,
           "flow_base": min(max(_plain_int(job.get("flow_base"), 0), 0), protocol.MAX_FLOW_BASE)}
    return out, spec


def open_disk_target(spec: DiskSpec, allow_paths: list[Path]) -> tuple[dict, tuple[int, ...]]:
    """(the job's target fields, the descriptors to pass) for a disk job's target, opened
    beneath its allowed root, or made there when it is missing and the job gives a size."""
    root, rel = locate(spec.target, allow_paths)
    shown = str(root / rel) if rel else str(root)
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise protocol.ProtocolError("job-failed", f"cannot open the allowed directory {root}: {e.strerror}") from None
    try:
        if spec.target is None:
            fd = open_temp_beneath(spec, root_fd, str(root))
            return {"target_fd": fd, "target_path": f"{root}/(unlinked temporary file)", "target_temp": True}, (fd,)
        try:
            fd = open_beneath_target(spec, root_fd, rel)
            return {"target_fd": fd, "target_path": shown, "target_temp": False}, (fd,)
        except FileNotFoundError:
            if not spec.size_given:
                raise
        try:
            fd, dir_fd, name = create_beneath(spec, root_fd, rel)
        except FileExistsError:
            raise protocol.ProtocolError(
                "forbidden", f"refusing to create {shown}: something is at that name already") from None
        return {"target_fd": fd, "target_path": shown, "target_temp": False, "target_created": True,
                "target_dir_fd": dir_fd, "target_name": name}, (fd, dir_fd)
    except UsageError as e:
        raise protocol.ProtocolError("bad-job", str(e)) from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            raise protocol.ProtocolError(
                "forbidden", f"{spec.target} is outside the allowed paths or reached through a symlink") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            hint = "" if spec.size_given else " (give --size to create it)"
            raise protocol.ProtocolError("bad-job", f"target not found: {spec.target}{hint}") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise protocol.ProtocolError("forbidden", f"no permission to open {shown}") from None
        raise protocol.ProtocolError("job-failed", f"cannot open {shown}: {e.strerror}") from None
    finally:
        os.close(root_fd)


class Job:
    """A child process running one job; its frames are relayed to the session."""

    def __init__(self, jid: int, proc: asyncio.subprocess.Process, feed: live_metrics.Feed | None = None) -> None:
        self.jid, self.proc, self.feed = jid, proc, feed
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.finished = False

    async def tell(self, frame: dict) -> None:
        if self.proc.returncode is not None or self.proc.stdin.is_closing():
            return
        try:
            self.proc.stdin.write(protocol.encode(frame))
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def stop(self, stop_ns: int | None = None) -> None:
        await self.tell({"type": "stop", "stop_ns": stop_ns or native.now_ns()})

    async def kill(self) -> None:
        """Stop now; a child that does not exit within the grace is killed."""
        await self.stop()
        try:
            self.proc.stdin.close()
        except RuntimeError:
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), JOB_STOP_GRACE_S)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class Session:
    """One authenticated controller connection."""

    def __init__(self, agent: "Agent", reader, writer) -> None:
        self.agent, self.reader, self.writer = agent, reader, writer
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._send_lock = asyncio.Lock()

    async def send(self, frame: dict) -> None:
        async with self._send_lock:
            self.writer.write(protocol.encode(frame))
            await self.writer.drain()

    async def serve(self, decoder: protocol.FrameDecoder, pending: list[dict]) -> None:
        queue = list(pending)
        while True:
            while queue:
                await self.handle(queue.pop(0))
            try:
                data = await asyncio.wait_for(self.reader.read(65536), HEARTBEAT_TIMEOUT_S)
            except TimeoutError:
                return  # silent controller: treated as gone
            if not data:
                return
            queue.extend(decoder.feed(data))

    async def handle(self, msg: dict) -> None:
        rid, kind = msg.get("id"), msg.get("type")
        if not isinstance(rid, int):
            await self.send(protocol.error("malformed", "request needs an integer id"))
            return
        try:
            if kind == "ping":
                await self.send({"type": "pong", "id": rid, "agent_ns": native.now_ns()})
            elif kind == "start":
                # Preparing a job may take seconds (a temp target to fill): answer
                # pings meanwhile, or the controller would take the silence for death.
                task = asyncio.create_task(self._start_replying(rid, msg.get("job")))
                self.agent.tasks.add(task)
                task.add_done_callback(self.agent.tasks.discard)
            elif kind == "go":
                job = self._job(msg)
                await job.tell({"type": "go", "timeline": validate_timeline(msg.get("timeline"))})
                await self.send({"type": "ok", "id": rid})
            elif kind == "stop":
                stop_ns = msg.get("stop_ns")
                plain = isinstance(stop_ns, int) and not isinstance(stop_ns, bool)
                await self._job(msg).stop(stop_ns if plain else None)  # a stop is always obeyed: bad times mean now
                await self.send({"type": "ok", "id": rid})
            else:
                raise protocol.ProtocolError("unknown", f"unknown request type {kind!r}")
        except Exception as e:  # noqa: BLE001 - every request is answered, whatever went wrong
            await self.send(error_reply(e, rid))

    async def _start_replying(self, rid: int, request) -> None:
        try:
            await self.start(rid, request)
        except Exception as e:  # noqa: BLE001 - a task that dies silently leaves the controller waiting
            await self._reply_quietly(error_reply(e, rid))

    async def _reply_quietly(self, frame: dict) -> None:
        try:
            await self.send(frame)
        except (ConnectionError, OSError):
            pass  # the controller is gone; the session is closing

    def _job(self, msg: dict) -> Job:
        job = self.jobs.get(msg.get("job"))
        if job is None:
            raise protocol.ProtocolError("no-job", "no such job")
        return job

    async def start(self, rid: int, request) -> None:
        if not isinstance(request, dict):
            raise protocol.ProtocolError("bad-job", "start needs a job object")
        if sum(not j.finished for j in self.jobs.values()) >= MAX_JOBS:
            raise protocol.ProtocolError("limit", f"at most {MAX_JOBS} jobs at once")
        job, spec = validate_job(request, self.agent.cfg.allow_paths)
        job["bind"] = self.agent.data_host
        # The address the controller reached us at is where its senders send: its NIC is the one to count.
        job["reached_at"] = (self.writer.get_extra_info("sockname") or ("",))[0]
        fds: tuple[int, ...] = ()
        if job["kind"] == "disk":
            fields, fds = open_disk_target(spec, self.agent.cfg.allow_paths)
            job.update(fields)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadgen.fleet.agentjob", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, pass_fds=fds, start_new_session=True)
        except BaseException:
            if job.get("target_created"):  # the child that would fill it never ran: leave no empty file
                remove_if_ours(job["target_dir_fd"], job["target_name"], os.fstat(job["target_fd"]))
            raise
        finally:
            for fd in fds:
                os.close(fd)  # the child holds its own copy
        jid = next(self._ids)
        runner = Job(jid, proc, live_metrics.feed(self.agent.cfg.metrics, lambda: [metric_part(job["kind"], spec)]))
        self.jobs[jid] = runner
        proc.stdin.write(protocol.encode(job))
        await proc.stdin.drain()
        relay = asyncio.create_task(self.relay(runner))
        self.agent.tasks.add(relay)
        relay.add_done_callback(self.agent.tasks.discard)
        try:
            ready = await asyncio.wait_for(asyncio.shield(runner.ready), JOB_READY_TIMEOUT_S)
        except TimeoutError:
            await runner.kill()
            raise protocol.ProtocolError("job-failed", "the job did not start in time") from None
        if ready.get("type") == "error":
            # The child says "usage" or "setup" (agentjob.py); the controller hears the agent's codes.
            raise protocol.ProtocolError("bad-job" if ready.get("code") == "usage" else "job-failed",
                                         str(ready.get("message", "job failed")))
        await self.send({"type": "started", "id": rid, "job": jid, "ready": ready})

    async def relay(self, job: Job) -> None:
        """Forward the child's frames; say how it ended if it ended without "done"."""
        decoder = protocol.FrameDecoder()
        saw_done = False
        try:
            while True:
                data = await job.proc.stdout.read(65536)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if not job.ready.done():
                        job.ready.set_result(frame)
                        continue
                    saw_done = saw_done or frame.get("type") == "done"
                    if job.feed:
                        observe(job.feed, frame)
                    await self.send(dict(frame, job=job.jid))
        except (protocol.ProtocolError, ConnectionError):
            pass
        code = await job.proc.wait()
        job.finished = True
        if job.feed:
            job.feed.finish()     # a job that ended without "done" keeps what it last reported
        if not job.ready.done():
            job.ready.set_result({"type": "error", "code": "job-failed", "message": describe_exit(code)})
        elif not saw_done:
            try:
                await self.send({"type": "job-failed", "job": job.jid, "message": describe_exit(code)})
            except ConnectionError:
                pass

    async def close(self) -> None:
        await asyncio.gather(*(j.kill() for j in self.jobs.values()), return_exceptions=True)
        self.writer.close()


def metric_part(kind: str, spec: DiskSpec | NetSpec) -> live_metrics.Part:
    """What a job's rows are, for --metrics."""
    if kind == "disk":
        return live_metrics.Part("local", "disk")
    if kind == "udp-send":
        return live_metrics.Part("local", "sender", echo=spec.echo)
    return live_metrics.Part("local", "receiver")


def observe(feed: live_metrics.Feed, frame: dict) -> None:
    """Feed --metrics a job's snapshot frame: a consistent one while it runs, and its final one."""
    from loadgen.run.stats import Snapshot, decode_words

    if frame.get("type") not in ("snapshot", "done"):
        return
    try:
        snap = Snapshot(native.Layout(), decode_words(frame["words"]), 0)
    except (KeyError, ValueError):
        return   # the controller hears of a bad frame; the metrics keep their last values
    if frame["type"] == "done":
        feed.finish(snap)
    elif not snap.torn_rows():
        feed.observe(snap)


def error_reply(e: Exception, rid: int) -> dict:
    """The error frame that answers request rid, which raised e."""
    if isinstance(e, protocol.ProtocolError):
        return protocol.error(e.code, str(e), rid)
    if isinstance(e, (TypeError, ValueError, KeyError, AttributeError, ArithmeticError)):
        return protocol.error("malformed", f"malformed request: {e}", rid)
    if isinstance(e, OSError):
        return protocol.error("job-failed", f"cannot start the job: {e.strerror or e}", rid)
    return protocol.error("internal", f"the agent failed on this request: {type(e).__name__}: {e}", rid)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"the job crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"the job was killed by signal {-code}"
    return f"the job exited with code {code}"


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.session: Session | None = None
        self.tasks: set[asyncio.Task] = set()
        self.data_host = cfg.host if cfg.host not in ("", "::") else "0.0.0.0"

    async def handle_connection(self, reader, writer) -> None:
        decoder = protocol.FrameDecoder(max_frame_bytes=64 << 10)  # nothing legitimate from a controller is bigger
        session = None
        try:
            nonce = protocol.new_nonce()
            writer.write(protocol.encode({"type": "challenge", "version": protocol.VERSION, "nonce": nonce,
                                          "auth": self.cfg.token is not None}))
            await writer.drain()
            frames = await asyncio.wait_for(self._first_frames(reader, decoder), AUTH_TIMEOUT_S)
            if not frames:
                return
            controller_nonce = protocol.check_auth(frames[0], self.cfg.token, nonce)
            if self.session is not None:
                raise protocol.ProtocolError("busy", "another controller is using this agent")
            layout = native.Layout()
            welcome = {"type": "welcome", "version": protocol.VERSION, "loadgen": __version__,
                       "hostname": socket.gethostname(), "cpus": len(os.sched_getaffinity(0)),
                       "agent_ns": native.now_ns(),
                       "layout": {"counters": layout.counters, "hists": layout.hists}}
            if self.cfg.token is not None:
                welcome["mac"] = protocol.agent_proof(self.cfg.token, nonce, controller_nonce)
            session = self.session = Session(self, reader, writer)
            await session.send(welcome)
            await session.serve(decoder, frames[1:])
        except protocol.ProtocolError as e:
            try:
                writer.write(protocol.encode(protocol.error(e.code, str(e))))
                await writer.drain()
            except ConnectionError:
                pass
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            if session is not None:
                await session.close()
                if self.session is session:
                    self.session = None
            writer.close()

    @staticmethod
    async def _first_frames(reader, decoder: protocol.FrameDecoder) -> list[dict]:
        """The controller's first frames after any hello; the whole handshake shares one timeout."""
        while True:
            data = await reader.read(4096)
            if not data:
                return []
            frames = [f for f in decoder.feed(data) if f.get("type") != "hello"]
            if frames:
                return frames

    async def run(self, ready=None) -> None:
        server = await asyncio.start_server(self.handle_connection, self.cfg.host, self.cfg.port,
                                            ssl=self.cfg.ssl_context, reuse_address=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        addr = server.sockets[0].getsockname()
        sys.stdout.write(f"loadgen agent {__version__}: listening on {addr[0]}:{addr[1]}"
                         f"{' with TLS' if self.cfg.ssl_context else ''}"
                         f"{'' if self.cfg.token else ' WITHOUT authentication (loopback only)'}\n")
        sys.stdout.flush()
        if ready:
            ready(addr)
        async with server:
            await stop.wait()
        if self.session is not None:
            await self.session.close()


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:  # load_cert_chain's own error names no file
            raise UsageError(f"cannot read TLS {what} file {path}: {e.strerror}") from None
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise UsageError(f"cannot load TLS certificate {cert} with key {key}: {e.reason or e}") from None
    except OSError as e:
        raise UsageError(f"cannot load TLS certificate {cert} with key {key}: {e.strerror or e}") from None
    return ctx


def load_token(token_file: str | None) -> bytes | None:
    """The shared token from a file, else from LOADGEN_TOKEN, else None."""
    if token_file:
        try:
            token = Path(token_file).read_bytes().strip()
        except OSError as e:
            raise UsageError(f"cannot read the token file {token_file}: {e.strerror}") from None
        if not token:
            raise UsageError(f"the token file {token_file} is empty")
        return token
    env = os.environ.get("LOADGEN_TOKEN", "").strip()
    return env.encode() if env else None
