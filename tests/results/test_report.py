"""loadgen.results.report: percentile text files and plots from result documents.

Crafted documents hold histograms built here with hdrh; real ones come from short
`loadgen disk` and `loadgen net` runs. PNGs are checked by their bytes alone (signature,
IHDR size, IEND), so the tests need nothing beyond matplotlib, and plot tests skip
without it. Without matplotlib the text must still be written.
"""
import builtins
import re
import struct
import sys

import pytest

from loadgen.errors import SetupError, UsageError
from loadgen.results import documents, histogram, report
from netfixtures import run_net
from netns import Agent, run_loadgen, write_token

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
HOSTNAME = "box-under-test"


# ---- crafted documents -------------------------------------------------------------------------

def payload(values_ns) -> str:
    h = histogram.new()
    for v in values_ns:
        h.record_value(v)
    return h.encode().decode("ascii")


SERVICE_NS = [100_000 + 10 * i for i in range(10_000)]             # 100 .. 200 us
STALL_NS = 50_000_000                                             # the last 1% waited 50 ms to start
LATENCY_NS = [v + (STALL_NS if i >= 9_900 else 0) for i, v in enumerate(SERVICE_NS)]


def rows(n: int = 5, **extra) -> list[dict]:
    return [{"t_s": round(0.2 * (i + 1), 3), "ops": 2000, "rate": 10_000.0 + 100 * i,
             "latency_ns": {"p50": 150_000, "p99": 199_000 + 10_000_000 * (i == 3), "max": 50_200_000},
             **extra} for i in range(n)]


def disk_doc(**over) -> dict:
    doc = {
        "schema": "loadgen/1", "kind": "disk",
        "config": {"rw": "randread", "read_pct": 100, "bs": "4k", "qd": 32, "workers": 2, "iops": 50_000,
                   "direct": True, "interval_ns": 200_000_000},
        "env": {"hostname": HOSTNAME},
        "summary": {},
        "intervals": rows(),
        "histograms": {"latency": payload(LATENCY_NS), "service": payload(SERVICE_NS)},
    }
    doc.update(over)
    return doc


def net_stream_doc(**over) -> dict:
    doc = {
        "schema": "loadgen/1", "kind": "net",
        "config": {"mode": "stream", "size_bytes": 64, "flows": 4, "pps": 10_000, "embedded_receiver": True,
                   "target_address": "127.0.0.1:9", "interval_ns": 200_000_000},
        "env": {"hostname": HOSTNAME},
        "summary": {},
        "intervals": rows(received=1990, received_pps=9950.0),
        "histograms": {"oneway-latency": payload(LATENCY_NS), "oneway-service": payload(SERVICE_NS)},
    }
    doc.update(over)
    return doc


def paired_doc() -> dict:
    """A net run with two senders and a receiver, each interval counted per host."""
    doc = net_stream_doc(hosts=[{"host": "10.0.0.1:7070", "role": "sender"},
                                {"host": "10.0.0.2:7070", "role": "sender"},
                                {"host": "10.0.0.3:7070", "role": "receiver"}])
    for r in doc["intervals"]:
        r["hosts"] = {"10.0.0.1:7070": {"role": "sender", "ops": 1000, "rate": 5000.0},
                      "10.0.0.2:7070": {"role": "sender", "ops": 1000, "rate": 5000.0},
                      "10.0.0.3:7070": {"role": "receiver", "ops": 1990, "rate": 9950.0}}
    return doc


SENDERS = ["10.0.0.1:7070", "10.0.0.2:7070"]
SLOW_NS = [2 * v for v in SERVICE_NS]      # the second sender's path is twice as slow


def merged_payload(*value_lists) -> str:
    return payload([v for values in value_lists for v in values])


