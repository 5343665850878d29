"""loadgen.cli: errors become one line on stderr and an exit code, never a traceback.

Exit codes: 2 bad input, 1 the environment, 130 interrupted (interrupts are
tested in test_disk.py).
"""
import pytest

from loadgen import __version__

def assert_one_line_error(done, code: int = 2) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: "), done.stderr
    assert done.stdout == ""
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["--qd", "0"], "invalid qd"),
    (["--iops", "0"], "invalid rate"),
    (["--iops", "-5"], "invalid rate"),
    (["--iops=-5"], "invalid rate"),
    (["--iops", "10x"], "invalid rate"),
    (["--bs", "1000"], "direct I/O"),
    (["--target", "/nonexistent/file"], "target not found"),
    (["--duration", "10q"], "invalid duration"),
    (["--rw", "bogus"], "invalid rw"),
    (["--rw", "randread", "--mix", "70"], "--mix"),
    (["--engine", "aio"], "invalid engine"),
    (["--interval", "1ms"], "invalid interval"),
    (["--size", "1k"], "smaller than one block"),
    (["--bogus"], "No such option"),
    (["--qd"], "requires an argument"),
])
def test_usage_errors(cli, args, says):
    done = cli("disk", "--duration", "1s", "--ramp", "0s", "--size", "16m", *args)
    assert says in assert_one_line_error(done)
    assert done.temp_files_left() == []


def test_directory_target(cli, tmp_path):
    (tmp_path / "d").mkdir()
    line = assert_one_line_error(cli("disk", "--target", "d", "--duration", "1s", "--ramp", "0s"))
    assert "regular file or a block device" in line


def test_unwritable_hlog_is_a_usage_error_and_leaves_no_temp_file(cli):
    done = cli("disk", "--size", "16m", "--duration", "1s", "--ramp", "0s", "--hlog", "missing/dir/r.hlog")
    assert "cannot write missing/dir/r.hlog" in assert_one_line_error(done)
    assert done.temp_files_left() == []


def test_unwritable_json_is_a_usage_error_and_leaves_no_temp_file(cli):
    done = cli("disk", "--size", "16m", "--duration", "300ms", "--ramp", "0s", "--quiet",
               "--json", "missing/dir/r.json")
    assert "cannot write missing/dir/r.json" in assert_one_line_error(done)
    assert done.temp_files_left() == []


def test_version(cli):
    done = cli("version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"loadgen {__version__}\n", "")
