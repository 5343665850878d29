"""Reports from a result document ("loadgen/1"): percentile text files and two plots.

Vocabulary:
    tag       the name of one of the document's total histograms ("latency", "service",
              "oneway-latency", "oneway-service"); its values are ns. A `*latency` tag counts
              from the scheduled submit/send, its `*service` twin from the actual one.
    nines     a percentile axis on the scale 1/(1 - p): 0% sits at 1, 90% at 10, 99% at 100,
              so each added nine gets the same width (HdrHistogram's plotter, plotFiles.html).
    interval  one row of doc["intervals"]: the rate over the interval ending at t_s and the
              latency summary of the first tag's operations completed in it; mixed disk runs
              add each side's (row["read"], row["write"]), paired runs each host's (row["hosts"]).
    host      a section of doc["hosts"] (paired and remote runs). A host that timed operations
              carries its own histograms; the document's are theirs added, so they are exact.
    target    a section of doc["targets"] (a disk run on several): its own histograms, and
              its rate in each interval (row["targets"]); the document's histograms are theirs added.
    side      "read" or "write" in a mixed disk run, whose documents carry read-latency,
              write-latency... beside the merged tags.

Rules:
    The report reads the document alone; it never measures and never re-runs anything.
    Text comes first and needs only hdrh, so a host without matplotlib still gets every number;
    only then are plots drawn. Plots use matplotlib's object API on the Agg canvas, imported
    lazily: no pyplot, so no GUI backend and no global matplotlib state are touched.
    The text files are HdrHistogram's .hgrm format in microseconds, and say so. Plot axes
    label each tick in the unit that fits it (500 µs, 1 ms, 2 s).
"""
import io
import math
import re
from pathlib import Path

from hdrh.histogram import HdrHistogram

from loadgen.errors import SetupError, UsageError
from loadgen.results.result import SCHEMA
from loadgen.units import format_si

NS_PER_US = 1000                 # output_value_unit_scaling_ratio: the text and plots are in µs
TICKS_PER_HALF_DISTANCE = 5      # HdrHistogram's default for outputPercentileDistribution
FIGSIZE_IN = (10.0, 6.0)
DPI = 100
FIGURE_PX = (1000, 600)          # FIGSIZE_IN * DPI: both PNGs, whatever the data
WIDE_RANGE = 20                  # a y axis spanning more than this ratio goes log: a p50 of 1 ms
                                 # under a p99 of 40 ms is a flat line at zero on a linear one
NINES_MIN_X = 100_000            # the nines axis always reaches 99.999%
HEADROOM = 1.15                  # a linear panel's top: 15% above its highest line
SIDE_COLORS = {"read": "C0", "write": "C1"}
PLOT_EXTRA = "plotting needs the optional extra: pip install 'loadgen[plot]'"

# Tags become file names: no separators, no leading dot.
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The footer line of hdrh's output_percentile_distribution that carries the standard deviation.
_STDDEV = re.compile(r"(?P<head>#\[Mean +=.*, StdDeviation += ) *(?P<ns>[0-9.]+)\]")


# ---- the document -------------------------------------------------------------------------------

def decode_histograms(doc: dict) -> dict[str, HdrHistogram]:
    """The document's total histograms by tag, in document order; UsageError if there are none."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise UsageError(f"not a {SCHEMA} result document (schema {got!r})")
    payloads = doc.get("histograms")
    if not isinstance(payloads, dict) or not payloads:
        summary = doc.get("summary") if isinstance(doc.get("summary"), dict) else {}
        why = (f"one-way delays were not kept: {summary['oneway_omitted']}" if summary.get("oneway_omitted")
               else "nothing was measured at this end, or an older loadgen wrote it")
        raise UsageError(f"the result holds no histograms, so there is no latency to report ({why})")
    return _decode_all(payloads, "")


def _decode_all(payloads, where: str) -> dict[str, HdrHistogram]:
    if not isinstance(payloads, dict):
        raise UsageError(f"the histograms{where} are not an object")
    hists = {}
    for tag, payload in payloads.items():
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise UsageError(f"histogram tag {tag!r}{where} cannot name a file")
        try:
            hists[tag] = HdrHistogram.decode(payload)
        except Exception as e:   # hdrh raises assorted types (binascii, zlib, its own) for bad input
            raise UsageError(f"histogram {tag!r}{where} cannot be decoded: {type(e).__name__}: {e}") from None
        if hists[tag] is None:
            raise UsageError(f"histogram {tag!r}{where} cannot be decoded")
    return hists


def host_sections(doc: dict) -> list[dict]:
    return [h for h in doc.get("hosts") or [] if isinstance(h, dict) and isinstance(h.get("host"), str)]


def decode_host_histograms(doc: dict) -> dict[str, dict[str, HdrHistogram]]:
    """Each host's own histograms by host name, for the hosts that carry any (paired and remote runs)."""
    return {h["host"]: _decode_all(h["histograms"], f" of host {h['host']}")
            for h in host_sections(doc) if "histograms" in h}


