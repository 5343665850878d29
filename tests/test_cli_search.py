"""`loadgen search net|disk` at the command line: its options, its refusals, and short real searches.

The real searches are short and bounded (trials of 300 ms, a capped count, a narrow
range); what they find depends on this busy machine, so they assert the shape of the
output and the document, never the knee's value (tests/net/test_search_netns.py
checks a knee against a known cap).
"""
import json

import pytest

from loadgen.results import documents
from loadgen.search import curve_rates

SHORT = ["--trial", "300ms", "--ramp", "0s", "--interval", "100ms", "--max-trials", "4", "--resolution", "50%"]


@pytest.mark.parametrize("args, says", [
    (["search", "net", "--max-loss", "2"], "invalid max-loss"),
    (["search", "net", "--resolution", "0"], "invalid resolution"),
    (["search", "net", "--load-curve", "10,200"], "invalid load-curve"),
    (["search", "net", "--floor", "50k", "--ceiling", "10k"], "below --floor"),
    (["search", "net", "--target", "127.0.0.1:9"], "no loss to search by"),
    (["search", "net", "--clients", "127.0.0.1:7070"], "--clients needs --peer"),
    (["search", "net", "--size", "1"], "invalid size"),
    (["search", "disk", "--qd", "0"], "invalid qd"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, says):
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and says in lines[0], done.stderr


@pytest.mark.parametrize("kind, left_out", [("net", "--pps"), ("disk", "--iops")])
def test_the_search_sets_the_rate_and_duration_itself(cli, kind, left_out):
    helped = cli("search", kind, "--help")
    assert helped.returncode == 0
    for option in ("--max-loss", "--max-p99", "--trial", "--resolution", "--confirm", "--floor", "--ceiling",
                   "--load-curve", "--max-trials"):
        assert option in helped.stdout
    declared = {line.split()[0] for line in helped.stdout.splitlines() if line.strip().startswith("--")}
    assert "--max-loss" in declared and left_out not in declared and "--duration" not in declared
    refused = cli("search", kind, left_out, "10k")
    assert refused.returncode == 2 and "No such option" in refused.stderr


def test_a_local_net_search_prints_a_line_per_trial_then_the_knee(cli, tmp_path):
    done = cli("search", "net", *SHORT, "--floor", "1k", "--ceiling", "2k", "--max-loss", "1%",
               "--load-curve", "50,100", "--json", str(tmp_path / "s.json"))
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    documents.check(doc, "urn:loadgen:schema:result", "s.json")
    search = doc["search"]
    assert doc["kind"] == "search" and search["kind"] == "net" and search["trial_ns"] == 300_000_000
    lines = done.stdout.splitlines()
    assert lines[0].startswith("loadgen search net: loss <= 1.0000%")
    trials = search["trials"] + search["load_curve"]
    assert len(lines) == 1 + len(trials) + (2 if search["load_curve"] else 1)
    for line, t in zip(lines[1:], trials):
        assert line.startswith(t["phase"]) and ("FAIL" in line) == (t["passed"] is False)
        assert t["summary"]["duration_s"] > 0 and t["histograms"]
    assert 1 <= len(search["trials"]) <= 4 and all(1_000 <= t["rate"] <= 2_000 for t in search["trials"])
    if search["knee_pps"] is None:
        assert lines[-1].startswith("knee: not found") and search["load_curve"] == []
    else:
        assert lines[-2].startswith("knee: ") and lines[-1].startswith("load curve, p99 at each share of the knee")
        assert [p["rate"] for p in search["load_curve"]] == curve_rates(search["knee_pps"], (50, 100))


def test_a_local_disk_search_runs_disk_trials(cli, tmp_path):
    done = cli("search", "disk", *SHORT, "--size", "16m", "--buffered", "--floor", "100", "--ceiling", "200",
               "--load-curve", "none", "--quiet", "--json", str(tmp_path / "d.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    doc = json.loads((tmp_path / "d.json").read_text())
    documents.check(doc, "urn:loadgen:schema:result", "d.json")
    assert doc["search"]["kind"] == "disk" and "knee_iops" in doc["search"] and doc["search"]["load_curve"] == []
    assert all(t["summary"]["ops"] >= 0 and t["rate"] in range(100, 201) for t in doc["search"]["trials"])


def test_a_profile_with_a_search_table_runs_as_a_search_and_check_reads_its_knee(cli, tmp_path):
    profile = tmp_path / "knee.toml"
    profile.write_text('description = "a knee on loopback"\nkind = "net"\n'
                       '[options]\nramp = "0s"\ninterval = "100ms"\n'
                       '[search]\nmax_loss = "1%"\ntrial = "300ms"\nfloor = "1k"\nceiling = "2k"\n'
                       'resolution = "50%"\nmax_trials = 4\nload_curve = "none"\n'
                       '[claim]\nmetric = "search.knee_pps"\nop = ">="\nvalue = 1000\nsource = "this test"\n')
    done = cli("run", str(profile), "--set", "trial=200ms", "--quiet", "--json", str(tmp_path / "k.json"))
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["kind"] == "search" and doc["search"]["trial_ns"] == 200_000_000   # --set reaches the search
    assert doc["profile"]["name"] == "knee" and doc["profile"]["search"]["max_loss"] == "1%"
    checked = cli("check", str(tmp_path / "k.json"))
    if doc["search"]["knee_pps"] is None:
        assert checked.returncode == 3 and "no knee" in checked.stdout
    else:
        assert checked.returncode == 0 and "search.knee_pps >= 1,000" in checked.stdout


def test_a_search_profile_refuses_single_run_outputs(cli, tmp_path):
    profile = tmp_path / "knee.toml"
    profile.write_text('kind = "net"\n[search]\nmax_loss = "1%"\n')
    done = cli("run", str(profile), "--hlog", str(tmp_path / "h.hlog"))
    assert done.returncode == 2 and done.stderr.startswith("loadgen: --hlog is for single runs"), done.stderr
