"""loadgen.output and the CLI's outputs: nothing lost, nobody let in.

A device, a FIFO or /dev/stdout is written in place and stays what it was; a
file is replaced atomically through a temporary file no one can guess or plant;
a document that cannot be written goes to a printed fallback with exit 1; an
.hlog that fails warns at once and exits 1; SIGTERM never loses a result.
The end-to-end runs are short net loads on loopback (SHORT_NET in netfixtures).
"""
import errno
import json
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from netfixtures import RUN_TIMEOUT_S, SHORT_NET, WAIT_S, loadgen_argv

from loadgen import output

NET_LOAD = ["net", *SHORT_NET, "--pps", "10k"]
DOC = json.dumps({"schema": "loadgen/1", "summary": {"ops": 1}}) + "\n"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the bug replaced devices only as root")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class FifoReader(threading.Thread):
    """Reads a FIFO to its end in the background, as `cat fifo` would."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.data = path, b""

    def run(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()


def run_loadgen(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv(*args), cwd=cwd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, env=None if env is None else os.environ | env)


def assert_no_traceback(p) -> None:
    assert "Traceback" not in p.stderr, p.stderr


# ---- loadgen.output, in process --------------------------------------------------------------------

def test_a_character_device_is_written_in_place():
    output.write_document("/dev/null", DOC)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    output.write_document(str(fifo), DOC)
    reader.join(WAIT_S)
    assert reader.data.decode() == DOC
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert names(tmp_path) == ["fifo"]


def test_a_file_is_replaced_whole_and_keeps_its_mode(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old result\n")
    path.chmod(0o640)
    output.write_document(str(path), DOC)
    assert path.read_text() == DOC
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert names(tmp_path) == ["r.json"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_a_replaced_file_keeps_its_owner(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old result\n")
    os.chown(path, 65534, 65534)
    output.write_document(str(path), DOC)
    st = path.stat()
    assert (st.st_uid, st.st_gid, path.read_text()) == (65534, 65534, DOC)


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        output.write_document(str(tmp_path / "r.json"), DOC)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o640


def test_a_symlink_is_followed_to_its_target_and_nothing_else_changes(tmp_path):
    victim = tmp_path / "target.json"
    victim.write_text("old\n")
    bystander = tmp_path / "other"
    bystander.write_text("untouched\n")
    link = tmp_path / "r.json"
    link.symlink_to(victim)
    output.write_document(str(link), DOC)
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert victim.read_text() == DOC
    assert bystander.read_text() == "untouched\n"
    assert names(tmp_path) == ["other", "r.json", "target.json"]


def test_a_symlink_planted_at_the_next_temp_name_is_never_followed(tmp_path, monkeypatch):
    """The temporary name is random (mkstemp); even a planted symlink at the very name
    it draws is skipped (O_EXCL|O_NOFOLLOW), and the old guessable name means nothing."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    drawn = iter(["planted1", "fresh123"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: drawn)
    (out / ".r.json.planted1.tmp").symlink_to(victim)
    (out / f"r.json.tmp{os.getpid()}").symlink_to(victim)   # the name the old code used
    output.write_document(str(out / "r.json"), DOC)
    assert victim.read_text() == "precious\n"
    assert (out / "r.json").read_text() == DOC
    assert names(out) == [".r.json.planted1.tmp", "r.json", f"r.json.tmp{os.getpid()}"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text("old result\n")
    real_write = os.write

    def half_then_enospc(fd, data):
        if fd > 2 and len(data) > 8:
            return real_write(fd, bytes(data[:8]))   # a short write, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(OSError) as raised:
        output.write_document(str(path), DOC)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == "old result\n"
    assert names(tmp_path) == ["r.json"]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 16 KiB tmpfs mounted for the test (root only), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where = tmp_path / "tiny"
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_full_filesystem_keeps_the_old_file_and_leaves_no_temp_file(tiny_tmpfs):
    path = tiny_tmpfs / "r.json"
    path.write_text("old result\n")
    with pytest.raises(OSError) as raised:
        output.write_document(str(path), "x" * (64 << 10))
    assert raised.value.errno == errno.ENOSPC
    assert path.read_text() == "old result\n"
    assert names(tiny_tmpfs) == ["r.json"]


def test_a_device_that_fails_raises_with_the_path_and_errno():
    with pytest.raises(OSError) as raised:
        output.write_document("/dev/full", DOC)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, "/dev/full")
    assert "ENOSPC" in output.describe(raised.value)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_fallback_makes_a_new_private_file_in_tmpdir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    kept = output.fallback(DOC, ".json")
    assert kept is not None and Path(kept).parent == tmp_path
    assert Path(kept).read_text() == DOC
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600


