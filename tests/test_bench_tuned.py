"""bench/disk.sh's pairs against fio at its best (disk-tuned.manifest.tsv), as bench/render.py prints them.

The pairs are made from one real fio and one real loadgen output
(tests/fixtures/bench/disk-tuned/) with the IOPS and CPU samples each test sets, so
the medians are known exactly.
"""
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # bench/ sits beside loadgen/, outside the installed package
    sys.path.insert(0, str(ROOT))

from bench import render  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "bench" / "disk-tuned"


def make_pairs(d: Path, pairs: list[tuple[float, float, float | None, float]],
               batch_wait_ns: list[int | None] | None = None) -> Path:
    """pairs of (fio IOPS, fio cores, loadgen IOPS, loadgen cores); loadgen IOPS None: it failed.
    batch_wait_ns: each loadgen run's mean batch wait (None: no wait had one, as the fixture)."""
    fio, lg = (json.loads((FIXTURES / f"sqpoll.{t}.json").read_text()) for t in ("fio", "loadgen"))
    rows = []
    for i, (f_iops, f_cores, g_iops, g_cores) in enumerate(pairs, 1):
        fio["jobs"][0]["read"]["iops"] = f_iops
        (d / f"p{i}.fio.json").write_text(json.dumps(fio))
        (d / f"p{i}.fio.cpu.json").write_text(json.dumps({"cores": f_cores}))
        rows.append(["tuned", str(i), "fio", "fio --tuned", "ok", f"p{i}.fio.json", f"p{i}.fio.cpu.json"])
        st = "ok" if g_iops is not None else "failed(rc=1)"
        if g_iops is not None:
            lg["summary"]["rate"] = g_iops
            wait = batch_wait_ns[i - 1] if batch_wait_ns else None
            lg["summary"]["ring"]["batch_wait"] = wait and {"waits": 1000, "mean_ns": wait}
            (d / f"p{i}.loadgen.json").write_text(json.dumps(lg))
            (d / f"p{i}.loadgen.cpu.json").write_text(json.dumps({"cores": g_cores}))
        rows.append(["tuned", str(i), "loadgen", "loadgen (its defaults)", st, f"p{i}.loadgen.json",
                     f"p{i}.loadgen.cpu.json"])
    manifest = d / "disk-tuned.manifest.tsv"
    manifest.write_text("".join("\t".join(r) + "\n" for r in rows))
    return manifest


def table_rows(text: str) -> dict[str, list[str]]:
    return {line.split()[1]: line.split() for line in text.splitlines() if line.startswith("tuned ")}


def test_median_of_pairs_and_cpu_per_io(tmp_path):
    manifest = make_pairs(tmp_path, [(100_000, 1.0, 90_000, 0.9), (200_000, 1.0, 220_000, 1.1),
                                     (150_000, 1.5, 165_000, 0.33)])
    out = io.StringIO()
    render.render_disk_tuned(str(manifest), out=out)
    rows = table_rows(out.getvalue())
    assert rows["1"][2:8] == ["100,000", "90,000", "0.90", "10.00", "10.00", "0.031"]
    assert rows["3"][6] == "2.00"       # 0.33 cores / 165k IOPS
    # medians per column: IOPS 150k and 165k, ratio median of 0.90, 1.10, 1.10; CPU us/IO 10, 5, 10 and 10, 5, 2
    assert rows["median"][2:8] == ["150,000", "165,000", "1.10", "10.00", "5.00", "0.031"]
    assert rows["1"][8:] == ["8/8", "-", "1"]   # the loadgen document's batches, batch wait, SQ thread's CPU


def test_the_batch_wait_column_gives_each_runs_mean_and_their_median(tmp_path):
    manifest = make_pairs(tmp_path, [(100_000, 1.0, 90_000, 0.9)] * 3, batch_wait_ns=[29_300, None, 31_000])
    out = io.StringIO()
    render.render_disk_tuned(str(manifest), out=out)
    rows = table_rows(out.getvalue())
    assert [rows[p][9] for p in ("1", "2", "3")] == ["29.3", "-", "31.0"]
    assert rows["median"][-1] == "30.1"      # of the runs that had one: (29.3 + 31.0) / 2


def test_a_failed_run_is_a_note_and_leaves_the_median_to_the_others(tmp_path):
    manifest = make_pairs(tmp_path, [(100_000, 1.0, None, 0), (200_000, 1.0, 200_000, 1.0)])
    out = io.StringIO()
    render.render_disk_tuned(str(manifest), out=out)
    text = out.getvalue()
    rows = table_rows(text)
    assert rows["1"][3] == "-" and rows["median"][3] == "200,000" and rows["median"][4] == "1.00"
    assert "note: tuned pair 1: loadgen failed(rc=1)" in text


def test_the_disk_section_prints_the_pairs_beside_its_table(tmp_path):
    make_pairs(tmp_path, [(100_000, 1.0, 100_000, 1.0)])
    (tmp_path / "disk.manifest.tsv").write_text("")
    out = io.StringIO()
    render.render_disk(str(tmp_path / "disk.manifest.tsv"), out=out)
    assert "against fio at its best" in out.getvalue() and "tuned, loadgen: loadgen (its defaults)" in out.getvalue()
