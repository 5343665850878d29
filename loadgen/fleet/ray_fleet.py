"""Fleets on Ray: one loadgen actor per chosen node, driven as the controller drives agents.

Vocabulary:
  node      a live Ray node, named by its IP (ray.util.get_node_ip_address() on it).
  selector  how a user picks nodes: KEY=VALUE matches a node labelled KEY=VALUE
            (ray start --labels) or holding the custom resource KEY_VALUE
            (ray start --resources '{"KEY_VALUE": 1}'); a bare NAME matches a node
            holding the custom resource NAME.
  NodeActor the actor on a node. It answers time probes with its CLOCK_MONOTONIC
            and runs each job exactly as an agent does: the agent's checks
            (agent.validate_job, agent.open_disk_target), then a child process
            `python -m loadgen.fleet.agentjob` fed the same frames (job, go, stop).
  RayClient the controller's side of one actor. It has the AgentClient surface
            that net/job.py's paired run and disk/job.py's runs use (name, clock,
            info, prepare, go, close), so those runs drive Ray nodes unchanged.

Rules:
- ray is imported only here and only when --ray is used; without it the
  error is one line (RAY_MISSING), exit 1.
- Every call to an actor is bounded (CALL_TIMEOUT_S). While a job runs, the
  controller polls each actor every POLL_S for its latest snapshot; the poll is
  the heartbeat, and loadgen judges it itself: Ray declares a node dead only after
  health_check_failure_threshold failed checks health_check_period_ms apart (15 s
  by default), and fails a call to an actor at once only if its connection is
  reset, which a node cut off or frozen never does. A poll that fails (Ray saw the
  actor or its node die) fails that node's run, naming the node. So does a poll
  unanswered for HEARTBEAT_DEADLINE_S while another node answered meanwhile (a busy
  controller delays every answer, and must not blame whichever node it polled
  first), or for LONGEST_SILENCE_S in any case. The run then ends with what every
  node last reported (run/job.py), exit 1.
- Ray's own log lines never reach the user's terminal, where a node's death would
  bury loadgen's one line under them (and its stdout, where they would break a
  --json - document): the driver's "ray" logger and the messages the cluster
  publishes for the driver ("(raylet) A worker died...") go to ray_log_path()
  ($TMPDIR/loadgen-ray-PID.log, made only if Ray logs anything);
  Ray's core and every node keep their logs in Ray's session directory
  (/tmp/ray/session_latest/logs on each node), workers' output included
  (log_to_driver=False).
- A process that connected to Ray ends at once after its result is out
  (exit_at_once, called by the CLI): Ray's teardown at exit takes over a second.
- A placement group with STRICT_SPREAD holds one bundle per chosen node, each
  pinned by the node's own `node:IP` resource, so no two actors share a node.
"""
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from loadgen.errors import LoadgenError, SetupError, UsageError
from loadgen.fleet.clock import ClockEstimate, estimate

RAY_MISSING = "--ray needs the ray extra: pip install 'loadgen[ray]'"
CALL_TIMEOUT_S = 30.0     # an actor's prepare opens sockets or fills a target: generous
CONNECT_TIMEOUT_S = 60.0  # placing the actors: Ray starts a worker process on each node
POLL_S = 0.2
# Polls are answered in milliseconds; a node unheard for 1.5 s while another answered is lost. That leaves
# a loaded node's scheduler room, and with the rest of a stop (the receivers' drain, teardown) a lost node
# ends the run within 5 s (issue 15).
HEARTBEAT_DEADLINE_S = 1.5
LONGEST_SILENCE_S = 10.0    # ... and this long even when none answered (the controller itself stalled)
CLOSE_TIMEOUT_S = 2.0
CLOCK_SAMPLES = 8
NODE_SHARE = 0.001        # of a bundle's node:IP resource: pins the bundle there and takes no CPU, so a node
                          # started with --num-cpus 0 (a head kept for the controller) still takes an actor


def import_ray():
    try:
        import ray
    except ImportError:
        raise SetupError(RAY_MISSING) from None
    return ray


# ---- choosing nodes (pure) -------------------------------------------------------------------------