def paired_echo_doc() -> dict:
    """An echo run from two senders to a receiver: each sender times its echoes and carries
    its own histograms; the document's are theirs added."""
    doc = net_stream_doc(config={"mode": "echo", "size_bytes": 64, "flows": 1, "pps": 20_000,
                                 "interval_ns": 200_000_000, "peer": "10.0.0.3:7070"},
                         histograms={"latency": merged_payload(LATENCY_NS, SLOW_NS),
                                     "service": merged_payload(SERVICE_NS, SLOW_NS)},
                         intervals=rows(received=3980, received_pps=19_900.0))
    doc["hosts"] = [{"host": SENDERS[0], "role": "sender",
                     "histograms": {"latency": payload(LATENCY_NS), "service": payload(SERVICE_NS)}},
                    {"host": SENDERS[1], "role": "sender",
                     "histograms": {"latency": payload(SLOW_NS), "service": payload(SLOW_NS)}},
                    {"host": "10.0.0.3:7070", "role": "receiver"}]
    for i, r in enumerate(doc["intervals"]):
        own = r["latency_ns"]
        r.update(ops=4000, rate=19_800.0 + 200 * i,
                 latency_ns={"p50": 200_000, "p99": 398_000 if i != 3 else 10_000_000, "max": 50_200_000})
        r["hosts"] = {SENDERS[0]: {"role": "sender", "ops": 2000, "rate": 10_000.0 + 200 * i, "latency_ns": own},
                      SENDERS[1]: {"role": "sender", "ops": 2000, "rate": 9_800.0,
                                   "latency_ns": {"p50": 300_000, "p99": 398_000, "max": 400_000}},
                      "10.0.0.3:7070": {"role": "receiver", "ops": 4000, "rate": 19_800.0 + 200 * i}}
    return doc


READ_NS = [80_000 + 5 * i for i in range(7_000)]          # 80 .. 115 us
WRITE_NS = [400_000 + 100 * i for i in range(3_000)]      # 400 .. 700 us


def mixed_doc() -> dict:
    """A randrw 70% read run: each side's histograms and interval rates and latency."""
    doc = disk_doc(config={"rw": "randrw", "read_pct": 70, "bs": "4k", "qd": 16, "workers": 2, "iops": 10_000,
                           "direct": True, "interval_ns": 200_000_000},
                   histograms={"latency": merged_payload(READ_NS, WRITE_NS), "service": merged_payload(READ_NS, WRITE_NS),
                               "read-latency": payload(READ_NS), "read-service": payload(READ_NS),
                               "write-latency": payload(WRITE_NS), "write-service": payload(WRITE_NS)})
    for r in doc["intervals"]:
        r["latency_ns"] = {"p50": 110_000, "p99": 690_000, "max": 700_000}
        r["read"] = {"ops": 1400, "rate": 7000.0, "latency_ns": {"p50": 97_000, "p99": 114_000, "max": 115_000}}
        r["write"] = {"ops": 600, "rate": 3000.0, "latency_ns": {"p50": 550_000, "p99": 697_000, "max": 700_000}}
    return doc


# ---- reading the outputs -----------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    """(width, height) of a complete PNG: signature, IHDR first, IEND last."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


def parse_percentiles(path) -> dict:
    """The table rows, the column names and the footer numbers of a percentiles-<tag>.hgrm."""
    lines = path.read_text().splitlines()
    header = next(line for line in lines if not line.startswith("#") and line.strip())
    table = [line.split() for line in lines if line.strip() and not line.startswith("#")][1:]
    footer = {}
    for line in lines:
        if line.startswith("#[Mean") or line.startswith("#[Max"):
            for part in line.strip("#[]").split(","):
                key, value = part.split("=")
                footer[key.strip()] = float(value)
    return {"lines": lines, "columns": header.split(), "rows": table, "footer": footer}


