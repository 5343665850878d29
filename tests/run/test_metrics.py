"""--metrics: live counts for Prometheus, equal to the final document's once the run is over.

The buckets are checked against raw values (pure); the exporter's arithmetic
across jobs with fake snapshots; and real runs on 127.0.0.1 are scraped while
they go on and after their last interval. A test scrapes deterministically:
it reads the address from the "metrics at" line, scrapes until
loadgen_jobs_finished_total is 1 (--metrics-linger keeps the server up until
such a scrape has happened), and compares that scrape with the document.
"""
import json
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from loadgen.errors import UsageError
from loadgen.results import histogram
from loadgen.run import metrics
from loadgen.run.native import Layout
from loadgen.run.stats import Snapshot
from netfixtures import RUN_TIMEOUT_S, assert_one_line_error, loadgen_argv

WAIT_S = 60.0   # bound on waiting for a busy machine's run; never asserted


# ---- pure parts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("9100", ("127.0.0.1", 9100)),
    ("0", ("127.0.0.1", 0)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("localhost:80", ("localhost", 80)),
    ("[::1]:9100", ("::1", 9100)),
])
def test_address(text, expected):
    assert metrics.parse_address(text) == expected


@pytest.mark.parametrize("text", ["", ":9100", "x", "70000", "::1:9100", "[::1]", "host:", "1.2.3.4:-1"])
def test_bad_address(text):
    with pytest.raises(UsageError, match="invalid --metrics"):
        metrics.parse_address(text)


def test_bounds_are_log_spaced_from_1us_to_10s_on_the_hdr_grid():
    b = metrics.BOUNDS_NS
    assert b[0] == 1000 and 10**10 <= b[-1] < 10**10 * 1.001 and b == sorted(set(b))
    assert all(histogram.bucket_top_ns(x) == x for x in b)          # each a bucket's top
    ratios = [y / x for x, y in zip(b, b[1:])]
    assert all(1.9 < r < 2.6 for r in ratios)                        # 1-2-5: x2, x2.5, x2


def test_buckets_count_exactly_the_values_at_or_below_each_bound():
    rng = np.random.default_rng(7)
    raw = np.concatenate([rng.integers(1, 3000, 500), np.exp(rng.uniform(np.log(1e3), np.log(3e10), 5000))])
    raw = raw.astype(np.int64)
    h = histogram.new()
    for v in raw:
        h.record_value(int(v))
    counts = np.frombuffer(h.counts, dtype=np.uint64)[: h.counts_len].copy()
    buckets, sum_s = metrics.histogram_buckets(counts)
    for (le, n), bound in zip(buckets, metrics.BOUNDS_NS):
        assert float(le) == bound / 1e9
        assert n == int((raw <= bound).sum())
    assert buckets[-1] == ("+Inf", len(raw))
    assert sum_s == pytest.approx(h.get_mean_value() * len(raw) / 1e9, rel=1e-12)


def _snapshot(layout: Layout, workers: int, **values) -> Snapshot:
    s = Snapshot.zero(layout, workers, 0)
    for name, v in values.items():
        if name in layout.hists:
            s.words[0, layout.hist_slice(name)] = v
        else:
            s.words[0, layout.counter(name)] = v
    return s


def _scrape_text(exporter: metrics.Exporter) -> dict:
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    return samples_of(generate_latest(registry).decode())


