"""`loadgen net` end to end, in a subprocess, on loopback only.

Every run is bounded (one second, no ramp, a low rate unless testing max) and
sends only to 127.0.0.1: the embedded receiver, or a Python peer the test
starts. Assertions are about counts and the document's shape, never about
speed: a rate is checked only as its count divided by its measured time.
"""
import signal

import pytest
from hdrh.histogram import HdrHistogram

import hlogs
from loadgen.results import histogram
from netfixtures import (LATENCY_KEYS, LOOPBACK, RUN_TIMEOUT_S, WAIT_S, HeldUdpPort, NetRun, NoListenerPort, UdpEcho,
                         assert_one_line_error, run_net)
from netns import Controller, wait_until

PAYLOAD_BYTES = 64                  # the default --size
WIRE_BYTES = 64 + 8 + 20 + 18 + 20  # UDP, IPv4, Ethernet header + FCS, preamble + gap (net.wire_bytes)
SUMMARY_KEYS = ["sent", "sent_pps", "received", "received_pps", "lost", "loss_ratio", "reordered",
                "duplicated", "bits_per_s"]
# Exact counts need every datagram scheduled in [start, end) sent. After the deadline a
# sender makes one last pass of at most --batch datagrams per flow; a large batch keeps
# a scheduler stall just before the end on a busy 2-core host from dropping the tail.
EXACT = ["--batch", "1024"]


def assert_latency_block(block: dict, count: int) -> None:
    assert list(block) == LATENCY_KEYS
    assert block["count"] == count
    assert 0 < block["min"] <= block["p50"] <= block["p90"] <= block["p99"] <= block["p99.9"] \
        <= block["p99.99"] <= block["max"]
    assert block["min"] <= block["mean"] <= block["max"]


def hlog_by_tag(path) -> dict[str, list[HdrHistogram]]:
    return hlogs.by_name(path)


def merged(hists: list[HdrHistogram]) -> HdrHistogram:
    total = histogram.new()
    for h in hists:
        total.add(h)
    return total


def package_view(h: HdrHistogram) -> dict:
    """The summary fields the hdrhistogram package computes itself."""
    return {"count": h.get_total_count(), "min": h.get_min_value(), "max": h.get_max_value(),
            "p50": h.get_value_at_percentile(50), "p99": h.get_value_at_percentile(99),
            "p99.9": h.get_value_at_percentile(99.9)}


def json_view(block: dict) -> dict:
    return {k: block[k] for k in ("count", "min", "max", "p50", "p99", "p99.9")}


# ---- stream mode to the embedded receiver -----------------------------------------------------------