def assert_text_report(path, hist) -> None:
    t = parse_percentiles(path)
    assert t["columns"] == COLUMNS
    assert "microseconds" in t["lines"][0] and t["lines"][0].startswith("#[")
    assert any(line.startswith("#[Mean") for line in t["lines"])
    total = hist.get_total_count()
    assert t["footer"]["TotalCount"] == total
    assert int(t["rows"][-1][2]) == total and float(t["rows"][-1][1]) == 1.0    # the 100% row
    assert float(t["rows"][-1][0]) == pytest.approx(hist.get_max_value() / 1000, abs=1e-3)
    assert t["footer"]["Mean"] == pytest.approx(hist.get_mean_value() / 1000, abs=1e-3)
    assert t["footer"]["StdDeviation"] == pytest.approx(hist.get_stddev() / 1000, abs=1e-3)
    for row in t["rows"][:-1]:     # what HdrHistogram's plotter reads: 4 numbers a line
        assert len(row) == 4 and all(float(x) >= 0 for x in row)


@pytest.fixture
def plotting():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("plots need the optional extra: pip install 'loadgen[plot]'")


def assert_plots(paths, out) -> None:
    assert [p.name for p in paths[-2:]] == ["nines.png", "timeline.png"]
    assert sorted(paths) == sorted(out.iterdir())
    for p in paths[-2:]:
        assert png_size(p) == report.FIGURE_PX


# ---- text ----------------------------------------------------------------------------------------

def test_text_is_hdrhistogram_percentile_output_in_us(tmp_path):
    doc = disk_doc()
    paths = report.write_percentiles(doc, tmp_path / "out")
    assert [p.name for p in paths] == ["percentiles-latency.hgrm", "percentiles-service.hgrm"]
    hists = report.decode_histograms(doc)
    for p, tag in zip(paths, ["latency", "service"]):
        assert_text_report(p, hists[tag])
    head = paths[0].read_text().splitlines()[:2]
    assert head[0] == "#[loadgen disk latency (from scheduled submit): values in microseconds (ns / 1000)]"
    assert head[1] == f"#[randread bs=4k qd=32 workers=2 iops=50.0k direct; host {HOSTNAME}]"


def test_text_of_an_empty_histogram_is_still_the_format(tmp_path):
    doc = disk_doc(histograms={"latency": payload([])})
    (path,) = report.write_percentiles(doc, tmp_path)
    t = parse_percentiles(path)
    assert t["columns"] == COLUMNS and t["rows"] == [] and t["footer"]["TotalCount"] == 0


# ---- pure pieces -----------------------------------------------------------------------------------

@pytest.mark.parametrize("us, label", [(0, "0"), (0.5, "500 ns"), (1, "1 µs"), (250, "250 µs"), (1000, "1 ms"),
                                       (1500, "1.5 ms"), (20_000, "20 ms"), (1e6, "1 s"), (3.6e9, "3,600 s")])
def test_latency_ticks_are_in_human_units(us, label):
    assert report.human_us(us) == label


@pytest.mark.parametrize("x, label", [(1, "0%"), (10, "90%"), (100, "99%"), (1000, "99.9%"),
                                      (10_000, "99.99%"), (100_000, "99.999%"), (1_000_000, "99.9999%")])
def test_nines_labels(x, label):
    assert report.nines_label(x) == label


def test_nines_points_run_from_0_percent_to_the_max():
    hist = report.decode_histograms(disk_doc())["latency"]
    xs, ys = report.nines_points(hist)
    assert xs[0] == 1.0 and all(a < b for a, b in zip(xs, xs[1:]))
    assert all(a <= b for a, b in zip(ys, ys[1:]))
    assert ys[0] == pytest.approx(100.0, rel=1e-3) and ys[-1] == hist.get_max_value() / 1000
    assert xs[-1] > 100      # the 1% that stalled is past the 99% tick


@pytest.mark.parametrize("tag, doc, says", [
    ("latency", disk_doc(), "latency (from scheduled submit)"),
    ("service", disk_doc(), "service (from actual submit)"),
    ("latency", net_stream_doc(config={"mode": "echo"}), "latency (round trip from scheduled send)"),
    ("oneway-latency", net_stream_doc(), "oneway-latency (one way from scheduled send)"),
    ("oneway-service", net_stream_doc(), "oneway-service (one way from actual send)"),
    ("latency", disk_doc(config={"iops": "max"}), "latency (from actual submit: iops=max has no schedule)"),
    ("latency", net_stream_doc(config={"mode": "echo", "pps": "max"}),
     "latency (round trip from actual send: pps=max has no schedule)"),
    ("custom", disk_doc(), "custom"),
])
def test_tags_say_where_they_start(tag, doc, says):
    assert report.describe_tag(tag, doc) == says


