"""loadgen.cli: errors become one line on stderr and an exit code, never a traceback.

Exit codes: 2 bad input, 1 the environment, 130 interrupted (interrupts are
tested in disk/test_disk.py).
"""
import json
import re
from pathlib import Path

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


def test_version_flag(cli):
    done = cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"loadgen {__version__}\n", "")


def test_bare_loadgen_prints_help_on_stdout_and_exits_2(cli):
    # Asked nothing: help on stdout (so it pages), and the exit code of bad input.
    done = cli()
    assert done.returncode == 2 and done.stderr == ""
    assert done.stdout.startswith("Usage: loadgen [OPTIONS] COMMAND [ARGS]...")
    for command in COMMANDS:
        assert f"\n  {command} " in done.stdout, command
    assert "--version" in done.stdout and "--install-completion" in done.stdout


COMMANDS = ["disk", "net", "serve", "run", "check", "compare", "report", "sysinfo", "version"]


def option_entries(help_text: str) -> dict[str, str]:
    """--help's options, each flag with its whole (unwrapped) text."""
    entries, current = {}, None
    section = help_text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        if line.startswith("  -"):
            current = line.split()[0]
            entries[current] = line
        elif current:
            entries[current] += " " + line.strip()
    return entries


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_itself(cli, command):
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    # Options and arguments say what they take: no bare "<str>" or "<path>".
    assert not re.search(r"<(str|path|int|float|text)>", text), text
    for flag, entry in option_entries(text).items():
        assert entry.count("[default:") <= 1, entry
    # Every command ends with examples of itself.
    examples = text.rstrip().split("\n  Examples:\n")
    assert len(examples) == 2, text
    lines = [line.strip() for line in examples[1].splitlines()]
    assert all(re.match(r"([A-Z_]+=\S+ )?loadgen ", line) for line in lines), lines
    assert any(f"loadgen {command}" in line or f"loadgen --{command}" in line for line in lines), lines


@pytest.mark.parametrize("command, flag, metavar", [
    ("disk", "--token-file", "FILE"), ("net", "--tls-ca", "FILE"), ("disk", "--json", "FILE"),
    ("net", "--hlog", "FILE"), ("serve", "--token-file", "FILE"), ("serve", "--tls-cert", "FILE"),
    ("report", "--out", "DIR"), ("check", "--baseline", "FILE"), ("run", "--set", "KEY=VALUE"),
])
def test_options_name_what_they_take(cli, command, flag, metavar):
    entry = option_entries(cli(command, "--help").stdout)[flag]
    assert entry.split()[:2] == [flag, metavar], entry


@pytest.mark.parametrize("command", ["disk", "net", "serve"])
def test_token_file_help_says_the_variable_holds_the_token(cli, command):
    entry = option_entries(cli(command, "--help").stdout)["--token-file"]
    assert "the token is the value of the environment variable LOADGEN_TOKEN" in entry
    assert "[default: $LOADGEN_TOKEN]" not in entry


def test_shell_completion_is_typers_own(tmp_path):
    import os
    import subprocess

    from netfixtures import loadgen_argv

    env = os.environ | {"_LOADGEN_COMPLETE": "complete_bash", "COMP_WORDS": "loadgen com", "COMP_CWORD": "1"}
    done = subprocess.run(loadgen_argv(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.split()) == (0, ["compare"]), done.stderr
    script = subprocess.run(loadgen_argv("--show-completion", "bash"), cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert script.returncode == 0 and "_LOADGEN_COMPLETE=complete_bash" in script.stdout, script.stderr


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


# ---- human units in the summaries, from real outputs -------------------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"


def summary_of(name: str) -> str:
    from loadgen.results import result

    doc = json.loads((FIXTURES / name).read_text())
    return (result.format_disk if doc["kind"] == "disk" else result.format_net)(doc)


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_summaries_speak_human_units(name):
    # oneway_omitted is text the run wrote into the document; the fixture's predates human units
    text = "\n".join(line for line in summary_of(name).splitlines() if "one way: not reported" not in line)
    assert "MB/s" not in text, "bytes only in binary prefixes (MiB/s), never beside MB/s"
    assert "+-" not in text and not re.search(r"\d ?us\b", text), "± and µs, not +- and us"
    assert not re.search(r"\d{5,} ns", text), "no raw nanoseconds: they take the unit they fill"


def test_disk_summary_in_bytes():
    assert "BW=235.9 MiB/s, 60396 ops in 1.0 s" in summary_of("disk-randread.json")


def test_net_summary_in_bits():
    assert "25.6 Mbit/s payload, 52.0 Mbit/s on an Ethernet wire" in summary_of("run-smoke.json")
    assert "308.2 kbit/s payload" in summary_of("net-stream-external.json")


def test_clock_offset_in_human_units():
    # hosts[].clock holds offset_ns -5871, error_ns 170991
    assert "clock offset -5.9 µs ± 171.0 µs" in summary_of("net-paired-clients-echo.json")


def test_cli_uses_only_public_names_of_other_modules():
    """cli.py is the thin edge: it calls what other modules export, never their private helpers."""
    import ast

    import loadgen.cli

    tree = ast.parse(Path(loadgen.cli.__file__).read_text())
    modules = set()   # names bound to loadgen modules in cli.py
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loadgen"):
            for alias in node.names:
                if alias.name.startswith("_") and alias.name != "__version__":
                    private.append(f"{node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_")):
            private.append(f"{node.value.id}.{node.attr}")
    assert modules and not private
