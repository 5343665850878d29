"""Every shell example in README.md runs, as a user following it from a clean clone would.

The examples are the lines of the README's fenced code blocks (comment lines and blank
ones aside). EXAMPLES below names each by its exact text and says how it runs or why it
cannot run here; an example the table does not name, or a name no longer in the README,
fails test_every_example_is_handled, so no example goes untested by accident.

The examples of one section run in order in one temporary directory, as a reader runs
them (`--prefill` finds the file the line above made). `loadgen` is this tree's, run by
the interpreter running the tests. A line is rewritten only by these rules:
- pip: a `pip install ... &&` step is dropped (CI installs first; .ci/run).
- time: `loadgen net|disk` gets `--duration 1s --ramp 0s`, and any `--duration` is 1s;
  `loadgen run P` gets `--set duration=1s --set ramp=0s`, or, for a profile that searches
  for its knee, 1 s trials, at most 3, with no confirmation or load curve. The examples
  show that a command works, not what it measures.
- size: `loadgen disk` gets `--size 16m` (its temp or new target) and any `--size Ng` is
  16m; a disk profile gets `--set size=16m`. Filling 1 GiB would only take time.
- places: hosts (hostA, hostB, hostC, far-host) are servers this test starts on
  127.0.0.1, each from the section's own `loadgen serve` line with its address made
  127.0.0.1 and its ports 0 (free ones, read from its "listening on" line); absolute
  paths (/etc/loadgen.token, /mnt/nvme) are made inside the section's directory (the
  controller's "copy" of the token is then the same file); `profiles/` is the clone's;
  an NVMe device is a loop device over a 32 MiB file (root only; reads only).
Each run must exit as the table says (0 unless the README documents another outcome)
and every JSON it writes must parse; result documents go through the schema.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loadgen.results import documents
from netns import wait_until

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RUN_TIMEOUT_S = 300    # a bound on a hung child, never asserted: `loadgen probe` alone takes half a minute on a busy host
READY_TIMEOUT_S = 30
# An agent's line, or one of `loadgen serve`'s (a stream port's, then an echo port's).
LISTENING = re.compile(r"^loadgen (?:agent \S+|serve): listening on (\S+):(\d+)(?: (stream|echo))?")
# Which of a server line's ports each listening line answers for.
PORT_OPTIONS = {None: r"--listen \S+:(\d+)", "stream": r"--port (\d+)", "echo": r"--echo-port (\d+)"}
HOSTS = ("hostA", "hostB", "hostC", "far-host")


@dataclass
class Example:
    """How one README line runs here.

    expect: the exit codes the README allows for it; makes: files it writes, each parsed
    (result documents through the schema); stdout: "json" (one document) or "numbers"
    (one per line); serve: a server this section's hosts are started from; skip: why it
    cannot run here; needs: a program it needs besides loadgen; root: it needs a loop device;
    before: commands (under the same rules) that make the inputs it reads."""
    expect: tuple[int, ...] = (0,)
    makes: tuple[str, ...] = ()
    stdout: str | None = None
    serve: bool = False
    skip: str | None = None
    needs: str | None = None
    root: bool = False
    before: tuple[str, ...] = ()


# A claim's check passes or fails on what this machine measured (0 or 1); 2 or 3 would mean the example is broken.
VERDICT = (0, 1)
RAY = "needs a Ray cluster of instances: tests/fleet/test_ray.py runs it on a 3-node cluster in namespaces"
SEARCH = ("a search of full-length trials takes many minutes: tests/net/test_search_netns.py and "
          "tests/test_cli_search.py run searches with 1 s trials")

EXAMPLES: dict[str, Example] = {
    # Quick start
    "pip install -e '.[test]' && loadgen disk --duration 5s && loadgen net --pps 100k --duration 5s": Example(),
    "python3 -m pytest -q tests": Example(skip="the test suite itself: .ci/run runs it after installing, and "
                                               "this file is part of it"),
    # Disk
    "loadgen disk --target /dev/nvme1n1 --rw randread --bs 4k --qd 32 --iops max --duration 30s --json r.json "
    "--hlog r.hlog": Example(makes=("r.json", "r.hlog"), root=True),
    "loadgen disk --iops 50k --rw randrw --mix 70        # open loop: 50k IOPS on a schedule": Example(),
    "loadgen disk --target test.dat --size 1g             # makes test.dat (1 GiB, written) if it is missing, "
    "and keeps it": Example(makes=("test.dat",)),
    "loadgen disk --target test.dat --prefill             # writes any holes first, so every read reaches the "
    "device": Example(),
    "loadgen disk --target test.dat,more.dat --size 1g    # two targets in one run: a section each, and the "
    "total": Example(makes=("more.dat",)),
    "loadgen disk prepare --target test.dat --passes 2    # fills it in order, 128k writes at qd 16, before a run":
        Example(),
    "loadgen disk --target v.dat --size 1g --rw randwrite --verify --seed 7   # every block stamped, read back after":
        Example(makes=("v.dat",)),
    "loadgen disk verify --target v.dat --seed 7          # later: every block's header and crc32c checked": Example(),
    # Network
    "loadgen net --pps 1M --size 64 --flows 8                  # embedded receiver on loopback": Example(),
    "loadgen net --pps 100k --mode echo                        # time every round trip": Example(),
    "loadgen serve --port 9000 --echo-port 9001 --host 0.0.0.0 # on the far host": Example(serve=True),
    "loadgen net --target far-host:9001 --mode echo --pps 200k # from this one": Example(),
    # Across instances
    "head -c 32 /dev/urandom | base64 > /etc/loadgen.token": Example(makes=("loadgen.token",)),
    "loadgen serve --listen 0.0.0.0:7070 --token-file /etc/loadgen.token --allow-path /mnt/nvme": Example(serve=True),
    "loadgen net --peer hostB:7070 --pps 2M --token-file loadgen.token            # senders here": Example(),
    "loadgen net --peer hostB:7070 --clients hostA:7070,hostC:7070 --pps 2M --mode echo --token-file "
    "loadgen.token": Example(),
    "loadgen disk --on hostB:7070 --target /mnt/nvme/test.dat --size 4g --token-file loadgen.token   "
    "# makes test.dat": Example(makes=("mnt/nvme/test.dat",)),
    # Output
    "loadgen net --pps 10k --duration 2s --json - -q | python3 -m json.tool": Example(stdout="json"),
    "loadgen net --pps 10k --duration 10s --json-stream - | jq -c 'select(.type == \"interval\") | .rate'":
        Example(stdout="numbers", needs="jq"),
    # Checking the claims
    "loadgen sysinfo                                        # what results will record about this machine":
        Example(),
    "loadgen probe                                          # what virtualization costs here, and each tier":
        Example(),
    "loadgen run profiles/smoke.toml --json r.json && loadgen check r.json": Example(expect=VERDICT,
                                                                                    makes=("r.json",)),
    "loadgen run profiles/i3-large-randread.toml --set target=/dev/nvme0n1 --json i3.json":
        Example(makes=("i3.json",), root=True),
    # Not an i3.large (and LOADGEN_INSTANCE_TYPE is cleared): the README's "not comparable", exit 3.
    "loadgen check i3.json                                  # pass, fail, or \"not comparable\" and why":
        Example(expect=(3,), root=True),
    # Two runs of the workload nitro-overhead.toml checks stand for the two machines.
    "loadgen compare metal.json nitro.json                  # side by side, overhead %, virtualization tier":
        Example(before=("loadgen run profiles/nitro-overhead.toml --json metal.json",
                        "loadgen run profiles/nitro-overhead.toml --json nitro.json")),
    "loadgen check nitro.json --profile profiles/nitro-overhead.toml --baseline metal.json": Example(expect=VERDICT),
    "loadgen report r.json --out report/                    # plots: pip install '.[plot]'":
        Example(makes=("report/nines.png", "report/timeline.png")),
    # Across a fleet: a Ray cluster of instances. tests/fleet/test_ray.py runs these three on a real
    # 3-node cluster it starts in network namespaces (--ray ADDRESS there, and 20k pps).
    "loadgen fleet status --ray auto          # each node: IP, Ray node id, labels/resources, NICs and drivers, "
    "disks, EC2 type": Example(skip=RAY),
    "loadgen net  --ray auto --ray-senders role=client --ray-receivers role=server --pps 2M --mode echo --json "
    "fleet.json": Example(skip=RAY),
    "loadgen disk --ray auto --ray-nodes role=client --target /mnt/nvme/test.dat --size 4g --iops max":
        Example(skip=RAY),
    # The knee: a search is many trials (60 s each as RFC 2544 asks); tests/net/test_search_netns.py runs
    # `search net --peer` against an agent on a tbf-capped veth, and tests/test_cli_search.py short local
    # net and disk searches.
    "loadgen search net --peer hostB:7070 --max-loss 0.1% --trial 60s --json knee.json": Example(skip=SEARCH),
    "loadgen search disk --target /mnt/nvme/f --max-p99 1ms --trial 10s --load-curve 10,50,80,90,100":
        Example(skip=SEARCH),
    "loadgen run profiles/enhanced-networking-2mpps.toml --set peer=hostB:7070 --json knee.json && loadgen check "
    "knee.json": Example(skip=SEARCH),
    # Documents and their schemas: an error line, checked by test_the_documented_error_line
    "loadgen: r.json: $.summary.latency_ns['p99.9']: expected a whole number, found a string '1ms'":
        Example(skip="output, not a command: test_the_documented_error_line makes it"),
}


def sections() -> list[tuple[str, list[str]]]:
    """(heading, example lines) of each README section that has fenced blocks, in order."""
    out: dict[str, list[str]] = {}
    heading, fenced, shell = "", False, True
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            # a block tagged with another language (the Ray cluster's yaml) is a file, not commands
            shell = line.strip("`").strip() in ("", "sh", "bash", "console", "shell")
            fenced = not fenced
        elif fenced and shell:
            if line.strip() and not line.lstrip().startswith("#"):
                out.setdefault(heading, []).append(line.rstrip())
        elif line.startswith("## "):
            heading = line[3:].strip()
    assert not fenced, "a fenced block in README.md is never closed"
    return list(out.items())


def test_every_example_is_handled():
    lines = [line for _, block in sections() for line in block]
    assert len(lines) == len(set(lines)), "an example appears twice"
    unhandled = [line for line in lines if line not in EXAMPLES]
    assert not unhandled, f"README examples this test neither runs nor skips with a reason: {unhandled}"
    gone = [line for line in EXAMPLES if line not in lines]
    assert not gone, f"examples no longer in the README: {gone}"


def test_the_quick_start_is_two_commands_and_ci_runs_the_second():
    """Set-up plus the main job on its embedded defaults, then the tests, which .ci/run runs after installing."""
    (first, second), = [block for heading, block in sections() if heading == "Quick start"]
    steps = [s.strip() for s in first.split("&&")]
    assert steps[0].startswith("pip install -e ") and "[test]" in steps[0]
    jobs = [s.split()[:2] for s in steps[1:]]
    assert ["loadgen", "disk"] in jobs and ["loadgen", "net"] in jobs
    assert all("--target" not in s and "--peer" not in s for s in steps[1:]), "the embedded defaults"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert second in [line.strip() for line in ci] and any("pip install" in line and "-e" in line for line in ci)


# ---- the rules ---------------------------------------------------------------------------------

def shorten(command: str) -> str:
    """The time and size rules (module docstring)."""
    command = re.sub(r"^pip install [^&]*&&\s*", "", command)
    command = re.sub(r"--duration \S+", "--duration 1s", command)
    command = re.sub(r"(loadgen disk [^|&]*?--size )\d+g\b", r"\g<1>16m", command)
    command = re.sub(r"\bloadgen (net|disk) ", lambda m: f"loadgen {m.group(1)} --duration 1s --ramp 0s "
                     + ("--size 16m " if m.group(1) == "disk" else ""), command)

    def profile(m: re.Match) -> str:
        path = m.group(1)
        p = tomllib.loads((REPO / path).read_text())
        # a profile that searches for its knee runs trials: 1 s each, at most 3, no confirmation or curve
        timing = ("--set trial=1s --set ramp=0s --set max_trials=3 --set confirm=0 --set load_curve=none"
                  if "search" in p else "--set duration=1s --set ramp=0s")
        return f"loadgen run {path} {timing}" + (" --set size=16m" if p["kind"] == "disk" else "")

    return re.sub(r"\bloadgen run (profiles/\S+\.toml)", profile, command)


@dataclass
class Place:
    """A section's directory and what its places stand for there."""
    cwd: Path
    loop: str | None = None
    hosts: dict[str, str] = field(default_factory=dict)   # placeholder HOST:PORT -> its server's address here

    def rewrite(self, command: str) -> str:
        command = shorten(command)
        command = command.replace("/etc/loadgen.token", "loadgen.token")
        command = command.replace("/mnt/nvme", str(self.cwd / "mnt" / "nvme"))
        command = re.sub(r"(?<![\w/.])profiles/", f"{REPO}/profiles/", command)
        if self.loop:
            command = re.sub(r"/dev/nvme\d+n1", self.loop, command)
        for host, address in self.hosts.items():
            command = re.sub(rf"\b{re.escape(host)}\b", address, command)
        return command

    def serving(self, command: str) -> str:
        """A server line as it runs here: on 127.0.0.1, at free ports."""
        command = self.rewrite(command)
        command = command.replace("0.0.0.0:7070", "127.0.0.1:0").replace("--host 0.0.0.0", "--host 127.0.0.1")
        return re.sub(r"(--(?:echo-)?port) \d+", r"\1 0", command)