@pytest.mark.parametrize("doc, says", [
    (disk_doc(), ["loadgen disk", "randread", "bs=4k", "qd=32", "iops=50.0k", HOSTNAME]),
    (disk_doc(config={"rw": "randrw", "read_pct": 70, "bs": "16k", "qd": 8, "iops": "max"}),
     ["randrw 70% read", "bs=16k", "qd=8", "iops=max"]),
    (net_stream_doc(), ["loadgen net", "stream", "size=64B", "pps=10.0k", HOSTNAME, "embedded receiver"]),
    (paired_doc(), ["10.0.0.1:7070 (sender)", "10.0.0.3:7070 (receiver)"]),
], ids=["disk", "disk-mixed", "net", "net-paired"])
def test_titles_name_kind_workload_and_hosts(doc, says):
    t = report.title(doc)
    for part in says:
        assert part in t


# ---- documents it cannot report on -------------------------------------------------------------------

@pytest.mark.parametrize("doc, says", [
    ([], "not a loadgen/1 result document"),
    (disk_doc(schema="loadgen/0"), "not a loadgen/1 result document (schema 'loadgen/0')"),
    ({k: v for k, v in disk_doc().items() if k != "histograms"}, "holds no histograms"),
    (disk_doc(histograms={}), "holds no histograms"),
    (disk_doc(histograms={"latency": "not base64 at all!"}), "histogram 'latency' cannot be decoded"),
    (disk_doc(histograms={"../latency": payload([1000])}), "cannot name a file"),
    (dict(paired_echo_doc(), hosts=[{"host": "h:1", "role": "sender", "histograms": {"latency": "nope!"}}]),
     "histogram 'latency' of host h:1 cannot be decoded"),
    (dict(paired_echo_doc(), hosts=[{"host": "h:1", "role": "sender", "histograms": {"a/b": payload([1])}}]),
     "histogram tag 'a/b' of host h:1 cannot name a file"),
    (net_stream_doc(histograms={}, summary={"oneway_omitted": "the clocks are aligned only to +-9 ms"}),
     "one-way delays were not kept: the clocks are aligned only to +-9 ms"),
], ids=["not-a-dict", "wrong-schema", "no-histograms-key", "no-histograms", "undecodable", "bad-tag",
        "host-undecodable", "host-bad-tag", "oneway-omitted"])
def test_usage_errors(tmp_path, doc, says):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as e:
        report.write_report(doc, out)
    assert says in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_unwritable_directory_is_a_usage_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="cannot create"):
        report.write_report(disk_doc(), tmp_path / "file" / "out")


# ---- without matplotlib ------------------------------------------------------------------------------

def hide_from_sys_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)    # also when it was never imported


def refuse_in_import(monkeypatch):
    real = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


