""".hlog as HdrHistogram's own tools read it: the primary histogram untagged, the rest tagged.

HistogramLogProcessor without -tag reads untagged lines only; hlogs.untagged()
reads the same lines with the hdrhistogram package. Merged, they must give
exactly the JSON's primary latency percentiles: latency for disk and echo runs,
the one-way latency for a stream run to the embedded receiver. Every run is
short and sends only to 127.0.0.1.
"""
import pytest
from hdrh.histogram import HdrHistogram

import hlogs
from loadgen import histogram
from netfixtures import run_net


def merged(hists: list[HdrHistogram]) -> HdrHistogram:
    total = histogram.new()
    for h in hists:
        if h.get_total_count():   # the package's add() takes an empty one's min of 0
            total.add(h)
    return total


def package_block(h: HdrHistogram) -> dict:
    """A summary latency block as the hdrhistogram package itself computes it."""
    return {"min": h.get_min_value(), "mean": h.get_mean_value(),
            **{k: h.get_value_at_percentile(p) for k, p in histogram.PERCENTILES.items()},
            "max": h.get_max_value(), "count": h.get_total_count()}


def assert_standard(path, primary: str, others: list[str], block: dict, rows: list[dict]) -> None:
    """Untagged lines: the primary histogram, one per row, adding up to the JSON's block;
    the other histograms keep their tags; the log's comment names the untagged ones."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith(("#", '"'))]
    untagged = hlogs.untagged(path)
    assert len(untagged) == len(rows) == sum(not line.startswith("Tag=") for line in lines) > 0
    assert hlogs.untagged_name(path) == primary
    assert sorted(t for t in hlogs.by_name(path) if t != primary) == sorted(others)
    assert block["count"] > 0
    assert package_block(merged(untagged)) == pytest.approx(block, rel=1e-12)
    for h, row in zip(untagged, rows):
        assert row["latency_ns"] == {"p50": h.get_value_at_percentile(50), "p99": h.get_value_at_percentile(99),
                                     "max": h.get_max_value()}


def test_disk_hlog_is_read_untagged_as_the_json_latency(disk):
    done = disk("--interval", "500ms", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    assert_standard(done.cwd / "r.hlog", "latency", ["service"], done.summary["latency_ns"], done.doc["intervals"])


def test_mixed_disk_hlog_keeps_the_sides_tagged(disk):
    done = disk("--rw", "randrw", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    assert_standard(done.cwd / "r.hlog", "latency",
                    ["service", "read-latency", "read-service", "write-latency", "write-service"],
                    done.summary["latency_ns"], done.doc["intervals"])


def test_echo_hlog_is_read_untagged_as_the_json_latency(tmp_path):
    done = run_net(tmp_path, "--mode", "echo", "--pps", "5k", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    assert_standard(tmp_path / "r.hlog", "latency", ["service"], done.summary["latency_ns"], done.doc["intervals"])


def test_stream_hlog_is_read_untagged_as_the_json_oneway_latency(tmp_path):
    done = run_net(tmp_path, "--pps", "5k", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    assert_standard(tmp_path / "r.hlog", "oneway-latency", ["oneway-service"],
                    done.summary["oneway"]["latency_ns"], done.doc["intervals"])


def test_lines_are_untagged_only_for_the_primary():
    h = histogram.new()
    h.record_value(1234)
    assert histogram.hlog_line(None, 0.0, 1.0, h).startswith("0.000,1.000,0.001,HISTF")
    assert histogram.hlog_line("service", 0.0, 1.0, h).startswith("Tag=service,0.000,1.000,")
    assert histogram.hlog_untagged("latency") == "#[Untagged: latency]\n"


def test_logs_with_every_line_tagged_still_read(tmp_path):
    """loadgen's logs before untagged lines: every histogram under its tag, nothing untagged."""
    h = histogram.new()
    h.record_value(5000)
    old = tmp_path / "old.hlog"
    old.write_text(histogram.hlog_header(1.7e9, "loadgen disk; values in ns")
                   + histogram.hlog_line("latency", 0, 1, h) + histogram.hlog_line("service", 0, 1, h))
    assert {k: len(v) for k, v in hlogs.by_name(old).items()} == {"latency": 1, "service": 1}
    assert hlogs.untagged(old) == []
