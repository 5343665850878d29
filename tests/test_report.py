"""loadgen.report: percentile text files and plots from result documents.

Crafted documents hold histograms built here with hdrh; real ones come from short
`loadgen disk` and `loadgen net` runs. PNGs are checked by their bytes alone (signature,
IHDR size, IEND), so the tests need nothing beyond matplotlib, and plot tests skip
without it. Without matplotlib the text must still be written.
"""
import builtins
import struct
import sys

import pytest

from loadgen import histogram, report
from loadgen.errors import SetupError, UsageError
from netfixtures import run_net

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
    """The table rows, the column names and the footer numbers of a percentiles-<tag>.txt."""
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
    assert [p.name for p in paths] == ["percentiles-latency.txt", "percentiles-service.txt"]
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
], ids=["not-a-dict", "wrong-schema", "no-histograms-key", "no-histograms", "undecodable", "bad-tag"])
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
    assert sorted(p.name for p in out.iterdir()) == ["percentiles-latency.txt", "percentiles-service.txt"]
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
    disk_doc(histograms={"latency": payload(LATENCY_NS), "service": payload([])}),
    disk_doc(intervals=rows(2) + [{"t_s": 0.6, "ops": 0, "rate": 0.0, "latency_ns": None}]
             + [{"t_s": 0.8, "ops": 0, "rate": 0.0, "latency_ns": {"p50": 0, "p99": 0, "max": 0}}]),
    disk_doc(intervals=[{"t_s": 1.0, "ops": 0, "rate": 0.0, "latency_ns": None}]),
    disk_doc(intervals=[]),
    {"schema": "loadgen/1", "histograms": {"latency": payload([5000] * 10)}},
], ids=["disk", "disk-identical-twins", "net-stream", "net-paired", "one-empty-histogram",
        "intervals-without-latency", "no-latency-at-all", "no-intervals", "bare-minimum"])
def test_plots_of_crafted_documents(plotting, tmp_path, doc):
    out = tmp_path / "out"
    paths = report.write_report(doc, out)
    assert_plots(paths, out)


def test_an_existing_directory_is_reused(plotting, tmp_path):
    report.write_report(disk_doc(), tmp_path)
    paths = report.write_report(net_stream_doc(), tmp_path)
    assert [p.name for p in paths] == ["percentiles-oneway-latency.txt", "percentiles-oneway-service.txt",
                                       "nines.png", "timeline.png"]
    assert "oneway-latency" in (tmp_path / "percentiles-oneway-latency.txt").read_text().splitlines()[0]
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
    assert "µs" in ax.get_ylabel() and "percentile" in ax.get_xlabel()
    assert ax.get_yscale() == "log"         # 100 us .. 50 ms: more than two decades
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
    assert "µs" in latency.get_ylabel() and latency.get_xlabel() == "time since measurement start (s)"
    assert latency.get_xlim() == pytest.approx((0.0, 1.0))     # five 200 ms intervals, edge to edge


def test_timeline_has_a_rate_line_per_host(figures, tmp_path):
    report.write_report(paired_doc(), tmp_path)
    rate, _ = figures["timeline.png"].axes
    assert legend_labels(rate) == ["sent, all senders", "10.0.0.1:7070 (sender)", "10.0.0.2:7070 (sender)",
                                   "10.0.0.3:7070 (receiver)", "requested 10.0k"]


def test_timeline_leaves_gaps_where_nothing_completed(figures, tmp_path):
    doc = disk_doc(intervals=rows(2) + [{"t_s": 0.6, "ops": 0, "rate": 0.0, "latency_ns": None}])
    report.write_report(doc, tmp_path)
    _, latency = figures["timeline.png"].axes
    p99 = next(line for line in latency.get_lines() if line.get_label() == "p99")
    ys = list(p99.get_ydata())
    assert ys[-1] != ys[-1]         # NaN: no line drawn at zero for the empty interval


# ---- real documents -------------------------------------------------------------------------------

def check_real(doc, out, tags, summary_block) -> None:
    paths = report.write_report(doc, out)
    assert [p.name for p in paths] == [f"percentiles-{t}.txt" for t in tags] + ["nines.png", "timeline.png"]
    hists = report.decode_histograms(doc)
    for p, tag in zip(paths, tags):
        assert_text_report(p, hists[tag])
        block = summary_block[tag.removeprefix("oneway-") + "_ns"]
        assert parse_percentiles(p)["footer"]["TotalCount"] == block["count"]
    assert_plots(paths, out)


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
