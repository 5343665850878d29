"""Shared fixtures: running `loadgen disk` in a subprocess, and skips for what a host lacks.

Every end-to-end load is short (SHORT_LOAD) and runs with the test's tmp_path as
its working directory, so the temporary target lands there and nowhere else.
Options given by a test come after SHORT_LOAD and override it (click keeps the
last occurrence of an option).

Markers:
    root   the test needs root (loop devices); it is skipped otherwise.
"""
import errno
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from netfixtures import RUN_TIMEOUT_S, Serve, loadgen_argv  # one definition for every test module

from loadgen.run import native

SHORT_LOAD = ["--size", "16m", "--duration", "1s", "--ramp", "0s"]
TEMP_GLOB = ".loadgen-*"


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (loop devices); skipped otherwise")


@pytest.hookimpl(tryfirst=True)   # before fixtures attach anything
def pytest_runtest_setup(item):
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs root: it attaches a loop device")


@dataclass
class Finished:
    """A finished `loadgen` process and the directory it ran in."""

    returncode: int
    stdout: str
    stderr: str
    cwd: Path
    json_path: Path | None

    @property
    def doc(self) -> dict:
        assert self.json_path is not None and self.json_path.exists(), (
            f"no JSON document; exit {self.returncode}, stderr: {self.stderr!r}")
        return json.loads(self.json_path.read_text())

    @property
    def summary(self) -> dict:
        return self.doc["summary"]

    def temp_files_left(self) -> list[str]:
        return sorted(p.name for p in self.cwd.glob(TEMP_GLOB))


@pytest.fixture(scope="session")
def direct_io(tmp_path_factory) -> bool:
    """Whether the filesystem under tmp_path accepts O_DIRECT (tmpfs before Linux 6.6 does not)."""
    probe = tmp_path_factory.mktemp("direct-probe") / "probe"
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    os.close(fd)
    return True


@pytest.fixture(scope="session")
def io_uring():
    """Skip unless this process may create an io_uring (seccomp, io_uring_disabled, old kernels)."""
    err = native.io_uring_probe()
    if err:
        pytest.skip(f"io_uring is not available here: {os.strerror(-err)}")


@pytest.fixture
def disk(tmp_path, direct_io):
    """Run `loadgen disk SHORT_LOAD *args --json r.json` in tmp_path; returns a Finished.

    Where O_DIRECT is not supported under tmp_path the run is made --buffered,
    so the end-to-end tests still exercise everything else.
    """

    def run(*args: str, json_out: bool = True, preexec_fn=None, cwd: Path | None = None) -> Finished:
        where = cwd or tmp_path
        argv = ["disk", *SHORT_LOAD, *([] if direct_io else ["--buffered"]), *args]
        json_path = where / "r.json" if json_out else None
        if json_path:
            argv += ["--json", str(json_path)]
        p = subprocess.run(loadgen_argv(*argv), cwd=where, capture_output=True, text=True,
                           preexec_fn=preexec_fn, timeout=RUN_TIMEOUT_S)
        return Finished(p.returncode, p.stdout, p.stderr, where, json_path)

    return run


@pytest.fixture
def cli(tmp_path):
    """Run `loadgen *args` in tmp_path exactly as given (no defaults added)."""

    def run(*args: str) -> Finished:
        p = subprocess.run(loadgen_argv(*args), cwd=tmp_path, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S)
        return Finished(p.returncode, p.stdout, p.stderr, tmp_path, None)

    return run


def main_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """loadgen's cli.main(argv) in this process: (exit code, stdout, stderr). main() installs a
    SIGTERM handler and a run its own; both are put back afterwards."""
    from loadgen import cli

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture
def serve(tmp_path):
    """Start `loadgen serve *args` in tmp_path; every one started is ended in teardown."""
    started: list[Serve] = []

    def start(*args: str) -> Serve:
        s = Serve(tmp_path, *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
