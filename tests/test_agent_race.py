"""An agent's --allow-path under attack: a path flipped between a file and a symlink during write jobs.

A thread swaps the name allowed/t.dat, atomically (rename), between a regular file
inside the allowed directory and a symlink to a file outside it, for the whole of
several `loadgen disk --on AGENT --rw randwrite` runs. Each run may write the
inside file or be refused; the outside file must never change. With the old agent
(realpath check, then the job opening the name) a run that lost the race wrote
outside. The flipping loop is bounded in count and stops when the runs are done.
"""
import hashlib
import os
import threading

import pytest

from netns import Agent, run_loadgen, write_token

RUNS = 6   # the old agent lost the race in about half its runs
MAX_FLIPS = 50_000_000
FILE_BYTES = 4 << 20


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Flipper(threading.Thread):
    """Swaps `path` between a hard link to `inside` and a symlink to `outside` until stopped."""

    def __init__(self, path, inside, outside) -> None:
        super().__init__(daemon=True)
        self.path, self.inside, self.outside = path, inside, outside
        self.stop = threading.Event()
        self.flips = 0

    def run(self) -> None:
        tmp = self.path.with_name(".flip")
        while not self.stop.is_set() and self.flips < MAX_FLIPS:
            if self.flips % 2:
                os.link(self.inside, tmp)
            else:
                os.symlink(self.outside, tmp)
            os.rename(tmp, self.path)
            self.flips += 1


@pytest.fixture
def agent_and_dirs(tmp_path):
    token = write_token(tmp_path / "token")
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    inside, outside = allowed / "inside.dat", other / "secret.dat"
    inside.write_bytes(b"\1" * FILE_BYTES)
    outside.write_bytes(os.urandom(FILE_BYTES))
    os.link(inside, allowed / "t.dat")
    agent = Agent(tmp_path, "127.0.0.1:0", "--token-file", str(token), "--allow-path", str(allowed))
    yield agent, token, allowed, inside, outside
    agent.stop()


def test_a_path_flipped_to_a_symlink_never_lets_a_write_escape(agent_and_dirs, tmp_path, direct_io):
    agent, token, allowed, inside, outside = agent_and_dirs
    before = sha256(outside)
    flipper = Flipper(allowed / "t.dat", inside, outside)
    flipper.start()
    outcomes = []
    try:
        for _ in range(RUNS):
            done = run_loadgen(tmp_path, "disk", "--on", agent.address, "--target", str(allowed / "t.dat"),
                               "--rw", "randwrite", "--bs", "4k", "--qd", "4", "--workers", "1",
                               "--duration", "1s", "--ramp", "0s", "--quiet", "--token-file", str(token),
                               *([] if direct_io else ["--buffered"]))
            if done.returncode == 0:
                outcomes.append("wrote")
            else:
                line = done.error_line(1)
                assert "outside the allowed paths or reached through a symlink" in line, line
                outcomes.append("refused")
    finally:
        flipper.stop.set()
        flipper.join(timeout=30)
    assert flipper.flips > RUNS, "the path was not flipped during the runs"
    assert sha256(outside) == before, f"the file outside the allowed path was written ({outcomes})"
    assert os.path.islink(outside.parent / "secret.dat") is False
    assert agent.alive()


def test_a_write_through_the_agent_lands_in_the_inside_file(agent_and_dirs, tmp_path, direct_io):
    """The control: unflipped, the same job does write the file beneath the allowed path."""
    agent, token, allowed, inside, outside = agent_and_dirs
    before_outside, before_inside = sha256(outside), sha256(inside)
    done = run_loadgen(tmp_path, "disk", "--on", agent.address, "--target", str(allowed / "t.dat"),
                       "--rw", "randwrite", "--bs", "4k", "--qd", "4", "--workers", "1", "--duration", "1s",
                       "--ramp", "0s", "--quiet", "--token-file", str(token), *([] if direct_io else ["--buffered"]))
    assert done.returncode == 0, done.stderr
    assert sha256(inside) != before_inside
    assert sha256(outside) == before_outside