@pytest.fixture(scope="module")
def stream_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("stream")
    done = run_net(cwd, "--pps", "20k", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    return done


def test_stream_document(stream_run):
    doc = stream_run.doc
    assert (doc["schema"], doc["kind"], doc["engine"]) == ("loadgen/1", "net", "udp")
    assert (doc["interrupted"], doc["failed"], doc["stop_reason"]) == (False, False, None)
    assert all(k in doc["summary"] for k in SUMMARY_KEYS)
    c = doc["config"]
    assert c["embedded_receiver"] is True and c["target"] is None
    assert c["target_address"].startswith(f"{LOOPBACK}:")
    assert (c["mode"], c["pps"], c["size_bytes"]) == ("stream", 20000, PAYLOAD_BYTES)
    assert doc["summary"]["measured_at"] == "receiver"
    assert "note" not in doc["summary"] and "latency_ns" not in doc["summary"]
    assert stream_run.stdout == ""  # --quiet


def test_stream_loses_nothing_on_loopback(stream_run):
    s = stream_run.summary
    assert s["sent"] > 0
    assert s["received"] == s["sent"]
    assert (s["lost"], s["loss_ratio"], s["reordered"], s["duplicated"]) == (0, 0, 0, 0)
    assert (s["too_old"], s["late"], s["foreign"], s["errors"], s["refused"]) == (0, 0, 0, 0, 0)
    assert s["errors_by_errno"] == {}


def test_stream_rates(stream_run):
    s = stream_run.summary
    assert s["rate"] == s["sent_pps"] == pytest.approx(s["ops"] / s["duration_s"])
    # 20k pps for 1 s schedules exactly 20000 datagrams: each is sent, or counted unsent when the
    # sender fell too far behind at the end. How fast the host sent them is bench.sh's business.
    assert s["errors"] == 0
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == 20_000
    assert s["received_pps"] == s["sent_pps"]
    assert s["bits_per_s"] == pytest.approx(s["sent_pps"] * PAYLOAD_BYTES * 8)
    assert s["received_bits_per_s"] == s["bits_per_s"]
    assert s["wire_bits_per_s"] == pytest.approx(s["sent_pps"] * WIRE_BYTES * 8)
    assert s["wire_bits_per_s"] > s["bits_per_s"]


def test_stream_oneway_latency(stream_run):
    s = stream_run.summary
    assert_latency_block(s["oneway"]["latency_ns"], s["received"])
    assert_latency_block(s["oneway"]["service_ns"], s["received"])


def test_stream_intervals_add_up(stream_run):
    s, rows = stream_run.summary, stream_run.doc["intervals"]
    assert rows
    assert sum(r["ops"] for r in rows) == s["sent"]
    assert sum(r["received"] for r in rows) == s["received"]


def test_stream_hlog_holds_the_oneway_histograms(stream_run):
    by_tag = hlog_by_tag(stream_run.json_path.parent / "r.hlog")
    assert sorted(by_tag) == ["oneway-latency", "oneway-service"]
    oneway = stream_run.summary["oneway"]
    assert package_view(merged(by_tag["oneway-latency"])) == json_view(oneway["latency_ns"])
    assert package_view(merged(by_tag["oneway-service"])) == json_view(oneway["service_ns"])


@pytest.mark.parametrize("options", [[], ["--flows", "4", "--workers", "2"]], ids=["one-flow", "4-flows-2-workers"])
def test_exact_count(tmp_path, options):
    """Datagrams are scheduled in [start, end): 10k pps for 1 s is 10000, however the flows split it."""
    done = run_net(tmp_path, "--pps", "10k", *EXACT, *options)
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert s["sent"] == 10_000
    assert s["received"] == 10_000 and s["lost"] == 0
    assert sum(r["ops"] for r in done.doc["intervals"]) == 10_000


# The receiver's 8 MiB buffer holds ~60 datagrams of 64 KiB: at 100 pps it rides out a
# 0.6 s stall of a busy host instead of the 60 ms it would at 1k pps.
@pytest.mark.parametrize("size, pps", [("32", 1000), ("65507", 100)])
def test_smallest_and_largest_payload(tmp_path, size, pps):
    done = run_net(tmp_path, "--pps", str(pps), "--size", size)
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert done.doc["config"]["size_bytes"] == int(size)
    assert s["sent"] + s["schedule_lag_ns"]["unsent"] == pps
    assert s["sent"] > 0 and s["received"] == s["sent"] and s["lost"] == 0
    assert s["bits_per_s"] == pytest.approx(s["sent_pps"] * int(size) * 8)
    assert s["received_bits_per_s"] == s["bits_per_s"]


def test_max_rate_briefly(tmp_path):
    """--pps max is closed loop: nothing is scheduled, so there is no lag; every count still balances."""
    done = run_net(tmp_path, "--pps", "max")
    assert done.returncode == 0, done.stderr
    doc, s = done.doc, done.summary
    assert doc["config"]["pps"] == "max"
    assert s["sent"] > 0 and s["errors"] == 0
    assert 0 < s["received"] <= s["sent"]
    assert s["received"] + s["lost"] == s["sent"]
    assert s["duplicated"] == 0
    assert s["schedule_lag_ns"] == {"max": 0, "mean": 0.0, "late_ops": 0, "unsent": 0}
    assert sum(r["ops"] for r in doc["intervals"]) == s["sent"]


# ---- echo mode --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def echo_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("echo")
    done = run_net(cwd, "--mode", "echo", "--pps", "10k", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    return done


def test_echo_against_the_embedded_receiver(echo_run):
    doc, s = echo_run.doc, echo_run.summary
    assert doc["config"]["mode"] == "echo" and doc["config"]["embedded_receiver"] is True
    assert s["measured_at"] == "echo"
    assert s["sent"] > 0
    assert s["received"] == s["sent"]
    assert (s["lost"], s["late"], s["duplicated"], s["foreign"]) == (0, 0, 0, 0)
    assert "oneway" not in s
    assert_latency_block(s["latency_ns"], s["received"])
    assert_latency_block(s["service_ns"], s["received"])
    rows = doc["intervals"]
    assert sum(r["ops"] for r in rows) == s["sent"]
    assert sum(r["received"] for r in rows) == s["received"]


def test_echo_hlog_round_trips_to_the_json_summary(echo_run):
    by_tag = hlog_by_tag(echo_run.json_path.parent / "r.hlog")
    assert sorted(by_tag) == ["latency", "service"]
    rows = echo_run.doc["intervals"]
    assert len(by_tag["latency"]) == len(rows)
    for h, row in zip(by_tag["latency"], rows):
        assert row["latency_ns"] == {"p50": h.get_value_at_percentile(50), "p99": h.get_value_at_percentile(99),
                                     "max": h.get_max_value()}
    s = echo_run.summary
    assert package_view(merged(by_tag["latency"])) == json_view(s["latency_ns"])
    assert package_view(merged(by_tag["service"])) == json_view(s["service_ns"])


def test_echo_against_an_rfc862_server(tmp_path):
    with UdpEcho() as echo:
        done = run_net(tmp_path, "--target", f"{LOOPBACK}:{echo.port}", "--mode", "echo", "--pps", "5k")
    assert done.returncode == 0, done.stderr
    doc, s = done.doc, done.summary
    assert doc["config"]["embedded_receiver"] is False
    assert doc["config"]["target_address"] == f"{LOOPBACK}:{echo.port}"
    assert s["measured_at"] == "echo"
    # A Python echo server may drop some at 5k pps: no claim of zero loss.
    assert 0 < s["received"] <= s["sent"]
    assert s["received"] + s["lost"] == s["sent"]
    assert (s["duplicated"], s["foreign"], s["errors"]) == (0, 0, 0)
    assert_latency_block(s["latency_ns"], s["received"])
    assert s["service_ns"]["count"] == s["received"]


def test_stream_to_an_external_target_measures_only_the_sending(tmp_path):
    with HeldUdpPort() as sink:
        done = run_net(tmp_path, "--target", f"{LOOPBACK}:{sink.port}", "--pps", "5k")
    assert done.returncode == 0, done.stderr
    doc, s = done.doc, done.summary
    assert doc["config"]["embedded_receiver"] is False
    assert s["sent"] > 0 and s["errors"] == 0
    assert s["received"] is None and s["measured_at"] is None
    assert (s["lost"], s["loss_ratio"], s["reordered"], s["duplicated"]) == (None, None, None, None)
    assert s["note"]
    assert "oneway" not in s and "latency_ns" not in s
    assert all("received" not in r for r in doc["intervals"])
    assert sum(r["ops"] for r in doc["intervals"]) == s["sent"]


# ---- errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    (["--size", "70000"], "invalid size"),
    (["--size", "10"], "invalid size"),
    (["--pps", "0"], "invalid rate"),
    (["--pps", "-1"], "invalid rate"),
    (["--target", "no-such-host.invalid:9"], "cannot resolve no-such-host.invalid"),
    (["--target", LOOPBACK], "invalid address"),
    (["--target", f"{LOOPBACK}:0"], "invalid address"),
    (["--target", f"{LOOPBACK}:65536"], "invalid address"),
    (["--mode", "bogus"], "invalid mode"),
    (["--flows", "1", "--workers", "2"], "invalid flows"),
    (["--batch", "0"], "invalid batch"),
    (["--port", "65536"], "invalid port"),
    (["--timeout", "0s"], "invalid timeout"),
])
def test_usage_errors(tmp_path, args, says):
    done = run_net(tmp_path, *args)
    line = assert_one_line_error(done.returncode, done.stderr, 2)
    assert says in line
    assert done.stdout == ""
    assert not done.json_path.exists()