def decode_target_histograms(doc: dict) -> dict[str, dict[str, HdrHistogram]]:
    """Each target's own histograms by path (a disk run on several targets)."""
    return {t["path"]: _decode_all(t["histograms"], f" of target {t['path']}")
            for t in doc.get("targets") or []
            if isinstance(t, dict) and isinstance(t.get("path"), str) and isinstance(t.get("histograms"), dict)}


def host_label(doc: dict, name: str) -> str:
    """'10.0.0.1:7070 (sender)'."""
    role = next((h.get("role") for h in host_sections(doc) if h["host"] == name), None)
    return f"{name} ({role})" if role else name


def run_kind(doc: dict):
    """net or disk: the document's kind, or for a search (whose document is its knee trial's) its trials'."""
    if doc.get("kind") == "search":
        return (doc.get("search") or {}).get("kind")
    return doc.get("kind")


def sides(hists: dict) -> list[str]:
    """The sides a mixed disk run's document holds apart, in order; [] in any other run."""
    return [side for side in SIDE_COLORS if f"{side}-latency" in hists]


def describe_tag(tag: str, doc: dict) -> str:
    """'latency (from scheduled submit)': what a tag measures, and from which moment."""
    *quals, base = tag.split("-")
    if base not in ("latency", "service"):
        return tag
    disk = run_kind(doc) == "disk"
    verb, rate_key = ("submit", "iops") if disk else ("send", "pps")
    start = f"scheduled {verb}" if base == "latency" else f"actual {verb}"
    if base == "latency" and (doc.get("config") or {}).get(rate_key) == "max":
        start = f"actual {verb}: {rate_key}=max has no schedule"
    if "oneway" in quals:
        what = "one way"
    elif run_kind(doc) == "net" and (doc.get("config") or {}).get("mode") == "echo":
        what = "round trip"
    else:
        what = ""
    return f"{tag} ({what + ' ' if what else ''}from {start})"


def _rate_text(rate) -> str:
    return format_si(rate) if isinstance(rate, (int, float)) else str(rate)


def workload(doc: dict) -> str:
    """'randread bs=4k qd=32 workers=2 iops=max' or 'echo size=64B flows=1 pps=10.0k'."""
    c = doc.get("config") or {}
    if run_kind(doc) == "disk":
        rw = c.get("rw", "?")
        mix = f" {c['read_pct']}% read" if rw in ("randrw", "rw") and "read_pct" in c else ""
        io_mode = "" if "direct" not in c else (" direct" if c["direct"] else " buffered")
        return (f"{rw}{mix} bs={c.get('bs', '?')} qd={c.get('qd', '?')} workers={c.get('workers', '?')} "
                f"iops={_rate_text(c.get('iops', '?'))}{io_mode}")
    if run_kind(doc) == "net":
        return (f"{c.get('mode', '?')} size={c.get('size_bytes', '?')}B flows={c.get('flows', '?')} "
                f"pps={_rate_text(c.get('pps', '?'))}")
    return "?"


