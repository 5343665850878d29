"""Output for pipes and terminals: plain lines in pipes, a live table on a terminal, --json -
and the NDJSON --json-stream.

Every run is a short net run on 127.0.0.1 (or a 16 MiB disk run in tmp_path). A
terminal is a pseudo-terminal the test opens. Nothing here asserts a time: a
stream is shown to be written as the run goes by reading a line from it while
the run is still running, then stopping the run.
"""
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys

import pytest

from loadgen.run import progress
from loadgen.run.jsonstream import line as ndjson_line
from loadgen.units import format_bits_per_s, format_ns, format_si
from netfixtures import RUN_TIMEOUT_S, WAIT_S, loadgen_argv
from netns import Agent, write_token

NET = ["net", "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--interval", "250ms"]
INTERVAL_LINE = re.compile(r"^\[\s*[\d.]+s/[\d.]+s\] \S+ (pps|IOPS)  ")


def run(cwd, *args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv(*args), cwd=cwd, capture_output=True, text=True, stdin=stdin,
                          timeout=RUN_TIMEOUT_S)


def ndjson(text: str) -> list[dict]:
    """Each line parsed by itself (json.loads refuses a line holding less or more than one value)."""
    assert text.endswith("\n"), text[-200:]
    return [json.loads(line) for line in text.splitlines()]


def without_type(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "type"}


# ---- pipes: a header first, then a line per interval -----------------------------------------------

def test_a_pipe_gets_the_header_first_then_a_line_per_interval_then_the_summary(tmp_path):
    p = run(tmp_path, *NET, "--json", "r.json")
    assert p.returncode == 0, p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    lines = p.stdout.splitlines()
    assert lines[0].startswith("loadgen net stream size=64") and f"reported every {format_ns(250_000_000)}" in lines[0]
    intervals = lines[1:1 + len(doc["intervals"])]
    assert len(doc["intervals"]) >= 4
    assert all(INTERVAL_LINE.match(line) for line in intervals), intervals
    assert lines[1 + len(doc["intervals"])].startswith("loadgen net: stream")   # the summary follows
    assert not any(INTERVAL_LINE.match(line) for line in lines[1 + len(doc["intervals"]):])
    assert "\r" not in p.stdout and "\x1b" not in p.stdout   # nothing rewritten, no terminal codes
    # the lines show the rows: the first interval's rate as the document has it
    assert intervals[0].split("] ")[1].startswith(format_si(doc["intervals"][0]["rate"]) + " pps")


def test_a_disk_run_in_a_pipe_prints_iops_lines(disk):
    done = disk("--interval", "250ms")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("loadgen disk ")
    n = len(done.doc["intervals"])
    assert [bool(INTERVAL_LINE.match(line)) for line in lines[1:2 + n]] == [True] * n + [False]
    assert all("iB/s" in line for line in lines[1:1 + n])   # disks in binary bytes


def test_quiet_prints_nothing_in_a_pipe(tmp_path):
    p = run(tmp_path, *NET, "--json", "r.json", "-q")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")


def test_the_lines_go_to_stderr_when_stdout_carries_the_document(tmp_path):
    p = run(tmp_path, *NET, "--json", "-")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    err = p.stderr.splitlines()
    assert err[0].startswith("loadgen net stream")
    assert sum(bool(INTERVAL_LINE.match(line)) for line in err) == len(doc["intervals"])


# ---- --json - ----------------------------------------------------------------------------------------

def test_json_to_stdout_pipes_into_json_tool(tmp_path):
    # The "done when" line, as a user types it.
    cmd = (f"{sys.executable} -m loadgen net --pps 10k --duration 2s --json - -q"
           f" | {sys.executable} -m json.tool")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    doc = json.loads(p.stdout)
    assert doc["schema"] == "loadgen/1" and doc["summary"]["sent"] > 0


# ---- --json-stream -----------------------------------------------------------------------------------

def test_json_stream_to_stdout_is_a_line_per_interval_then_the_document(tmp_path):
    p = run(tmp_path, *NET, "--json-stream", "-", "--json", "r.json")
    assert p.returncode == 0, p.stderr
    objs = ndjson(p.stdout)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [o["type"] for o in objs] == ["interval"] * len(doc["intervals"]) + ["result"]
    assert [without_type(o) for o in objs[:-1]] == doc["intervals"]
    assert without_type(objs[-1]) == doc
    # people's output went to stderr: the header first, a line per interval, the summary
    err = p.stderr.splitlines()
    assert err[0].startswith("loadgen net stream")
    assert sum(bool(INTERVAL_LINE.match(line)) for line in err) == len(doc["intervals"])
    assert any(line.startswith("loadgen net: stream") for line in err)


