"""A real Ray cluster for tests: a head and workers, each in its own network namespace (tests/netns.py's
Hub: its own IP on a veth to a shared bridge) and its own PID namespace.

The PID namespace is what makes `ray stop --force` in one node's namespace stop that node alone:
ray stop finds its processes through /proc, and `unshare --pid --mount-proc` gives each node a
/proc showing only its own. Killing a node's PID namespace init ends everything in it, so
teardown leaves nothing behind even when ray stop does not finish.

Every wait is bounded; close() runs ray stop --force in every node's namespace, then kills
their inits, then deletes the namespaces.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from netns import Hub

HEAD_PORT = 6379
START_TIMEOUT_S = 90      # ray start on a busy 2-CPU machine
NODES_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
START_ATTEMPTS = 2
OBJECT_STORE_BYTES = 100_000_000
# Keep each node small: no memory monitor killing workers on a shared machine, no prestarted workers.
RAY_ENV = {"RAY_memory_monitor_refresh_ms": "0", "RAY_num_prestart_python_workers": "0",
           "RAY_enable_worker_prestart": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_worker_register_timeout_seconds": "120"}


def ray_unavailable() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "needs ray (pip install 'loadgen[ray]')"
    if shutil.which("ray") is None or shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "needs the ray command and util-linux's unshare and nsenter"
    return None


class Node:
    def __init__(self, name: str, ns: str, ip: str, proc: subprocess.Popen, log: Path) -> None:
        self.name, self.ns, self.ip, self.proc, self.log = name, ns, ip, proc, log

    def init_pid(self) -> int | None:
        """The PID namespace's init (unshare's child), whose namespaces the node's processes share."""
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def run(self, *argv: str, timeout_s: float = STOP_TIMEOUT_S) -> subprocess.CompletedProcess | None:
        """A command inside this node's network, PID and mount namespaces."""
        init = self.init_pid()
        if init is None:
            return None
        return subprocess.run(["nsenter", "-t", str(init), "--net", "--pid", "--mount", *argv],
                              capture_output=True, text=True, timeout=timeout_s, env=node_env())

    def pids(self, name: str) -> list[int]:
        """The node's processes whose program is name (raylet, gcs_server) or whose title starts with it
        (a Ray worker's, ray::NodeActor), as this host numbers them."""
        p = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True, timeout=STOP_TIMEOUT_S)
        out = []
        for pid in p.stdout.split():
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            program = argv0.decode(errors="replace")
            if os.path.basename(program) == name or program.startswith(name):
                out.append(int(pid))
        return out

    def stop(self) -> None:
        """ray stop --force on this node alone."""
        try:
            self.run("ray", "stop", "--force")
        except subprocess.TimeoutExpired:
            pass

    def kill(self) -> None:
        init = self.init_pid()
        if init is not None:
            try:
                os.kill(init, signal.SIGKILL)   # ends every process in its PID namespace
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass


def node_env() -> dict:
    env = dict(os.environ)
    env.update(RAY_ENV)
    return env


class Cluster:
    """head + workers; workers: name -> extra ray start arguments (resources, labels).

    cpus: name -> a CPU list (taskset -c) the node runs on, as if it were a machine of its own: a
    job pins its workers to the first CPUs it may use, so nodes sharing every CPU would all pin to
    CPU 0. prefix: the namespaces' names start with it (default: tests/netns.py's Hub's)."""

    def __init__(self, tmp: Path, workers: dict[str, list[str]], cpus: dict[str, str] | None = None,
                 prefix: str | None = None) -> None:
        self.hub = Hub(prefix)
        self.nodes: dict[str, Node] = {}
        self.tmp = tmp
        self.cpus = cpus or {}
        try:
            self._start("head", 2, ["--head", "--port", str(HEAD_PORT), "--include-dashboard", "false"])
            for i, (name, extra) in enumerate(workers.items()):
                # One at a time: ray start gives a raylet 30 s to register (ray/_private/node.py, not
                # configurable), which a busy 2-CPU machine starting several at once can miss.
                self._start(name, 3 + i, ["--address", f"{self.nodes['head'].ip}:{HEAD_PORT}", *extra])
            self.wait_nodes(1 + len(workers))
        except BaseException:
            self.close()
            raise

    @property
    def address(self) -> str:
        return f"{self.nodes['head'].ip}:{HEAD_PORT}"

    def _start(self, name: str, host: int, args: list[str], attempts: int = START_ATTEMPTS) -> None:
        ip = self.hub.add(name, host)
        for attempt in range(attempts):
            try:
                self._launch(name, ip, args, attempt)
                return
            except RuntimeError:
                self.nodes[name].stop()
                self.nodes[name].kill()
                if attempt == attempts - 1:
                    raise

    def _launch(self, name: str, ip: str, args: list[str], attempt: int) -> None:
        ns = self.hub.ns(name)
        log = self.tmp / f"ray-{name}-{attempt}.log"
        pin = ["taskset", "-c", self.cpus[name]] if name in self.cpus else []
        argv = ["ip", "netns", "exec", ns, *pin, "unshare", "--pid", "--fork", "--mount-proc",
                "ray", "start", "--block", "--node-ip-address", ip, "--num-cpus", "1",
                "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats", *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=node_env())
        self.nodes[name] = Node(name, ns, ip, proc, log)
        self._wait_log(self.nodes[name], "Ray runtime started")

    def _wait_log(self, node: Node, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if text in node.log.read_text(errors="replace"):
                return
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray start on {node.name} exited: {node.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"ray start on {node.name} did not start within {START_TIMEOUT_S}s")

    def alive_nodes(self) -> list[dict]:
        """ray.nodes() of the live nodes, asked by a driver in the head's namespace."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
                "print(json.dumps([n for n in ray.nodes() if n['Alive']], default=str))" % self.address)
        p = subprocess.run(["ip", "netns", "exec", self.nodes["head"].ns, sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=NODES_TIMEOUT_S, env=node_env())
        if p.returncode:
            return []
        return json.loads(p.stdout.strip().splitlines()[-1])

    def wait_nodes(self, n: int) -> None:
        deadline = time.monotonic() + NODES_TIMEOUT_S
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.proc.poll() is not None:
                    raise RuntimeError(f"ray start on {node.name} exited: "
                                       f"{node.log.read_text(errors='replace')[-2000:]}")
            if len(self.alive_nodes()) >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {n} nodes within {NODES_TIMEOUT_S}s")

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.stop()
        for node in reversed(list(self.nodes.values())):
            node.kill()
        self.hub.close()
