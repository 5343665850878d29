"""loadgen.results.claims: verdicts, overheads, tiers and side-by-side comparison, on small crafted
result documents (pure: no runs), then `loadgen check` and `loadgen compare` on crafted files.

Exit codes of check: 0 pass, 1 fail, 3 not comparable, 2 bad input.
"""
import copy
import json
from pathlib import Path

import pytest

from loadgen.results import claims
from loadgen.results.claims import Claim, check, compare, metric, overhead_pct, same_workload, tier

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
NO_DMI = "no DMI table (/sys/class/dmi/id)"
LATENCY = {"min": 10_000, "mean": 60_000.0, "p50": 50_000, "p90": 80_000, "p99": 100_000, "p99.9": 200_000,
           "p99.99": 400_000, "max": 1_000_000, "count": 1000}


def disk_doc(rate: float = 100_000.0, *, product: str | None = None, hv_name: str = "KVM",
             latency: dict | None = None, **config) -> dict:
    """A small disk result document; config keys override the workload."""
    cfg = {"target": None, "size_bytes": 16 << 20, "rw": "randread", "read_pct": 100, "bs": "4k",
           "bs_bytes": 4096, "qd": 32, "iops": "max", "direct": True, "engine": "auto", "seed": 1,
           "duration_ns": 10**10, "ramp_ns": 10**9, "interval_ns": 10**9, "workers": 2,
           "target_path": "/tmp/a.dat", "target_kind": "temp", "span_bytes": 16 << 20, "cpus": [0, 1]}
    cfg.update(config)
    hv = {"name": hv_name, "dmi_product": product} if product else \
        {"name": hv_name, "missing": {"dmi_product": NO_DMI}}
    return {"schema": "loadgen/1", "kind": "disk", "config": cfg, "engine": "io_uring",
            "interrupted": False, "failed": False, "stop_reason": None,
            "env": {"hostname": "h", "kernel": "6.1", "hypervisor": hv},
            "summary": {"rate": rate, "bytes_per_s": rate * 4096,
                        "latency_ns": dict(latency or LATENCY)}}


def net_doc(received_pps: float = 50_000.0, *, loss_ratio: float = 0.0, latency: dict | None = None,
            **config) -> dict:
    cfg = {"target": None, "pps": 50_000, "size_bytes": 64, "flows": 2, "mode": "stream",
           "timeout_ns": 10**9, "batch": 32, "receivers": 2, "duration_ns": 10**9, "ramp_ns": 0,
           "interval_ns": 10**9, "workers": 2, "target_address": "127.0.0.1:40000",
           "embedded_receiver": True, "senders": 2, "send_cpus": [0, 1], "recv_cpus": [0, 1]}
    cfg.update(config)
    return {"schema": "loadgen/1", "kind": "net", "config": cfg, "engine": "udp",
            "interrupted": False, "failed": False, "stop_reason": None,
            "env": {"hostname": "h", "kernel": "6.1", "hypervisor": {"name": "KVM"}},
            "summary": {"sent_pps": 50_000.0, "received_pps": received_pps, "loss_ratio": loss_ratio,
                        "oneway": {"latency_ns": dict(latency or LATENCY)}}}


I3_LARGE = Claim("summary.rate", ">=", 100_125.0, "AWS EC2 user guide", {"instance_types": ["i3.large"]})
NO_LOSS = Claim("summary.loss_ratio", "<=", 0.0, "loadgen")
P99_UNDER_1MS = Claim("summary.latency_ns.p99", "<=", 1_000_000.0, "a test")
NITRO = Claim("summary.rate", "overhead<=", 1.0, "Brendan Gregg, 2017")


# ---- metric --------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expect", [
    ("summary.rate", 100_000.0),
    ("summary.latency_ns.p99", 100_000),
    ("summary.nope", None),
    ("summary.rate.deeper", None),
    ("nope", None),
])
def test_metric(path, expect):
    assert metric(disk_doc(), path) == expect


# ---- check: >= and <= ----------------------------------------------------------------------------

