"""Where paired-run tests put their processes: the host's loopback, or network namespaces they create.

Vocabulary:
- an Agent is a `loadgen serve --listen` child, on 127.0.0.1 or inside a namespace;
  its job processes (loadgen.fleet.agentjob) are its children, found through /proc.
- a Controller is a `loadgen net/disk` child left running; with tty=True its stderr is
  a pseudo-terminal, so its live progress line says when datagrams are being sent or
  I/Os done (on the shared loopback, nothing else can tell that this run's datagrams flow).
- a Hub is a set of namespaces named lgt-<pid>-<n>-<name>, each with one veth
  (eth0, 10.77.0.x/24) joined to a bridge in the hub's own namespace, lo up, and
  permanent neighbour entries for the other members.
  No address outside 127.0.0.1 and 10.77.0.0/24 is ever used, and 10.77.0.0/24
  exists only inside those namespaces.

Everything started or created here is ended in the owner's teardown, even after
a failure: agents are stopped, their job processes are killed by pid if they
outlive them, namespaces are deleted after the processes inside them end. Waits
are bounded so that a hung child fails the test; no test asserts how long
anything took.
"""
import itertools
import json
import os
import pty
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

RUN_TIMEOUT_S = 60       # a whole controller run, setup and teardown included
READY_TIMEOUT_S = 20     # an agent printing its listening line
POLL_S = 0.05
LISTENING = re.compile(r"^loadgen agent \S+: listening on (\S+):(\d+)")
PROGRESS = re.compile(r"^\[\s*[\d.]+s/[\d.]+s\] (\S+) (?:pps|IOPS)")   # loadgen/run/progress.py


def loadgen_argv(*args: str, ns: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "loadgen", *args]
    return ["ip", "netns", "exec", ns, *argv] if ns else argv


def clean_env(**extra: str) -> dict:
    """The environment for a child: no LOADGEN_TOKEN unless a test gives one."""
    env = {k: v for k, v in os.environ.items() if k != "LOADGEN_TOKEN"}
    env.update(extra)
    return env


def write_token(path: Path) -> Path:
    path.write_text(secrets.token_hex(16) + "\n")
    return path


def wait_until(predicate, timeout_s: float, what: str):
    """Poll predicate until it returns something true; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s}s waiting for {what}")
        time.sleep(POLL_S)


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def error_line(self, code: int = 1) -> str:
        """The CLI's error contract: this exit code and one "loadgen: " line on stderr, no traceback."""
        assert self.returncode == code, f"exit {self.returncode}, stderr: {self.stderr!r}"
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("loadgen: "), self.stderr
        return lines[0]


def run_loadgen(cwd: Path, *args: str, ns: str | None = None, env: dict | None = None,
                timeout_s: float = RUN_TIMEOUT_S) -> Finished:
    p = subprocess.run(loadgen_argv(*args, ns=ns), cwd=cwd, capture_output=True, text=True,
                       env=env or clean_env(), timeout=timeout_s)
    return Finished(p.returncode, p.stdout, p.stderr)


