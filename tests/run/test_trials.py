"""loadgen/run/trials.py: a search driven over fake trials, each a real net document
(tests/fixtures/results/net-stream.json) whose loss a fake path sets from its rate.

The search document must be what the schema, check and report read: checked here
against the result schema, with every trial's summary and histograms and the load curve.
"""
import asyncio
import copy
import json
from pathlib import Path

import pytest

from loadgen.results import documents
from loadgen.run.trials import run_search
from loadgen.search import DEFAULT_LOAD_CURVE_PCT, SearchSpec, curve_rates

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results" / "net-stream.json"


def fake_path(knee_pps: int, stop_at: int | None = None):
    """run_trial for a path that loses 1% above knee_pps; the stop_at-th trial is interrupted."""
    base = json.loads(FIXTURE.read_text())
    asked: list = []

    async def run_trial(rate):
        asked.append(rate)
        doc = copy.deepcopy(base)
        sent = rate or 200_000
        doc["config"]["pps"] = rate or "max"
        doc["summary"].update(rate=float(sent), sent_pps=float(sent), loss_ratio=0.01 if sent > knee_pps else 0.0)
        if stop_at is not None and len(asked) == stop_at:
            doc.update(interrupted=True, stop_reason="interrupted by SIGINT")
        return doc

    return run_trial, asked


def spec(**kw) -> SearchSpec:
    return SearchSpec(**(dict(kind="net", max_loss=0.001, max_p99_ns=None, trial_ns=10**9, resolution=0.01,
                              confirm=1, floor=1_000, ceiling=None) | kw))


def search(s: SearchSpec, run_trial) -> tuple[dict, list[dict]]:
    heard: list[dict] = []
    doc = asyncio.run(run_search(s, run_trial, heard.append))
    documents.check(doc, "urn:loadgen:schema:result", "search")
    return doc, heard


def test_the_search_document_holds_every_trial_the_knee_and_a_five_point_curve():
    run_trial, asked = fake_path(30_000)
    doc, heard = search(spec(), run_trial)
    s = doc["search"]
    assert doc["kind"] == "search" and s["kind"] == "net"
    assert 29_700 <= s["knee_pps"] <= 30_000
    assert asked[0] is None and s["trials"][0]["phase"] == "ceiling" and s["ceiling_found"] == 200_000
    # every trial heard as it ended, in order, and kept with the job's summary and histograms
    assert heard == s["trials"] + s["load_curve"]
    assert len(asked) == len(heard)
    for t in heard:
        assert t["summary"]["sent_pps"] == t["achieved"] and set(t["histograms"]) == {"oneway-latency",
                                                                                       "oneway-service"}
        assert t["p99_ns"] == t["summary"]["oneway"]["latency_ns"]["p99"]
    assert all(t["passed"] == (t["rate"] <= 30_000) for t in s["trials"][1:])
    # the default curve: five points at those shares of the knee, not judged
    assert [p["pct"] for p in s["load_curve"]] == list(DEFAULT_LOAD_CURVE_PCT) and len(s["load_curve"]) == 5
    assert [p["rate"] for p in s["load_curve"]] == curve_rates(s["knee_pps"], DEFAULT_LOAD_CURVE_PCT)
    assert all(p["passed"] is None and p["phase"] == "curve" for p in s["load_curve"])
    # the document's own run is the knee's last trial
    assert doc["config"]["pps"] == s["knee_pps"] and not doc["interrupted"]


def test_no_knee_means_no_curve_and_a_warning():
    run_trial, asked = fake_path(10)
    doc, _ = search(spec(ceiling=50_000, load_curve_pct=(50, 100)), run_trial)
    assert doc["search"]["knee_pps"] is None and doc["search"]["load_curve"] == []
    assert "fails at the floor" in doc["search"]["why"]
    assert any(w.startswith("no knee:") for w in doc["warnings"])
    assert asked[-1] == 1_000   # the floor was tried


@pytest.mark.parametrize("stop_at", [1, 3])
def test_an_interrupted_trial_ends_the_search_and_keeps_what_was_measured(stop_at):
    run_trial, asked = fake_path(30_000, stop_at=stop_at)
    doc, _ = search(spec(), run_trial)
    assert len(asked) == stop_at and len(doc["search"]["trials"]) == stop_at
    assert doc["interrupted"] and doc["stop_reason"] == "interrupted by SIGINT"
    assert doc["search"]["knee_pps"] is None and doc["search"]["load_curve"] == []


def test_a_busy_agent_is_asked_again_until_it_is_free():
    from loadgen.fleet.remote import AgentBusy
    from loadgen.run.trials import patient

    answers = [AgentBusy("busy"), AgentBusy("busy"), "client"]
    asked = []

    async def connect(host, port):
        asked.append((host, port))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(patient(connect)("10.0.0.1", 7070)) == "client"
    assert asked == [("10.0.0.1", 7070)] * 3


def test_a_busy_agent_is_given_up_on_and_other_refusals_are_not_retried():
    from loadgen.errors import SetupError
    from loadgen.fleet.remote import AgentBusy
    from loadgen.run.trials import patient

    calls = []

    async def busy(host, port):
        calls.append(1)
        raise AgentBusy("the agent at h:1 refused: another controller is using this agent")

    with pytest.raises(AgentBusy):
        asyncio.run(patient(busy, wait_s=0.0)("h", 1))
    assert len(calls) == 1

    async def refused(host, port):
        calls.append(2)
        raise SetupError("the agent at h:1 refused: bad token")

    with pytest.raises(SetupError, match="bad token"):
        asyncio.run(patient(refused)("h", 1))
    assert calls.count(2) == 1


@pytest.mark.parametrize("after, knee", [(2, False), (15, True)])   # during the search (13 trials); the curve
def test_a_signal_between_trials_ends_the_search_before_the_next(after, knee):
    run_trial, asked = fake_path(30_000)
    signals: list = []

    async def counted(rate):
        doc = await run_trial(rate)
        if len(asked) == after:
            signals.append("SIGTERM")   # as interrupts records one that lands after the run
        return doc

    doc = asyncio.run(run_search(spec(), counted, lambda entry: None, lambda: signals[-1] if signals else None))
    documents.check(doc, "urn:loadgen:schema:result", "search")
    assert len(asked) == after
    assert doc["interrupted"] and doc["stop_reason"] == "interrupted by SIGTERM between trials"
    assert len(doc["search"]["trials"]) + len(doc["search"]["load_curve"]) == after
    # a knee found before the signal stands; the curve holds the points measured
    assert (doc["search"]["knee_pps"] is not None) == knee and len(doc["search"]["load_curve"]) == (after - 13 if knee else 0)
