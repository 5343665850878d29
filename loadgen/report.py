"""Reports from a result document ("loadgen/1"): percentile text files and two plots.

Vocabulary:
    tag       the name of one of the document's total histograms ("latency", "service",
              "oneway-latency", "oneway-service"); its values are ns. A `*latency` tag counts
              from the scheduled submit/send, its `*service` twin from the actual one.
    nines     a percentile axis on the scale 1/(1 - p): 0% sits at 1, 90% at 10, 99% at 100,
              so each added nine gets the same width (HdrHistogram's plotter, plotFiles.html).
    interval  one row of doc["intervals"]: the rate over the interval ending at t_s and the
              latency summary of the first tag's operations completed in it.

Rules:
    The report reads the document alone; it never measures and never re-runs anything.
    Text comes first and needs only hdrh, so a host without matplotlib still gets every number;
    only then are plots drawn. Plots use matplotlib's object API on the Agg canvas, imported
    lazily: no pyplot, so no GUI backend and no global matplotlib state are touched.
    Every latency a reader sees is in microseconds, and each file and axis says so.
"""
import io
import math
import re
from pathlib import Path

from hdrh.histogram import HdrHistogram

from loadgen.errors import SetupError, UsageError
from loadgen.results import SCHEMA
from loadgen.units import format_ns, format_si

NS_PER_US = 1000                 # output_value_unit_scaling_ratio: the text and plots are in µs
TICKS_PER_HALF_DISTANCE = 5      # HdrHistogram's default for outputPercentileDistribution
FIGSIZE_IN = (10.0, 6.0)
DPI = 100
FIGURE_PX = (1000, 600)          # FIGSIZE_IN * DPI: both PNGs, whatever the data
WIDE_RANGE = 100                 # a y axis spanning more than two decades goes log
NINES_MIN_X = 100_000            # the nines axis always reaches 99.999%
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
        raise UsageError("the result holds no histograms, so there is no latency to report "
                         "(nothing was measured at this end, or an older loadgen wrote it)")
    hists = {}
    for tag, payload in payloads.items():
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise UsageError(f"histogram tag {tag!r} cannot name a file")
        try:
            hists[tag] = HdrHistogram.decode(payload)
        except Exception as e:   # hdrh raises assorted types (binascii, zlib, its own) for bad input
            raise UsageError(f"histogram {tag!r} cannot be decoded: {type(e).__name__}: {e}") from None
        if hists[tag] is None:
            raise UsageError(f"histogram {tag!r} cannot be decoded")
    return hists


def describe_tag(tag: str, doc: dict) -> str:
    """'latency (from scheduled submit)': what a tag measures, and from which moment."""
    *quals, base = tag.split("-")
    if base not in ("latency", "service"):
        return tag
    disk = doc.get("kind") == "disk"
    verb, rate_key = ("submit", "iops") if disk else ("send", "pps")
    start = f"scheduled {verb}" if base == "latency" else f"actual {verb}"
    if base == "latency" and (doc.get("config") or {}).get(rate_key) == "max":
        start = f"actual {verb}: {rate_key}=max has no schedule"
    if "oneway" in quals:
        what = "one way"
    elif doc.get("kind") == "net" and (doc.get("config") or {}).get("mode") == "echo":
        what = "round trip"
    else:
        what = ""
    return f"{tag} ({what + ' ' if what else ''}from {start})"


def _rate_text(rate) -> str:
    return format_si(rate) if isinstance(rate, (int, float)) else str(rate)


def workload(doc: dict) -> str:
    """'randread bs=4k qd=32 workers=2 iops=max' or 'echo size=64B flows=1 pps=10.0k'."""
    c = doc.get("config") or {}
    if doc.get("kind") == "disk":
        rw = c.get("rw", "?")
        mix = f" {c['read_pct']}% read" if rw in ("randrw", "rw") and "read_pct" in c else ""
        io_mode = "" if "direct" not in c else (" direct" if c["direct"] else " buffered")
        return (f"{rw}{mix} bs={c.get('bs', '?')} qd={c.get('qd', '?')} workers={c.get('workers', '?')} "
                f"iops={_rate_text(c.get('iops', '?'))}{io_mode}")
    if doc.get("kind") == "net":
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
    if doc.get("kind") == "net":
        to = "embedded receiver" if c.get("embedded_receiver") else c.get("target_address", "?")
        return f"host {local} to {to}"
    return f"host {local}"