def test_an_agents_counters_add_every_finished_job_and_the_running_ones():
    layout = Layout()
    counts = np.zeros(layout.counts_len, dtype=np.uint64)
    counts[5000] = 3
    exporter = metrics.Exporter()
    part = [metrics.Part("local", "receiver")]
    first = exporter.feed(lambda: part)
    first.observe(_snapshot(layout, 1, received=10, latency_packet=counts))
    first.finish(_snapshot(layout, 1, received=12, duplicated=2, latency_packet=counts))
    second = exporter.feed(lambda: part)
    second.observe(_snapshot(layout, 1, received=7, errors=1))
    s = _scrape_text(exporter)
    key = (("host", "local"), ("role", "receiver"))
    assert s["loadgen_received_total"][key] == 10 + 7
    assert s["loadgen_errors_total"][key] == 1
    assert s["loadgen_oneway_latency_seconds_count"][key] == 3
    assert s["loadgen_jobs_running"][()] == 1 and s["loadgen_jobs_finished_total"][()] == 1
    assert not exporter.final_scraped.is_set()
    second.finish()     # no final snapshot (the job died): its last observed counts stay
    s = _scrape_text(exporter)
    assert s["loadgen_received_total"][key] == 17 and s["loadgen_jobs_finished_total"][()] == 2
    assert exporter.final_scraped.is_set()


# ---- real runs ------------------------------------------------------------------------------------

