"""One agent job, run in a child process so a crash in native code never takes the agent down.

Two phases, so that slow starts (imports, sockets, opening a device) happen
before the schedule is fixed:
  1. stdin: {"type": "job", ...}   -> the child prepares; stdout: "ready" (ports, layout)
  2. stdin: {"type": "go", "timeline": {...}} -> the native run starts on it;
     stdout: "snapshot" every snapshot_ms with the cumulative stats matrix,
     then "done" with the final one and this host's counters over the run
     (counted_by: read from go to the end, as a local run reads its own).
{"type": "stop", "stop_ns": N} on stdin stops the run; end of file means stop
now (the agent is gone). A bad job gets {"type": "error", ...} and exit code 2
(input) or 1 (setup).

The process only relays: prepare() turns a job into the same prepared job a
local run makes (disk.job.prepare, net.job.prepare_send/prepare_receive), and
frames() runs it and yields these frames, for this process to write or for
any other caller to run a job spec in its own process.

Job kinds (times in this host's CLOCK_MONOTONIC ns):
  udp-receive  options (net option names), bind, run_tag
  udp-send     options (with target), run_tag, flow_base
  disk         options (disk option names), target_fd: the target the agent
               opened (passed to this process), target_path naming it in
               messages, target_temp: a fresh temp file to fill;
               target_created: a new file to fill and keep, with target_dir_fd
               and target_name to remove it by if it cannot be filled
"""
import asyncio
import contextlib
import os
import sys
from typing import AsyncIterator

from loadgen.errors import LoadgenError, UsageError
from loadgen.facts import counters
from loadgen.fleet import protocol
from loadgen.run import native
from loadgen.run.controller import Timeline
from loadgen.run.stats import encode_words
from loadgen.workload import DiskSpec, NetSpec, parse_host_port

SNAPSHOT_MS = 200


class Prepared:
    """A job ready to start: start(timeline) gives its run; close() frees what it opened.

    The shape the job process (and a fleet's worker) drives; made from the job's
    own PreparedJob (loadgen.run.job) by prepare()."""

    def __init__(self, start, resources: list, facts: dict, interval_ns: int, workers: int) -> None:
        self.start, self.resources, self.facts, self.interval_ns = start, resources, facts, interval_ns
        self.workers = workers  # rows of stats the run will have

    def close(self) -> None:
        for r in self.resources:
            r.close()


def prepare(job: dict) -> Prepared:
    """Prepare one job as the agent hands it over: the same disk.job.prepare and
    net.job.prepare_send/prepare_receive a local run calls; only the target's
    descriptor and the job's fields come from the agent."""
    kind, options = job.get("kind"), job.get("options")
    if not isinstance(options, dict):
        raise UsageError("job options must be an object")
    if kind == "disk":
        from loadgen.disk import job as disk_job

        prepared = disk_job.prepare(DiskSpec.from_wire(options), opener=lambda spec: _agent_target(spec, job))
    elif kind in ("udp-receive", "udp-send"):
        from loadgen.net import job as net_job

        spec = NetSpec.from_wire(options)
        run_tag = int(job.get("run_tag", 0)) & 0xFFFFFFFF
        if kind == "udp-receive":
            prepared = net_job.prepare_receive(spec, str(job.get("bind", "127.0.0.1")), run_tag)
        elif spec.target is None:
            raise UsageError("udp-send needs options.target")
        else:
            prepared = net_job.prepare_send(spec, *spec.target, run_tag, flow_base=int(job.get("flow_base", 0)))
    else:
        raise UsageError(f"unknown job kind {kind!r}")
    return Prepared(prepared.start, [prepared], prepared.facts(), prepared.interval_ns, prepared.workers)


def _agent_target(spec: DiskSpec, job: dict):
    """The disk target the agent opened and passed down by descriptor."""
    from loadgen.disk.target import fill_created, target_from_fd

    fd = job.get("target_fd")
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise UsageError("a disk job needs the descriptor of its target from the agent")
    # The agent opened the target beneath its allowed directory; a name looked up
    # here could have been swapped for a symlink since.
    path = str(job.get("target_path"))
    if not job.get("target_created"):
        return target_from_fd(spec, fd, path, temp=bool(job.get("target_temp")))
    dir_fd = job.get("target_dir_fd")
    if not isinstance(dir_fd, int) or isinstance(dir_fd, bool):
        raise UsageError("a created target needs its directory's descriptor from the agent")
    try:
        return fill_created(spec, fd, path, dir_fd, str(job.get("target_name")))
    finally:
        os.close(dir_fd)


class Control:
    """What a prepared job is told: go (with its timeline), then perhaps stop.

    The job process reads these from the agent (read()); a caller that runs a job
    in its own process (frames()) calls go() and stop() itself."""

    def __init__(self) -> None:
        self.started: asyncio.Future = asyncio.get_running_loop().create_future()  # the timeline, or None
        self.stopped = asyncio.Event()
        self.stop_ns: int | None = None

    def go(self, timeline: dict | None) -> None:
        """Start on timeline ({start_ns, ramp_end_ns, end_ns} in this host's monotonic ns); only the first go counts."""
        if not self.started.done():
            self.started.set_result(timeline)

    def stop(self, stop_ns: int | None = None) -> None:
        """Stop at stop_ns (None: now); before go, the job ends without starting. The first stop's time counts."""
        if self.stop_ns is None:
            self.stop_ns = native.now_ns() if stop_ns is None else stop_ns
        self.stopped.set()
        self.go(None)

    async def read(self, reader: asyncio.StreamReader, decoder: protocol.FrameDecoder) -> None:
        """Obey the agent's frames on reader until it closes (the agent is gone: stop now)."""
        while True:
            data = await reader.read(65536)
            if not data:
                self.stop()
                return
            for frame in decoder.feed(data):
                if frame.get("type") == "go":
                    self.go(frame.get("timeline"))
                elif frame.get("type") == "stop":
                    stop_ns = frame.get("stop_ns")
                    self.stop(stop_ns if isinstance(stop_ns, int) else None)


