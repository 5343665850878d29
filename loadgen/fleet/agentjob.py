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
import os
import sys

from loadgen.errors import LoadgenError, UsageError
from loadgen.facts import counters
from loadgen.fleet import protocol
from loadgen.net.endpoints import close_all, receiver_sockets, resolve
from loadgen.run import native
from loadgen.run.controller import Timeline, worker_cpus
from loadgen.run.stats import encode_words
from loadgen.workload import DiskSpec, NetSpec, parse_host_port

SNAPSHOT_MS = 200


class Prepared:
    """A job ready to start: start(timeline) gives its run; close() frees what it opened."""

    def __init__(self, start, resources: list, facts: dict, interval_ns: int, workers: int) -> None:
        self.start, self.resources, self.facts, self.interval_ns = start, resources, facts, interval_ns
        self.workers = workers  # rows of stats the run will have

    def close(self) -> None:
        for r in self.resources:
            r.close()


def prepare(job: dict) -> Prepared:
    kind, options = job.get("kind"), job.get("options")
    if not isinstance(options, dict):
        raise UsageError("job options must be an object")
    if kind == "disk":
        from loadgen.disk.job import _native_config, choose_engine
        from loadgen.disk.target import fill_created, target_from_fd

        spec = DiskSpec.from_wire(options)
        engine, note = choose_engine(spec.engine)
        fd = job.get("target_fd")
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise UsageError("a disk job needs the descriptor of its target from the agent")
        # The agent opened the target beneath its allowed directory; a name looked up
        # here could have been swapped for a symlink since.
        path = str(job.get("target_path"))
        if job.get("target_created"):
            dir_fd = job.get("target_dir_fd")
            if not isinstance(dir_fd, int) or isinstance(dir_fd, bool):
                raise UsageError("a created target needs its directory's descriptor from the agent")
            try:
                target = fill_created(spec, fd, path, dir_fd, str(job.get("target_name")))
            finally:
                os.close(dir_fd)
        else:
            target = target_from_fd(spec, fd, path, temp=bool(job.get("target_temp")))
        cpus = worker_cpus(spec.common.workers)

        def start_disk(timeline: Timeline) -> native.Run:
            return native.start_disk(_native_config(spec, target, engine, timeline, cpus))

        facts = {"engine": engine, "engine_note": note, **target.facts(), "target_notes": target.notes, "cpus": cpus}
        return Prepared(start_disk, [target], facts, spec.common.interval_ns, spec.common.workers)
    if kind not in ("udp-receive", "udp-send"):
        raise UsageError(f"unknown job kind {kind!r}")
    from loadgen.net.job import net_config, open_senders

    spec = NetSpec.from_wire(options)
    run_tag = int(job.get("run_tag", 0)) & 0xFFFFFFFF
    if kind == "udp-receive":
        socks = receiver_sockets(str(job.get("bind", "127.0.0.1")), spec.port, spec.receivers)
        cpus = worker_cpus(len(socks))
        facts = {"port": socks[0].getsockname()[1], "cpus": cpus}

        def start_net(timeline: Timeline) -> native.Run:
            return native.start_net(net_config(spec, timeline, run_tag, None, socks, [], cpus))

        def close() -> None:
            close_all(socks)
    else:
        if spec.target is None:
            raise UsageError("udp-send needs options.target")
        family, sockaddr = resolve(*spec.target)
        senders = open_senders(spec, family, sockaddr)
        cpus = senders.cpus
        flow_base = int(job.get("flow_base", 0))
        facts = {"cpus": cpus, "family": int(family), **senders.facts()}

        def start_net(timeline: Timeline) -> native.Run:
            return native.start_net(net_config(spec, timeline, run_tag, senders, [], cpus, [], flow_base=flow_base))

        close = senders.close

    class Sockets:
        @staticmethod
        def close() -> None:
            close()

    return Prepared(start_net, [Sockets], facts, spec.common.interval_ns, len(cpus))


def _write(frame: dict) -> None:
    sys.stdout.buffer.write(protocol.encode(frame))
    sys.stdout.buffer.flush()


class Control:
    """The frames the agent sends after the job: go, stop, or end of file."""

    def __init__(self) -> None:
        self.go: asyncio.Future = asyncio.get_running_loop().create_future()
        self.stopped = asyncio.Event()
        self.stop_ns: int | None = None

    def _stop(self, stop_ns: int) -> None:
        if self.stop_ns is None:
            self.stop_ns = stop_ns
        self.stopped.set()
        if not self.go.done():
            self.go.set_result(None)

    async def read(self, reader: asyncio.StreamReader, decoder: protocol.FrameDecoder) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                self._stop(native.now_ns())
                return
            for frame in decoder.feed(data):
                if frame.get("type") == "go" and not self.go.done():
                    self.go.set_result(frame.get("timeline"))
                elif frame.get("type") == "stop":
                    stop_ns = frame.get("stop_ns")
                    self._stop(stop_ns if isinstance(stop_ns, int) else native.now_ns())


def _timeline(t, interval_ns: int) -> Timeline:
    try:
        return Timeline(int(t["start_ns"]), int(t["ramp_end_ns"]), int(t["end_ns"]), interval_ns)
    except (KeyError, TypeError, ValueError):
        raise UsageError("go needs a timeline with start_ns, ramp_end_ns and end_ns") from None


async def run_job() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    decoder = protocol.FrameDecoder()
    frames: list[dict] = []
    try:
        while not frames:
            data = await reader.read(65536)
            if not data:
                raise UsageError("no job on stdin")
            frames = decoder.feed(data)
        job = frames.pop(0)
        prepared = prepare(job)
    except LoadgenError as e:
        _write({"type": "error", "code": "usage" if e.exit_code == 2 else "setup", "message": str(e)})
        return e.exit_code
    except (protocol.ProtocolError, TypeError, ValueError, ArithmeticError) as e:
        _write({"type": "error", "code": "usage", "message": str(e)})
        return 2
    except Exception as e:  # noqa: BLE001 - the agent must hear why, whatever it was
        _write({"type": "error", "code": "setup", "message": f"{type(e).__name__}: {e}"})
        return 1
    control = Control()
    listener = asyncio.create_task(control.read(reader, decoder))
    run = None
    try:
        layout = native.Layout()
        from loadgen.facts.sysinfo import basic_env

        _write({"type": "ready", "workers": prepared.workers, "layout": {"counters": layout.counters,
                                                                      "hists": layout.hists},
                "env": basic_env(), **prepared.facts})
        timeline = await control.go
        if timeline is None:  # stopped before it began
            return 0
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
            _write({"type": "snapshot", "t_ns": native.now_ns(), "words": encode_words(run.read())})
        err = await run.wait()
        _write({"type": "done", "t_ns": native.now_ns(), "setup_errno": -err if err < 0 else 0,
                "stop_ns": control.stop_ns, "words": encode_words(run.read()), "counters": around.finish()})
        return 0
    finally:
        listener.cancel()
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


def main() -> int:
    import uvloop

    return uvloop.run(run_job())


if __name__ == "__main__":
    raise SystemExit(main())
