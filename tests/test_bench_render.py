"""bench/: the renderer against saved outputs of fio, iperf3, sockperf, trafgen and loadgen,
and the process-tree CPU reader against a fake /proc.

The fixtures in tests/fixtures/bench/ are real outputs captured on a test VM (loadgen's
documents trimmed of intervals, histograms, counters and env, which no table reads; see the
README there). expected.txt of disk/ and net/ was printed by the heredoc renderers bench.sh
had before bench/render.py, from the same files: rendering them now must print the same
tables. pacing/expected.txt is bench/render.py's own output when it was captured, kept to
notice an unintended change.
"""
import io
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # bench/ sits beside loadgen/, outside the installed package
    sys.path.insert(0, str(ROOT))

from bench import ports, proc, render  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "bench"


def rendered(fn, *args) -> str:
    out = io.StringIO()
    fn(*args, out=out)
    return out.getvalue()


# ---- stored results directories render again, unchanged --------------------------------------

@pytest.mark.parametrize("section", ["disk", "disk-targets", "net", "pacing", "raw"])
def test_stored_directory_renders_its_expected_tables(section):
    d = FIXTURES / section
    assert rendered(render.render_dir, str(d)) == (d / "expected.txt").read_text()


def test_a_moved_directory_still_finds_its_outputs(tmp_path):
    """Manifests written by bench.sh hold absolute paths; a copy elsewhere resolves them by name."""
    src = FIXTURES / "disk"
    shutil.copytree(src, tmp_path / "disk")
    manifest = tmp_path / "disk" / "disk.manifest.tsv"
    rows = [line.split("\t") for line in manifest.read_text().splitlines()]
    for r in rows:
        r[6], r[8] = f"/gone/away/{r[6]}", f"/gone/away/{r[8]}"
    manifest.write_text("".join("\t".join(r) + "\n" for r in rows))
    text = rendered(render.render_disk, str(manifest))
    assert "randread-qd1      68,761         6,340" in text
    assert "badjson" not in text


def test_render_dir_without_manifests_renders_nothing(tmp_path):
    assert render.render_dir(str(tmp_path), out=io.StringIO()) == 0
    assert render.main(["dir", str(tmp_path)]) == 1


# ---- peers' outputs --------------------------------------------------------------------------

def test_fio_lat_and_clat_percentiles():
    r = render.fio_result(str(FIXTURES / "disk" / "disk-randread-50k.fio.json"), "randread")
    assert r["src"] == "lat"   # --lat_percentiles=1: submission to completion
    assert r["iops"] == pytest.approx(49975.0, abs=1)
    assert (r["p50"], r["p99"]) == (13248.0, 240640.0)
    assert r["clat_p99"] is not None and r["clat_p99"] <= r["p99"]


def test_iperf3_receiver_view():
    r = render.iperf3_result(str(FIXTURES / "net" / "net-blast.iperf3.json"))
    doc = json.loads((FIXTURES / "net" / "net-blast.iperf3.json").read_text())
    rcv = doc["end"]["sum_received"]
    assert r["recv_pps"] == pytest.approx((rcv["packets"] - rcv["lost_packets"]) / rcv["seconds"])
    assert r["loss"] == pytest.approx(rcv["lost_packets"] / rcv["packets"])
    assert r["sent_pps"] > r["recv_pps"]


def test_iperf3_error_document_is_an_error(tmp_path):
    p = tmp_path / "x.iperf3.json"
    p.write_text(json.dumps({"start": {}, "intervals": [], "end": {}, "error": "unable to connect"}))
    assert render.iperf3_result(str(p)) == {"error": "unable to connect"}


def test_sockperf_latency_in_microseconds():
    r = render.sockperf_lat(str(FIXTURES / "net" / "net-latency-100k.sockperf.txt"))
    assert (r["timed"], r["received"], r["unit"]) == (1003, 1003, 1.0)
    assert (r["p50"], r["p99"], r["p99.9"]) == (28.503, 7534.295, 11510.490)


def test_sockperf_throughput_counts_the_server():
    r = render.sockperf_tput(str(FIXTURES / "net" / "net-blast.sockperf.txt"))
    assert r["recv_pps"] == pytest.approx(80839, abs=1)
    assert 0 < r["loss"] < 1