class Controller:
    """A `loadgen` controller left running in the background; stdout goes to a file.

    tty=True gives it a pseudo-terminal for stderr, so it shows its live progress line:
    measuring() then says whether it has reported an interval with datagrams sent. At the
    end, progress lines are left out of stderr, so the error contract can be checked."""

    def __init__(self, cwd: Path, *args: str, ns: str | None = None, env: dict | None = None,
                 name: str = "controller", tty: bool = False) -> None:
        self.out_path, self.err_path = cwd / f"{name}.out", cwd / f"{name}.err"
        self._tty: bytearray | None = None
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            if not tty:
                self.proc = subprocess.Popen(loadgen_argv(*args, ns=ns), cwd=cwd, stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL, env=env or clean_env())
                return
            master, slave = pty.openpty()
            try:
                self.proc = subprocess.Popen(loadgen_argv(*args, ns=ns), cwd=cwd, stdout=out, stderr=slave,
                                             stdin=subprocess.DEVNULL, env=env or clean_env())
            finally:
                os.close(slave)
        self._tty = bytearray()
        self._reader = threading.Thread(target=self._read_tty, args=(master,), daemon=True)
        self._reader.start()

    def _read_tty(self, master: int) -> None:
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:      # EIO: every writer closed the terminal
                    return
                if not data:
                    return
                self._tty += data
        finally:
            os.close(master)

    def _tty_lines(self) -> list[str]:
        text = bytes(self._tty).decode(errors="replace")
        return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]

    def measuring(self) -> bool:
        """Whether an interval line has shown datagrams sent or I/Os done. With stdout in a
        file, the lines go there (a line per interval, as for any pipe); stderr then holds
        the live display only when stdout carries --json - or --hlog -."""
        lines = self._tty_lines() + self.out_path.read_text(errors="replace").splitlines()
        return any(m and m.group(1) != "0" for m in map(PROGRESS.match, lines))

    def finish(self, timeout_s: float = RUN_TIMEOUT_S) -> Finished:
        self.proc.wait(timeout=timeout_s)
        if self._tty is None:
            stderr = self.err_path.read_text()
        else:
            self._reader.join(timeout=10)
            stderr = "".join(line + "\n" for line in self._tty_lines() if not line.startswith("["))
        return Finished(self.proc.returncode, self.out_path.read_text(), stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=RUN_TIMEOUT_S)


# ---- /proc: processes and their UDP sockets ---------------------------------------------------------