def title(doc: dict) -> str:
    return f"loadgen {doc.get('kind', '?')}: {workload(doc)}\n{where(doc)}"


# ---- text ---------------------------------------------------------------------------------------

def percentile_text(tag: str, hist: HdrHistogram, doc: dict) -> str:
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
    head = [f"#[loadgen {doc.get('kind', '?')} {describe_tag(tag, doc)}: values in microseconds "
            f"(ns / {NS_PER_US})]",
            f"#[{workload(doc)}; {where(doc)}]"]
    return "\n".join(head + lines) + "\n"


def _write(path: Path, data: str) -> None:
    try:
        path.write_text(data)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def write_percentiles(doc: dict, out_dir: Path, hists: dict[str, HdrHistogram] | None = None) -> list[Path]:
    """percentiles-<tag>.txt in out_dir (created) for each histogram; returns the paths."""
    hists = decode_histograms(doc) if hists is None else hists
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out_dir}: {e.strerror}") from None
    paths = []
    for tag, hist in hists.items():
        path = out_dir / f"percentiles-{tag}.txt"
        _write(path, percentile_text(tag, hist, doc))
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


def _wide(values) -> bool:
    positive = [v for v in values if v and v > 0 and math.isfinite(v)]
    return bool(positive) and max(positive) / min(positive) > WIDE_RANGE


def _twin(tag: str) -> str | None:
    """The latency tag a service tag should be compared with."""
    return tag[: -len("service")] + "latency" if tag.endswith("service") else None


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
    """A y axis of latency in µs, from 0, or log when the values span more than two decades."""
    if _wide(values_us):
        positive = [v for v in values_us if v > 0 and math.isfinite(v)]
        ax.set_yscale("log")
        # few decades: ticks at 1-2-5 so every line has a labelled value near it
        subs = (1.0, 2.0, 5.0) if math.log10(max(positive) / min(positive)) <= 3 else (1.0,)
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        ax.set_ylabel("latency (µs, log scale)")
    else:
        ax.set_ylim(bottom=0)
        ax.set_ylabel("latency (µs)")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def plot_nines(doc: dict, hists: dict[str, HdrHistogram], path: Path, mpl) -> None:
    _, _, ticker = mpl
    fig = _new_figure(mpl)
    ax = fig.add_subplot()
    fig.suptitle(title(doc), fontsize=11)
    payloads = doc["histograms"]
    rate = (doc.get("config") or {}).get("iops" if doc.get("kind") == "disk" else "pps")
    x_max, all_y = 1.0, []
    for tag, hist in hists.items():
        if hist.get_total_count() == 0:
            continue
        xs, ys = nines_points(hist)
        label = (f"{describe_tag(tag, doc)}: p50 {format_ns(hist.get_value_at_percentile(50))}, "
                 f"p99 {format_ns(hist.get_value_at_percentile(99))}, "
                 f"p99.9 {format_ns(hist.get_value_at_percentile(99.9))}, "
                 f"max {format_ns(hist.get_max_value())}, n={hist.get_total_count():,}")
        twin = _twin(tag)
        if twin in payloads and payloads[twin] == payloads[tag]:
            why = "" if rate == "max" else " (nothing started late)"    # else the latency label says why
            label += f"\n    identical to {twin}{why}; drawn dashed over it"
        ax.plot(xs, ys, label=label, linewidth=1.6,
                linestyle="--" if tag.endswith("service") else "-")
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
        # a percentile curve only rises, so the lower right is where it never is
        ax.legend(loc="lower right", fontsize=8)
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