def test_trafgen_row_comes_from_the_veth_counters():
    r = render.veth_result(str(FIXTURES / "net" / "net-veth.trafgen.txt"))
    c = json.loads((FIXTURES / "net" / "net-veth.trafgen.counters.json").read_text())
    assert r["recv_pps"] == c["rx_packets"] / c["seconds"]
    assert r["sent_pps"] == (c["tx_packets"] + c["tx_dropped"]) / c["seconds"]
    assert "packets outgoing" in (FIXTURES / "net" / "net-veth.trafgen.txt").read_text()


def test_ansi_colours_are_stripped(tmp_path):
    src = (FIXTURES / "net" / "net-latency-100k.sockperf.txt").read_text()
    p = tmp_path / "c.sockperf.txt"
    p.write_text(src.replace("---> percentile", "\x1b[32m---> percentile"))
    assert render.sockperf_lat(str(p))["p99"] == 7534.295


# ---- loadgen's documents are read strictly ---------------------------------------------------

def _doc(name="disk/disk-randread-50k.loadgen.json"):
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("drop, missing", [
    (("summary", "rate"), "summary/rate"),
    (("summary", "latency_ns", "p99"), "latency_ns/p99"),
    (("summary", "schedule_lag_ns"), "schedule_lag_ns/max"),
    (("engine",), "engine"),
])
def test_a_missing_loadgen_key_is_a_schema_error(tmp_path, drop, missing):
    doc = _doc()
    parent = doc
    for k in drop[:-1]:
        parent = parent[k]
    del parent[drop[-1]]
    p = tmp_path / "x.loadgen.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(render.SchemaError, match=missing.split("/")[-1]):
        render.loadgen_disk(str(p))


def test_a_schema_error_shows_as_a_note_not_a_dash(tmp_path):
    d = tmp_path / "disk"
    shutil.copytree(FIXTURES / "disk", d)
    doc = _doc()
    del doc["summary"]["service_ns"]
    (d / "disk-randread-50k.loadgen.json").write_text(json.dumps(doc))
    text = rendered(render.render_disk, str(d / "disk.manifest.tsv"))
    assert "badjson" in text
    assert "note: randread-50k: could not parse loadgen JSON disk-randread-50k.loadgen.json: " \
           "loadgen result does not match its schema: no service_ns/p50" in text


def test_another_schema_version_is_refused(tmp_path):
    doc = _doc()
    doc["schema"] = "loadgen/2"
    p = tmp_path / "x.loadgen.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(render.SchemaError, match="loadgen/2"):
        render.loadgen_disk(str(p))


def test_net_one_way_and_echo_latency():
    echo = render.loadgen_net(str(FIXTURES / "net" / "net-latency-100k.loadgen.json"))
    assert echo["svc_p50"] is not None and echo["p50"] >= echo["svc_p50"]
    blast = render.loadgen_net(str(FIXTURES / "net" / "net-blast.loadgen.json"))
    assert blast["svc_p50"] is None   # one-way service latency is not a round trip
    assert blast["split"] == "2s/2r/2f"


# ---- pacing ------------------------------------------------------------------------------------

def test_pacing_ratios_are_loadgen_over_peer():
    text = rendered(render.render_pacing, str(FIXTURES / "pacing" / "pacing.manifest.tsv"), "3")
    rows = {tuple(line.split()[:2]): line for line in text.splitlines() if line.startswith("net-10k")}
    cpu = {p.name: json.loads(p.read_text())["cores"] for p in (FIXTURES / "pacing").glob("*.cpu.json")}
    lg, peer = cpu["pacing-net-10k.loadgen.cpu.json"], cpu["pacing-net-10k.iperf3.cpu.json"]
    assert rows["net-10k", "loadgen"].split()[-1] == f"{lg / peer:.2f}"
    assert rows["net-10k", "iperf3"].split()[-1] == "-"


def test_pacing_cpu_sample_error_is_a_note(tmp_path):
    d = tmp_path / "pacing"
    shutil.copytree(FIXTURES / "pacing", d)
    (d / "pacing-net-10k.iperf3.cpu.json").write_text(json.dumps({"error": "process tree ended"}))
    text = rendered(render.render_pacing, str(d / "pacing.manifest.tsv"), "3")
    assert "note: net-10k: iperf3 -u -b 5120000: CPU not measured: process tree ended" in text


# ---- raw -----------------------------------------------------------------------------------------

RAW = FIXTURES / "raw"


def raw_rows(text: str, title: str) -> dict[tuple[str, str], list[str]]:
    """The rows of one of the raw section's tables, by (label, round) (cells split on 2+ spaces)."""
    lines = text.split(title, 1)[1].splitlines()[3:]
    rows = {}
    for line in lines:
        if not line.strip() or line.startswith("=="):
            break
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if len(cells) < 2:
            break       # the note under the table
        rows[cells[0], cells[1]] = cells[2:]
    return rows


