"""The automatic psync fallback the README promises, with io_uring forbidden by a monkeypatched probe.

"io_uring is used where the kernel allows it; otherwise (seccomp, io_uring_disabled)
the disk job falls back to a psync engine and says so." Seccomp and the sysctl
cannot be set up by a test without root and a kernel that has them, so the probe
(loadgen.run.native.io_uring_probe, which returns 0 or -errno) is replaced in-process
and `loadgen disk` runs in this process through cli.main: the fallback, the note
in the document and the summary, and the one-line error when io_uring is demanded.
"""
import errno
import json
import os

import pytest

from conftest import main_in_process
from loadgen.disk.job import choose_engine
from loadgen.errors import SetupError
from loadgen.run import native

SHORT_LOAD = ["--size", "16m", "--duration", "300ms", "--ramp", "0s", "--interval", "100ms"]


def forbid_io_uring(monkeypatch, err: int) -> list[int]:
    """Make the probe answer -err; returns a list that grows by one per probe."""
    calls: list[int] = []

    def probe() -> int:
        calls.append(err)
        return -err

    monkeypatch.setattr(native, "io_uring_probe", probe)
    return calls


# ---- the choice --------------------------------------------------------------------------------

@pytest.mark.parametrize("err, name", [(errno.EPERM, "EPERM"), (errno.ENOSYS, "ENOSYS"), (errno.EACCES, "EACCES")])
def test_auto_falls_back_to_psync_when_io_uring_is_forbidden(monkeypatch, err, name):
    calls = forbid_io_uring(monkeypatch, err)
    engine, note = choose_engine("auto")
    assert calls == [err]
    assert engine == "psync"
    assert note == (f"io_uring unavailable ({name}); psync runs instead, one I/O in flight per worker")


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_demanding_io_uring_where_it_is_forbidden_is_an_environment_error(monkeypatch, err):
    forbid_io_uring(monkeypatch, err)
    with pytest.raises(SetupError) as e:
        choose_engine("io_uring")
    assert e.value.exit_code == 1
    assert str(e.value) == f"io_uring is not available here: {os.strerror(err)}"


def test_another_setup_failure_is_not_hidden_by_a_fallback(monkeypatch):
    """ENOMEM (locked-memory limit, say) is not "forbidden": falling back would hide a fixable problem."""
    forbid_io_uring(monkeypatch, errno.ENOMEM)
    with pytest.raises(SetupError) as e:
        choose_engine("auto")
    assert "io_uring setup failed" in str(e.value)


def test_psync_forced_never_probes(monkeypatch):
    calls = forbid_io_uring(monkeypatch, errno.EPERM)
    assert choose_engine("psync")[0] == "psync"
    assert calls == []


# ---- whole runs, in this process ---------------------------------------------------------------

@pytest.fixture
def run_cli(monkeypatch, tmp_path, direct_io):
    """cli.main(["disk", SHORT_LOAD, *args]) in tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, capsys) -> tuple[int, str, str]:
        return main_in_process(["disk", *SHORT_LOAD, *([] if direct_io else ["--buffered"]), *args], capsys)

    return run


@pytest.mark.parametrize("err, name", [(errno.EPERM, "EPERM"), (errno.ENOSYS, "ENOSYS")])
def test_a_disk_run_with_io_uring_forbidden_runs_psync_and_says_so(monkeypatch, tmp_path, run_cli, capsys, err, name):
    calls = forbid_io_uring(monkeypatch, err)
    code, out, stderr = run_cli("--json", "r.json", capsys=capsys)
    assert code == 0, stderr
    assert calls, "the probe was never asked"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["engine"] == "psync"
    assert doc["config"]["engine"] == "auto"       # what was asked, beside what ran
    assert doc["engine_note"] == f"io_uring unavailable ({name}); psync runs instead, one I/O in flight per worker"
    assert (doc["failed"], doc["interrupted"]) == (False, False)
    s = doc["summary"]
    assert s["ops"] > 0 and s["errors"] == 0
    assert sum(r["ops"] for r in doc["intervals"]) == s["ops"]
    # The human summary says it too, and names the engine that ran.
    # (in a pipe the header and interval lines come first; the summary's head follows them)
    (head,) = [line for line in out.splitlines() if line.startswith("loadgen disk: ")]
    assert " engine=psync " in head
    assert f"  engine: io_uring unavailable ({name}); psync runs instead" in out
    assert stderr == ""
    assert list(tmp_path.glob(".loadgen-*")) == []


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_engine_io_uring_with_io_uring_forbidden_exits_1_with_one_line(monkeypatch, tmp_path, run_cli, capsys, err):
    forbid_io_uring(monkeypatch, err)
    code, out, stderr = run_cli("--engine", "io_uring", "--json", "r.json", capsys=capsys)
    assert code == 1
    assert stderr == f"loadgen: io_uring is not available here: {os.strerror(err)}\n"
    assert out == ""
    assert not (tmp_path / "r.json").exists()
    assert list(tmp_path.glob(".loadgen-*")) == []     # refused before the temp target was made