def test_receiver_port_in_use(tmp_path):
    with HeldUdpPort() as held:
        done = run_net(tmp_path, "--port", str(held.port), "--pps", "5k")
    line = assert_one_line_error(done.returncode, done.stderr, 1)
    assert "in use" in line and str(held.port) in line
    assert not done.json_path.exists()


def test_no_listener_at_the_target(tmp_path):
    with NoListenerPort() as closed:
        done = run_net(tmp_path, "--target", f"{LOOPBACK}:{closed.port}", "--pps", "5k", quiet=False)
    assert done.returncode == 0, done.stderr
    s = done.summary
    assert s["refused"] > 0
    assert s["errors"] == s["refused"] == s["errors_by_errno"]["ECONNREFUSED"]
    assert list(s["errors_by_errno"]) == ["ECONNREFUSED"]
    # A refused send still takes its slot in the schedule: nothing is sent twice, nothing skipped.
    assert s["sent"] + s["refused"] + s["schedule_lag_ns"]["unsent"] == 5_000
    assert "no listener at the target" in done.stdout


# ---- interrupts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_writes_its_json(tmp_path, sig):
    # The live progress line (stderr on a pseudo-terminal) says when datagrams are being sent;
    # the embedded receiver binds a port of its own choosing.
    json_path = tmp_path / "r.json"
    c = Controller(tmp_path, "net", "--pps", "10k", "--duration", "30s", "--ramp", "0s", "--interval", "200ms",
                   "--json", str(json_path), tty=True)
    try:
        wait_until(c.measuring, WAIT_S, "the progress line to show datagrams sent")
        c.proc.send_signal(sig)
        done = c.finish(timeout_s=RUN_TIMEOUT_S)
    finally:
        c.kill()
    done = NetRun(done.returncode, done.stdout, done.stderr, json_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    doc, s = done.doc, done.summary
    assert doc["interrupted"] is True
    assert doc["stop_reason"] == f"interrupted by {sig.name}"
    assert s["sent"] > 0
    assert s["received"] == s["sent"] and s["lost"] == 0
    assert s["duration_s"] < 30
    assert sum(r["ops"] for r in doc["intervals"]) == s["sent"]