def child_env(bin_dir: Path) -> dict:
    """This tree's loadgen first on PATH; no token or instance type from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOADGEN_TOKEN", "LOADGEN_INSTANCE_TYPE")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def shell(tmp_path):
    """shell(command, cwd) runs a line in bash with this tree's `loadgen`; servers it starts are ended at teardown."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "loadgen").write_text(f"#!/bin/sh\nexec {sys.executable} -m loadgen \"$@\"\n")
    (bin_dir / "loadgen").chmod(0o755)
    env = child_env(bin_dir)
    servers: list[subprocess.Popen] = []

    def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S)

    def serve(command: str, cwd: Path, name: str) -> list[tuple[str, str | None]]:
        """Start a server line; (address, stream|echo|None) of each port it listens on."""
        out = cwd / f"{name}.out"
        with open(out, "w") as f:
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        servers.append(proc)

        def listening():
            assert proc.poll() is None, f"{command!r} exited with {proc.returncode}: {out.read_text()!r}"
            found = [m for m in map(LISTENING.match, out.read_text().splitlines()) if m]
            # serve prints a line per port it listens on: as many as the command names
            wanted = 2 if "--echo-port" in command else 1
            return found if len(found) >= wanted else None

        found = wait_until(listening, READY_TIMEOUT_S, f"{command!r} to listen")
        return [(f"{m.group(1)}:{m.group(2)}", m.group(3)) for m in found]

    run.serve = serve
    yield run
    for proc in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def loop_device(tmp_path):
    """attach() gives (a loop device over a 32 MiB file of random bytes, None), or (None, why not):
    the NVMe examples read it."""
    attached = []

    def attach() -> tuple[str | None, str | None]:
        if os.geteuid() != 0 or not shutil.which("losetup"):
            return None, "runs on a loop device, which needs root and losetup"
        image = tmp_path / "nvme.img"
        image.write_bytes(os.urandom(32 << 20))
        done = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
        if done.returncode:
            return None, f"cannot attach a loop device: {done.stderr.strip()}"
        attached.append(done.stdout.strip())
        return attached[-1], None

    yield attach
    for device in attached:
        subprocess.run(["losetup", "--detach", device], check=False)