def test_json_stream_quiet_to_stdout_holds_only_ndjson(tmp_path):
    p = run(tmp_path, *NET, "--json-stream", "-", "-q")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    objs = ndjson(p.stdout)
    assert objs[-1]["type"] == "result" and objs[-1]["schema"] == "loadgen/1"
    assert [without_type(o) for o in objs[:-1]] == objs[-1]["intervals"]


def test_json_stream_to_a_file_matches_the_document(tmp_path):
    p = run(tmp_path, *NET, "--json-stream", "s.ndjson", "--json", "r.json", "-q")
    assert p.returncode == 0, p.stderr
    objs = ndjson((tmp_path / "s.ndjson").read_text())
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [without_type(o) for o in objs[:-1]] == doc["intervals"]
    assert without_type(objs[-1]) == doc


def read_fifo(fd: int, proc: subprocess.Popen, until_newline: bool = False) -> str:
    """Read a non-blocking FIFO: its first line, or all of it once loadgen has closed it
    (EOF only counts once loadgen has opened it: before that, a read also gives b"")."""
    data = bytearray()
    while not (until_newline and b"\n" in data):
        ready, _, _ = select.select([fd], [], [], WAIT_S)
        if not ready:
            assert proc.poll() is None, f"loadgen exited {proc.returncode} without closing the stream"
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if proc.poll() is not None:
                break
            select.select([], [], [], 0.05)   # no writer yet: poll again
            continue
        data += chunk
    return data.decode()


def test_json_stream_lines_arrive_while_the_run_goes(tmp_path):
    """A FIFO's reader gets the first interval while the run is still going; stopped then,
    the stream still ends with the (interrupted) document."""
    fifo = tmp_path / "s.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(loadgen_argv("net", "--pps", "5k", "--duration", "60s", "--ramp", "0s",
                                         "--interval", "200ms", "--json-stream", str(fifo), "-q"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # never blocks, whatever loadgen does
    try:
        first = json.loads(read_fifo(reader, proc, until_newline=True))
        assert proc.poll() is None    # the run is 60 s long: this line came while it went
        proc.send_signal(signal.SIGINT)
        rest = read_fifo(reader, proc)
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert first["type"] == "interval"
    objs = [first] + ndjson(rest)
    assert objs[-1]["type"] == "result" and objs[-1]["interrupted"] is True
    assert [without_type(o) for o in objs[:-1]] == objs[-1]["intervals"]


def test_a_json_stream_that_cannot_be_written_loses_nothing_else(tmp_path):
    p = run(tmp_path, *NET, "--json-stream", "/dev/full", "--json", "r.json", "-q")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert "cannot write /dev/full: No space left on device (ENOSPC)" in p.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["sent"] > 0 and len(doc["intervals"]) >= 4
    assert any("/dev/full" in w for w in doc["warnings"])


def test_a_json_stream_that_cannot_be_written_keeps_the_result_elsewhere(tmp_path):
    p = subprocess.run(loadgen_argv(*NET, "--json-stream", "/dev/full", "-q"), cwd=tmp_path, capture_output=True,
                       text=True, timeout=RUN_TIMEOUT_S, env=os.environ | {"TMPDIR": str(tmp_path)})
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    kept = re.search(r"^loadgen: the result is in (\S+)$", p.stderr, re.M)
    assert kept, p.stderr
    doc = json.loads(open(kept.group(1)).read())
    assert doc["summary"]["sent"] > 0 and any("/dev/full" in w for w in doc["warnings"])


@pytest.mark.parametrize("pair", [("--json", "--json-stream"), ("--hlog", "--json-stream")])
def test_two_outputs_on_stdout_are_refused(tmp_path, pair):
    p = run(tmp_path, *NET, pair[0], "-", pair[1], "-")
    assert (p.returncode, p.stdout, p.stderr) == (2, "", f"loadgen: {pair[0]} and {pair[1]} cannot both go to stdout\n")


def test_a_json_stream_into_a_missing_directory_is_refused_before_the_run(tmp_path):
    p = run(tmp_path, *NET, "--json-stream", "no/such/dir/s.ndjson")
    assert p.returncode == 2
    assert p.stderr == "loadgen: cannot write no/such/dir/s.ndjson: No such file or directory (ENOENT)\n"
    assert p.stdout == ""


def test_an_ndjson_line_is_one_line_with_its_type_first():
    text = ndjson_line("interval", {"t_s": 1.0, "note": "a\nb"})
    assert text.count("\n") == 1 and text.endswith("\n")
    assert list(json.loads(text)) == ["type", "t_s", "note"]


# ---- paired runs: per-host figures -------------------------------------------------------------------

