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
    # Limits: checked at parse time, before a file is made or a worker starts.
    (["--duration", "10000000000h"], "invalid duration"),
    (["--duration", "700h", "--ramp", "21h"], "ramp and duration together"),
    (["--iops", "18446744073709551617"], "invalid rate: iops"),
    (["--seed", "18446744073709551616"], "invalid seed"),
    (["--workers", "18446744073709551617"], "invalid workers"),
    (["--qd", "18446744073709551617"], "invalid qd"),
    (["--size", "18446744073709551617"], "invalid size"),
    (["--bs", "18446744073709551617"], "invalid bs"),
    (["--interval", "2h"], "invalid interval"),
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


@pytest.mark.parametrize("args, says", [
    (["--duration", "10000000000h"], "invalid duration"),
    (["--pps", "18446744073709551617"], "invalid rate: pps"),
    (["--flows", "18446744073709551617"], "invalid flows"),
    (["--batch", "1025"], "invalid batch"),
    (["--port", "65536"], "invalid port"),
    (["--timeout", "10000000000h"], "invalid timeout"),
    (["--receivers", "1025"], "invalid receivers"),
    (["--size", "65508"], "invalid size"),
    (["--target", "::1:9000"], "invalid address"),
])
def test_net_limits_exit_2_before_anything_runs(cli, args, says):
    done = cli("net", "--duration", "1s", "--ramp", "0s", *args)
    assert says in assert_one_line_error(done)


@pytest.mark.parametrize("command, shows", [
    ("disk", ["--qd N", "[1 to 4096]", "--iops RATE", "--bs SIZE", "--duration DURATION", "[default: 4k]",
              "--direct / --buffered", "[default: one per usable CPU]"]),
    ("net", ["--pps RATE", "--size BYTES", "[32 to 65507]", "--flows N", "--timeout DURATION"]),
    ("serve", ["--port PORT", "--echo-port PORT", "--max-flows N", "--interval DURATION"]),
])
def test_help_comes_from_the_option_table(cli, command, shows):
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())   # click wraps lines
    for s in shows:
        assert s in text, s