@pytest.mark.parametrize("rate, verdict", [(120_000.0, "pass"), (100_125.0, "pass"), (50_000.0, "fail")])
def test_check_at_least(rate, verdict):
    v = check(disk_doc(rate, product="i3.large"), I3_LARGE)
    assert v.verdict == verdict
    assert (v.measured, v.claimed) == (rate, 100_125.0)
    assert v.ratio == round(rate / 100_125.0, 6)
    assert ("meets" if verdict == "pass" else "misses") in v.why


@pytest.mark.parametrize("p99, verdict", [(900_000, "pass"), (1_000_000, "pass"), (1_100_000, "fail")])
def test_check_at_most(p99, verdict):
    v = check(disk_doc(latency=LATENCY | {"p99": p99}), P99_UNDER_1MS)
    assert (v.verdict, v.measured, v.claimed) == (verdict, p99, 1_000_000.0)
    assert v.ratio == round(p99 / 1_000_000, 6)


def test_check_at_most_zero_has_no_ratio():
    assert check(net_doc(loss_ratio=0.0), NO_LOSS) == claims.Verdict(
        "pass", "measured 0 meets <= 0", measured=0.0, claimed=0.0, ratio=None)
    assert check(net_doc(loss_ratio=0.01), NO_LOSS).verdict == "fail"


def test_scope_patterns_match_instance_families():
    claim = Claim("summary.rate", ">=", 1.0, "s", {"instance_types": ["c5.*", "i3.*"]})
    assert check(disk_doc(product="i3.large"), claim).verdict == "pass"
    assert check(disk_doc(product="c5n.large"), claim).verdict == "not comparable"


# ---- check: not comparable -----------------------------------------------------------------------

def test_other_instance_type_is_not_comparable():
    v = check(disk_doc(10**6, product="m5.large"), I3_LARGE)
    assert v.verdict == "not comparable"
    assert "i3.large" in v.why and "m5.large" in v.why
    assert v.measured is None, "no verdict on a number the claim does not speak to"


def test_no_instance_type_says_why():
    v = check(disk_doc(10**6), I3_LARGE)
    assert v.verdict == "not comparable"
    assert "no instance type" in v.why and NO_DMI in v.why


def test_no_instance_type_nor_reason():
    doc = disk_doc(10**6)
    del doc["env"]
    v = check(doc, I3_LARGE)
    assert v.verdict == "not comparable" and "not recorded" in v.why


def test_other_hypervisor_is_not_comparable():
    claim = Claim("summary.rate", ">=", 1.0, "s", {"hypervisor": "Xen"})
    v = check(disk_doc(hv_name="KVM"), claim)
    assert v.verdict == "not comparable" and "Xen" in v.why and "KVM" in v.why
    assert check(disk_doc(hv_name="Xen"), claim).verdict == "pass"


def test_kind_mismatch_is_not_comparable():
    v = check(net_doc(), Claim("summary.rate", ">=", 1.0, "s"), kind="disk")
    assert v.verdict == "not comparable" and "disk" in v.why and "net" in v.why


@pytest.mark.parametrize("flag", ["interrupted", "failed"])
def test_incomplete_run_is_not_comparable(flag):
    doc = disk_doc(10**6, product="i3.large") | {flag: True, "stop_reason": "every I/O failed"}
    v = check(doc, I3_LARGE)
    assert v.verdict == "not comparable" and "every I/O failed" in v.why


@pytest.mark.parametrize("value", [None, "fast", True, {"p50": 1}])
def test_missing_or_non_numeric_metric_is_not_comparable(value):
    doc = disk_doc(product="i3.large")
    if value is None:
        del doc["summary"]["rate"]
    else:
        doc["summary"]["rate"] = value
    v = check(doc, I3_LARGE)
    assert v.verdict == "not comparable" and "summary.rate" in v.why


def test_claim_on_a_dotted_percentile():
    v = check(disk_doc(), Claim("summary.latency_ns.p99.9", "<=", 1_000_000.0, "s"))
    assert (v.verdict, v.measured) == ("pass", 200_000)


# ---- check: overhead claims ----------------------------------------------------------------------

