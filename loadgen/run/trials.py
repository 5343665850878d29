"""Driving a search (loadgen/search.py): its trials, one ordinary job each, and its document.

A trial is whatever `loadgen net` or `loadgen disk` would run at that rate: the
caller hands in run_trial(rate) returning the job's own result document, so a
search reaches agents (--peer, --clients, --on) exactly as a single run does.
The search asks for the next step after each trial; a trial that was
interrupted or failed ends the search, and what was measured stays in the
document. So does a signal caught between trials (the next trial's run would
start afresh and forget it): the search ends before another trial starts.

The search document is the knee trial's document (config, summary, histograms,
intervals, hosts: what a single run at the knee holds, so report, check and
compare read it as they read any run) with kind "search" and a `search` section:
the parameters, the knee, every trial's summary and histograms, and the load curve.
"""
import asyncio
from typing import Awaitable, Callable

from loadgen.run import interrupts
from loadgen.search import (RATE_KEY, Done, Outcome, SearchSpec, Step, curve_rates, judge, latency_of, loss_ratio,
                            next_step)

RunTrial = Callable[[int | None], Awaitable[dict]]
# An agent ends a session after its controller leaves (its job processes exit), so the
# next trial's controller may find it still busy: it asks again, this long at most.
AGENT_BUSY_WAIT_S = 30.0
AGENT_BUSY_POLL_S = 0.2


def patient(connect: Callable, wait_s: float = AGENT_BUSY_WAIT_S) -> Callable:
    """connect(host, port) that asks a busy agent again until wait_s has passed: between trials
    the busy one is most likely this search's own last session, still ending."""
    async def connect_when_free(host: str, port: int):
        from loadgen.fleet.remote import AgentBusy

        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                return await connect(host, port)
            except AgentBusy:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
                await asyncio.sleep(AGENT_BUSY_POLL_S)

    return connect_when_free


def trial_entry(spec: SearchSpec, step: Step, doc: dict, pct: int | None = None) -> dict:
    """A trial as the search document keeps it: its verdict, the job's summary and histograms, and
    in a paired or remote run each host's section."""
    s = doc["summary"]
    lat = latency_of(s)
    passed, why = judge(spec, s, closed_loop=step.rate is None)
    if step.phase == "curve":
        passed = None   # the curve records latency; the knee was judged already
    return {"phase": step.phase, "pct": pct, "rate": step.rate, "achieved": s.get("rate", 0.0),
            "loss_ratio": loss_ratio(spec.kind, s), "p50_ns": lat["p50"] if lat else None,
            "p99_ns": lat["p99"] if lat else None, "lag_max_ns": (s.get("schedule_lag_ns") or {}).get("max"),
            "passed": passed, "why": why, "summary": s, "histograms": doc.get("histograms") or {},
            "warnings": doc.get("warnings") or []} | _hosts(doc)


def _hosts(doc: dict) -> dict:
    """A paired or remote trial's host sections, without their histograms (the total's are kept)."""
    if not doc.get("hosts"):
        return {}
    return {"hosts": [{k: v for k, v in h.items() if k != "histograms"} for h in doc["hosts"]]}


def _outcome(entry: dict) -> Outcome:
    return Outcome(entry["phase"], entry["rate"], entry["achieved"], bool(entry["passed"]))


def _stopped(doc: dict) -> bool:
    return bool(doc.get("interrupted") or doc.get("failed"))


async def run_search(spec: SearchSpec, run_trial: RunTrial, on_trial: Callable[[dict], None],
                     signalled: Callable[[], str | None] = interrupts.caught) -> dict:
    """Run the search, then the load curve at its knee; on_trial(entry) hears of each trial as it ends.
    signalled() names a signal caught so far (SIGINT...), or None."""
    entries: list[dict] = []
    docs: list[dict] = []
    stop: dict = {}   # why the search ended early: interrupted, failed, stop_reason

    async def trial(step: Step, pct: int | None = None) -> dict | None:
        """The trial's entry; None when a signal came before it, and it never ran."""
        if docs and signalled():
            stop.update(interrupted=True, failed=False, stop_reason=f"interrupted by {signalled()} between trials")
            return None
        doc = await run_trial(step.rate)
        docs.append(doc)
        entries.append(trial_entry(spec, step, doc, pct))
        on_trial(entries[-1])
        if _stopped(doc):
            stop.update(interrupted=doc["interrupted"], failed=doc["failed"], stop_reason=doc["stop_reason"])
        return entries[-1]

    while not stop:
        step = next_step(spec, [_outcome(e) for e in entries])
        if isinstance(step, Done):
            break
        await trial(step)
    done: Done = Done(None, f"stopped early: {stop['stop_reason']}", None) if stop else step
    curve: list[dict] = []
    if done.knee is not None:
        for pct, rate in zip(spec.load_curve_pct, curve_rates(done.knee, spec.load_curve_pct)):
            entry = await trial(Step("curve", rate), pct)
            if entry is not None:
                curve.append(entry)
            if stop:
                break
    return search_document(spec, done, entries, docs, curve, stop)


def search_document(spec: SearchSpec, done: Done, entries: list[dict], docs: list[dict],
                    curve: list[dict], stop: dict) -> dict:
    """The knee trial's document (else the last trial's), as kind "search" with the search section."""
    at_knee = [i for i, e in enumerate(entries) if e["rate"] == done.knee and e["passed"] and e["phase"] != "curve"]
    base = docs[at_knee[-1]] if at_knee else docs[-1]
    ceiling = done.ceiling if done.ceiling is not None else next(
        (int(e["achieved"]) for e in entries if e["phase"] == "ceiling"), spec.ceiling)
    search = spec.as_dict() | {
        f"knee_{RATE_KEY[spec.kind]}": done.knee, "why": done.why, "ceiling_found": ceiling,
        "trials": [e for e in entries if e["phase"] != "curve"],
        "load_curve": curve,
    }
    warnings = list(base.get("warnings") or [])
    if done.knee is None:
        warnings.append(f"no knee: {done.why}")
    doc = dict(base) | {"kind": "search", "search": search, "warnings": warnings}
    return doc | stop