def samples_of(text: str) -> dict[str, dict[tuple, float]]:
    """sample name -> {sorted labels (le included): value}, via prometheus-client's own text parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def scrape(url: str, openmetrics: bool = False) -> str:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.read().decode()


class Served:
    """A loadgen run with --metrics on 127.0.0.1:0, its address read from stderr."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.json_path = cwd / "r.json"
        self.proc = subprocess.Popen(
            loadgen_argv(*args, "--metrics", "127.0.0.1:0", "--metrics-linger", "60s", "-q",
                         "--json", str(self.json_path)),
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert "metrics at http://127.0.0.1:" in line, line + self.proc.stderr.read()
        self.url = line.split("metrics at ", 1)[1].strip()

    def scrape_until_finished(self) -> tuple[list[dict], dict]:
        """(every parsed scrape, the first one after the run ended)."""
        seen = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            s = samples_of(scrape(self.url))
            seen.append(s)
            if s["loadgen_jobs_finished_total"][()] == 1:
                return seen, s
            time.sleep(0.05)
        raise AssertionError("the run did not finish in time")

    def finish(self) -> dict:
        out, err = self.proc.communicate(timeout=RUN_TIMEOUT_S)
        assert self.proc.returncode == 0, err
        return json.loads(self.json_path.read_text())


def assert_histogram_is(s: dict, family: str, key: tuple, b64: str, block: dict) -> None:
    """The served histogram holds the document's: every bucket, the count and the sum."""
    counts = HdrHistogram.decode(b64)
    counts = np.frombuffer(counts.counts, dtype=np.uint64)[: counts.counts_len]
    for le, n in metrics.histogram_buckets(counts)[0]:
        assert s[f"{family}_bucket"][tuple(sorted(key + (("le", le),)))] == n
    assert s[f"{family}_count"][key] == block["count"] > 0
    assert s[f"{family}_sum"][key] == pytest.approx(block["mean"] * block["count"] / 1e9, rel=1e-9)


def test_a_disk_run_serves_the_documents_counts(tmp_path, direct_io):
    run = Served(tmp_path, "disk", "--size", "16m", "--duration", "2s", "--ramp", "0s", "--interval", "500ms",
                 *([] if direct_io else ["--buffered"]))
    om = scrape(run.url, openmetrics=True)      # before the end: the scrape after it closes the server
    seen, last = run.scrape_until_finished()
    doc = run.finish()
    s, key = doc["summary"], (("host", "local"), ("role", "disk"))
    assert last["loadgen_ops_total"][key] == s["ops"] > 0
    assert last["loadgen_errors_total"][key] == s["errors"]
    assert last["loadgen_jobs_running"][()] == 0
    assert_histogram_is(last, "loadgen_latency_seconds", key, doc["histograms"]["latency"], s["latency_ns"])
    # counters only grow while the run goes on
    ops = [x["loadgen_ops_total"][key] for x in seen if key in x.get("loadgen_ops_total", {})]
    assert ops == sorted(ops)
    families = {f.name: f for f in parse_openmetrics(om)}
    assert families["loadgen_latency_seconds"].unit == "seconds"
    assert families["loadgen_ops"].type == "counter"


def test_a_scrape_during_the_run_parses_and_counts_part_of_it(tmp_path):
    run = Served(tmp_path, "net", "--pps", "2k", "--duration", "4s", "--ramp", "0s", "--interval", "200ms")
    key = (("host", "local"), ("role", "sender"))
    during = None
    deadline = time.monotonic() + WAIT_S
    while during is None and time.monotonic() < deadline:
        s = samples_of(scrape(run.url))
        if s["loadgen_jobs_running"][()] == 1 and s.get("loadgen_ops_total", {}).get(key):
            during = s
        time.sleep(0.05)
    _, last = run.scrape_until_finished()
    doc = run.finish()
    assert during is not None, "no scrape saw the run under way"
    assert 0 < during["loadgen_ops_total"][key] <= last["loadgen_ops_total"][key] == doc["summary"]["sent"]


@pytest.mark.parametrize("mode", ["stream", "echo"])
def test_a_net_run_serves_the_documents_counts(tmp_path, mode):
    run = Served(tmp_path, "net", "--mode", mode, "--pps", "5k", "--duration", "1s", "--ramp", "0s")
    _, last = run.scrape_until_finished()
    doc = run.finish()
    s = doc["summary"]
    sender, receiver = (("host", "local"), ("role", "sender")), (("host", "local"), ("role", "receiver"))
    assert last["loadgen_ops_total"][sender] == s["sent"] > 0
    assert last["loadgen_errors_total"][sender] == s["errors"]
    if mode == "echo":
        assert last["loadgen_received_total"][sender] == s["received"]
        assert_histogram_is(last, "loadgen_latency_seconds", sender, doc["histograms"]["latency"], s["latency_ns"])
    else:
        assert last["loadgen_received_total"][receiver] == s["received"] > 0
        assert_histogram_is(last, "loadgen_oneway_latency_seconds", receiver, doc["histograms"]["oneway-latency"],
                            s["oneway"]["latency_ns"])


@pytest.mark.parametrize("args, message", [
    (["--metrics", "nope"], "invalid --metrics: 'nope'"),
    (["--metrics", "99999"], "invalid --metrics: '99999'"),
    (["--metrics-linger", "5s"], "--metrics-linger needs --metrics"),
    (["--metrics", "0", "--metrics-linger", "2h"], "invalid metrics-linger"),
])
def test_bad_metrics_options_are_usage_errors(tmp_path, args, message):
    p = subprocess.run(loadgen_argv("net", "--duration", "1s", "--ramp", "0s", *args), cwd=tmp_path,
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert message in assert_one_line_error(p.returncode, p.stderr, 2)


def test_a_port_in_use_is_an_environment_error(tmp_path):
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p = subprocess.run(loadgen_argv("net", "--duration", "1s", "--ramp", "0s", "--metrics", f"127.0.0.1:{port}"),
                           cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert "cannot serve metrics on 127.0.0.1:" in assert_one_line_error(p.returncode, p.stderr, 1)


# ---- paired runs: per host at the controller, and each agent's own ---------------------------------

def agent_metrics_url(agent) -> str:
    from netns import wait_until

    def url():
        for line in agent.err_path.read_text().splitlines():
            if "metrics at " in line:
                return line.split("metrics at ", 1)[1].strip()
        return None

    return wait_until(url, WAIT_S, "the agent's metrics line")


def scrape_until(url: str, done) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        s = samples_of(scrape(url))
        if done(s):
            return s
        time.sleep(0.05)
    raise AssertionError(f"{url} never showed the finished job")


def test_a_paired_run_serves_per_host_and_each_agent_its_own(tmp_path):
    from netns import Agent, write_token

    token = write_token(tmp_path / "token")
    agents = []
    try:
        for name in ("receiver", "sender"):
            agents.append(Agent(tmp_path, "127.0.0.1:0", "--token-file", str(token), "--metrics", "127.0.0.1:0",
                                name=name))
        receiver, sender = agents
        urls = {a: agent_metrics_url(a) for a in agents}
        run = Served(tmp_path, "net", "--peer", receiver.address, "--clients", sender.address, "--mode", "echo",
                     "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--token-file", str(token))
        _, last = run.scrape_until_finished()
        doc = run.finish()
        finished = {a: scrape_until(urls[a], lambda s: s["loadgen_jobs_finished_total"][()] >= 1
                                    and s["loadgen_jobs_running"][()] == 0) for a in agents}
    finally:
        for a in agents:
            a.stop()
    hosts = {h["host"]: h for h in doc["hosts"]}
    sent, echoed = hosts[sender.address], hosts[receiver.address]
    assert sent["role"] == "sender" and echoed["role"] == "receiver"
    at_sender = (("host", sender.address), ("role", "sender"))
    at_receiver = (("host", receiver.address), ("role", "receiver"))
    # the controller: one series per host, as the document's host sections
    assert last["loadgen_ops_total"][at_sender] == sent["sent"] == doc["summary"]["sent"] > 0
    assert last["loadgen_received_total"][at_sender] == sent["received"]
    assert last["loadgen_latency_seconds_count"][at_sender] == sent["latency_ns"]["count"] > 0
    assert last["loadgen_received_total"][at_receiver] == echoed["received"] > 0
    # each agent: its own job, under host "local"
    local_sender, local_receiver = (("host", "local"), ("role", "sender")), (("host", "local"), ("role", "receiver"))
    s = finished[sender]
    assert s["loadgen_ops_total"][local_sender] == sent["sent"]
    assert s["loadgen_received_total"][local_sender] == sent["received"]
    assert s["loadgen_latency_seconds_count"][local_sender] == sent["latency_ns"]["count"]
    assert s["loadgen_latency_seconds_sum"][local_sender] == pytest.approx(
        sent["latency_ns"]["mean"] * sent["latency_ns"]["count"] / 1e9, rel=1e-9)
    assert finished[receiver]["loadgen_received_total"][local_receiver] == echoed["received"]


def test_metrics_on_serve_needs_the_agent(tmp_path):
    p = subprocess.run(loadgen_argv("serve", "--port", "0", "--duration", "1s", "--metrics", "0"), cwd=tmp_path,
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert "--metrics on serve is for the agent" in assert_one_line_error(p.returncode, p.stderr, 2)


def test_a_disk_run_on_an_agent_is_labelled_with_the_agent(tmp_path, direct_io):
    from netns import Agent, write_token

    token = write_token(tmp_path / "token")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    agent = Agent(tmp_path, "127.0.0.1:0", "--token-file", str(token), "--allow-path", str(allowed),
                  "--metrics", "127.0.0.1:0")
    try:
        url = agent_metrics_url(agent)
        run = Served(tmp_path, "disk", "--on", agent.address, "--size", "8m", "--duration", "1s", "--ramp", "0s",
                     *([] if direct_io else ["--buffered"]), "--token-file", str(token))
        _, last = run.scrape_until_finished()
        doc = run.finish()
        own = scrape_until(url, lambda s: s["loadgen_jobs_finished_total"][()] >= 1
                           and s["loadgen_jobs_running"][()] == 0)
    finally:
        agent.stop()
    s = doc["summary"]
    remote, local = (("host", agent.address), ("role", "disk")), (("host", "local"), ("role", "disk"))
    assert last["loadgen_ops_total"][remote] == own["loadgen_ops_total"][local] == s["ops"] > 0
    assert last["loadgen_latency_seconds_count"][remote] == own["loadgen_latency_seconds_count"][local] \
        == s["latency_ns"]["count"]


@pytest.mark.parametrize("text, linger_ns", [("0s", 0), ("5s", 5 * 10**9), ("1h", metrics.MAX_LINGER_NS)])
def test_parse_linger_ns(text, linger_ns):
    assert metrics.parse_linger_ns(text) == linger_ns


@pytest.mark.parametrize("text", ["2h", "-1s", "soon"])
def test_parse_linger_ns_refuses(text):
    with pytest.raises(UsageError, match="metrics-linger"):
        metrics.parse_linger_ns(text)