def matches(node: dict, selector: str) -> bool:
    """Whether a node (an entry of ray.nodes()) is picked by a selector (see the module docstring)."""
    labels = node.get("Labels") or {}
    resources = node.get("Resources") or {}
    if "=" in selector:
        key, value = selector.split("=", 1)
        return labels.get(key) == value or resources.get(f"{key}_{value}", 0) > 0
    return resources.get(selector, 0) > 0


def check_selector(selector: str | None, option: str) -> None:
    if selector is not None and (not selector or selector.startswith("=") or selector.endswith("=")):
        raise UsageError(f"invalid {option}: {selector!r} (LABEL=VALUE or RESOURCE)")


def alive(nodes: list[dict]) -> list[dict]:
    """The live nodes, in order of their IP (so a run's hosts come in a stable order)."""
    return sorted((n for n in nodes if n.get("Alive")), key=lambda n: _ip_key(n["NodeManagerAddress"]))


def _ip_key(ip: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in ip.replace(":", ".").split("."))


def pick(nodes: list[dict], selector: str | None, option: str) -> list[dict]:
    chosen = [n for n in nodes if selector is None or matches(n, selector)]
    if not chosen:
        raise UsageError(f"{option} {selector} matches no live Ray node")
    return chosen


def net_roles(nodes: list[dict], senders: str | None, receivers: str | None) -> tuple[dict, list[dict]]:
    """(the receiving node, the sending nodes). Without selectors the first node receives and the
    rest send; a node is never both (its senders would share its CPUs with the receiver)."""
    nodes = alive(nodes)
    recv = pick(nodes, receivers, "--ray-receivers")
    if len(recv) > 1 and receivers is not None:
        raise UsageError(f"--ray-receivers {receivers} matches {len(recv)} nodes; a run has one receiving node")
    receiver = recv[0]
    send = [n for n in pick(nodes, senders, "--ray-senders") if n["NodeID"] != receiver["NodeID"]]
    if not send:
        raise UsageError("no Ray node is left to send: the senders' selector matches only the receiving node")
    return receiver, send


# ---- the actor -------------------------------------------------------------------------------------