def rx_pps(name: str) -> float:
    c = json.loads((RAW / f"{name}.counters.json").read_text())
    return c["rx_packets"] / c["seconds"]


def sender_cpu_ns(name: str) -> float:
    return json.loads((RAW / f"{name}.cpu.json").read_text())["cores"] * 1e9 / rx_pps(name)


def test_raw_compares_each_round_by_the_receiving_veth_and_takes_medians():
    text = rendered(render.render_raw, str(RAW / "raw.manifest.tsv"), "2")
    rows = raw_rows(text, "== raw: --pps max")
    ratios, cpu_ratios = [], []
    for rnd in ("1", "2"):
        tg = f"raw-veth.{rnd}.trafgen"
        assert rows["trafgen --cpus 1", rnd][1] == f"{rx_pps(tg):,.0f}"
        assert rows["trafgen --cpus 1", rnd][2:5] == ["-", "-", "-"]
        assert rows["trafgen --cpus 1", rnd][5] == f"{sender_cpu_ns(tg):,.0f}"
        lg = f"raw-veth.{rnd}.packet"
        doc = json.loads((RAW / f"{lg}.json").read_text())["summary"]
        ratios.append(rx_pps(lg) / rx_pps(tg))
        cpu_ratios.append(sender_cpu_ns(lg) / sender_cpu_ns(tg))
        assert rows["loadgen --engine packet --pps max", rnd] == [
            f"{doc['sent_pps']:,.0f}", f"{rx_pps(lg):,.0f}", f"{doc['received_pps']:,.0f}", str(doc["lost"]),
            f"{ratios[-1]:.2f}", f"{sender_cpu_ns(lg):,.0f}", f"{cpu_ratios[-1]:.2f}"]
    # two rounds: the median is their mean
    median = rows["loadgen --engine packet --pps max", "median"]
    assert median[0] == f"{(rx_pps('raw-veth.1.packet') + rx_pps('raw-veth.2.packet')) / 2:,.0f}"
    assert median[1] == f"{sum(ratios) / 2:.2f}" and median[3] == f"{sum(cpu_ratios) / 2:.2f}"
    assert ("loadgen --engine xdp --pps max", "median") in rows
    assert "xdp engine, veth: " in text and "AF_XDP in copy mode" in text and "queue decided by bind" in text


@pytest.mark.parametrize("case, title", [("scale", "== raw: scaling on a 2-queue veth pair, 64-byte"),
                                         ("wire", "== raw: scaling on a 2-queue veth pair, nothing received")])
def test_raw_scaling_is_each_tool_over_its_own_single_sender_and_trafgen_of_the_round(case, title):
    text = rendered(render.render_raw, str(RAW / "raw.manifest.tsv"), "2")
    rows = raw_rows(text, title)
    x1s = {}
    for rnd in ("1", "2"):
        for n in ("1", "2"):
            tg = rx_pps(f"raw-{case}.{rnd}.trafgen-{n}")
            for label, name in ((f"trafgen --cpus {n}", "trafgen"),
                                (f"loadgen --engine packet --workers {n}", "packet"),
                                (f"loadgen --engine xdp --workers {n}", "xdp")):
                got, one = rx_pps(f"raw-{case}.{rnd}.{name}-{n}"), rx_pps(f"raw-{case}.{rnd}.{name}-1")
                x1s.setdefault(label, []).append(got / one)
                assert rows[label, rnd][0] == n and rows[label, rnd][2] == f"{got:,.0f}"
                assert rows[label, rnd][-2] == f"{got / one:.2f}"
                assert rows[label, rnd][-1] == ("-" if name == "trafgen" else f"{got / tg:.2f}")
    # two rounds: the median is their mean
    assert rows["loadgen --engine packet --workers 2", "median"][-2] == \
        f"{sum(x1s['loadgen --engine packet --workers 2']) / 2:.2f}"
    assert f"packet engine, {case} (2): " in text and "cpu 0 -> tx-0, cpu 1 -> tx-1" in text