def where(doc: dict) -> str:
    """Which machines ran it: the local hostname, an agent, or each host of a paired run."""
    c, env = doc.get("config") or {}, doc.get("env") or {}
    local = env.get("hostname", "?")
    hosts = [h for h in doc.get("hosts") or [] if isinstance(h, dict) and "host" in h]
    if hosts:
        listed = ", ".join(f"{h['host']} ({h.get('role', '?')})" for h in hosts)
        return f"hosts {listed}; controller {local}"
    if run_kind(doc) == "net":
        to = "embedded receiver" if c.get("embedded_receiver") else c.get("target_address", "?")
        return f"host {local} to {to}"
    return f"host {local}"


def title(doc: dict) -> str:
    knee = " search, the knee trial" if doc.get("kind") == "search" else ""
    return f"loadgen {run_kind(doc) or '?'}{knee}: {workload(doc)}\n{where(doc)}"


# ---- text ---------------------------------------------------------------------------------------

def percentile_text(tag: str, hist: HdrHistogram, doc: dict, host: str | None = None,
                    target: str | None = None) -> str:
    """HdrHistogram's outputPercentileDistribution in µs, after two '#[...]' lines saying what it is.

    Readers of that format (HdrHistogram's plotter) skip lines starting with '#'.
    """
    buf = io.BytesIO()
    hist.output_percentile_distribution(buf, NS_PER_US, TICKS_PER_HALF_DISTANCE)
    lines = buf.getvalue().decode("ascii").splitlines()
    # hdrh 0.10 writes StdDeviation unscaled (ns beside a mean in µs); HdrHistogram's Java
    # original divides both by the ratio, and so do we. Rescaling the printed number (it has
    # 1e-3 ns of precision) spares a second pass over the histogram, which hdrh makes in Python.
    digits = hist.significant_figures
    for i, line in enumerate(lines):
        m = _STDDEV.fullmatch(line)
        if m:
            lines[i] = f"{m['head']}{float(m['ns']) / NS_PER_US:12.{digits}f}]"
    of_host = f" on host {host} alone" if host else f" on target {target} alone" if target else ""
    head = [f"#[loadgen {doc.get('kind', '?')} {describe_tag(tag, doc)}{of_host}: values in microseconds "
            f"(ns / {NS_PER_US})]",
            f"#[{workload(doc)}; {where(doc)}]"]
    return "\n".join(head + lines) + "\n"


def _write(path: Path, data: str) -> None:
    try:
        path.write_text(data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def host_file_part(name: str) -> str:
    """A host name as part of a file name: '10.0.0.1:7070' -> '10.0.0.1_7070'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "_"


def write_percentiles(doc: dict, out_dir: Path, hists: dict[str, HdrHistogram] | None = None,
                      by_host: dict[str, dict[str, HdrHistogram]] | None = None,
                      by_target: dict[str, dict[str, HdrHistogram]] | None = None) -> list[Path]:
    """percentiles-<tag>.hgrm in out_dir (created) for each histogram, then
    percentiles-<tag>-host-<host>.hgrm for each host's own and percentiles-<tag>-target-<path>.hgrm
    for each target's; returns the paths."""
    hists = decode_histograms(doc) if hists is None else hists
    by_host = decode_host_histograms(doc) if by_host is None else by_host
    by_target = decode_target_histograms(doc) if by_target is None else by_target
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out_dir}: {e.strerror}") from None
    paths = []
    for tag, hist in hists.items():
        path = out_dir / f"percentiles-{tag}.hgrm"
        _write(path, percentile_text(tag, hist, doc))
        paths.append(path)
    for name, own in by_host.items():
        for tag, hist in own.items():
            path = out_dir / f"percentiles-{tag}-host-{host_file_part(name)}.hgrm"
            _write(path, percentile_text(tag, hist, doc, host_label(doc, name)))
            paths.append(path)
    for name, own in by_target.items():
        for tag, hist in own.items():
            path = out_dir / f"percentiles-{tag}-target-{host_file_part(name)}.hgrm"
            _write(path, percentile_text(tag, hist, doc, target=name))
            paths.append(path)
    return paths


# ---- plots --------------------------------------------------------------------------------------

