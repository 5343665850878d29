"""bench.floor: the machine's wake-up lateness printed beside the pacing section's lag."""
import json

import numpy as np

from bench import floor


def test_summary_reads_percentiles_and_counts_the_late_ones():
    o = np.arange(1, 1001, dtype=np.int64) * 1000          # 1 us .. 1 ms
    o[-3:] = [2_000_000, 3_000_000, 5_000_000]
    s = floor.summary(o)
    assert s["count"] == 1000 and s["max_ns"] == 5_000_000 and s["over_1ms"] == 3
    assert s["p50_ns"] == 501_000 and s["p99_ns"] == 991_000


def test_a_real_measurement_is_bounded_by_its_seconds_and_never_early():
    s = floor.measure(0.05)
    assert s["count"] >= 1 and 0 <= s["p50_ns"] <= s["max_ns"]


def test_show_prints_one_line_for_a_stored_measurement_or_says_why_not(tmp_path, capsys):
    good = tmp_path / "floor.json"
    good.write_text(json.dumps(floor.summary(np.array([10_000, 2_000_000]))))
    floor.main(["--show", str(good)])
    floor.main(["--show", str(tmp_path / "missing.json")])
    (tmp_path / "err.json").write_text(json.dumps({"error": "no library"}))
    floor.main(["--show", str(tmp_path / "err.json")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "max 2,000.0 us (1 over 1 ms)" in lines[0]
    assert "not readable" in lines[1] and "not measured (no library)" in lines[2]