def test_overhead_needs_a_baseline():
    v = check(disk_doc(99_600.0), NITRO)
    assert v.verdict == "not comparable" and "baseline" in v.why
    assert v.measured == 99_600.0


@pytest.mark.parametrize("change", [{"qd": 1}, {"bs": "8k", "bs_bytes": 8192}, {"rw": "randwrite"}])
def test_overhead_against_another_workload_is_not_comparable(change):
    v = check(disk_doc(99_600.0), NITRO, baseline=disk_doc(100_000.0, **change))
    assert v.verdict == "not comparable" and "different workloads" in v.why


def test_overhead_against_another_kind_is_not_comparable():
    v = check(disk_doc(99_600.0), NITRO, baseline=net_doc())
    assert v.verdict == "not comparable" and "different kinds" in v.why


def test_overhead_baseline_without_the_metric():
    base = disk_doc()
    del base["summary"]["rate"]
    assert check(disk_doc(99_600.0), NITRO, baseline=base).verdict == "not comparable"


def test_overhead_within_hardware_virtualization_passes():
    # Incidental differences (where the file was, the seed, the CPUs) do not matter.
    base = disk_doc(100_000.0, target_path="/metal/a", seed=7, cpus=list(range(72)))
    v = check(disk_doc(99_600.0), NITRO, baseline=base)
    assert v.verdict == "pass"
    assert v.measured == pytest.approx(0.4) and v.claimed == 1.0
    assert v.ratio == 0.996
    assert "virtualized in hardware" in v.why and "0.40%" in v.why


def test_overhead_of_5_percent_fails():
    v = check(disk_doc(95_000.0), NITRO, baseline=disk_doc(100_000.0))
    assert v.verdict == "fail" and v.measured == pytest.approx(5.0)
    assert "between hardware-virtualized" in v.why


def test_faster_than_baseline_passes():
    v = check(disk_doc(101_000.0), NITRO, baseline=disk_doc(100_000.0))
    assert v.verdict == "pass" and v.measured == pytest.approx(-1.0) and "no overhead" in v.why


def test_overhead_on_a_latency_percentile_is_lower_is_better():
    claim = Claim("summary.latency_ns.p99", "overhead<=", 1.0, "s")
    v = check(disk_doc(latency=LATENCY | {"p99": 110_000}), claim, baseline=disk_doc(latency=LATENCY))
    assert v.verdict == "fail" and v.measured == pytest.approx(10.0)


@pytest.mark.parametrize("flag", ["interrupted", "failed"])
def test_incomplete_baseline_is_not_comparable(flag):
    base = disk_doc(100_000.0) | {flag: True, "stop_reason": "interrupted"}
    assert check(disk_doc(99_600.0), NITRO, baseline=base).verdict == "not comparable"


# ---- tiers and overheads -------------------------------------------------------------------------

NONE, HW, NITRO_T, BETWEEN, PV, SW, BEYOND = (
    "no overhead", "virtualized in hardware", "within Nitro's claim", "between hardware-virtualized",
    "paravirtualized", "virtualized in software", "slower than software")


# profiles/README.md: hardware 0.1-0.5%, Nitro under 1%, paravirtualized 10-50% lower, software 2-10x slower
# (a rate at 1/2 to 1/10 of the baseline: 50-90% lower).
@pytest.mark.parametrize("overhead, starts", [
    (-5.0, NONE), (0.0, NONE), (0.1, HW), (0.3, HW), (0.5, HW), (0.8, NITRO_T), (1.0, NITRO_T),
    (5.0, BETWEEN),
    (10.0, BETWEEN),   # the bands' bounds are inclusive above: 10 is the top of "between"
    (30.0, PV), (50.0, PV), (70.0, SW), (90.0, SW), (95.0, BEYOND), (1e9, BEYOND),
])
def test_tier(overhead, starts):
    assert tier(overhead).startswith(starts)


