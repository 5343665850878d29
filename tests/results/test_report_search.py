"""loadgen report on a search document: search.png beside the knee trial's own plots."""
import asyncio
import json
from pathlib import Path

import pytest

from loadgen.results import report
from loadgen.run.trials import run_search
from loadgen.search import SearchSpec

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results" / "net-stream.json"


@pytest.fixture
def plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("plots need the optional extra: pip install 'loadgen[plot]'")


def search_doc() -> dict:
    """A search over a fake path that loses 2% above 30k pps, each trial the fixture's document."""
    async def run_trial(rate):
        doc = json.loads(FIXTURE.read_text())
        doc["config"]["pps"] = rate or "max"
        doc["summary"].update(rate=float(rate or 90_000), loss_ratio=0.02 if (rate or 90_000) > 30_000 else 0.0)
        return doc

    spec = SearchSpec(kind="net", max_loss=0.001, max_p99_ns=50_000_000, trial_ns=10**9, resolution=0.02,
                      confirm=1, floor=1_000, ceiling=None)
    return asyncio.run(run_search(spec, run_trial, lambda entry: None))


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_search_report_adds_search_png(plotting, tmp_path):
    doc = search_doc()
    paths = report.write_report(doc, tmp_path)
    assert [p.name for p in paths[-3:]] == ["nines.png", "timeline.png", "search.png"]
    for p in paths[-3:]:
        assert png_size(p) == report.FIGURE_PX


def test_search_points_are_the_judged_trials_and_the_curve_by_rate():
    doc = search_doc()
    trials, curve = report.search_points(doc)
    assert [t["rate"] for t in trials] == sorted(t["rate"] for t in doc["search"]["trials"] if t["rate"])
    assert len(curve) == 5 and [p["pct"] for p in curve] == [10, 50, 80, 90, 100]


def test_a_search_reads_as_its_trials_kind():
    doc = search_doc()
    assert report.run_kind(doc) == "net"
    assert report.title(doc).startswith("loadgen net search, the knee trial: stream size=64B")
    assert "one way" in report.describe_tag("oneway-latency", doc)
