"""An agent's --allow-path under attack: a path flipped between a file and a symlink during write jobs.

A thread swaps the name allowed/t.dat, atomically (rename), between a regular file
inside the allowed directory and a symlink to a file outside it, for the whole of
several `loadgen disk --on AGENT --rw randwrite` runs. Each run may write the
inside file or be refused; the outside file must never change. With the old agent
(realpath check, then the job opening the name) a run that lost the race wrote
outside. A second test samples the race more often and more directly: many raw
`start` requests, each job's open descriptors read from /proc. The flipping loop
is bounded in count and stops when the runs are done.
"""
import ctypes
import hashlib
import os
import threading

import pytest

from netns import Agent, run_loadgen, wait_until, write_token
from test_agent import session

RUNS = 6
STARTS = 30
MAX_FLIPS = 50_000_000
FILE_BYTES = 4 << 20


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


AT_FDCWD = -100
RENAME_EXCHANGE = 2        # <linux/fs.h>: swap two names in one step (Linux >= 3.15)
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a, b) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(a))


class Flipper(threading.Thread):
    """Swaps `path` between a hard link to `inside` and a symlink to `outside` until stopped.

    With renameat2(RENAME_EXCHANGE) each flip is one syscall, so the path spends as long as
    a symlink as it does as a file; where the filesystem cannot exchange, a new entry is
    made and renamed over the path each time."""

    def __init__(self, path, inside, outside) -> None:
        super().__init__(daemon=True)
        self.path, self.inside, self.outside = path, inside, outside
        self.stop = threading.Event()
        self.flips = 0

    def run(self) -> None:
        spare = self.path.with_name(".spare")
        os.symlink(self.outside, spare)
        try:
            exchange(self.path, spare)
        except OSError:
            spare.unlink()
            return self._run_by_rename()
        self.flips = 1
        while not self.stop.is_set() and self.flips < MAX_FLIPS:
            exchange(self.path, spare)
            self.flips += 1

    def _run_by_rename(self) -> None:
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


def open_files(pid: int) -> set[str]:
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def test_jobs_started_while_the_path_flips_never_hold_the_outside_file(agent_and_dirs):
    agent, token, allowed, inside, outside = agent_and_dirs
    outside_path = os.path.realpath(outside)
    job = {"kind": "disk", "options": {"target": str(allowed / "t.dat"), "rw": "randwrite", "direct": False,
                                       "workers": 1, "qd": 1, "duration": 10**9}}
    flipper = Flipper(allowed / "t.dat", inside, outside)
    flipper.start()
    escaped, replies = [], []
    c = session(agent, token)
    try:
        for _ in range(STARTS):
            reply = c.request({"type": "start", "job": job})
            replies.append(reply.get("type") if reply["type"] == "started" else reply.get("code"))
            if reply["type"] != "started":
                assert reply.get("code") == "forbidden", reply
                continue
            for pid in agent.jobs():     # the job holds its target from "started" on
                if outside_path in open_files(pid):
                    escaped.append(pid)
            c.request({"type": "stop", "job": reply["job"]})
            wait_until(lambda: not agent.jobs(), 15, "the stopped job to exit")
    finally:
        c.close()
        flipper.stop.set()
        flipper.join(timeout=30)
    assert not escaped, f"jobs held the file outside the allowed path open for writing: {replies}"
    assert len(replies) == STARTS and flipper.flips > STARTS
