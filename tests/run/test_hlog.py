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
from loadgen.results import histogram
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


def _hdrhistogram_jar() -> str | None:
    """HdrHistogram's Java jar: $HDRHISTOGRAM_JAR, else one Maven has fetched; None if neither."""
    import glob
    import os

    jar = os.environ.get("HDRHISTOGRAM_JAR")
    if jar and os.path.exists(jar):
        return jar
    found = sorted(glob.glob(os.path.expanduser("~/.m2/repository/org/hdrhistogram/HdrHistogram/*/HdrHistogram-*.jar")))
    return found[-1] if found else None


def java_rank_value(h: HdrHistogram, percent: float) -> int:
    """The value Java's percentile iterator prints for a percentile: the first recorded
    value whose cumulative share reaches it, a rank of ceil(q*n). The hdrhistogram package
    rounds the rank to nearest instead, so the two can part by one bucket."""
    total = h.get_total_count()
    for item in h.get_recorded_iterator():
        if 100.0 * item.total_count_to_this_value / total >= percent:
            return h.get_highest_equivalent_value(item.value_iterated_to)
    raise AssertionError(f"no value reaches {percent}%")


def test_java_rank_rule_parts_from_the_packages_only_in_rounding():
    h = histogram.new()
    for v in range(1000, 12000, 1000):   # 11 values
        h.record_value(v)
    # 0.9 * 11 = 9.9 and 0.5 * 11 = 5.5: both rules rank 10 and 6.
    assert java_rank_value(h, 90) == h.get_value_at_percentile(90)
    assert java_rank_value(h, 50) == h.get_value_at_percentile(50)
    # 0.2 * 11 = 2.2: Java ranks 3, the package int(2.2 + 0.5) = 2.
    assert java_rank_value(h, 20) == h.get_highest_equivalent_value(3000)
    assert h.get_value_at_percentile(20) == h.get_highest_equivalent_value(2000)


def test_histogram_log_processor_reads_it_without_flags(disk):
    """HdrHistogram's own HistogramLogProcessor, given no -tag, reads the untagged lines as
    the JSON's latency: the same count, max and mean, and every percentile row exactly the
    value the merged hlog gives under Java's rank rule."""
    import shutil
    import subprocess

    jar = _hdrhistogram_jar()
    if not shutil.which("java") or not jar:
        pytest.skip("needs java and HdrHistogram's jar (set HDRHISTOGRAM_JAR, or mvn dependency:get "
                    "-Dartifact=org.hdrhistogram:HdrHistogram:2.2.2)")
    done = disk("--interval", "500ms", "--hlog", "r.hlog")
    assert done.returncode == 0, done.stderr
    p = subprocess.run(["java", "-cp", jar, "org.HdrHistogram.HistogramLogProcessor", "-i", "r.hlog", "-o", "out",
                        "-outputValueUnitRatio", "1"], cwd=done.cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Exception" not in p.stderr, p.stderr
    text = (done.cwd / "out.hgrm").read_text()
    block = done.summary["latency_ns"]
    total = merged(hlogs.untagged(done.cwd / "r.hlog"))
    assert package_block(total) == pytest.approx(block, rel=1e-12)
    rows = 0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[0][0].isdigit() and float(fields[1]) < 1.0:
            assert float(fields[0]) == java_rank_value(total, round(100.0 * float(fields[1]), 9)), line
            rows += 1
    assert rows >= 10
    assert f"Total count    = {block['count']:>12}" in text
    assert f"Max     = {block['max']:>12.3f}" in text
    assert f"Mean    = {block['mean']:>12.3f}" in text