def nines_points(hist: HdrHistogram) -> tuple[list[float], list[float]]:
    """(x, y) of the nines plot: x = 1/(1-p), y in µs; the same rows as the text, less the 100% row."""
    xs, ys = [], []
    for it in hist.get_percentile_iterator(TICKS_PER_HALF_DISTANCE):
        p = it.percentile_level_iterated_to
        if p >= 100.0:
            continue     # x would be infinite; its value (the max) is also the last finite row's
        xs.append(1.0 / (1.0 - p / 100.0))
        ys.append(it.value_iterated_to / NS_PER_US)
    return xs, ys


def nines_label(p: float) -> str:
    """1 -> '0%', 1000 -> '99.9%'."""
    if p <= 1:
        return "0%"
    return f"{100.0 - 100.0 / p:.{max(int(round(math.log10(p))) - 2, 0)}f}%"


def human_us(value_us: float) -> str:
    """A latency tick in the unit that fits it: 0.5 -> '500 ns', 250 -> '250 µs', 1500 -> '1.5 ms'."""
    if value_us <= 0:
        return "0"
    for unit, scale in (("s", 1e6), ("ms", 1e3), ("µs", 1.0)):
        if value_us >= scale:
            v = value_us / scale
            return f"{v:,.0f} {unit}" if v >= 1000 else f"{v:.3g} {unit}"   # 3,600 s, not 3.6e+03 s
    return f"{value_us * NS_PER_US:.3g} ns"


def _wide(values) -> bool:
    positive = [v for v in values if v and v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > WIDE_RANGE


def _twin(tag: str) -> str | None:
    """The latency tag a service tag should be compared with."""
    return tag[: -len("service")] + "latency" if tag.endswith("service") else None


# Hosts' colours: not C0 and C1 (totals, sides), C3 (p99 and max) or C7 (grey, the requested rate).
HOST_COLORS = ("C2", "C4", "C5", "C6", "C8", "C9")


def host_colors(doc: dict, names) -> dict[str, str]:
    """A colour per host, the same in every panel, in the document's host order."""
    order = [h["host"] for h in host_sections(doc)]
    order += [n for n in names if n not in order]
    return {name: HOST_COLORS[i % len(HOST_COLORS)] for i, name in enumerate(order)}


def _load_matplotlib():
    """(Figure, FigureCanvasAgg, ticker), or None when the plot extra is not installed."""
    try:
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg, ticker


def _new_figure(mpl):
    Figure, FigureCanvasAgg, _ = mpl
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    try:
        fig.savefig(path, format="png", dpi=DPI)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def _latency_axis(ax, ticker, values_us: list[float]) -> None:
    """A y axis of latency (data in µs, ticks in the unit that fits), from 0, or log when the
    values span more than two decades."""
    if _wide(values_us):
        positive = [v for v in values_us if v > 0 and math.isfinite(v)]
        ax.set_yscale("log")
        # ticks at 1-2-5 (few decades) or 1-3 so every line has a labelled value near it
        decades = math.log10(max(positive) / min(positive))
        subs = (1.0, 2.0, 5.0) if decades <= 3 else (1.0, 3.0) if decades <= 5 else (1.0,)
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        ax.set_ylabel("latency (log scale)")
    else:
        finite = [v for v in values_us if math.isfinite(v)]
        ax.set_ylim(0, max(finite) * HEADROOM if finite and max(finite) > 0 else None)
        ax.set_ylabel("latency")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: human_us(v)))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _summary_label(head: str, hist: HdrHistogram) -> str:
    """'latency (...): p50 150 µs, p99 199 µs, p99.9 50.2 ms, max 50.2 ms, n=10,000': as the axis says them."""
    def ns(v: int) -> str:
        return human_us(v / NS_PER_US)
    return (f"{head}: p50 {ns(hist.get_value_at_percentile(50))}, p99 {ns(hist.get_value_at_percentile(99))}, "
            f"p99.9 {ns(hist.get_value_at_percentile(99.9))}, max {ns(hist.get_max_value())}, "
            f"n={hist.get_total_count():,}")