def plot_timeline(doc: dict, path: Path, mpl) -> None:
    _, _, ticker = mpl
    fig = _new_figure(mpl)
    top, bottom = fig.subplots(2, 1, sharex=True)
    fig.suptitle(title(doc), fontsize=11)
    rows = [r for r in doc.get("intervals") or [] if isinstance(r, dict)]
    c = doc.get("config") or {}
    disk = doc.get("kind") == "disk"
    unit = "IOPS" if disk else "pps"
    interval_ns = c.get("interval_ns")
    interval_s = interval_ns / 1e9 if isinstance(interval_ns, (int, float)) and interval_ns > 0 else None
    if not rows:
        for ax in (top, bottom):
            ax.text(0.5, 0.5, "no intervals in the document", transform=ax.transAxes, ha="center", va="center")
        _save(fig, path)
        return
    edges = _steps(rows, interval_s)

    # rate
    sent = "completed" if disk else "sent"
    _step(top, edges, [float(r.get("rate") or 0.0) for r in rows], color="C0", linewidth=1.8,
          label=sent + (", all senders" if any("hosts" in r for r in rows) else ""))
    per_host = [{n: h for n, h in (r.get("hosts") or {}).items() if isinstance(h, dict)} for r in rows]
    roles = {n: h.get("role") for hosts in per_host for n, h in hosts.items()}   # first seen order
    for i, name in enumerate(roles):
        rate = [float(hosts.get(name, {}).get("rate") or 0.0) for hosts in per_host]
        role = f" ({roles[name]})" if roles[name] else ""
        _step(top, edges, rate, color=f"C{2 + i}", linewidth=1.0, label=f"{name}{role}")
    receiver_host = any(role == "receiver" for role in roles.values())
    if any("received_pps" in r for r in rows) and not receiver_host:
        _step(top, edges, [float(r.get("received_pps") or 0.0) for r in rows], color="C1", linewidth=1.2,
              linestyle="--", label="echoes received" if c.get("mode") == "echo" else "received")
    requested = c.get("iops" if disk else "pps")
    if isinstance(requested, (int, float)):
        top.axhline(requested, color="grey", linestyle=":", linewidth=1.2, label=f"requested {format_si(requested)}")
    top.set_ylim(bottom=0)
    top.set_ylabel(f"rate ({unit})")
    top.yaxis.set_major_formatter(ticker.EngFormatter(sep=""))
    top.grid(True, alpha=0.5)
    top.legend(**_OUTSIDE)
    top.set_title(f"rate per interval ({interval_s * 1e3:g} ms)" if interval_s else "rate per interval",
                  fontsize=10)

    # latency: an interval that completed nothing has no latency (None, or the zeros of an empty histogram)
    def series(key: str) -> list[float]:
        out = []
        for r in rows:
            lat = r.get("latency_ns")
            v = lat.get(key) if isinstance(lat, dict) else None
            out.append(v / NS_PER_US if isinstance(v, (int, float)) and v > 0 else math.nan)
        return out

    first_tag = next(iter(doc.get("histograms") or {}), "latency")
    p50, p99, high = series("p50"), series("p99"), series("max")
    if all(math.isnan(v) for v in p99):
        bottom.text(0.5, 0.5, "no latency measured in the intervals", transform=bottom.transAxes,
                    ha="center", va="center")
        bottom.set_ylabel("latency (µs)")
    else:
        _step(bottom, edges, high, color="C3", linewidth=0.8, alpha=0.6, label="max")
        _step(bottom, edges, p99, color="C3", linewidth=1.8, label="p99")
        _step(bottom, edges, p50, color="C0", linewidth=1.0, label="p50")
        _latency_axis(bottom, ticker, p50 + p99 + high)
        bottom.legend(**_OUTSIDE)
    bottom.set_title(f"{describe_tag(first_tag, doc)} per interval", fontsize=10)
    bottom.grid(True, alpha=0.5)
    bottom.set_xlabel("time since measurement start (s)")
    bottom.set_xlim(edges[0], edges[-1])
    _save(fig, path)


# ---- the report ---------------------------------------------------------------------------------

def write_report(doc: dict, out_dir: Path) -> list[Path]:
    """The text files, then nines.png and timeline.png, in out_dir (created); returns every path written.

    UsageError for a document it cannot report on; SetupError, after the text is written,
    when matplotlib is missing.
    """
    out_dir = Path(out_dir)
    hists = decode_histograms(doc)
    paths = write_percentiles(doc, out_dir, hists)
    mpl = _load_matplotlib()
    if mpl is None:
        raise SetupError(f"{PLOT_EXTRA} (wrote only the text: {', '.join(str(p) for p in paths)})")
    for name, draw in (("nines.png", lambda p: plot_nines(doc, hists, p, mpl)),
                       ("timeline.png", lambda p: plot_timeline(doc, p, mpl))):
        path = out_dir / name
        draw(path)
        paths.append(path)
    return paths