def check_outputs(example: Example, done: subprocess.CompletedProcess, cwd: Path, command: str) -> None:
    assert done.returncode in example.expect, f"{command!r} exited {done.returncode}: {done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr, done.stderr
    for name in example.makes:
        path = cwd / name
        assert path.exists(), f"{command!r} made no {name}"
        if name.endswith(".json"):
            documents.load_result(path)
    if example.stdout == "json":
        assert json.loads(done.stdout)["schema"] == "loadgen/1"
    elif example.stdout == "numbers":
        rates = [float(line) for line in done.stdout.split()]
        assert rates and all(r >= 0 for r in rates), done.stdout


@pytest.mark.parametrize("heading", [h for h, block in sections()
                                     if any(not EXAMPLES.get(line, Example()).skip for line in block)])
def test_the_sections_examples_run(heading, tmp_path, shell, loop_device):
    block = dict(sections())[heading]
    place = Place(tmp_path / "work")
    (place.cwd / "mnt" / "nvme").mkdir(parents=True)
    skipped, why_not = [], None
    for line in block:
        example = EXAMPLES[line]
        if example.skip:
            continue
        if example.needs and not shutil.which(example.needs):
            skipped.append(f"{line!r}: needs {example.needs}")
            continue
        if example.root:
            if place.loop is None and why_not is None:
                place.loop, why_not = loop_device()
            if place.loop is None:
                skipped.append(f"{line!r}: {why_not}")
                continue
        if example.serve:
            for host in [h for h in HOSTS if any(h in other for other in block)]:   # one server per host named
                for address, role in shell.serve(place.serving(line), place.cwd, host):
                    place.hosts[f"{host}:{re.search(PORT_OPTIONS[role], line).group(1)}"] = address
            continue
        for setup in example.before:
            made = shell(place.rewrite(setup), place.cwd)
            assert made.returncode == 0, f"{setup!r}: {made.stderr[-2000:]}"
        command = place.rewrite(line)
        check_outputs(example, shell(command, place.cwd), place.cwd, command)
    if skipped:
        pytest.skip("ran the rest; " + "; ".join(skipped))


def test_the_documented_error_line(tmp_path, shell):
    """The README's example of a refused document is what `loadgen check` says of one."""
    (line,) = [line for heading, block in sections() if heading == "Documents and their schemas" for line in block]
    doc = json.loads((REPO / "tests" / "fixtures" / "results" / "disk-randread.json").read_text())
    doc["summary"]["latency_ns"]["p99.9"] = "1ms"
    (tmp_path / "r.json").write_text(json.dumps(doc))
    done = shell("loadgen check r.json", tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [line]