class NodeActor:
    """Runs on one node; async, so a poll is answered while a job is being prepared."""

    def __init__(self) -> None:
        self.job = None           # agent.Job: the child process
        self.latest: dict | None = None
        self.failed: str | None = None

    def node(self) -> dict:
        import socket

        import ray

        return {"ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id()}

    async def ping(self) -> int:
        from loadgen.run import native

        return native.now_ns()

    async def prepare(self, request: dict) -> dict:
        """The job's "ready" frame, or {"type": "error", "code": "usage"|"setup", "message"}."""
        from loadgen.fleet import agent, protocol

        try:
            job, spec = agent.validate_job(request, allowed_roots(request))
            import ray

            job["bind"] = ray.util.get_node_ip_address()
            fds: tuple[int, ...] = ()
            if job["kind"] == "disk":
                fields, fds = agent.open_disk_target(spec, allowed_roots(request))
                job.update(fields)
        except protocol.ProtocolError as e:
            return {"type": "error", "code": "usage" if e.code == "bad-job" else "setup", "message": str(e)}
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loadgen.fleet.agentjob", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, pass_fds=fds, start_new_session=True)
        finally:
            for fd in fds:
                os.close(fd)  # the child holds its own copy
        self.job = agent.Job(1, proc)
        self.job.proc.stdin.write(protocol.encode(job))
        await self.job.proc.stdin.drain()
        asyncio.get_running_loop().create_task(self._relay(protocol))
        try:
            return await asyncio.wait_for(asyncio.shield(self.job.ready), agent.JOB_READY_TIMEOUT_S)
        except TimeoutError:
            await self.job.kill()
            return {"type": "error", "code": "setup", "message": "the job did not start in time"}

    async def _relay(self, protocol) -> None:
        from loadgen.fleet.agent import describe_exit

        decoder = protocol.FrameDecoder()
        while True:
            data = await self.job.proc.stdout.read(65536)
            if not data:
                break
            for frame in decoder.feed(data):
                if not self.job.ready.done():
                    self.job.ready.set_result(frame)
                else:
                    self.latest = frame
        code = await self.job.proc.wait()
        if not self.job.ready.done():
            self.job.ready.set_result({"type": "error", "code": "setup", "message": describe_exit(code)})
        elif (self.latest or {}).get("type") != "done":
            self.failed = describe_exit(code)

    async def go(self, timeline: dict) -> None:
        await self.job.tell({"type": "go", "timeline": timeline})

    async def stop(self, stop_ns: int) -> None:
        if self.job is not None:
            await self.job.stop(stop_ns)

    async def poll(self) -> dict:
        """The heartbeat: this node's clock, its job's latest frame, and why it ended if it failed."""
        return {"agent_ns": await self.ping(), "frame": self.latest, "failed": self.failed}

    async def close(self) -> None:
        if self.job is not None and self.job.proc.returncode is None:
            await self.job.kill()

    def facts(self) -> dict:
        """What sysinfo records about this node: CPU, NICs with their drivers, disks, instance type."""
        from loadgen.facts import sysinfo

        return node_facts(sysinfo)


def allowed_roots(request: dict) -> list[Path]:
    """Where a Ray disk job may open its target: the directory holding the target it names, or the
    temp directory for a temporary file. On Ray the user owns every node, so the agent's
    --allow-path list has nothing to guard; the agent's beneath-the-root opening still applies."""
    target = (request.get("options") or {}).get("target")
    if isinstance(target, str) and target:
        return [Path(os.path.abspath(target)).parent]
    return [Path(tempfile.gettempdir())]


def node_facts(sysinfo) -> dict:
    net_dir = Path("/sys/class/net")
    nics = {}
    for name in sorted(os.listdir(net_dir)) if net_dir.is_dir() else []:
        if name != "lo":
            nics[name] = sysinfo.nic(name)
    block = Path("/sys/block")
    disks = {}
    for name in sorted(os.listdir(block)) if block.is_dir() else []:
        if not name.startswith(("loop", "ram", "zram", "dm-")):
            disks[name] = sysinfo.disk(name)
    return {"env": sysinfo.basic_env(), "nics": nics, "disks": disks, "instance_type": instance_type()}


def instance_type(root: Path = Path("/sys/class/dmi/id")) -> str | None:
    """EC2's instance type from DMI (product_name reads "c6in.8xlarge" on Nitro), or None elsewhere."""
    try:
        vendor = (root / "sys_vendor").read_text().strip()
        product = (root / "product_name").read_text().strip()
    except OSError:
        return None
    return product if vendor == "Amazon EC2" and product else None


# ---- the controller's side ---------------------------------------------------------------------------

async def _call(ref, what: str, timeout_s: float = CALL_TIMEOUT_S):
    """Await one actor call, bounded; Ray's own errors (a dead actor or node) become SetupError."""
    ray = import_ray()
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except TimeoutError:
        raise SetupError(f"{what}: no answer within {timeout_s:.0f}s") from None
    except (ray.exceptions.RayError, ConnectionError) as e:
        raise SetupError(f"{what}: {describe_ray_error(e)}") from None


def silent(silent_s: float, others_heard: bool) -> bool:
    """Whether a node whose poll has gone unanswered for silent_s is lost (see the module docstring)."""
    return (silent_s >= HEARTBEAT_DEADLINE_S and others_heard) or silent_s >= LONGEST_SILENCE_S


def describe_ray_error(e: Exception) -> str:
    """One short line for Ray's error about a dead actor or node: its first sentence, and its kind."""
    first = (str(e).splitlines() or [""])[0].split(". ")[0].split(": ")[0].strip()
    return f"{first} ({type(e).__name__})" if first else type(e).__name__


def _read_late(reply: asyncio.Future) -> None:
    if not reply.cancelled():
        reply.exception()


class Pulse:
    """When each node of a run was last heard (the event loop's clock, seconds)."""

    def __init__(self) -> None:
        self.heard: dict[str, float] = {}

    def others_heard_since(self, name: str, since_s: float) -> bool:
        return any(t > since_s for n, t in self.heard.items() if n != name)


class RayClient:
    """One node's actor, as a fleet.remote.HostClient: the surface of AgentClient that the runs use."""

    def __init__(self, actor, node: dict, pulse: Pulse | None = None) -> None:
        self.pulse = pulse or Pulse()
        self.actor, self.node = actor, node
        self.name = f"{node['ip']} (ray node {node['node_id'][:8]})"
        self.info = {"hostname": node.get("hostname"), "ray_node_id": node["node_id"], "ip": node["ip"]}
        self.clock = ClockEstimate(0, 0, 0)
        self.runs: dict = {}
        self.error: str | None = None
        self._tasks: set[asyncio.Task] = set()
        self.last_heard = 0.0

    @classmethod
    async def start(cls, actor, pulse: Pulse) -> "RayClient":
        node = await _call(actor.node.remote(), "a Ray actor did not start", CONNECT_TIMEOUT_S)
        client = cls(actor, node, pulse)
        client.clock = await client.measure_clock()
        return client

    async def measure_clock(self) -> ClockEstimate:
        from loadgen.run import native

        samples = []
        for _ in range(CLOCK_SAMPLES):
            t0 = native.now_ns()
            agent_ns = await _call(self.actor.ping.remote(), f"the node {self.name}")
            samples.append((t0, int(agent_ns), native.now_ns()))
        return estimate(samples)

    def spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def quiet_request(self, msg: dict) -> None:
        """RemoteRun.stop's request; a failure shows up in the heartbeat."""
        if msg.get("type") == "stop":
            try:
                await _call(self.actor.stop.remote(msg.get("stop_ns")), f"the node {self.name}")
            except LoadgenError:
                pass

    async def prepare(self, job: dict):
        from loadgen.fleet.remote import RemoteRun

        ready = await _call(self.actor.prepare.remote(job), f"the node {self.name}")
        if ready.get("type") == "error":
            error = UsageError if ready.get("code") == "usage" else SetupError
            raise error(f"the node {self.name}: {ready.get('message')}")
        run = RemoteRun(self, 1, ready)
        self.runs[run.jid] = run
        self.spawn(self._heartbeat(run))
        return run

    async def go(self, run, timeline) -> None:
        t = {k: self.clock.to_agent(getattr(timeline, k)) for k in ("start_ns", "ramp_end_ns", "end_ns")}
        await _call(self.actor.go.remote(t), f"the node {self.name}")

    async def _poll(self) -> dict | str:
        """The actor's poll reply, or why this node counts as lost (silent(): loadgen's own deadline)."""
        ray = import_ray()
        loop = asyncio.get_running_loop()
        sent_s = loop.time()
        reply = asyncio.ensure_future(self.actor.poll.remote())
        while not reply.done():
            await asyncio.wait({reply}, timeout=POLL_S)
            silent_s = loop.time() - sent_s
            if not reply.done() and silent(silent_s, self.pulse.others_heard_since(self.name, sent_s)):
                # Ray may still answer, with the node's death: read it then, so it is not logged as unhandled.
                reply.add_done_callback(_read_late)
                return f"lost the Ray node {self.name}: no heartbeat for {silent_s:.1f}s"
        try:
            out = reply.result()
        except (ray.exceptions.RayError, ConnectionError) as e:
            return f"lost the Ray node {self.name}: {describe_ray_error(e)}"
        self.pulse.heard[self.name] = loop.time()
        return out

    async def _heartbeat(self, run) -> None:
        while not run.done():
            reply = await self._poll()
            if isinstance(reply, str):
                self.error = reply
                run.fail(reply)
                return
            if reply.get("frame"):
                run.update(reply["frame"])
            if reply.get("failed") and not run.done():
                run.fail(f"{self.name}: {reply['failed']}")
                return
            if not run.done():
                await asyncio.sleep(POLL_S)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        # A lost node has nothing to close, and a job that sent its final frame has ended; removing the
        # placement group ends the actor, and a job process whose actor is gone stops (its stdin closes).
        if self.error or (self.runs and all(r.done() for r in self.runs.values())):
            return
        try:
            await _call(self.actor.close.remote(), f"the node {self.name}", CLOSE_TIMEOUT_S)
        except LoadgenError:
            pass


class Fleet:
    """Actors placed on chosen nodes (one each, STRICT_SPREAD), and the connection to the cluster."""

    def __init__(self, ray, group, clients: list[RayClient]) -> None:
        self.ray, self.group, self.clients = ray, group, clients

    @classmethod
    async def place(cls, ray, nodes: list[dict]) -> "Fleet":
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundles = [{f"node:{n['NodeManagerAddress']}": NODE_SHARE} for n in nodes]
        group = placement_group(bundles, strategy="STRICT_SPREAD")
        fleet = cls(ray, group, [])
        try:
            try:
                await asyncio.wait_for(group.ready(), CONNECT_TIMEOUT_S)
            except TimeoutError:
                raise SetupError(f"Ray could not place one actor on each of {len(nodes)} nodes "
                                 f"within {CONNECT_TIMEOUT_S:.0f}s") from None
            actor_class = ray.remote(NodeActor)
            actors = [actor_class.options(
                num_cpus=0, max_restarts=0, max_concurrency=16,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)).remote()
                for i in range(len(nodes))]
            pulse = Pulse()
            fleet.clients = list(await asyncio.gather(*(RayClient.start(a, pulse) for a in actors)))
        except BaseException:
            fleet.close()
            raise
        return fleet

    def by_ip(self) -> dict[str, RayClient]:
        return {c.node["ip"]: c for c in self.clients}

    def close(self) -> None:
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(self.group)   # ends its actors
        except Exception:  # noqa: BLE001 - a cluster already gone has nothing left to remove
            pass