@pytest.mark.parametrize("base, other, higher_is_better, expect", [
    (100.0, 99.0, True, 1.0),       # a rate 1% lower
    (100.0, 101.0, True, -1.0),     # a rate 1% higher: negative overhead
    (100.0, 50.0, True, 50.0),      # half the rate: "2x slower"
    (100.0, 110.0, False, 10.0),    # a latency 10% longer
    (100.0, 90.0, False, -10.0),    # a latency 10% shorter
    (0, 5.0, True, None),           # no baseline number
    (0.0, 5.0, False, None),
])
def test_overhead_pct(base, other, higher_is_better, expect):
    got = overhead_pct(base, other, higher_is_better)
    assert got == (pytest.approx(expect) if expect is not None else None)


# ---- same_workload -------------------------------------------------------------------------------

@pytest.mark.parametrize("incidental", [
    {"target_path": "/dev/nvme0n1", "target_kind": "block", "target": "/dev/nvme0n1"},
    {"seed": 42}, {"cpus": [4, 5]}, {"span_bytes": 1 << 40}, {"engine": "io_uring"},
])
def test_same_workload_ignores_incidental_keys(incidental):
    assert same_workload(disk_doc(), disk_doc(**incidental)) is None


def test_same_workload_ignores_where_net_traffic_went():
    assert same_workload(net_doc(), net_doc(target_address="10.0.0.2:7000", send_cpus=[3],
                                            recv_cpus=[2], target="10.0.0.2:7000")) is None


@pytest.mark.parametrize("change, key", [
    ({"rw": "randwrite"}, "rw"), ({"bs": "8k", "bs_bytes": 8192}, "bs"), ({"qd": 1}, "qd"),
    ({"iops": 50_000}, "iops"), ({"direct": False}, "direct"), ({"workers": 8}, "workers"),
])
def test_same_workload_catches_different_work(change, key):
    why = same_workload(disk_doc(), disk_doc(**change))
    assert why and why.startswith("different workloads") and key in why


def test_same_workload_catches_different_net_work():
    assert "pps" in same_workload(net_doc(), net_doc(pps=100_000))
    assert "size_bytes" in same_workload(net_doc(), net_doc(size_bytes=1400))


def test_same_workload_catches_different_kinds():
    assert "different kinds" in same_workload(disk_doc(), net_doc())


# ---- compare -------------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"


def real(name: str, **config) -> dict:
    """A real result (tests/fixtures/results), with config keys overridden."""
    doc = json.loads((FIXTURES / name).read_text())
    doc["config"].update(config)
    return doc