def _timeline(t, interval_ns: int) -> Timeline:
    try:
        return Timeline(int(t["start_ns"]), int(t["ramp_end_ns"]), int(t["end_ns"]), interval_ns)
    except (KeyError, TypeError, ValueError):
        raise UsageError("go needs a timeline with start_ns, ramp_end_ns and end_ns") from None


def error_frame(e: Exception) -> dict:
    """The "error" frame for a job that could not be prepared: code "usage" (bad input) or "setup"."""
    if isinstance(e, LoadgenError):
        return {"type": "error", "code": "usage" if e.exit_code == 2 else "setup", "message": str(e)}
    if isinstance(e, (protocol.ProtocolError, TypeError, ValueError, ArithmeticError)):
        return {"type": "error", "code": "usage", "message": str(e)}
    return {"type": "error", "code": "setup", "message": f"{type(e).__name__}: {e}"}


async def frames(job: dict, control: Control) -> AsyncIterator[dict]:
    """Run one job spec in this process and yield what the job process writes to the agent.

    The stable entry for running a job wherever it is placed (the job process
    here, a fleet's worker): first "ready" (workers, layout, env and the
    prepared job's facts) or, if it cannot be prepared, one "error" frame and
    nothing more. Then, once control.go(timeline), a "snapshot" with the
    cumulative stats matrix every job["snapshot_ms"] (SNAPSHOT_MS) until the run
    ends or control.stop(), and last "done" with the final matrix. A stop before
    go ends it after "ready". Close the iterator (contextlib.aclosing) to free
    the run and what the job opened if you leave early."""
    try:
        prepared = prepare(job)
    except Exception as e:  # noqa: BLE001 - whoever asked must hear why, whatever it was
        yield error_frame(e)
        return
    run = None
    try:
        layout = native.Layout()
        from loadgen.facts.sysinfo import basic_env

        yield {"type": "ready", "workers": prepared.workers, "layout": {"counters": layout.counters,
                                                                     "hists": layout.hists},
               "env": basic_env(), **prepared.facts}
        timeline = await control.started
        if timeline is None:  # stopped before it began
            return
        around = counted_by(job)
        run = prepared.start(_timeline(timeline, prepared.interval_ns))
        snapshot_s = int(job.get("snapshot_ms", SNAPSHOT_MS)) / 1000
        while not run.done():
            try:
                await asyncio.wait_for(control.stopped.wait(), snapshot_s)
            except TimeoutError:
                pass
            if control.stopped.is_set():
                run.stop(control.stop_ns)
                break
            yield {"type": "snapshot", "t_ns": native.now_ns(), "words": encode_words(run.read())}
        err = await run.wait()
        yield {"type": "done", "t_ns": native.now_ns(), "setup_errno": -err if err < 0 else 0,
               "stop_ns": control.stop_ns, "words": encode_words(run.read()), "counters": around.finish()}
    finally:
        if run is not None:
            run.free()
        prepared.close()


def counted_by(job: dict) -> counters.Around:
    """The counters a job reads around its run: a disk job the disk under its target, a
    sending job the NIC toward its target, a receiving job the NIC holding the address the
    controller reached this agent at (where the senders send), else its bind address."""
    if job.get("kind") == "disk":
        return counters.device_of(job["target_fd"])
    if job.get("kind") == "udp-send":
        return counters.route_to(parse_host_port(job["options"]["target"])[0])
    return counters.route_to(str(job.get("reached_at") or job.get("bind", "127.0.0.1")))


def _exit_code(error: dict) -> int:
    return 2 if error["code"] == "usage" else 1


def _write(frame: dict) -> None:
    sys.stdout.buffer.write(protocol.encode(frame))
    sys.stdout.buffer.flush()


async def run_job() -> int:
    """The job process: one job from stdin, its frames to stdout; exit 2 (bad job) or 1 (setup) on error."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    decoder = protocol.FrameDecoder()
    received: list[dict] = []
    try:
        while not received:
            data = await reader.read(65536)
            if not data:
                raise UsageError("no job on stdin")
            received = decoder.feed(data)
    except Exception as e:  # noqa: BLE001 - the agent must hear why, whatever it was
        error = error_frame(e)
        _write(error)
        return _exit_code(error)
    job = received.pop(0)
    control = Control()
    listener = asyncio.create_task(control.read(reader, decoder))
    try:
        async with contextlib.aclosing(frames(job, control)) as out:
            async for frame in out:
                _write(frame)
                if frame["type"] == "error":
                    return _exit_code(frame)
        return 0
    finally:
        listener.cancel()


def main() -> int:
    import uvloop

    return uvloop.run(run_job())


if __name__ == "__main__":
    raise SystemExit(main())