def test_raw_wire_case_says_what_reached_the_receiving_ip_layer(tmp_path):
    text = rendered(render.render_raw, str(RAW / "raw.manifest.tsv"), "2")
    start, end = (int((RAW / f"raw-wire.ip-in.{w}").read_text()) for w in ("start", "end"))
    assert f"IP packets the receiving namespace took in across the case: {end - start:,}." in text
    d = tmp_path / "raw"
    shutil.copytree(RAW, d)
    (d / "raw-wire.ip-in.end").unlink()
    text = rendered(render.render_raw, str(d / "raw.manifest.tsv"), "2")
    assert "nothing received" in text and "took in across the case" not in text


def test_raw_auto_senders_row():
    text = rendered(render.render_raw, str(RAW / "raw.manifest.tsv"), "2")
    rows = raw_rows(text, "== raw: scaling on a 2-queue veth pair, 64-byte")
    # a sender per queue: the manifest says "auto", the document how many there were
    auto = json.loads((RAW / "raw-scale.loadgen-auto.json").read_text())["config"]
    assert rows["loadgen --engine packet (a sender per queue)", "-"][0] == str(auto["senders"]) == "2"


def test_raw_paced_row_reads_the_schedule():
    text = rendered(render.render_raw, str(RAW / "raw.manifest.tsv"), "2")
    rows = raw_rows(text, "== raw: paced")
    s = json.loads((RAW / "raw-paced-100k.loadgen.json").read_text())["summary"]
    row = [rows[k] for k in rows if k[0] == "loadgen --engine packet --pps 100000"][0]
    assert row[0] == f"{s['sent_pps']:,.0f}"
    assert row[1] == f"{(s['sent_pps'] - 100000) / 100000 * 100:+.2f}%"
    assert row[3] == str(s["lost"]) and row[5] == f"{s['schedule_lag_ns']['late_ops']:,}"


def test_raw_failed_and_skipped_runs_say_so(tmp_path):
    d = tmp_path / "raw"
    shutil.copytree(RAW, d)
    manifest = d / "raw.manifest.tsv"
    rows = [line.split("\t") for line in manifest.read_text().splitlines()]
    failed = next(i for i, r in enumerate(rows) if r[0] == "veth" and r[3].startswith("loadgen --engine packet")
                  and r[8] == "1")
    skipped = next(i for i, r in enumerate(rows) if r[0] == "scale" and r[3] == "loadgen --engine packet --workers 1"
                   and r[8] == "1")
    rows[failed][4], rows[skipped][4] = "failed(rc=1)", "skipped"
    manifest.write_text("".join("\t".join(r) + "\n" for r in rows))
    text = rendered(render.render_raw, str(manifest), "2")
    assert raw_rows(text, "== raw: --pps max")["loadgen --engine packet --pps max", "1"] == ["FAILED"] * 4 + ["-"] * 3
    assert raw_rows(text, "== raw: scaling")["loadgen --engine packet --workers 1", "1"][1:] == ["skipped"] * 3 + ["-"] * 2
    # the median is over the rounds that ran
    assert raw_rows(text, "== raw: --pps max")["loadgen --engine packet --pps max", "median"][0] == \
        f"{rx_pps('raw-veth.2.packet'):,.0f}"
    assert "note: veth: loadgen --engine packet --pps max failed(rc=1), see raw-veth.1.packet.err" in text


# ---- process-tree CPU ------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("42 (fio) S 1 42 42 0 -1 0 0 0 0 0 7 3 2 1 20 0 1 0 5 0 0", (42, 1, 13)),
    ("7 (a b) c)) R 6 7 7 0 -1 0 0 0 0 0 100 50 0 0 20 0 3 0 5 0 0", (7, 6, 150)),
    ("9 (iperf3) Z 8 9 9 0 -1 0 0 0 0 0 0 0 4 5 20 0 1 0 5 0 0", (9, 8, 9)),
])
def test_parse_stat(line, expected):
    assert proc.parse_stat(line) == expected


def fake_proc(tmp_path, procs):
    for pid, (ppid, ticks) in procs.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            f"{pid} (p{pid}) S {ppid} 0 0 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 5 0 0\n")
    (tmp_path / "self").mkdir()
    return str(tmp_path)


def test_tree_takes_every_descendant_and_nothing_else(tmp_path):
    # 10 -> 11 -> 12, 10 -> 13; 20 is a sibling server given as a second root; 30 is unrelated.
    root = fake_proc(tmp_path, {1: (0, 0), 10: (1, 1), 11: (10, 2), 12: (11, 4), 13: (10, 8),
                                20: (1, 16), 30: (1, 32)})
    stats = proc.read_stats(root)
    assert proc.tree([10], stats) == {10, 11, 12, 13}
    assert proc.tree_ticks([10, 20], stats) == (31, 5)
    assert proc.tree_ticks([12, 99], stats) == (4, 1)   # a root that exited is skipped