def scaled(doc: dict, path: str, factor: float) -> dict:
    """A copy of doc with the number (or every number of the block) at path times factor."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if isinstance(node[last], dict):
        node[last] = {k: (v * factor if k != "count" else v) for k, v in node[last].items()}
    else:
        node[last] *= factor
    return doc


def rows_by_label(c: dict) -> dict:
    return {r["metric"]: r for r in c["rows"]}


def test_compare_closed_loop_disk_compares_the_rate():
    base = real("disk-randread.json")          # iops max
    other = scaled(scaled(base, "summary.rate", 0.996), "summary.bytes_per_s", 0.996)
    c = compare(base, other)
    rows = rows_by_label(c)
    assert c["loop"] == "closed"
    assert list(rows) == ["IOPS", "bandwidth", "latency p50", "latency p99", "latency p99.9", "latency p99.99"]
    assert rows["IOPS"] == {"metric": "IOPS", "unit": "ops/s", "base": base["summary"]["rate"],
                            "other": other["summary"]["rate"], "overhead_pct": pytest.approx(0.4)}
    assert rows["bandwidth"]["unit"] == "bytes/s" and rows["bandwidth"]["overhead_pct"] == pytest.approx(0.4)
    assert rows["latency p99.9"]["base"] == base["summary"]["latency_ns"]["p99.9"]
    assert c["tier_metric"] == "IOPS" and c["tier"].startswith(HW)
    assert c["overhead_pct"] == pytest.approx(0.4) == c["performance_loss_pct"]


def test_compare_closed_loop_net_names_the_tier_from_what_arrived():
    base = real("net-stream.json", pps="max")
    other = scaled(base, "summary.received_pps", 0.7)
    c = compare(base, other)
    rows = rows_by_label(c)
    assert [r["metric"] for r in c["rows"][:3]] == ["received pps", "sent pps", "loss"]
    assert rows["received pps"]["overhead_pct"] == pytest.approx(30.0)
    assert rows["sent pps"]["overhead_pct"] == 0.0
    assert c["tier_metric"] == "received pps" and c["tier"].startswith(PV)


@pytest.mark.parametrize("name", ["net-echo.json", "net-stream.json", "disk-randrw-paced.json"])
def test_compare_open_loop_leaves_out_the_rate_the_schedule_set(name):
    base = real(name)
    latency = claims.latency_path(base)
    other = scaled(base, latency, 2.0)     # the same schedule, every latency twice as long
    c = compare(base, other)
    labels = [r["metric"] for r in c["rows"]]
    assert c["loop"] == "open" and c["rate_fixed"] == base["config"]["pps" if base["kind"] == "net" else "iops"]
    assert not {"sent pps", "IOPS", "bandwidth"} & set(labels), "the schedule set these"
    assert labels[-4:] == ["latency p50", "latency p99", "latency p99.9", "latency p99.99"]
    assert all(r["overhead_pct"] == pytest.approx(100.0) for r in c["rows"] if r["unit"] == "ns")
    # twice the latency is half the performance: the top of the paravirtualized band
    assert c["tier_metric"] == "latency p99" and c["performance_loss_pct"] == pytest.approx(50.0)
    assert c["tier"].startswith(PV)


def test_compare_open_loop_sees_a_tail_the_sent_rate_hides():
    # The reported case: the same schedule, sent pps equal, p99.99 +104%; once "no overhead".
    base = real("net-echo.json")
    other = copy.deepcopy(base)
    lat = other["summary"]["latency_ns"]
    lat.update({"p99": lat["p99"] * 1.2, "p99.99": lat["p99.99"] * 2.04})
    c = compare(base, other)
    assert rows_by_label(c)["latency p99.99"]["overhead_pct"] == pytest.approx(104.0)
    assert c["tier_metric"] == "latency p99" and not c["tier"].startswith(NONE)


def test_compare_open_loop_net_keeps_what_the_receiver_measured():
    base = real("net-stream.json")
    other = scaled(scaled(base, "summary.received_pps", 0.9), "summary.loss_ratio", 1.0)
    other["summary"]["loss_ratio"] = 0.1
    rows = rows_by_label(compare(base, other))
    assert rows["received pps"]["overhead_pct"] == pytest.approx(10.0)
    assert rows["loss"]["overhead_pct"] is None, "no overhead relative to a zero baseline"


def test_compare_open_loop_without_latency_names_no_tier():
    base = real("net-paired.json")          # stream across hosts: one-way latency was omitted
    c = compare(base, base)
    assert c["loop"] == "open" and c["tier"] is None and c["tier_metric"] is None
    assert [r["metric"] for r in c["rows"]] == ["received pps", "loss"]


def test_compare_runs_of_different_durations():
    base = real("disk-randread.json")
    longer = real("disk-randread.json", duration_ns=30 * 10**9, ramp_ns=5 * 10**9)
    longer["summary"]["ops"] *= 30          # counts grow with the run; per-second rates do not
    c = compare(base, longer)
    assert c["overhead_pct"] == 0.0 and c["tier"].startswith(NONE)
    assert any("per second" in n for n in c["notes"])
    assert compare(base, base)["notes"] == []


def test_compare_says_when_a_run_did_not_complete():
    other = real("disk-randread.json") | {"interrupted": True, "stop_reason": "interrupted by SIGINT"}
    assert "the other run did not complete: interrupted by SIGINT" in compare(real("disk-randread.json"), other)["notes"]


def test_compare_without_numbers():
    a, b = disk_doc(), disk_doc()
    del a["summary"]["latency_ns"]
    b["summary"]["rate"] = None
    c = compare(a, b)
    assert [r["metric"] for r in c["rows"]] == ["IOPS", "bandwidth"]
    assert rows_by_label(c)["IOPS"]["overhead_pct"] is None
    assert c["tier_metric"] == "bandwidth", "the first rate both runs measured"
    b["summary"]["bytes_per_s"] = None
    c = compare(a, b)
    assert c["overhead_pct"] is None and c["tier"] is None and c["tier_metric"] is None


@pytest.mark.parametrize("base, other, says", [
    (real("disk-randread.json"), real("net-echo.json"), "kinds of run"),
    (real("disk-randread.json"), real("disk-randread.json", qd=1), "qd"),
    (real("disk-randread.json"), real("disk-randread.json", bs="8k", bs_bytes=8192), "bs"),
    (real("disk-randread.json"), real("disk-randread.json", rw="randwrite", read_pct=0), "rw"),
    (real("disk-randread.json"), real("disk-randread.json", iops=50_000), "iops"),
    (real("net-echo.json"), real("net-echo.json", mode="stream"), "mode"),
    (real("net-echo.json"), real("net-echo.json", size_bytes=1400), "size_bytes"),
    (real("net-echo.json"), real("net-echo.json", pps=20_000), "pps"),
])
def test_compare_refuses_another_workload_shape(base, other, says):
    with pytest.raises(ValueError, match=f"different .*{says}"):
        compare(base, other)


@pytest.mark.parametrize("overhead, loss", [
    (0.4, 0.4), (100.0, 50.0), (900.0, 90.0), (-50.0, -100.0),
])
def test_performance_loss_of_a_latency(overhead, loss):
    base = 1000.0
    other = base * (1 + overhead / 100)
    assert claims.performance_loss_pct(base, other, higher_is_better=False) == pytest.approx(loss, abs=0.01)
    assert claims.performance_loss_pct(base, base * (1 - loss / 100), higher_is_better=True) == pytest.approx(loss)


def test_pure_functions_leave_documents_alone():
    a, b = disk_doc(product="i3.large"), disk_doc(99_600.0)
    before = copy.deepcopy((a, b))
    check(a, I3_LARGE)
    check(b, NITRO, baseline=a)
    compare(a, b)
    assert (a, b) == before


# ---- loadgen check and compare, on crafted files -------------------------------------------------

def write(tmp_path, name: str, doc) -> str:
    (tmp_path / name).write_text(json.dumps(doc))
    return name


def recorded(doc: dict, claim: Claim, name: str = "crafted") -> dict:
    return doc | {"profile": {"name": name, "path": f"profiles/{name}.toml", "description": "",
                              "claim": {"metric": claim.metric, "op": claim.op, "value": claim.value,
                                        "source": claim.source, "scope": claim.scope}}}


def assert_one_line_error(done, code: int = 2) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: "), done.stderr
    return lines[0]


def verdict_line(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("verdict:")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_cli_compare(cli, tmp_path):
    a = write(tmp_path, "metal.json", disk_doc(100_000.0))
    b = write(tmp_path, "nitro.json", disk_doc(99_600.0, seed=9, target_path="/elsewhere", duration_ns=3 * 10**10))
    done = cli("compare", a, b)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "closed loop (rate max): the achieved rate measures the system" in lines
    assert "note: the runs lasted differently long; every rate compared is per second" in lines
    tiers = [line for line in lines if line.startswith("tier:")]
    assert len(tiers) == 1 and HW in tiers[0] and "(from IOPS: overhead +0.40%)" in tiers[0]
    assert [line.split() for line in lines if line.startswith("latency p99.9 ")] == [
        ["latency", "p99.9", "200.0", "µs", "200.0", "µs", "+0.00%"]]
    assert [line.split() for line in lines if line.startswith("bandwidth")] == [
        ["bandwidth", "390.6", "MiB/s", "389.1", "MiB/s", "+0.40%"]]


def test_cli_compare_open_loop(cli, tmp_path):
    base = real("net-echo.json")
    a = write(tmp_path, "a.json", base)
    b = write(tmp_path, "b.json", scaled(base, "summary.latency_ns", 2.0))
    done = cli("compare", a, b)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("open loop (10.0k pps set by the schedule)")
    assert not any(line.startswith("sent pps") for line in lines)
    p50 = base["summary"]["latency_ns"]["p50"]       # 35.7 µs in the fixture
    assert [line.split()[2:] for line in lines if line.startswith("latency p50 ")] == [
        [f"{p50 / 1000:.1f}", "µs", f"{2 * p50 / 1000:.1f}", "µs", "+100.00%"]]
    assert lines[-1] == ("tier: paravirtualized (Xen PV, PV drivers): 10-50% lower "
                         "(from latency p99: overhead +100.00%, performance 50.00% lower)")


def test_cli_compare_names_no_tier_without_a_measure(cli, tmp_path):
    a = write(tmp_path, "a.json", real("net-paired.json"))
    done = cli("compare", a, a)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "tier: not named (latency p99 is missing or zero in one of the runs)"


def test_cli_compare_refuses_different_workloads(cli, tmp_path):
    a = write(tmp_path, "a.json", disk_doc())
    b = write(tmp_path, "b.json", disk_doc(qd=1))
    line = assert_one_line_error(cli("compare", a, b))
    assert "refusing to compare" in line and "qd" in line


@pytest.mark.parametrize("doc, code, word", [
    (recorded(disk_doc(120_000.0, product="i3.large"), I3_LARGE), 0, "PASS"),
    (recorded(disk_doc(50_000.0, product="i3.large"), I3_LARGE), 1, "FAIL"),
    (recorded(disk_doc(10**6, product="m5.large"), I3_LARGE), 3, "NOT COMPARABLE"),
    (recorded(disk_doc(10**6), I3_LARGE), 3, "NOT COMPARABLE"),
    (recorded(disk_doc(10**6, product="i3.large") | {"interrupted": True}, I3_LARGE), 3, "NOT COMPARABLE"),
    (recorded(net_doc(loss_ratio=0.0), NO_LOSS), 0, "PASS"),
    (recorded(net_doc(loss_ratio=0.5), NO_LOSS), 1, "FAIL"),
    (recorded(disk_doc(), NITRO), 3, "NOT COMPARABLE"),   # no --baseline
])
def test_cli_check_exit_codes(cli, tmp_path, doc, code, word):
    done = cli("check", write(tmp_path, "r.json", doc))
    assert done.returncode == code, (done.stdout, done.stderr)
    assert verdict_line(done.stdout).startswith(f"verdict: {word} (")
    assert f"source: {doc['profile']['claim']['source']}" in done.stdout


@pytest.mark.parametrize("rate, code", [(99_600.0, 0), (95_000.0, 1)])
def test_cli_check_overhead_with_baseline(cli, tmp_path, rate, code):
    r = write(tmp_path, "nitro.json", disk_doc(rate))
    base = write(tmp_path, "metal.json", disk_doc(100_000.0))
    nitro_profile = str(PROFILES / "nitro-overhead.toml")
    done = cli("check", r, "--profile", nitro_profile, "--baseline", base)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "overhead" in verdict_line(done.stdout)


def test_cli_check_profile_of_another_kind(cli, tmp_path):
    r = write(tmp_path, "r.json", net_doc())
    done = cli("check", r, "--profile", str(PROFILES / "i3-large-randread.toml"))
    assert done.returncode == 3
    assert "NOT COMPARABLE" in verdict_line(done.stdout)


@pytest.mark.parametrize("content, says", [
    ({"hello": "world"}, "not a loadgen/1 result document"),
    ([1, 2, 3], "not a loadgen/1 result document"),
    ("{not json", "not a readable result document"),
])
def test_cli_check_refuses_what_is_not_a_result(cli, tmp_path, content, says):
    path = tmp_path / "x.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert says in assert_one_line_error(cli("check", "x.json"))
    assert says in assert_one_line_error(cli("compare", "x.json", "x.json"))


def test_cli_check_missing_file(cli):
    assert "no such result" in assert_one_line_error(cli("check", "nope.json"))


def test_cli_check_needs_a_claim(cli, tmp_path):
    r = write(tmp_path, "r.json", disk_doc())
    assert "not run from a profile" in assert_one_line_error(cli("check", r))
    no_claim = str(PROFILES / "disk-latency-qd1.toml")
    assert "makes no claim" in assert_one_line_error(cli("check", r, "--profile", no_claim))


def test_cli_check_bad_baseline(cli, tmp_path):
    r = write(tmp_path, "r.json", disk_doc())
    bad = write(tmp_path, "b.json", {"schema": "other"})
    nitro_profile = str(PROFILES / "nitro-overhead.toml")
    assert "not a loadgen/1" in assert_one_line_error(cli("check", r, "--profile", nitro_profile,
                                                           "--baseline", bad))


# ---- the claims live in the repository ----------------------------------------------------------

REPO = PROFILES.parent
CLAIMS_FILE = PROFILES / "README.md"


def test_the_repository_cites_only_itself():
    for path in [REPO / "README.md", CLAIMS_FILE, *PROFILES.glob("*.toml")]:
        assert "shared/CLAIMS" not in path.read_text(), f"{path.name} points outside the repository"
    assert "profiles/README.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("path", sorted(PROFILES.glob("*.toml")), ids=lambda p: p.name)
def test_every_profile_cites_the_claims_file_and_is_listed_there(path):
    assert "profiles/README.md" in path.read_text().splitlines()[0]
    assert f"| `{path.name}` |" in CLAIMS_FILE.read_text()


def test_the_tiers_are_those_of_the_claims_file():
    text = CLAIMS_FILE.read_text()
    assert "AWS EC2 Virtualization 2017: Introducing Nitro" in text
    for cost in ("2-10x slower", "10-50% lower performance", "0.1-0.5% lower performance", "under 1%"):
        assert cost in text, cost
    assert "0.1-0.5% lower" in tier(0.3) and "10-50% lower" in tier(30.0) and "2-10x slower" in tier(70.0)


def test_cli_check_shows_a_latency_claim_in_human_units(cli, tmp_path):
    claim = Claim("summary.latency_ns.p99.9", "<=", 1_000_000.0, "a test")
    done = cli("check", write(tmp_path, "r.json", recorded(disk_doc(), claim)))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "claim (crafted): summary.latency_ns.p99.9 <= 1,000,000 (1.0 ms)" in done.stdout
    assert "  measured: 200,000 (200.0 µs), ratio 0.2000" in done.stdout


def test_cli_check_shows_an_overhead_in_percent(cli, tmp_path):
    done = cli("check", write(tmp_path, "r.json", recorded(disk_doc(99_600.0), NITRO)),
               "--baseline", write(tmp_path, "b.json", disk_doc(100_000.0)))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "summary.rate overhead<= 1%" in done.stdout and "measured: 0.4%" in done.stdout


def test_compare_closed_loop_to_an_external_target_names_the_tier_from_what_was_sent():
    base = real("net-stream-external.json", pps="max")      # received: not measured
    c = compare(base, scaled(base, "summary.sent_pps", 0.5))
    assert rows_by_label(c)["received pps"]["overhead_pct"] is None
    assert c["tier_metric"] == "sent pps" and c["tier"].startswith(PV)


@pytest.mark.parametrize("value, unit, text", [
    (None, "ns", "-"),
    ("n/a", "ns", "n/a"),                  # not a measurement: shown as it is
    (1_500_000, "ns", "1.5 ms"),
    (2 * 1024 ** 3, "bytes/s", "2.0 GiB/s"),
    (0.25, "ratio", "25.000%"),
    (2_000_000, "ops/s", "2.0M"),
])
def test_format_measure(value, unit, text):
    assert claims.format_measure(value, unit) == text


def test_format_verdict_shows_a_duration_in_its_unit_too():
    claim = Claim("summary.latency_ns.p99", "<=", 200_000, "s", {})
    text = claims.format_verdict(claim, "p", claims.Verdict("pass", "within", 150_000.0, 200_000.0, 0.75))
    assert text.splitlines() == ["claim (p): summary.latency_ns.p99 <= 200,000 (200.0 µs)", "  source: s",
                                 "  measured: 150,000 (150.0 µs), ratio 0.7500", "  verdict: PASS (within)"]