def _host_widths(names) -> dict[str, float]:
    """Host lines get thinner in drawing order, so hosts with equal values show as a line
    inside a wider one rather than one line hiding the others."""
    names = list(names)
    return {name: 1.0 + 0.7 * (len(names) - 1 - i) for i, name in enumerate(names)}


def nines_curves(doc: dict, hists: dict[str, HdrHistogram],
                 by_host: dict[str, dict[str, HdrHistogram]]) -> list[tuple[str, HdrHistogram, dict]]:
    """(label, histogram, line style) of each curve the nines plot draws.

    A mixed run draws its sides apart (read in one colour, write in another; service
    dashed) instead of the merged tags. A run whose histograms came from several hosts
    adds each host's first tag, in that host's colour; one host alone would only redraw
    the total."""
    payloads = doc.get("histograms") or {}
    rate = (doc.get("config") or {}).get("iops" if run_kind(doc) == "disk" else "pps")
    split = sides(hists)
    tags = [f"{side}-{base}" for side in split for base in ("latency", "service")] if split else list(hists)
    curves = []
    for i, tag in enumerate(tags):
        if tag not in hists:
            continue
        label = _summary_label(describe_tag(tag, doc), hists[tag])
        twin = _twin(tag)
        if twin in payloads and payloads[twin] == payloads[tag]:
            why = "" if rate == "max" else " (nothing started late)"    # else the latency label says why
            label += f"\n    identical to {twin}{why}; drawn dashed over it"
        color = SIDE_COLORS[tag.split("-")[0]] if split else f"C{i % 2}" if by_host else None
        style = {"linewidth": 1.6, "linestyle": "--" if tag.endswith("service") else "-"}
        curves.append((label, hists[tag], style | ({"color": color} if color else {})))
    if len(by_host) > 1:
        first = next(iter(hists))
        colors, widths = host_colors(doc, by_host), _host_widths(by_host)
        for name, own in by_host.items():
            if first in own:
                curves.append((_summary_label(f"{host_label(doc, name)} {first}", own[first]), own[first],
                               {"linewidth": widths[name], "color": colors[name]}))
    return curves


def plot_nines(doc: dict, hists: dict[str, HdrHistogram], path: Path, mpl,
               by_host: dict[str, dict[str, HdrHistogram]] | None = None) -> None:
    _, _, ticker = mpl
    fig = _new_figure(mpl)
    ax = fig.add_subplot()
    fig.suptitle(title(doc), fontsize=11)
    x_max, all_y = 1.0, []
    for label, hist, style in nines_curves(doc, hists, by_host or {}):
        if hist.get_total_count() == 0:
            continue
        xs, ys = nines_points(hist)
        # every value in one bucket leaves one point (0%), and a line through one point is invisible
        ax.plot(xs, ys, label=label, **style, **({"marker": "o"} if len(xs) == 1 else {}))
        x_max, all_y = max(x_max, xs[-1]), all_y + ys
    if not all_y:
        ax.text(0.5, 0.5, "no latency values recorded", transform=ax.transAxes, ha="center", va="center")
    ax.set_xscale("log")
    right = 10.0 ** max(math.ceil(math.log10(x_max)), round(math.log10(NINES_MIN_X)))
    ax.set_xlim(1, right)
    decades = [10.0 ** k for k in range(round(math.log10(right)) + 1)]
    ax.xaxis.set_major_locator(ticker.FixedLocator(decades))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([nines_label(d) for d in decades]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("percentile (scale: 1/(1 - percentile))")
    _latency_axis(ax, ticker, all_y)
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", axis="y", alpha=0.15)
    ax.set_title("latency by percentile", fontsize=10)
    if all_y:
        # Below the panel: inside it, a legend covers a low curve beside a high one.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncols=1, frameon=False)
    _save(fig, path)


# Time series go anywhere in their panel: their legends sit beside it, never on a line.
_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "borderaxespad": 0.0}


def _steps(rows: list[dict], interval_s: float | None) -> list[float]:
    """Interval edges: the first start, then each row's end, so a step plot spans each interval."""
    ends = [float(r.get("t_s", 0.0)) for r in rows]
    first = interval_s or (ends[1] - ends[0] if len(ends) > 1 else ends[0])
    return [ends[0] - first] + ends