def test_a_paired_run_streams_and_prints_per_host_rates(tmp_path):
    token = write_token(tmp_path / "token")
    agent = Agent(tmp_path, "127.0.0.1:0", "--token-file", str(token))
    try:
        p = run(tmp_path, "net", "--peer", agent.address, "--pps", "5k", "--duration", "1s", "--ramp", "0s",
                "--interval", "250ms", "--token-file", str(token), "--json-stream", "s.ndjson")
    finally:
        agent.stop()
    assert p.returncode == 0, p.stderr
    objs = ndjson((tmp_path / "s.ndjson").read_text())
    doc = without_type(objs[-1])
    assert [without_type(o) for o in objs[:-1]] == doc["intervals"]
    assert all(set(o["hosts"]) == {"local", agent.address} for o in objs[:-1])
    lines = [line for line in p.stdout.splitlines() if INTERVAL_LINE.match(line)]
    assert len(lines) == len(doc["intervals"])
    assert all("  local sent " in line and f"  {agent.address} received " in line for line in lines), lines


# ---- the live display on a terminal ------------------------------------------------------------------

def read_terminal(master: int, proc: subprocess.Popen) -> str:
    """Everything written to the terminal until every writer has closed it."""
    data = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], WAIT_S)
        if not ready:
            assert proc.poll() is None, "the terminal stayed open after loadgen exited"
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def test_a_terminal_gets_the_live_table_and_the_run_finishes(tmp_path):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(loadgen_argv(*NET, "--json", "r.json"), cwd=tmp_path, stdout=slave,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=False)
    finally:
        os.close(slave)
    try:
        screen = read_terminal(master, proc)
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 0, stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert "\x1b[" in screen                         # drawn in place with terminal codes
    for heading in ("time", "pps", "throughput", "p50", "p99", "max", "recv pps"):
        assert heading in screen
    last = doc["intervals"][-1]
    assert f"{last['t_s']:.2f}s/1s" in screen       # the last interval's row was drawn
    assert not any(INTERVAL_LINE.match(line) for line in screen.splitlines())   # no plain lines
    assert "loadgen net: stream" in screen            # then the summary


def test_the_live_table_shows_latency_and_a_row_per_host():
    out = io.StringIO()
    live = progress.LiveDisplay(out)
    live.start("loadgen net echo size=64 paired", 2_000_000_000, 0, 1_000_000_000, "pps")
    live.interval({"t_s": 1.0, "ops": 5000, "rate": 5000.0, "received": 4990, "received_pps": 4990.0,
                   "latency_ns": {"p50": 21_000, "p99": 480_000, "max": 1_200_000},
                   "hosts": {"10.0.0.1:7000": {"role": "sender", "ops": 5000, "rate": 5000.0},
                             "10.0.0.2:7000": {"role": "receiver", "ops": 4990, "rate": 4990.0}}}, 320_000.0)
    live.close()
    text = out.getvalue()
    for cell in ("throughput", "recv pps", "1.00s/2s", "5.0k", format_bits_per_s(320_000 * 8), format_ns(21_000),
                 format_ns(480_000), format_ns(1_200_000), "send 10.0.0.1:7000", "recv 10.0.0.2:7000"):
        assert cell in text, cell
    assert max(len(line) for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).splitlines()) <= 80


def test_the_live_table_and_the_lines_show_each_targets_rate():
    row = {"t_s": 1.0, "ops": 9000, "rate": 9000.0, "latency_ns": {"p50": 21_000, "p99": 480_000, "max": 900_000},
           "targets": {"/dev/zram1": {"ops": 6000, "rate": 6000.0}, "/dev/zram2": {"ops": 3000, "rate": 3000.0}}}
    out = io.StringIO()
    live = progress.LiveDisplay(out)
    live.start("loadgen disk randread bs=4k qd=32", 2_000_000_000, 0, 1_000_000_000, "IOPS")
    live.interval(row, 9000 * 4096.0)
    live.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert re.search(r"/dev/zram1 +6\.0k", text) and re.search(r"/dev/zram2 +3\.0k", text)
    lines = io.StringIO()
    display = progress.LineDisplay(lines)
    display.start("loadgen disk randread bs=4k qd=32", 2_000_000_000, 0, 1_000_000_000, "IOPS")
    display.interval(row, 9000 * 4096.0)
    assert lines.getvalue().splitlines()[-1].endswith("  /dev/zram1 6.0k  /dev/zram2 3.0k")


def test_for_stream_picks_lines_for_anything_but_a_terminal(tmp_path):
    with open(tmp_path / "f", "w") as f:
        assert isinstance(progress.for_stream(f), progress.LineDisplay)
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert isinstance(progress.for_stream(tty), progress.LiveDisplay)
    finally:
        os.close(slave)
        os.close(master)