def alive(pid: int) -> bool:
    """Whether pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(entry))
    return out


def is_agent_job(pid: int) -> bool:
    return "loadgen.fleet.agentjob" in _cmdline(pid) and alive(pid)


def udp_ports(pid: int) -> set[int]:
    """Local ports of the UDP sockets pid holds, as its own network namespace sees them."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[len("socket:[") : -1]))
    return {port for port, inode in udp_sockets(pid) if inode in inodes}


def udp_sockets(pid: int) -> list[tuple[int, int]]:
    """(local port, inode) of every UDP socket in pid's network namespace."""
    out = []
    for table in ("udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            out.append((int(f[1].rsplit(":", 1)[1], 16), int(f[9])))
    return out


def io_counter(pid: int, name: str) -> int:
    """One of /proc/<pid>/io's counters (wchar: bytes the process wrote to files and pipes)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    raise KeyError(name)


def udp_in_datagrams(pid: int) -> int:
    """Datagrams delivered to UDP sockets so far in pid's network namespace (/proc/net/snmp)."""
    lines = [line.split() for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
             if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("InDatagrams")])


# ---- agents ------------------------------------------------------------------------------------------

class Agent:
    """A running `loadgen serve --listen`; stdout and stderr go to files in its directory."""

    def __init__(self, cwd: Path, listen: str, *args: str, ns: str | None = None, env: dict | None = None,
                 name: str = "agent") -> None:
        self.out_path, self.err_path = cwd / f"{name}.out", cwd / f"{name}.err"
        self.seen_jobs: set[int] = set()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(loadgen_argv("serve", "--listen", listen, *args, ns=ns), cwd=cwd,
                                         stdout=out, stderr=err, env=env or clean_env())
        try:
            self.host, self.port = self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> tuple[str, int]:
        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited with {self.proc.returncode}: {self.err_path.read_text()!r}")
            for line in self.out_path.read_text().splitlines():
                m = LISTENING.match(line)
                if m:
                    return m.group(1), int(m.group(2))
            return None

        return wait_until(listening, READY_TIMEOUT_S, "the agent's listening line")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def jobs(self) -> list[int]:
        """The agent's live job processes (remembered, so teardown can end them)."""
        found = [p for p in children(self.pid) if is_agent_job(p)]
        self.seen_jobs.update(found)
        return found

    def job_with_socket(self) -> tuple[int, int] | None:
        """(pid, UDP port) of a job process that holds a UDP socket, or None."""
        for pid in self.jobs():
            ports = udp_ports(pid)
            if ports:
                return pid, min(ports)
        return None

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> None:
        """Teardown: SIGTERM (the agent ends its jobs), SIGKILL if it lingers, then any job left over."""
        self.jobs()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=RUN_TIMEOUT_S)
        for pid in self.seen_jobs:
            if is_agent_job(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def wait_for_traffic(pid: int, datagrams: int = 1000, timeout_s: float = 20) -> None:
    """Until datagrams more arrive in pid's namespace: the run is under way, not only prepared.

    The count is the whole namespace's: only meaningful in a namespace the test owns."""
    base = udp_in_datagrams(pid)
    wait_until(lambda: udp_in_datagrams(pid) - base >= datagrams, timeout_s, f"{datagrams} datagrams to arrive")


def wait_for_pause(pid: int, counter: str, quiet_s: float, timeout_s: float = 20) -> None:
    """Until pid's /proc io counter has grown and then stood still for quiet_s.

    An agent job writes a snapshot to the agent every 200 ms while it runs, and nothing from
    the stop until its final report: a pause in its wchar is the stop."""
    base = io_counter(pid, counter)
    wait_until(lambda: io_counter(pid, counter) > base, timeout_s, f"{counter} of {pid} to grow")
    last = [io_counter(pid, counter), time.monotonic()]

    def still() -> bool:
        n = io_counter(pid, counter)
        if n != last[0]:
            last[:] = [n, time.monotonic()]
            return False
        return time.monotonic() - last[1] >= quiet_s

    wait_until(still, timeout_s, f"{counter} of {pid} to stand still for {quiet_s}s")


# ---- namespaces ---------------------------------------------------------------------------------------

SUBNET = "10.77.0"
_hub_ids = itertools.count()


def _ip(*args: str) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def delete_namespaces(names: list[str]) -> None:
    """Kill what still runs inside each namespace (only the test's own children can be there),
    then delete them, last made first (a veth inside goes with its namespace); empties names."""
    for ns in reversed(names):
        p = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
        for pid in p.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in reversed(names):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    names.clear()


def netns_unavailable() -> str | None:
    """Why this host cannot run the namespace tests, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"lgt-{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError) as e:
        return f"ip netns add fails here: {e}"
    _ip("netns", "del", probe)
    return None


class Hub:
    """Namespaces on one bridge; members get SUBNET.<host>/24 on their eth0."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"lgt-{os.getpid()}-{next(_hub_ids)}"
        self.hub = f"{self.prefix}-hub"
        self.members: dict[str, str] = {}   # name -> namespace
        self.addresses: dict[str, str] = {}
        self._macs: dict[str, str] = {}
        self._created: list[str] = []
        try:
            self._add_ns(self.hub)
            try:
                _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            except RuntimeError as e:
                pytest.skip(f"cannot create a bridge: {e}")
            _ip("-n", self.hub, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._created.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def add(self, name: str, host: int) -> str:
        """A member namespace; returns its address."""
        ns = f"{self.prefix}-{name}"
        self._add_ns(ns)
        port = f"p-{name}"[:15]
        _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        address = f"{SUBNET}.{host}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        mac = json.loads(_ip("-j", "-n", ns, "link", "show", "eth0"))[0]["address"]
        # Permanent neighbours both ways: the first datagrams of a run do not wait on ARP
        # (the kernel queues only a few while it resolves and drops the rest).
        for other, other_address in self.addresses.items():
            other_ns = self.members[other]
            _ip("-n", ns, "neigh", "replace", other_address, "lladdr", self._macs[other], "dev", "eth0",
                "nud", "permanent")
            _ip("-n", other_ns, "neigh", "replace", address, "lladdr", mac, "dev", "eth0", "nud", "permanent")
        self.members[name], self.addresses[name], self._macs[name] = ns, address, mac
        return address

    def ns(self, name: str) -> str:
        return self.members[name]

    def cut(self, name: str) -> None:
        """Take a member's only link down: it is cut off from every other member."""
        _ip("-n", self.members[name], "link", "set", "eth0", "down")

    def close(self) -> None:
        """Kill whatever still runs inside (only this hub's children can be there), then delete."""
        delete_namespaces(self._created)