def _step(ax, edges, values, **kw):
    # where="pre": values[i] holds over (edges[i], edges[i+1]]
    ax.step(edges, [values[0]] + values, where="pre", **kw)


def _latency_series(blocks: list, key: str) -> list[float]:
    """One latency statistic per interval, in µs; NaN where the interval completed nothing
    (None, or the zeros of an empty histogram), so no line is drawn at zero."""
    out = []
    for lat in blocks:
        v = lat.get(key) if isinstance(lat, dict) else None
        out.append(v / NS_PER_US if isinstance(v, (int, float)) and v > 0 else math.nan)
    return out


def _row_part(row: dict, *keys: str) -> dict:
    """row[keys[0]][keys[1]]..., or {} where any step is missing."""
    for key in keys:
        row = row.get(key) if isinstance(row, dict) else None
    return row if isinstance(row, dict) else {}


def _rate_panel(ax, ticker, doc: dict, rows: list[dict], edges: list[float], split: list[str]) -> None:
    c = doc.get("config") or {}
    disk = run_kind(doc) == "disk"
    drawn = []

    def line(values, **kw):
        _step(ax, edges, values, **kw)
        drawn.extend(values)

    sent = "completed" if disk else "sent"
    per_host = [{n: h for n, h in (r.get("hosts") or {}).items() if isinstance(h, dict)} for r in rows]
    roles = {n: h.get("role") for hosts in per_host for n, h in hosts.items()}   # first seen order
    total_label = sent + (", all senders" if roles else ", read and write" if split else "")
    line([float(r.get("rate") or 0.0) for r in rows], color="0.25" if split else "C0", linewidth=1.8,
         label=total_label)
    for side in split:
        line([float(_row_part(r, side).get("rate") or 0.0) for r in rows], color=SIDE_COLORS[side],
             linewidth=1.2, label=side)
    colors, widths = host_colors(doc, roles), _host_widths(roles)
    for name in roles:
        rate = [float(hosts.get(name, {}).get("rate") or 0.0) for hosts in per_host]
        role = f" ({roles[name]})" if roles[name] else ""
        line(rate, color=colors[name], linewidth=widths[name], label=f"{name}{role}")
    per_target = [{n: t for n, t in (r.get("targets") or {}).items() if isinstance(t, dict)} for r in rows]
    for i, name in enumerate(dict.fromkeys(n for targets in per_target for n in targets)):
        # dashed, as each host's p99 is: the total shows between the dashes where one target carries it
        line([float(targets.get(name, {}).get("rate") or 0.0) for targets in per_target], color=f"C{(i + 2) % 10}",
             linewidth=1.0, linestyle="--", label=name)
    receiver_host = any(role == "receiver" for role in roles.values())
    if any("received_pps" in r for r in rows) and not receiver_host:
        line([float(r.get("received_pps") or 0.0) for r in rows], color="C1", linewidth=1.2,
             linestyle="--", label="echoes received" if c.get("mode") == "echo" else "received")
    requested = c.get("iops" if disk else "pps")
    if isinstance(requested, (int, float)):
        ax.axhline(requested, color="grey", linestyle=":", linewidth=1.2, label=f"requested {format_si(requested)}")
        drawn.append(float(requested))
    # Headroom: a line at the panel's top edge would hide in the frame.
    high = max([v for v in drawn if math.isfinite(v)] or [0.0])
    ax.set_ylim(0, high * HEADROOM if high > 0 else 1.0)
    ax.set_ylabel("rate (IOPS)" if disk else "rate (pps)")
    ax.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    ax.grid(True, alpha=0.5)
    ax.legend(**_OUTSIDE)