def test_a_tree_with_no_live_root_is_gone(tmp_path):
    root = fake_proc(tmp_path, {1: (0, 0)})
    with pytest.raises(proc.TreeGone):
        proc.sample_cores([99], 0, 0, proc=root)


def test_a_first_sample_too_late_for_half_the_window_is_no_sample(tmp_path):
    root = fake_proc(tmp_path, {1: (0, 0), 10: (1, 5)})
    long_ago_s = 1e9   # epoch seconds: 2001, so both sample times have long passed
    with pytest.raises(proc.NoSample, match="late"):
        proc.sample_cores([10], 1, 2, proc=root, since_epoch_s=long_ago_s)


def test_roots_come_from_the_file_bench_sh_writes(tmp_path):
    (tmp_path / "pids").write_text("12 345\n")
    assert proc.read_roots(str(tmp_path / "pids"), until_epoch_s=0) == [12, 345]
    with pytest.raises(proc.NoSample, match="no pids"):
        proc.read_roots(str(tmp_path / "absent"), until_epoch_s=0)


def test_proc_main_reports_a_gone_tree_in_its_output(tmp_path):
    out = tmp_path / "cpu.json"
    # pid_max is at most 2^22 on Linux, so this pid cannot exist
    assert proc.main(["--after", "0", "--window", "0", "--out", str(out), str(2 ** 22 + 1)]) == 1
    assert "process tree ended" in json.loads(out.read_text())["error"]


def test_free_port_is_free_for_tcp_and_udp():
    port = ports.free_port()
    assert ports.LOW <= port <= ports.HIGH
    with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        t.bind(("127.0.0.1", port))
        u.bind(("127.0.0.1", port))


# ---- bench.sh ------------------------------------------------------------------------------------

def test_bench_scripts_parse():
    scripts = [ROOT / "bench.sh", *sorted((ROOT / "bench").glob("*.sh"))]
    assert len(scripts) == 7
    for script in scripts:   # bash -n checks one file: further arguments are the script's own
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, (script, done.stderr)


def test_bench_sh_sources_its_sections_and_lists_them():
    done = subprocess.run([str(ROOT / "bench.sh"), "nonsense"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "usage: " in done.stderr and "{disk|net|pacing|raw|all|ray}" in done.stderr


# ---- two targets in one run --------------------------------------------------------------------

def test_two_targets_row_sets_the_totals_and_cpu_side_by_side():
    d = FIXTURES / "disk-targets"
    text = rendered(render.render_disk_targets, str(d / "disk-targets.manifest.tsv"))
    fio = json.loads((d / "disk-two-targets.fio.json").read_text())["jobs"][0]["read"]["iops"]
    doc = json.loads((d / "disk-two-targets.loadgen.json").read_text())
    cores = {tool: json.loads((d / f"disk-two-targets.{tool}.cpu.json").read_text())["cores"]
             for tool in ("fio", "loadgen")}
    row = next(line for line in text.splitlines() if line.startswith("two-targets")).split()
    lg = doc["summary"]["rate"]
    assert row[1:8] == [f"{fio:,.0f}", f"{lg:,.0f}", f"{lg / fio:.2f}", f"{cores['fio']:.3f}",
                        f"{cores['loadgen']:.3f}", f"{cores['loadgen'] / cores['fio']:.2f}",
                        f"{(cores['loadgen'] / lg) / (cores['fio'] / fio):.2f}"]
    for t in doc["targets"]:
        assert f"{Path(t['path']).name} {t['rate']:,.0f} (device {t['device_crosscheck']['ratio']:.4f})" in text
    assert "note:" not in text


def test_a_failed_two_targets_run_is_a_note(tmp_path):
    d = tmp_path / "disk-targets"
    shutil.copytree(FIXTURES / "disk-targets", d)
    (d / "disk-targets.manifest.tsv").write_text(
        "two-targets\tfailed(rc=1)\tx.fio.json\tx.fio.cpu.json\tok\tdisk-two-targets.loadgen.json\t\n")
    text = rendered(render.render_disk_targets, str(d / "disk-targets.manifest.tsv"))
    assert "note: two-targets: fio failed(rc=1)" in text
    row = next(line for line in text.splitlines() if line.startswith("two-targets")).split()
    assert row[1] == "-" and row[3] == "-"