@pytest.mark.parametrize("path, code", [("missing/dir/r.json", errno.ENOENT), (".", errno.EISDIR)])
def test_check_refuses_paths_no_write_could_succeed_at(tmp_path, monkeypatch, path, code):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError) as raised:
        output.check(path)
    assert (raised.value.errno, raised.value.filename) == (code, path)


@pytest.mark.parametrize("path", ["-", "/dev/null", "/dev/stdout", "/dev/fd/1", "new.json"])
def test_check_accepts_writable_destinations(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    output.check(path)
    assert names(tmp_path) == []   # checking writes nothing


def test_descriptor_names():
    assert [output.descriptor_of(p) for p in ("-", "/dev/stdout", "/dev/stderr", "/dev/fd/2",
                                             f"/proc/{os.getpid()}/fd/1", "/proc/self/fd/1")] == [1, 1, 2, 2, 1, 1]
    assert output.descriptor_of("/dev/null") is None
    assert output.descriptor_of("/proc/1/fd/1") is None or os.getpid() == 1
    assert output.descriptor_of("/dev/fd/987654") is None   # not open here


def test_a_stream_that_fails_stops_and_is_recorded():
    before = len(output.failures())
    s = output.Stream.open("/dev/full")
    with pytest.raises(OSError) as raised:
        s.write("#[Histogram log format version 1.3]\n")
    assert raised.value.errno == errno.ENOSPC and not s.ok
    s.write("more\n")   # stopped: nothing more is tried
    s.close()
    assert output.failures()[before:] == ["/dev/full: No space left on device (ENOSPC)"]


def test_a_stream_follows_a_symlink_and_truncates_its_target(tmp_path):
    target = tmp_path / "real.hlog"
    target.write_text("an older, longer log\n" * 10)
    link = tmp_path / "r.hlog"
    link.symlink_to(target)
    s = output.Stream.open(str(link))
    s.write("line\n")
    s.close()
    assert target.read_text() == "line\n" and link.is_symlink()


# ---- the CLI, end to end ----------------------------------------------------------------------------

@needs_root
def test_json_to_dev_null_leaves_the_device(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--quiet", "--json", "/dev/null")
    assert p.returncode == 0, p.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_rdev == os.makedev(1, 3)
    assert names(tmp_path) == []


@needs_root
def test_json_to_a_fifo_is_read_by_its_reader_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "doc.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    p = run_loadgen(tmp_path, *NET_LOAD, "--quiet", "--json", str(fifo))
    reader.join(WAIT_S)
    assert p.returncode == 0, p.stderr
    assert json.loads(reader.data)["summary"]["sent"] > 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@needs_root
def test_json_to_dev_stdout_writes_through_stdout_and_keeps_the_link(tmp_path):
    was = os.readlink("/dev/stdout")
    p = run_loadgen(tmp_path, *NET_LOAD, "--json", "/dev/stdout")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"]["sent"] > 0
    assert "loadgen net:" in p.stderr   # the summary moved out of the document's way
    assert os.path.islink("/dev/stdout") and os.readlink("/dev/stdout") == was


def test_json_to_dev_stdout_redirected_to_a_file_keeps_the_file(tmp_path):
    """The shell's redirection is written through, not replaced by a new file."""
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        p = subprocess.run(loadgen_argv(*NET_LOAD, "--json", "/dev/stdout"), cwd=tmp_path, stdout=f,
                           stderr=subprocess.PIPE, text=True, timeout=RUN_TIMEOUT_S)
        ino = os.fstat(f.fileno()).st_ino
    assert p.returncode == 0, p.stderr
    assert out.stat().st_ino == ino
    assert json.loads(out.read_text())["summary"]["sent"] > 0


def test_json_to_stdout_and_the_summary_to_stderr(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--json", "-")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["schema"] == "loadgen/1" and doc["summary"]["sent"] > 0
    assert "loadgen net:" in p.stderr
    assert names(tmp_path) == []


def test_json_to_stdout_quiet_prints_nothing_else(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--json", "-", "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["summary"]["sent"] > 0
    assert p.stderr == ""


def test_json_to_a_full_device_prints_the_summary_and_keeps_the_result(tmp_path):
    keep = tmp_path / "fallback"
    keep.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    p = run_loadgen(work, *NET_LOAD, "--json", "/dev/full", env={"TMPDIR": str(keep)})
    assert p.returncode == 1, p.stderr
    assert_no_traceback(p)
    assert "loadgen net:" in p.stdout and "sent: " in p.stdout
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("loadgen: cannot write /dev/full: No space left on device (ENOSPC); the result is in ")
    kept = Path(line.rsplit(" ", 1)[1])
    assert kept.parent == keep
    assert json.loads(kept.read_text())["summary"]["sent"] > 0
    assert names(work) == [] and names(keep) == [kept.name]
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_json_falls_back_to_tmp_when_tmpdir_is_missing(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--quiet", "--json", "/dev/full", env={"TMPDIR": str(tmp_path / "missing")})
    assert p.returncode == 1, p.stderr
    assert_no_traceback(p)
    kept = Path(p.stderr.strip().rsplit(" ", 1)[1])
    try:
        assert kept.parent == Path("/tmp")
        assert json.loads(kept.read_text())["summary"]["sent"] > 0
    finally:
        kept.unlink()


def test_json_with_no_fallback_anywhere_goes_to_stderr(monkeypatch, capsys):
    from loadgen import cli

    monkeypatch.setattr(output, "fallback", lambda text, suffix: None)
    doc = {"schema": "loadgen/1", "interrupted": False, "failed": False, "stop_reason": None, "warnings": []}
    assert cli._finish(doc, Path("/dev/full"), False, lambda d: "the summary") == 1
    out, err = capsys.readouterr()
    assert out == "the summary\n"
    head, _, rest = err.partition("\n")
    assert head == "loadgen: cannot write /dev/full: No space left on device (ENOSPC); the result follows"
    assert json.loads(rest) == doc


def test_hlog_to_a_full_device_warns_with_the_errno_and_exits_1(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--quiet", "--hlog", "/dev/full", "--json", "r.json")
    assert p.returncode == 1, p.stderr
    assert_no_traceback(p)
    assert "loadgen: warning: cannot write the .hlog /dev/full: No space left on device (ENOSPC)" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert not doc["failed"] and doc["summary"]["sent"] > 0   # the measurement itself is whole
    assert any("ENOSPC" in w for w in doc["warnings"])


def test_hlog_to_stdout_is_a_readable_log(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--interval", "500ms", "--hlog", "-", "--json", "r.json")
    assert p.returncode == 0, p.stderr
    assert "loadgen net:" in p.stderr and "loadgen net:" not in p.stdout
    (tmp_path / "copy.hlog").write_text(p.stdout)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert logged_counts(tmp_path / "copy.hlog") == document_counts(doc) > 0


def test_unwritable_json_directory_is_refused_before_the_run(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--json", "missing/dir/r.json")
    assert p.returncode == 2
    assert p.stderr == "loadgen: cannot write missing/dir/r.json: No such file or directory (ENOENT)\n"
    assert p.stdout == ""


def test_json_and_hlog_cannot_share_stdout(tmp_path):
    p = run_loadgen(tmp_path, *NET_LOAD, "--json", "-", "--hlog", "/dev/stdout")
    assert (p.returncode, p.stdout, p.stderr) == (2, "", "loadgen: --json and --hlog cannot both go to stdout\n")


def logged_counts(path: Path) -> int:
    """The total count over every interval histogram in an .hlog, as the package's reader decodes it."""
    from hdrh.log import HistogramLogReader

    from loadgen.results import histogram

    reader = HistogramLogReader(str(path), histogram.new())
    total = 0
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            total += h.get_total_count()
    finally:
        reader.close()
    return total


def document_counts(doc: dict) -> int:
    from loadgen.results import histogram

    total = 0
    for b64 in doc["histograms"].values():
        h = histogram.new()
        h.decode_and_add(b64)
        total += h.get_total_count()
    return total


@needs_root
def test_hlog_to_a_fifo_is_streamed_in_place(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    p = run_loadgen(tmp_path, *NET_LOAD, "--quiet", "--interval", "500ms", "--hlog", str(fifo), "--json", "r.json")
    reader.join(WAIT_S)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path / "copy.hlog").write_bytes(reader.data)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert logged_counts(tmp_path / "copy.hlog") == document_counts(doc) > 0


# ---- signals ------------------------------------------------------------------------------------------

def read_until(stream, marker: str) -> str:
    """Lines from a child's pipe up to and including the first holding marker (bounded by the child)."""
    seen = []
    for line in stream:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    pytest.fail(f"the child ended before printing {marker!r}: {''.join(seen)!r}")


def test_sigterm_as_the_run_starts_still_gives_the_document(tmp_path):
    """The .hlog's header is written once the run is under way: SIGTERM right then stops
    the run, and the document says it was interrupted."""
    p = subprocess.Popen(loadgen_argv(*NET_LOAD, "--duration", "60s", "--hlog", "-", "--json", "r.json", "--quiet"),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_until(p.stdout, "Interval_Compressed_Histogram")   # the legend: the header is out
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert (doc["interrupted"], doc["failed"], doc["stop_reason"]) == (True, False, "interrupted by SIGTERM")
    assert doc["summary"]["duration_s"] < 60


def test_sigterm_while_the_result_is_written_keeps_it(tmp_path):
    """The summary is printed before the document is written; a --json FIFO with no
    reader yet holds the process right there, after the run."""
    fifo = tmp_path / "doc.fifo"
    os.mkfifo(fifo)
    p = subprocess.Popen(loadgen_argv(*NET_LOAD, "--json", str(fifo)), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_until(p.stdout, "cpu: user=")   # the summary's last line
        p.send_signal(signal.SIGTERM)
        reader = FifoReader(fifo)
        reader.start()
        reader.join(WAIT_S)
        _, stderr = p.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    assert "interrupted by SIGTERM after the run; its result is complete" in stderr
    doc = json.loads(reader.data)
    assert not doc["interrupted"] and doc["summary"]["sent"] > 0



def test_each_interval_reaches_the_hlog_as_it_ends_and_sigterm_keeps_them_all(tmp_path):
    """The .hlog holds a whole interval while the run goes on (it is not buffered to
    the end); after SIGTERM it holds every interval the document counts."""
    hlog = tmp_path / "r.hlog"
    p = subprocess.Popen(loadgen_argv(*NET_LOAD, "--duration", "60s", "--interval", "200ms", "--hlog", "r.hlog",
                                      "--json", "r.json", "--quiet"),
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S   # bounds the wait for a hung child; never asserted
        while "\nTag=" not in (hlog.read_text() if hlog.exists() else "") and p.poll() is None:
            assert time.monotonic() < deadline, "no interval reached the .hlog while the run went on"
            time.sleep(0.02)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["interrupted"] and doc["summary"]["duration_s"] < 60
    assert logged_counts(hlog) == document_counts(doc) > 0


@pytest.mark.xfail(strict=False, reason="known bug, open: in about one run in three the process exits 0 "
                   "after the second SIGTERM without writing the fallback; cause not found yet")
def test_a_second_sigterm_while_the_result_waits_puts_it_in_the_fallback(tmp_path):
    """A --json FIFO nobody reads holds the process after the run; the first SIGTERM
    waits for the write, a second one gives up on it and keeps the result elsewhere."""
    fifo = tmp_path / "doc.fifo"
    os.mkfifo(fifo)
    keep = tmp_path / "keep"
    keep.mkdir()
    p = subprocess.Popen(loadgen_argv(*NET_LOAD, "--json", str(fifo)), cwd=tmp_path, env=os.environ | {"TMPDIR": str(keep)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        read_until(p.stdout, "cpu: user=")
        p.send_signal(signal.SIGTERM)
        read_until(p.stderr, "keeping the result first")   # the first is in hand: no merging of the two
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"loadgen: cannot write {fifo}: interrupted by SIGTERM; the result is in {keep}/" in stderr
    (kept,) = keep.iterdir()
    assert json.loads(kept.read_text())["summary"]["sent"] > 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