@pytest.mark.parametrize("hide", [hide_from_sys_modules, refuse_in_import], ids=["sys.modules", "__import__"])
def test_without_matplotlib_the_text_is_written_then_setup_error(tmp_path, monkeypatch, hide):
    hide(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(SetupError) as e:
        report.write_report(disk_doc(), out)
    message = str(e.value)
    assert message.startswith("plotting needs the optional extra: pip install 'loadgen[plot]'")
    assert "\n" not in message
    assert sorted(p.name for p in out.iterdir()) == ["percentiles-latency.hgrm", "percentiles-service.hgrm"]
    for p in out.iterdir():
        assert str(p) in message
        assert parse_percentiles(p)["footer"]["TotalCount"] == len(SERVICE_NS)


# ---- plots of crafted documents ------------------------------------------------------------------------

@pytest.mark.parametrize("doc", [
    disk_doc(),
    disk_doc(config={"rw": "randread", "bs": "4k", "qd": 1, "iops": "max"},
             histograms={"latency": payload(SERVICE_NS), "service": payload(SERVICE_NS)}),
    net_stream_doc(),
    paired_doc(),
    paired_echo_doc(),
    mixed_doc(),
    disk_doc(histograms={"latency": payload(LATENCY_NS), "service": payload([])}),
    disk_doc(intervals=rows(2) + [{"t_s": 0.6, "ops": 0, "rate": 0.0, "latency_ns": None}]
             + [{"t_s": 0.8, "ops": 0, "rate": 0.0, "latency_ns": {"p50": 0, "p99": 0, "max": 0}}]),
    disk_doc(intervals=[{"t_s": 1.0, "ops": 0, "rate": 0.0, "latency_ns": None}]),
    disk_doc(intervals=[]),
    {"schema": "loadgen/1", "histograms": {"latency": payload([5000] * 10)}},
], ids=["disk", "disk-identical-twins", "net-stream", "net-paired", "net-paired-echo", "disk-mixed",
        "one-empty-histogram",
        "intervals-without-latency", "no-latency-at-all", "no-intervals", "bare-minimum"])
def test_plots_of_crafted_documents(plotting, tmp_path, doc):
    out = tmp_path / "out"
    paths = report.write_report(doc, out)
    assert_plots(paths, out)


def test_an_existing_directory_is_reused(plotting, tmp_path):
    report.write_report(disk_doc(), tmp_path)
    paths = report.write_report(net_stream_doc(), tmp_path)
    assert [p.name for p in paths] == ["percentiles-oneway-latency.hgrm", "percentiles-oneway-service.hgrm",
                                       "nines.png", "timeline.png"]
    assert "oneway-latency" in (tmp_path / "percentiles-oneway-latency.hgrm").read_text().splitlines()[0]
    for p in paths[-2:]:
        assert png_size(p) == report.FIGURE_PX


# ---- what the plots draw (figures caught before saving) ----------------------------------------------

@pytest.fixture
def figures(plotting, monkeypatch):
    """{file name: matplotlib Figure} of the plots write_report draws, saved as usual."""
    caught = {}
    save = report._save

    def catch(fig, path):
        caught[path.name] = fig
        save(fig, path)

    monkeypatch.setattr(report, "_save", catch)
    return caught


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def shown_ticks(ax) -> list[str]:
    """The y tick labels a reader sees (inside the panel, as drawn when the PNG was saved);
    each must be a number and a unit."""
    low, high = sorted(ax.get_ylim())
    labels = [t.get_text() for t in ax.get_yticklabels() if low <= t.get_position()[1] <= high and t.get_text()]
    for label in labels:
        assert label == "0" or re.fullmatch(r"[0-9]+(\.[0-9]+)? (ns|µs|ms|s)", label), labels
    return labels


def test_nines_plot_has_a_line_per_tag_on_the_nines_axis(figures, tmp_path):
    report.write_report(disk_doc(), tmp_path)
    fig = figures["nines.png"]
    (ax,) = fig.axes
    labels = legend_labels(ax)
    assert len(labels) == 2
    assert labels[0].startswith("latency (from scheduled submit): p50 ") and "max 50.2 ms" in labels[0]
    assert labels[1].startswith("service (from actual submit): p50 ") and "n=10,000" in labels[1]
    assert ax.get_xscale() == "log" and ax.get_xlim() == (1, 100_000)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
    assert ax.get_ylabel() == "latency (log scale)" and "percentile" in ax.get_xlabel()
    assert ax.get_yscale() == "log"         # 100 us .. 50 ms: more than two decades
    ticks = shown_ticks(ax)
    assert {"100 µs", "1 ms", "10 ms"} <= set(ticks), ticks     # not "1,000" or "10,000" (µs)
    assert "randread bs=4k qd=32" in fig.get_suptitle() and HOSTNAME in fig.get_suptitle()


def test_nines_plot_says_when_service_equals_latency(figures, tmp_path):
    doc = disk_doc(histograms={"latency": payload(SERVICE_NS), "service": payload(SERVICE_NS)})
    doc["config"]["iops"] = "max"
    report.write_report(doc, tmp_path)
    (ax,) = figures["nines.png"].axes
    labels = legend_labels(ax)
    assert "iops=max has no schedule" in labels[0] and "identical to latency; drawn dashed" in labels[1]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0     # 100 .. 200 us is not wide


def test_timeline_panels(figures, tmp_path):
    report.write_report(net_stream_doc(), tmp_path)
    fig = figures["timeline.png"]
    rate, latency = fig.axes
    assert legend_labels(rate) == ["sent", "received", "requested 10.0k"]
    assert rate.get_ylabel() == "rate (pps)"
    assert legend_labels(latency) == ["max", "p99", "p50"]
    assert latency.get_xlabel() == "time since measurement start (s)"
    assert "1 ms" in shown_ticks(latency) and "µs" in " ".join(shown_ticks(latency))
    assert latency.get_xlim() == pytest.approx((0.0, 1.0))     # five 200 ms intervals, edge to edge


def test_timeline_has_a_rate_line_per_host(figures, tmp_path):
    report.write_report(paired_doc(), tmp_path)
    rate, _ = figures["timeline.png"].axes
    assert legend_labels(rate) == ["sent, all senders", "10.0.0.1:7070 (sender)", "10.0.0.2:7070 (sender)",
                                   "10.0.0.3:7070 (receiver)", "requested 10.0k"]


def test_paired_report_has_each_senders_percentiles(tmp_path):
    paths = report.write_percentiles(paired_echo_doc(), tmp_path)
    assert [p.name for p in paths] == [
        "percentiles-latency.hgrm", "percentiles-service.hgrm",
        "percentiles-latency-host-10.0.0.1_7070.hgrm", "percentiles-service-host-10.0.0.1_7070.hgrm",
        "percentiles-latency-host-10.0.0.2_7070.hgrm", "percentiles-service-host-10.0.0.2_7070.hgrm"]
    counts = [parse_percentiles(p)["footer"]["TotalCount"] for p in paths]
    assert counts == [len(LATENCY_NS) + len(SLOW_NS)] * 2 + [len(LATENCY_NS)] * 2 + [len(SLOW_NS)] * 2
    assert "on host 10.0.0.2:7070 (sender) alone" in paths[4].read_text().splitlines()[0]


def line_colors(ax) -> dict[str, str]:
    return {line.get_label(): line.get_color() for line in ax.get_lines()}


def test_paired_plots_draw_a_line_per_host(figures, tmp_path):
    report.write_report(paired_echo_doc(), tmp_path)
    (ax,) = figures["nines.png"].axes
    labels = legend_labels(ax)
    assert [label.split(":")[0] for label in labels] == [
        "latency (round trip from scheduled send)", "service (round trip from actual send)",
        "10.0.0.1", "10.0.0.2"]
    assert labels[2].startswith(f"{SENDERS[0]} (sender) latency: p50 150 µs") and "n=10,000" in labels[2]
    assert labels[3].startswith(f"{SENDERS[1]} (sender) latency: p50 300 µs")
    nines = line_colors(ax)
    assert len(set(nines.values())) == 4        # totals and hosts each their own colour

    rate, latency = figures["timeline.png"].axes
    assert legend_labels(latency) == ["max", "p99", "p50", f"{SENDERS[0]} (sender) p99", f"{SENDERS[1]} (sender) p99"]
    rates, latencies = line_colors(rate), line_colors(latency)
    for host in SENDERS:     # a host has one colour in every panel
        assert rates[f"{host} (sender)"] == latencies[f"{host} (sender) p99"] == nines[labels[2 + SENDERS.index(host)]]
    # the slow sender's p99 (398 us) is drawn where it is, not folded into the total
    assert 398.0 in list(next(l for l in latency.get_lines() if l.get_label() == f"{SENDERS[1]} (sender) p99").get_ydata())


def test_mixed_plots_draw_read_and_write_apart(figures, tmp_path):
    report.write_report(mixed_doc(), tmp_path)
    (ax,) = figures["nines.png"].axes
    assert [label.split(" (")[0] for label in legend_labels(ax)] == [
        "read-latency", "read-service", "write-latency", "write-service"]
    colors = line_colors(ax)
    read, write = {c for k, c in colors.items() if k.startswith("read")}, {c for k, c in colors.items() if k.startswith("write")}
    assert len(read) == len(write) == 1 and read != write
    assert {"100 µs", "500 µs"} <= set(shown_ticks(ax))

    rate, latency = figures["timeline.png"].axes
    assert legend_labels(rate) == ["completed, read and write", "read", "write", "requested 10.0k"]
    assert legend_labels(latency) == ["max", "read p99", "read p50", "write p99", "write p50"]
    assert line_colors(rate)["read"] == line_colors(latency)["read p99"] == colors[legend_labels(ax)[0]]


@pytest.mark.parametrize("doc", [disk_doc(), net_stream_doc(), paired_doc(), paired_echo_doc(), mixed_doc()],
                         ids=["disk", "net-stream", "net-paired", "net-paired-echo", "disk-mixed"])
def test_rate_panel_leaves_headroom_above_every_line(figures, tmp_path, doc):
    report.write_report(doc, tmp_path)
    rate, _ = figures["timeline.png"].axes
    highest = max(max(line.get_ydata()) for line in rate.get_lines())
    assert rate.get_ylim()[1] >= 1.1 * highest > 0


def test_a_single_valued_histogram_is_still_seen(figures, tmp_path):
    report.write_report(disk_doc(histograms={"latency": payload([5000] * 10)}), tmp_path)
    (ax,) = figures["nines.png"].axes
    (line,) = ax.get_lines()
    assert len(line.get_xdata()) == 1 and line.get_marker() == "o"


def test_timeline_leaves_gaps_where_nothing_completed(figures, tmp_path):
    doc = disk_doc(intervals=rows(2) + [{"t_s": 0.6, "ops": 0, "rate": 0.0, "latency_ns": None}])
    report.write_report(doc, tmp_path)
    _, latency = figures["timeline.png"].axes
    p99 = next(line for line in latency.get_lines() if line.get_label() == "p99")
    ys = list(p99.get_ydata())
    assert ys[-1] != ys[-1]         # NaN: no line drawn at zero for the empty interval


# ---- real documents -------------------------------------------------------------------------------

def check_real(doc, out, tags, summary_block, all_tags=None) -> list:
    """The report of a real run: a .hgrm per total histogram (all_tags, else tags), whose
    counts are the summary's for tags, then both plots; returns the paths written."""
    paths = report.write_report(doc, out)
    all_tags = all_tags or tags
    hosts = [p for p in paths if "-host-" in p.name]
    assert [p.name for p in paths if p not in hosts] == [f"percentiles-{t}.hgrm" for t in all_tags] + ["nines.png",
                                                                                                      "timeline.png"]
    hists = report.decode_histograms(doc)
    for p, tag in zip(paths, all_tags):
        assert_text_report(p, hists[tag])
    for p, tag in zip(paths, tags):
        block = summary_block[tag.removeprefix("oneway-") + "_ns"]
        assert parse_percentiles(p)["footer"]["TotalCount"] == block["count"] > 0
    assert_plots(paths, out)
    return paths


def check_hosts(doc, out, paths, role: str, tags) -> None:
    """Each host that timed operations has its own .hgrm per tag, whose counts add up to the total's."""
    timed = [h for h in doc["hosts"] if "histograms" in h]
    assert timed and all(h["role"] == role for h in timed)
    totals = report.decode_histograms(doc)
    for tag in tags:
        files = [out / f"percentiles-{tag}-host-{report.host_file_part(h['host'])}.hgrm" for h in timed]
        assert all(f in paths for f in files)
        counts = [parse_percentiles(f)["footer"]["TotalCount"] for f in files]
        assert all(c > 0 for c in counts) and sum(counts) == totals[tag].get_total_count()


def test_real_mixed_disk_run(plotting, disk, figures, tmp_path):
    done = disk("--rw", "randrw", "--mix", "70", "--interval", "200ms")
    assert done.returncode == 0, done.stderr
    tags = ["latency", "service", "read-latency", "read-service", "write-latency", "write-service"]
    check_real(done.doc, tmp_path / "report", tags[:2], done.summary, all_tags=tags)
    for side in ("read", "write"):
        assert report.decode_histograms(done.doc)[f"{side}-latency"].get_total_count() == done.summary[side]["ops"]
        assert sum(r[side]["ops"] for r in done.doc["intervals"]) == done.summary[side]["ops"]
    rate, latency = figures["timeline.png"].axes
    assert {"read", "write"} <= set(legend_labels(rate))
    assert {"read p99", "write p99"} <= set(legend_labels(latency))


@pytest.fixture
def agents(tmp_path):
    started: list[Agent] = []

    def start(*args: str) -> Agent:
        started.append(Agent(tmp_path, "127.0.0.1:0", *args, name=f"agent{len(started)}"))
        return started[-1]

    yield start
    for a in started:
        a.stop()


def test_real_paired_echo_run(plotting, agents, figures, tmp_path):
    """Two senders on two agents, the receiver on a third: one line per sender in both plots."""
    token = write_token(tmp_path / "token")
    receiver, *senders = [agents("--token-file", str(token)) for _ in range(3)]
    done = run_loadgen(tmp_path, "net", "--peer", receiver.address, "--clients", ",".join(a.address for a in senders),
                       "--mode", "echo", "--pps", "4k", "--duration", "1s", "--ramp", "0s", "--interval", "200ms",
                       "--token-file", str(token), "--quiet", "--json", "r.json")
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")     # per-host histograms fit the schema too
    out = tmp_path / "report"
    paths = check_real(doc, out, ["latency", "service"], doc["summary"])
    check_hosts(doc, out, paths, "sender", ["latency", "service"])
    (ax,) = figures["nines.png"].axes
    assert [label.split(" ")[0] for label in legend_labels(ax)[2:]] == [a.address for a in senders]
    _, latency = figures["timeline.png"].axes
    assert legend_labels(latency)[3:] == [f"{a.address} (sender) p99" for a in senders]


def test_real_remote_disk_run(plotting, agents, tmp_path, direct_io):
    token = write_token(tmp_path / "token")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "t.dat").write_bytes(b"\1" * (16 << 20))    # written, not truncated: sparse targets are refused
    agent = agents("--token-file", str(token), "--allow-path", str(allowed))
    done = run_loadgen(tmp_path, "disk", "--on", agent.address, "--target", str(allowed / "t.dat"), "--size", "16m",
                       "--duration", "1s", "--ramp", "0s", "--interval", "200ms", *([] if direct_io else ["--buffered"]),
                       "--token-file", str(token), "--quiet", "--json", "r.json")
    assert done.returncode == 0, done.stderr
    doc = documents.load_result(tmp_path / "r.json")
    assert doc["histograms"] == doc["hosts"][0]["histograms"]    # one host did every I/O
    out = tmp_path / "report"
    paths = check_real(doc, out, ["latency", "service"], doc["summary"])
    check_hosts(doc, out, paths, "disk", ["latency", "service"])


def test_real_disk_run(plotting, disk, tmp_path):
    done = disk("--interval", "200ms")
    assert done.returncode == 0, done.stderr
    check_real(done.doc, tmp_path / "report", ["latency", "service"], done.summary)


def test_real_net_echo_run(plotting, tmp_path):
    done = run_net(tmp_path, "--mode", "echo", "--pps", "10k", "--interval", "200ms")
    assert done.returncode == 0, done.stderr
    check_real(done.doc, tmp_path / "report", ["latency", "service"], done.summary)


def test_real_net_stream_run(plotting, tmp_path):
    done = run_net(tmp_path, "--pps", "10k", "--interval", "200ms")
    assert done.returncode == 0, done.stderr
    check_real(done.doc, tmp_path / "report", ["oneway-latency", "oneway-service"], done.summary["oneway"])
