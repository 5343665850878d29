"""The knee: RFC 2544's search for the highest rate a path sustains within its bounds.

Vocabulary:
  trial     one ordinary run (`loadgen net` or `loadgen disk`) at a fixed rate, lasting
            --trial; the first may run at max (closed loop) to find the ceiling.
  phase     why a trial ran: "ceiling" (the closed-loop trial), "search" (a step of the
            binary search), "confirm" (the knee again, --confirm times), "curve" (a
            point of the load curve).
  pass      loss <= max_loss, p99 <= max_p99 when one is given, and the schedule kept
            up: no shortfall (loadgen/results/stalls.py). A failed trial says why.
  loss      net: the datagrams sent and never received, over those sent; disk: the
            I/Os that failed, over all that completed.
  bounds    hi is the lowest rate that ever failed (the ceiling while none has); lo is
            the highest rate that passed below hi (the floor, untried, while none has).
  knee      lo, once hi - lo is within the resolution (a ratio of hi) and lo has passed
            1 + confirm times. A knee that fails a confirmation is a failed rate like
            any other: hi drops to it and the search goes on below.
  load curve  after the knee, one trial at each percentage of it (RFC 2544 26.2:
            latency at fractions of the throughput), latency recorded, never judged.

Rules: the next step is a function of the spec and the trials so far, and of
nothing else, so a search's document replays it and table tests feed it fake
outcomes. No I/O, no clock, no native code; the driver is loadgen/run/trials.py.
"""
from dataclasses import dataclass

from loadgen import options
from loadgen.errors import UsageError
from loadgen.units import format_ns, format_si

DEFAULT_LOAD_CURVE_PCT = (10, 50, 80, 90, 100)
DEFAULT_MAX_TRIALS = 40
RATE_KEY = {"net": "pps", "disk": "iops"}
UNIT = {"net": "pps", "disk": "IOPS"}


@dataclass(frozen=True)
class SearchSpec:
    kind: str                       # "net" or "disk": which job each trial runs
    max_loss: float                 # a ratio: 0.001 is 0.1%
    max_p99_ns: int | None          # None: latency does not judge a trial
    trial_ns: int                   # each trial's measured time (the job's --duration)
    resolution: float               # a ratio of hi: 0.01 stops at 1%
    confirm: int                    # extra passing trials the knee needs
    floor: int                      # the lowest rate searched, per second
    ceiling: int | None             # the highest; None: a first closed-loop trial finds it
    load_curve_pct: tuple[int, ...] = DEFAULT_LOAD_CURVE_PCT
    max_trials: int = DEFAULT_MAX_TRIALS   # bounds the search and its confirmations (not the curve)

    def as_dict(self) -> dict:
        return {"kind": self.kind, "max_loss": self.max_loss, "max_p99_ns": self.max_p99_ns,
                "trial_ns": self.trial_ns, "resolution": self.resolution, "confirm": self.confirm,
                "floor": self.floor, "ceiling": self.ceiling, "load_curve_pct": list(self.load_curve_pct),
                "max_trials": self.max_trials}


@dataclass(frozen=True)
class Outcome:
    """What the search needs of a finished trial."""
    phase: str
    rate: int | None        # requested per second; None: closed loop (max)
    achieved: float         # per second: sent pps, or IOPS
    passed: bool


@dataclass(frozen=True)
class Step:
    """The next trial to run."""
    phase: str
    rate: int | None


@dataclass(frozen=True)
class Done:
    """The search is over: its knee (None when no rate passed) and why it stopped."""
    knee: int | None
    why: str
    ceiling: int | None


def parse_search(kind: str, **raw) -> SearchSpec:
    """The search's own options (options.SEARCH, raw as typed) -> a SearchSpec, or UsageError."""
    v = options.values(options.SEARCH, raw, "search")
    if v["ceiling"] is not None and v["ceiling"] < v["floor"]:
        raise UsageError(f"--ceiling {format_si(v['ceiling'])} is below --floor {format_si(v['floor'])}")
    return SearchSpec(kind=kind, max_loss=v["max_loss"], max_p99_ns=v["max_p99"], trial_ns=v["trial"],
                      resolution=v["resolution"], confirm=v["confirm"], floor=v["floor"], ceiling=v["ceiling"],
                      load_curve_pct=v["load_curve"], max_trials=v["max_trials"])


def ceiling_of(spec: SearchSpec, trials: list[Outcome]) -> int | None:
    """The ceiling: the spec's, or what the closed-loop trial achieved (None before it ran)."""
    if spec.ceiling is not None:
        return spec.ceiling
    closed = [t for t in trials if t.phase == "ceiling"]
    return int(closed[0].achieved) if closed else None


def bounds(trials: list[Outcome]) -> tuple[int | None, int | None]:
    """(lo, hi): the highest rate that passed below hi (None: none has), and the lowest
    rate that failed (None: none has)."""
    judged = [t for t in trials if t.phase in ("search", "confirm")]
    failed = [t.rate for t in judged if not t.passed]
    hi = min(failed) if failed else None
    passed = [t.rate for t in judged if t.passed and (hi is None or t.rate < hi)]
    return (max(passed) if passed else None), hi