_connected = False   # whether this process has connected to a Ray cluster (exit_at_once)


def ray_log_path() -> Path:
    """Where this controller's Ray log lines go (the nodes keep theirs in /tmp/ray/session_latest/logs)."""
    return Path(tempfile.gettempdir()) / f"loadgen-ray-{os.getpid()}.log"


def keep_ray_quiet() -> None:
    """Ray's driver logger to ray_log_path() instead of the terminal (see the module docstring),
    at INFO, so the file has the whole story; and with it the messages Ray's error listener prints.

    That listener (a thread of every driver, whatever log_to_driver says) prints what the cluster
    publishes for the driver, such as "(raylet) A worker died or was killed...", to the driver's
    stdout, where it would also break a --json - document. It prints through
    ray._private.worker.print_to_stdstream, Ray's one seam for it, which goes to the log instead."""
    worker = sys.modules.get("ray._private.worker")
    if worker is not None and hasattr(worker, "print_to_stdstream"):
        worker.print_to_stdstream = _to_ray_log
    logger = logging.getLogger("ray")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()     # a stream handler's close leaves its stream open
    handler = logging.FileHandler(ray_log_path(), delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _to_ray_log(data: dict, ignore_prefix: bool = False) -> None:
    """print_to_stdstream's stand-in: each line Ray meant for the terminal, into Ray's log."""
    logger = logging.getLogger("ray")
    for line in data.get("lines") or []:
        logger.warning("(%s) %s", data.get("pid"), line)


def connect(address: str):
    """ray, connected to the cluster at address ("auto": the one this host is part of)."""
    global _connected
    ray = import_ray()
    if ray.is_initialized():
        return ray
    keep_ray_quiet()
    try:
        # ray.init keeps the logger's handlers (configure_logging=False would clear them, leaving
        # Python's last-resort handler to print to stderr); it sets their format and the level.
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, ray.exceptions.RayError, ValueError, RuntimeError) as e:
        raise SetupError(f"cannot connect to the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    keep_ray_quiet()
    _connected = True
    return ray


def exit_at_once(code: int) -> None:
    """End a process that connected to Ray now, its output flushed. After ray.shutdown() Ray's library
    still takes over a second to tear itself down at exit (in its C++ core, past every Python
    handler), which a user waits through with the result already written."""
    if not _connected:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def nodes(address: str) -> tuple[object, list[dict]]:
    ray = connect(address)
    return ray, alive(ray.nodes())


class _Connector:
    """connect(host, port) for the runs: the client of the node with that IP (port unused)."""

    def __init__(self, fleet: Fleet) -> None:
        self.clients = fleet.by_ip()

    async def __call__(self, host: str, port: int) -> RayClient:
        return self.clients[host]


def _ray_config(address: str, fleet: Fleet, roles: dict[str, str]) -> dict:
    return {"address": address, "nodes": [{"ip": c.node["ip"], "node_id": c.node["node_id"],
                                           "hostname": c.node["hostname"], "role": roles[c.node["ip"]]}
                                          for c in fleet.clients]}


async def run_net(spec, address: str, senders: str | None, receivers: str | None, hlog_path=None, watch=None,
                  metrics=None) -> dict:
    """A paired net run across Ray nodes: one receiving node, the sending nodes as clients."""
    from loadgen.net.job import run_net_paired

    ray, live = nodes(address)
    try:
        receiver, sending = net_roles(live, senders, receivers)
        fleet = await Fleet.place(ray, [receiver, *sending])
        try:
            ips = [n["NodeManagerAddress"] for n in sending]
            peer = (receiver["NodeManagerAddress"], 0)
            doc = await run_net_paired(spec, peer, [(ip, 0) for ip in ips], _Connector(fleet), hlog_path, watch,
                                       metrics=metrics)
        finally:
            fleet.close()
    finally:
        ray.shutdown()
    roles = {peer[0]: "receiver"} | {ip: "sender" for ip in ips}
    doc["config"] |= {"peer": peer[0], "clients": ips, "ray": _ray_config(address, fleet, roles)}
    doc["config"]["target_address"] = f"{peer[0]}:{doc['config']['target_address'].rsplit(':', 1)[1]}"
    return doc


async def run_disk(spec, address: str, on: str | None, hlog_path=None, watch=None, metrics=None) -> dict:
    """The disk job on every chosen node at once; a section per node and the total."""
    from loadgen.disk.job import run_disk_hosts

    ray, live = nodes(address)
    try:
        chosen = pick(live, on, "--ray-nodes")
        fleet = await Fleet.place(ray, chosen)
        try:
            doc = await run_disk_hosts(spec, fleet.clients, hlog_path, watch, metrics=metrics)
        finally:
            fleet.close()
    finally:
        ray.shutdown()
    doc["config"]["ray"] = _ray_config(address, fleet, {c.node["ip"]: "disk" for c in fleet.clients})
    return doc


async def status(address: str) -> list[dict]:
    """Each live node's facts, gathered by a short-lived actor on it."""
    ray, live = nodes(address)
    try:
        fleet = await Fleet.place(ray, live)
        try:
            facts = await asyncio.gather(*(_call(c.actor.facts.remote(), f"the node {c.name}") for c in fleet.clients))
        finally:
            fleet.close()
    finally:
        ray.shutdown()
    out = []
    for n, c, f in zip(live, fleet.clients, facts):
        custom = {k: v for k, v in (n.get("Resources") or {}).items()
                  if k not in ("CPU", "GPU", "memory", "object_store_memory") and not k.startswith("node:")}
        out.append({"ip": c.node["ip"], "node_id": c.node["node_id"], "hostname": c.node["hostname"],
                    "labels": {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/")},
                    "resources": custom, "clock": c.clock.as_dict(), **f})
    return out


def format_status(nodes: list[dict]) -> str:
    """A few lines per node: its address and selectors, then its NICs and disks."""
    lines = []
    for n in nodes:
        env = n.get("env") or {}
        picks = [f"{k}={v}" for k, v in n["labels"].items()] + sorted(n["resources"])
        lines.append(f"{n['ip']}  {n['hostname']}  node {n['node_id'][:8]}  "
                     f"{n.get('instance_type') or 'not EC2'}  cpus={env.get('cpus')}"
                     + (f"  [{', '.join(picks)}]" if picks else ""))
        for name, nic in n["nics"].items():
            lines.append(f"  nic  {name}: driver {nic.get('driver') or '?'}, speed {nic.get('speed_mbps') or '?'} Mb/s")
        for name, d in n["disks"].items():
            lines.append(f"  disk {name}: {d.get('model') or '?'}, driver {d.get('driver') or '?'}")
    return "\n".join(lines)