def _latency_panel(ax, ticker, doc: dict, rows: list[dict], edges: list[float], split: list[str]) -> None:
    """Mixed runs: each side's p50 and p99. Paired runs: the total's, and each measuring host's p99."""
    total = [r.get("latency_ns") for r in rows]
    high = _latency_series(total, "max")
    if all(math.isnan(v) for v in _latency_series(total, "p99")):
        ax.text(0.5, 0.5, "no latency measured in the intervals", transform=ax.transAxes,
                ha="center", va="center")
        ax.set_ylabel("latency")
        return
    drawn = list(high)
    _step(ax, edges, high, color="C3", linewidth=0.8, alpha=0.6, label="max")
    if split:
        for side in split:
            blocks = [_row_part(r, side, "latency_ns") or None for r in rows]
            p99, p50 = _latency_series(blocks, "p99"), _latency_series(blocks, "p50")
            _step(ax, edges, p99, color=SIDE_COLORS[side], linewidth=1.8, label=f"{side} p99")
            _step(ax, edges, p50, color=SIDE_COLORS[side], linewidth=1.0, linestyle="--", label=f"{side} p50")
            drawn += p99 + p50
    else:
        p99, p50 = _latency_series(total, "p99"), _latency_series(total, "p50")
        _step(ax, edges, p99, color="C3", linewidth=1.8, label="p99")
        _step(ax, edges, p50, color="C0", linewidth=1.0, label="p50")
        drawn += p99 + p50
        timed = [n for n in dict.fromkeys(n for r in rows for n, h in (r.get("hosts") or {}).items()
                                          if isinstance(h, dict) and "latency_ns" in h)]
        if len(timed) > 1:
            colors, widths = host_colors(doc, timed), _host_widths(timed)
            for name in timed:
                p99 = _latency_series([_row_part(r, "hosts", name, "latency_ns") or None for r in rows], "p99")
                # dashed: where a host's p99 is the total's, the total still shows between the dashes
                _step(ax, edges, p99, color=colors[name], linewidth=widths[name], linestyle="--",
                      label=f"{host_label(doc, name)} p99")
                drawn += p99
    _latency_axis(ax, ticker, drawn)
    ax.legend(**_OUTSIDE)


def plot_timeline(doc: dict, path: Path, mpl) -> None:
    _, _, ticker = mpl
    fig = _new_figure(mpl)
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.suptitle(title(doc), fontsize=11)
    rows = [r for r in doc.get("intervals") or [] if isinstance(r, dict)]
    c = doc.get("config") or {}
    interval_ns = c.get("interval_ns")
    interval_s = interval_ns / 1e9 if isinstance(interval_ns, (int, float)) and interval_ns > 0 else None
    if not rows:
        for ax in (top, bottom):
            ax.text(0.5, 0.5, "no intervals in the document", transform=ax.transAxes, ha="center", va="center")
        _save(fig, path)
        return
    edges = _steps(rows, interval_s)
    split = [side for side in SIDE_COLORS if any(_row_part(r, side) for r in rows)]

    _rate_panel(top, ticker, doc, rows, edges, split)
    top.set_title(f"rate per interval ({interval_s * 1e3:g} ms)" if interval_s else "rate per interval",
                  fontsize=10)

    _latency_panel(bottom, ticker, doc, rows, edges, split)
    first_tag = next(iter(doc.get("histograms") or {}), "latency")
    bottom.set_title(f"{describe_tag(first_tag, doc)} per interval", fontsize=10)
    bottom.grid(True, alpha=0.5)
    bottom.set_xlabel("time since measurement start (s)")
    bottom.set_xlim(edges[0], edges[-1])
    _save(fig, path)


def search_points(doc: dict) -> tuple[list[dict], list[dict]]:
    """(judged trials at a fixed rate, load-curve points) of a search document, each ordered by rate."""
    search = doc.get("search") or {}
    trials = [t for t in search.get("trials") or [] if isinstance(t, dict) and isinstance(t.get("rate"), (int, float))]
    curve = [t for t in search.get("load_curve") or [] if isinstance(t, dict) and isinstance(t.get("rate"), (int, float))]
    return sorted(trials, key=lambda t: t["rate"]), sorted(curve, key=lambda t: t["rate"])