def next_step(spec: SearchSpec, trials: list[Outcome]) -> Step | Done:
    """The next trial of the search, or the end of it (the load curve comes after: curve_rates)."""
    ceiling = ceiling_of(spec, trials)
    if ceiling is None:
        return Step("ceiling", None)
    if ceiling < spec.floor:
        return Done(None, f"the closed-loop trial reached only {format_si(ceiling)}/s, below the floor "
                          f"{format_si(spec.floor)}/s", ceiling)
    searched = [t for t in trials if t.phase != "ceiling"]
    lo, hi = bounds(trials)
    if hi is None and not any(t.rate == ceiling for t in searched):
        return _capped(spec, trials, lo, ceiling) or Step("search", ceiling)   # RFC 2544: begin at the top
    if hi is not None and hi <= spec.floor:
        return Done(None, f"fails at the floor, {format_si(spec.floor)}/s", ceiling)
    low = spec.floor if lo is None else lo
    if hi is not None and hi - low > max(1, spec.resolution * hi):
        return _capped(spec, trials, lo, ceiling) or Step("search", (low + hi) // 2)
    # Converged (or the ceiling passed): lo must be tried, then confirmed.
    if lo is None:
        return _capped(spec, trials, lo, ceiling) or Step("search", spec.floor)
    passes = sum(1 for t in searched if t.rate == lo and t.passed)
    if passes < 1 + spec.confirm:
        return _capped(spec, trials, lo, ceiling) or Step("confirm", lo)
    where = "the ceiling passed" if hi is None else \
        f"{format_si(lo)}/s passed and {format_si(hi)}/s failed, within {spec.resolution:.2%}"
    confirmed = f"; confirmed {spec.confirm} more time{'s' if spec.confirm != 1 else ''}" if spec.confirm else ""
    return Done(lo, where + confirmed, ceiling)


def _capped(spec: SearchSpec, trials: list[Outcome], lo: int | None, ceiling: int) -> Done | None:
    """The end, when the trial cap is reached before the search converged."""
    if len(trials) < spec.max_trials:
        return None
    return Done(None, f"stopped at the cap of {spec.max_trials} trials before converging"
                      + (f" (the best passing rate so far: {format_si(lo)}/s)" if lo is not None else ""), ceiling)


def curve_rates(knee: int, pcts: tuple[int, ...]) -> list[int]:
    """The load curve's rates: each percentage of the knee, at least one per second."""
    return [max(1, round(knee * pct / 100)) for pct in pcts]


# ---- a trial's verdict, from its document's summary ------------------------------------------------

def loss_ratio(kind: str, summary: dict) -> float | None:
    """The trial's loss (see the vocabulary); None when nothing measured it."""
    if kind == "net":
        return summary.get("loss_ratio")
    ops, errors = summary.get("ops") or 0, summary.get("errors") or 0
    return errors / (ops + errors) if ops + errors else 0.0


def latency_of(summary: dict) -> dict | None:
    """The latency block a trial is judged by: round trip or disk, else one way; None if neither."""
    for block in (summary.get("latency_ns"), (summary.get("oneway") or {}).get("latency_ns")):
        if isinstance(block, dict) and block.get("count"):
            return block
    return None


def judge(spec: SearchSpec, summary: dict, closed_loop: bool = False) -> tuple[bool, list[str]]:
    """(passed, why it failed): the trial's loss, p99 and schedule against the spec."""
    why = []
    loss = loss_ratio(spec.kind, summary)
    if loss is None:
        why.append("loss not measured: " + summary.get("note", "nothing counted arrivals"))
    elif loss > spec.max_loss:
        why.append(f"loss {loss:.4%} > {spec.max_loss:.4%}")
    if spec.max_p99_ns is not None:
        lat = latency_of(summary)
        if lat is None:
            why.append("no latency measured to hold to --max-p99 "
                       + (f"({summary['oneway_omitted']})" if summary.get("oneway_omitted") else ""))
        elif lat["p99"] > spec.max_p99_ns:
            why.append(f"p99 {format_ns(lat['p99'])} > {format_ns(spec.max_p99_ns)}")
    shortfall = summary.get("shortfall")
    if shortfall and not closed_loop:
        why.append(f"fell short: {format_si(shortfall['achieved'])} of {format_si(shortfall['requested'])}/s "
                   f"(likely limit: {shortfall['likely_limit']})")
    return not why, [w.strip() for w in why]


# ---- for people: a line per trial, then the knee -------------------------------------------------

def format_trial(kind: str, entry: dict) -> str:
    """One trial of a search document as the search prints it."""
    rate = "max" if entry["rate"] is None else format_si(entry["rate"])
    loss = "-" if entry["loss_ratio"] is None else f"{entry['loss_ratio']:.4%}"
    p50 = "-" if entry["p50_ns"] is None else format_ns(entry["p50_ns"])
    p99 = "-" if entry["p99_ns"] is None else format_ns(entry["p99_ns"])
    lag = format_ns(entry["lag_max_ns"]) if entry["lag_max_ns"] is not None else "-"
    phase = entry["phase"] + (f" {entry['pct']}%" if entry.get("pct") is not None else "")
    verdict = "" if entry["passed"] is None else ("pass" if entry["passed"] else "FAIL " + "; ".join(entry["why"]))
    return (f"{phase:<11}{rate:>9} {UNIT[kind]:<4} achieved {format_si(entry['achieved']):>8}  loss {loss:>8}  "
            f"p50 {p50:>8}  p99 {p99:>8}  lag {lag:>8}  {verdict}").rstrip()


def format_knee(search: dict) -> str:
    unit = UNIT[search["kind"]]
    knee = search[f"knee_{RATE_KEY[search['kind']]}"]
    if knee is None:
        return f"knee: not found ({search['why']})"
    line = f"knee: {format_si(knee)} {unit} ({search['why']})"
    points = [f"{p['pct']}% {'-' if p['p99_ns'] is None else format_ns(p['p99_ns'])}" for p in search["load_curve"]]
    return line + (f"\nload curve, p99 at each share of the knee: {', '.join(points)}" if points else "")