def plot_search(doc: dict, path: Path, mpl) -> None:
    """Rate against loss (top) and latency (bottom): every trial, passed or failed, the bounds,
    the knee, and the load curve's p50 and p99 at its shares of the knee (RFC 2544 26.2)."""
    _, _, ticker = mpl
    search = doc.get("search") or {}
    kind = search.get("kind")
    unit = "IOPS" if kind == "disk" else "pps"
    knee = search.get(f"knee_{'iops' if kind == 'disk' else 'pps'}")
    trials, curve = search_points(doc)
    fig = _new_figure(mpl)
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.suptitle(f"loadgen search {kind}: {workload(doc)}\n{where(doc)}", fontsize=11)
    for ax in (top, bottom):
        if knee is not None:
            ax.axvline(knee, color="C2", linewidth=1.2, label=f"knee {format_si(knee)} {unit}")
        ax.grid(True, alpha=0.5)
    passed = [t for t in trials if t.get("passed")]
    failed = [t for t in trials if not t.get("passed")]
    max_loss = search.get("max_loss")
    for group, style in ((passed, dict(marker="o", color="C0", label="passed")),
                         (failed, dict(marker="x", color="C3", label="failed"))):
        shown = [t for t in group if isinstance(t.get("loss_ratio"), (int, float))]
        top.scatter([t["rate"] for t in shown], [t["loss_ratio"] * 100 for t in shown], zorder=3, **style)
    if isinstance(max_loss, (int, float)):
        top.axhline(max_loss * 100, color="C7", linestyle=":", label=f"--max-loss {max_loss * 100:g}%")
    top.set_ylabel("loss (%)")
    top.set_title(f"each trial's loss ({len(trials)} at a fixed rate)", fontsize=10)
    top.legend(**_OUTSIDE)

    drawn: list[float] = []
    for key, color in (("p50_ns", "C0"), ("p99_ns", "C3")):
        for group, marker, what in ((passed, "o", "passed"), (failed, "x", "failed")):
            shown = [t for t in group if isinstance(t.get(key), (int, float))]
            values = [t[key] / NS_PER_US for t in shown]
            bottom.scatter([t["rate"] for t in shown], values, marker=marker, color=color, alpha=0.6,
                           label=f"trial {key[:-3]}, {what}" if shown else None)
            drawn += values
        points = [t for t in curve if isinstance(t.get(key), (int, float))]
        if points:
            values = [t[key] / NS_PER_US for t in points]
            bottom.plot([t["rate"] for t in points], values, color=color, marker="s", linewidth=1.5,
                        label=f"load curve {key[:-3]}")
            drawn += values
    if search.get("max_p99_ns"):
        bottom.axhline(search["max_p99_ns"] / NS_PER_US, color="C7", linestyle=":", label="--max-p99")
        drawn.append(search["max_p99_ns"] / NS_PER_US)
    if drawn:
        _latency_axis(bottom, ticker, drawn)
    bottom.set_title("latency at each rate: trials, and the load curve at shares of the knee", fontsize=10)
    bottom.set_xlabel(f"requested rate ({unit})")
    bottom.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: format_si(v)))
    bottom.legend(**_OUTSIDE)
    _save(fig, path)


# ---- the report ---------------------------------------------------------------------------------

def write_report(doc: dict, out_dir: Path) -> list[Path]:
    """The text files, then nines.png and timeline.png (of a search: its knee trial's) and a
    search's search.png, in out_dir (created); returns every path written.

    UsageError for a document it cannot report on; SetupError, after the text is written,
    when matplotlib is missing.
    """
    out_dir = Path(out_dir)
    hists = decode_histograms(doc)
    by_host = decode_host_histograms(doc)
    paths = write_percentiles(doc, out_dir, hists, by_host)
    mpl = _load_matplotlib()
    if mpl is None:
        raise SetupError(f"{PLOT_EXTRA} (wrote only the text: {', '.join(str(p) for p in paths)})")
    plots = [("nines.png", lambda p: plot_nines(doc, hists, p, mpl, by_host)),
             ("timeline.png", lambda p: plot_timeline(doc, p, mpl))]
    if doc.get("kind") == "search":
        plots.append(("search.png", lambda p: plot_search(doc, p, mpl)))
    for name, draw in plots:
        path = out_dir / name
        draw(path)
        paths.append(path)
    return paths
