"""Parse each tool's output and render bench.sh's tables, from a results directory alone.

bench.sh runs the tools and writes, per section, a manifest (`disk.manifest.tsv`,
`net.manifest.tsv`, `pacing.manifest.tsv`, `raw.manifest.tsv`: one tab-separated row per
tool run, naming its output files) and `meta.json` (the run's duration). Everything printed comes from those
files, so a stored results directory can be rendered again without re-running anything:

    python3 -m bench.render disk|disk-targets|net|pacing|raw MANIFEST [--duration S]
    python3 -m bench.render dir RESULTS_DIR

Rules:
- The peers' outputs (fio, iperf3, sockperf, trafgen) are read tolerantly: they are other
  projects' formats, a missing figure prints "-".
- loadgen's own result documents are read strictly, by the keys its schema ("loadgen/1")
  defines: a missing key is a SchemaError, shown as an unparseable row with a note naming
  the key, never as a quiet "-". Keys the schema itself makes optional are read as such.
- Output paths in a manifest that do not exist (a directory moved or copied) are looked
  up by their file name beside the manifest.
- Measures only: nothing here judges a number.
"""
import argparse
import json
import os
import re
import sys
import textwrap
from pathlib import Path

LOADGEN_SCHEMA = "loadgen/1"


class SchemaError(Exception):
    """A loadgen result document lacks a key its schema defines."""


# ------------------------------------------------------------------ reading helpers --

def load(path):
    """Parse a peer's JSON file; tolerate leading junk and JSON-lines (take last doc)."""
    try:
        text = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    i = text.find("{")
    try:
        return json.loads(text[i:]) if i >= 0 else None
    except ValueError:
        return None


def text(path):
    try:
        raw = open(path, encoding="utf-8", errors="replace").read()
    except OSError:
        return ""
    return re.sub(r"\x1b\[[0-9;]*m", "", raw)   # sockperf colours its output


def num(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def div(a, b):
    return a / b if a is not None and b else None


def grab(pattern, s, conv=float):
    m = re.search(pattern, s)
    return conv(m.group(1)) if m else None


def key(doc, *path):
    """doc[path[0]][path[1]]... for keys loadgen's schema defines; SchemaError if absent.

    Keys are given one by one, not dotted: percentile keys such as "p99.9" hold a dot.
    """
    cur = doc
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            raise SchemaError("no " + "/".join(path))
        cur = cur[part]
    return cur


def loadgen_doc(path):
    """A loadgen result document, or SchemaError; None when the file is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if key(doc, "schema") != LOADGEN_SCHEMA:
        raise SchemaError(f"schema {doc['schema']!r}, expected {LOADGEN_SCHEMA!r}")
    return doc


def resolve(path, base_dir):
    """path if it exists, else the file of that name in base_dir (a moved results directory)."""
    if os.path.exists(path) or not base_dir:
        return path
    return os.path.join(base_dir, os.path.basename(path))


# ------------------------------------------------------------------ table printing --

def fmt(v, spec="{:,.0f}", scale=1.0):
    return "-" if v is None else spec.format(v / scale)


def pctf(v, spec="{:.2f}%"):
    return "-" if v is None else spec.format(v * 100)


def ratio(a, b, spec="{:.2f}"):
    return spec.format(a / b) if a is not None and b else "-"


def table(header, body, out, left=1):
    """Columns padded to fit; the first `left` of them (labels) flush left, numbers right."""
    w = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w[i]) if i < left else c.rjust(w[i]) for i, c in enumerate(r))
    print(line(header), file=out)
    print("  ".join("-" * x for x in w), file=out)
    for r in body:
        print(line(r), file=out)


def say(out, *parts):
    print(textwrap.fill("".join(parts), 100, subsequent_indent="  "), file=out)


def manifest_rows(path, fields):
    """The manifest's rows as dicts of the named fields (paths not yet resolved)."""
    rows = []
    for line in open(path, encoding="utf-8"):
        cells = line.rstrip("\n").split("\t")
        if len(cells) != len(fields):
            raise ValueError(f"{path}: a row has {len(cells)} fields, expected {len(fields)}")
        rows.append(dict(zip(fields, cells)))
    return rows


# ------------------------------------------------------------------ peers' outputs --

def fio_pct(d, q):
    """Percentile q (e.g. 50, 99) from fio's percentile map ({"99.000000": ns})."""
    return num(d.get(f"{q:.6f}")) if isinstance(d, dict) else None


def fio_result(path, rw):
    doc = load(path)
    try:
        job = doc["jobs"][0]
    except (TypeError, KeyError, IndexError):
        return None
    side = "write" if "write" in rw else "read"
    d = job.get(side, {})
    iops = sum(num(job.get(s, {}).get("iops")) or 0.0 for s in ("read", "write", "trim"))
    lat = d.get("lat_ns", {})
    src = "lat" if isinstance(lat.get("percentile"), dict) else "clat"
    p = d.get(f"{src}_ns", {}).get("percentile", {})
    clat = d.get("clat_ns", {}).get("percentile", {})
    return {"iops": iops, "p50": fio_pct(p, 50), "p99": fio_pct(p, 99), "src": src,
            "clat_p99": fio_pct(clat, 99)}


def iperf3_result(path):
    doc = load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("end"), dict):
        return None
    if doc.get("error"):
        return {"error": doc["error"]}
    end = doc["end"]
    # iperf 3.12: sum_received/sum are the receiver's view (packets = highest
    # sequence seen, lost_packets = gaps); sum_sent is the sender's own count.
    rcv = end.get("sum_received") or end.get("sum") or {}
    snd = end.get("sum_sent") or end.get("sum") or {}
    packets, lost, secs = num(rcv.get("packets")), num(rcv.get("lost_packets")), num(rcv.get("seconds"))
    got = packets - lost if packets is not None and lost is not None else None
    return {"recv_pps": div(got, secs),
            "sent_pps": div(num(snd.get("packets")), num(snd.get("seconds"))),
            "loss": div(lost, packets)}


def sockperf_tput(path):
    client, server = text(path), text(path[:-4] + ".server.txt")
    sent = grab(r"Total of (\d+) messages sent in", client)
    secs = grab(r"messages sent in ([\d.]+) sec", client)
    rate = grab(r"Message Rate is ([\d.]+)", client)
    got = grab(r"Total (\d+) messages received", server)
    if sent is None and rate is None:
        return None
    loss = max(0.0, 1 - got / sent) if got is not None and sent else None
    return {"recv_pps": div(got, secs), "sent_pps": rate if rate is not None else div(sent, secs),
            "loss": loss}


def sockperf_lat(path):
    s = text(path)
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)", s)
    if not m:
        return None
    secs, sent, got = float(m.group(1)), float(m.group(2)), float(m.group(3))
    pct = {float(q): float(v) for q, v in re.findall(r"---> percentile ([\d.]+) = *([\d.]+)", s)}
    timed = grab(r"Total (\d+) observations", s)
    dropped = grab(r"# dropped messages = (\d+)", s)
    asked = timed + dropped if timed is not None and dropped is not None else None
    return {"sent_pps": div(sent, secs), "timed": timed, "received": got,
            "loss": div(dropped, asked), "unit": 1.0,   # sockperf prints usec
            "p50": pct.get(50.0), "p90": pct.get(90.0), "p99": pct.get(99.0), "p99.9": pct.get(99.9),
            "max": grab(r"<MAX> observation = *([\d.]+)", s)}


def cpu_result(path):
    """bench.proc's sample of a tool's process tree: {"cores": ...} or {"error": ...}; None if absent."""
    doc = load(path) if path else None
    return doc if isinstance(doc, dict) else None


# ------------------------------------------------------------------ loadgen's documents --

def loadgen_disk(path):
    doc = loadgen_doc(path)
    if doc is None:
        return None
    s = key(doc, "summary")
    return {"iops": num(key(s, "rate")),
            "p50": num(key(s, "latency_ns", "p50")), "p99": num(key(s, "latency_ns", "p99")),
            "svc50": num(key(s, "service_ns", "p50")), "svc99": num(key(s, "service_ns", "p99")),
            "lag_max": num(key(s, "schedule_lag_ns", "max")), "late": num(key(s, "schedule_lag_ns", "late_ops")),
            "engine": key(doc, "engine"), "flags": [k for k in ("interrupted", "failed") if key(doc, k)]}


def loadgen_net(path):
    doc = loadgen_doc(path)
    if doc is None:
        return None
    s, config = key(doc, "summary"), key(doc, "config")
    # The schema puts round trips (echo) at summary.latency_ns and one-way latency at
    # summary.oneway.latency_ns; oneway is dropped when the clocks disagree, and a stream
    # to an external target has neither (received_pps etc. are null then).
    if "latency_ns" in s:
        lat = key(s, "latency_ns")
    else:
        lat = s["oneway"]["latency_ns"] if "oneway" in s else {}
    svc = key(s, "service_ns") if "latency_ns" in s else {}
    r = {"recv_pps": num(key(s, "received_pps")), "sent_pps": num(key(s, "sent_pps")),
         "loss": num(key(s, "loss_ratio")), "received": num(key(s, "received")),
         "timed": num(key(lat, "count")) if lat else None, "unit": 1000.0,
         "lag_max": num(key(s, "schedule_lag_ns", "max")), "late": num(key(s, "schedule_lag_ns", "late_ops")),
         "split": "{}s/{}r/{}f".format(*(key(config, k) for k in ("senders", "receivers", "flows"))),
         "flags": [k for k in ("interrupted", "failed") if key(doc, k)]}
    for q in ("p50", "p90", "p99", "p99.9", "max"):
        r[q] = num(key(lat, q)) if lat else None
        r["svc_" + q] = num(key(svc, q)) if svc else None
    return r


def parse(fn, *args):
    """(result, note): fn(*args), with a loadgen SchemaError turned into a note."""
    try:
        return fn(*args), None
    except SchemaError as e:
        return None, f"loadgen result does not match its schema: {e}"


# ------------------------------------------------------------------ disk --

DISK_FIELDS = ("name", "rw", "qd", "workers", "rate", "fst", "fjson", "lst", "ljson")


def render_disk(manifest, out=sys.stdout):
    base = os.path.dirname(os.path.abspath(manifest))
    rows, rate_rows, notes, engines, lat_src = [], [], [], set(), set()
    for m in manifest_rows(manifest, DISK_FIELDS):
        name, rw, rate, fst, fjson, lst, ljson = (m[k] for k in ("name", "rw", "rate", "fst", "fjson", "lst", "ljson"))
        f = fio_result(resolve(fjson, base), rw) if fst == "ok" else None
        g, why = parse(loadgen_disk, resolve(ljson, base)) if lst == "ok" else (None, None)
        if fst == "ok" and f is None:
            notes.append(f"{name}: could not parse fio JSON {fjson}")
        if lst == "ok" and g is None:
            notes.append(f"{name}: could not parse loadgen JSON {ljson}" + (f": {why}" if why else ""))
        if lst.startswith("failed"):
            notes.append(f"{name}: loadgen {lst}, see {ljson[:-5]}.err")
        if fst.startswith("failed"):
            notes.append(f"{name}: fio {fst}, see {fjson[:-5]}.err")
        if f:
            lat_src.add(f["src"])
        if g and g.get("engine"):
            engines.add(g["engine"])
        miss = {"ok": "badjson", "skipped": "skipped", "unavailable": "n/a"}

        def fcell(k, *a, f=f, fst=fst):
            return fmt(f[k], *a) if f else miss.get(fst, "FAILED")

        def gcell(k, *a, g=g, lst=lst):
            return fmt(g[k], *a) if g else miss.get(lst, "FAILED")
        rat = (f"{g['iops'] / f['iops']:.2f}"
               if f and g and f["iops"] and g["iops"] is not None else "-")
        us = ("{:,.1f}", 1000.0)
        rows.append([name, fcell("iops"), gcell("iops"), rat,
                     fcell("p50", *us), fcell("p99", *us),
                     gcell("p50", *us), gcell("p99", *us), gcell("svc50", *us)])
        if rate:
            req = float(rate)

            def err(r, req=req):
                return "-" if not r or r.get("iops") is None else f"{(r['iops'] - req) / req * 100:+.2f}%"
            rate_rows.append([name, f"{req:,.0f}", fcell("iops"), err(f), gcell("iops"), err(g),
                              gcell("lag_max", *us), gcell("late")])

    print("== disk: 4k random I/O, latency in microseconds", file=out)
    table(["case", "fio IOPS", "loadgen IOPS", "lg/fio", "fio p50", "fio p99",
           "lg p50", "lg p99", "lg svc p50"], rows, out)
    if rate_rows:
        print(file=out)
        print("== disk: rate-limited runs (requested vs achieved IOPS)", file=out)
        table(["case", "requested", "fio IOPS", "fio err", "loadgen IOPS", "lg err",
               "lg lag max us", "lg late ops"], rate_rows, out)
    print(file=out)
    print(f"fio latency = {'/'.join(sorted(lat_src)) or '-'}_ns percentiles "
          "(lat = submit->complete, clat = completion only)", file=out)
    print("lg = loadgen: latency_ns (p50/p99) and service_ns (svc p50)"
          + (f"; engine: {', '.join(sorted(engines))}" if engines else ""), file=out)
    if any(r[2] == "n/a" for r in rows):
        print("loadgen: not available (neither `loadgen` nor `python3 -m loadgen` runs)", file=out)
    for n in notes:
        print("note: " + n, file=out)
    tuned = os.path.join(base, "disk-tuned.manifest.tsv")
    if os.path.exists(tuned):
        print(file=out)
        render_disk_tuned(tuned, out)


# disk-tuned.manifest.tsv: interleaved pairs of fio at its best and loadgen, one row per run, with
# the bench.proc sample of the run's process tree (bench/disk.sh disk_tuned_pairs).
DISK_TUNED_FIELDS = ("name", "pair", "tool", "label", "st", "path", "cpu")


def loadgen_ring(path):
    """loadgen_disk's figures and its ring: batches asked for, enters per I/O, the mean batch wait
    (None: no wait had one), the SQ threads' CPU."""
    r = loadgen_disk(path)
    if r is None:
        return None
    doc = loadgen_doc(path)
    config, ring = key(doc, "config"), key(doc, "summary", "ring")
    r |= {"batch": f"{key(config, 'batch_submit')}/{key(config, 'batch_complete')}",
          "enters_per_io": num(key(ring, "enters_per_io")) if ring else None,
          "batch_wait_us": div(num(key(ring, "batch_wait", "mean_ns")), 1000) if ring and ring.get("batch_wait")
          else None,
          "sq_cpus": sorted({t["last_cpu"] for t in ring.get("sq_threads", [])}) if ring else []}
    return r


def median(values):
    """The median of the values that are not None (the middle pair's for an even count: their mean)."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def render_disk_tuned(manifest, out=sys.stdout):
    """Each tuned case's pairs and their median: IOPS, lg/fio, and CPU per I/O of each tool's
    whole process tree (cores over the sampled window / IOPS)."""
    base = os.path.dirname(os.path.abspath(manifest))
    runs, notes = {}, []
    for m in manifest_rows(manifest, DISK_TUNED_FIELDS):
        path, r, why = resolve(m["path"], base), None, None
        if m["st"] == "ok":
            r, why = parse(loadgen_ring, path) if m["tool"] == "loadgen" else (fio_result(path, "randread"), None)
            if r is None:
                notes.append(f"{m['name']} pair {m['pair']}: could not parse {m['tool']} output {m['path']}"
                             + (f": {why}" if why else ""))
        elif m["st"].startswith("failed"):
            notes.append(f"{m['name']} pair {m['pair']}: {m['tool']} {m['st']}, see {m['path'][:-5]}.err")
        c = cpu_result(resolve(m["cpu"], base)) if r else None
        if c and c.get("error"):
            notes.append(f"{m['name']} pair {m['pair']}: {m['tool']}: CPU not measured: {c['error']}")
        cores = num(c.get("cores")) if c and "error" not in c else None
        per_io_s = div(cores, r.get("iops")) if r else None
        e = {"r": r, "st": m["st"], "label": m["label"], "cpu_us": None if per_io_s is None else per_io_s * 1e6}
        runs.setdefault(m["name"], {}).setdefault(m["pair"], {})[m["tool"]] = e
    rows, labels = [], []
    for name, pairs in runs.items():
        per = []
        for pair, tools in pairs.items():
            f, g = tools.get("fio"), tools.get("loadgen")
            fr, gr = f and f["r"], g and g["r"]
            per.append({"fio": fr and fr["iops"], "lg": gr and gr["iops"],
                        "ratio": div(gr and gr["iops"], fr and fr["iops"]),
                        "fio_cpu": f and f["cpu_us"], "lg_cpu": g and g["cpu_us"],
                        "enters": gr and gr["enters_per_io"], "batch": gr["batch"] if gr else "-",
                        "wait": gr and gr["batch_wait_us"],
                        "sq": ",".join(map(str, gr["sq_cpus"])) if gr and gr["sq_cpus"] else "-"})
            rows.append([name, pair, fmt(per[-1]["fio"]), fmt(per[-1]["lg"]), fmt(per[-1]["ratio"], "{:.2f}"),
                         fmt(per[-1]["fio_cpu"], "{:.2f}"), fmt(per[-1]["lg_cpu"], "{:.2f}"),
                         fmt(per[-1]["enters"], "{:.3f}"), per[-1]["batch"], fmt(per[-1]["wait"], "{:.1f}"),
                         per[-1]["sq"]])
            for t in ("fio", "loadgen"):
                if tools.get(t) and (name, t) not in [(n, x) for n, x, _ in labels]:
                    labels.append((name, t, tools[t]["label"]))
        rows.append([name, "median", *(fmt(median([p[k] for p in per]), spec)
                                       for k, spec in (("fio", "{:,.0f}"), ("lg", "{:,.0f}"), ("ratio", "{:.2f}"),
                                                       ("fio_cpu", "{:.2f}"), ("lg_cpu", "{:.2f}"),
                                                       ("enters", "{:.3f}"))), "",
                     fmt(median([p["wait"] for p in per]), "{:.1f}"), ""])
    print("== disk: against fio at its best, 4k randread qd32, one job/worker, interleaved pairs", file=out)
    table(["case", "pair", "fio IOPS", "loadgen IOPS", "lg/fio", "fio CPU us/IO", "lg CPU us/IO",
           "lg enters/IO", "lg batch s/c", "lg batch wait us", "lg SQ CPU"], rows, out, left=2)
    for name, tool, label in labels:
        print(f"{name}, {tool}: {label}", file=out)
    say(out, "median = the median of each column over the pairs (lg/fio: of each pair's ratio). CPU us/IO = "
        "the CPU time of the tool's whole process tree (every thread, an SQ thread included) over a window "
        "after warm-up, per I/O at the run's IOPS. lg enters/IO = summary.ring.enters_per_io; batch s/c = "
        "config batch_submit/batch_complete; batch wait = summary.ring.batch_wait's mean (-: no wait had one).")
    for n in notes:
        print("note: " + n, file=out)


# ------------------------------------------------------------------ net --

NET_FIELDS = ("name", "kind", "tool", "label", "st", "path", "req")


def veth_result(path):
    """veth case: received = rx veth rx_packets delta; sent = loadgen's own sent_pps,
    trafgen's = tx veth tx_packets + tx_dropped delta (the same counters for both)."""
    c = load(path.rsplit(".", 1)[0] + ".counters.json")
    if not isinstance(c, dict):
        return None
    secs = num(c.get("seconds"))
    r = {"recv_pps": div(num(c.get("rx_packets")), secs), "flags": []}
    if path.endswith(".json"):
        lg = loadgen_net(path)
        if lg is None:
            return None
        r.update(sent_pps=lg.get("sent_pps"), flags=lg.get("flags"))
    else:
        tx, drop = num(c.get("tx_packets")), num(c.get("tx_dropped"))
        r["sent_pps"] = div(tx + drop if tx is not None and drop is not None else tx, secs)
    return r


NET_PARSE = {("blast", "iperf3"): iperf3_result, ("blast", "sockperf"): sockperf_tput,
             ("latency", "sockperf"): sockperf_lat, ("veth", "trafgen"): veth_result,
             ("veth", "loadgen"): veth_result}


def net_entries(manifest, fields, parsers, default_loadgen):
    """Parse every row of a net-like manifest: ({kind: [row dict + result r, miss]}, notes)."""
    base = os.path.dirname(os.path.abspath(manifest))
    by_kind, notes = {}, []
    for m in manifest_rows(manifest, fields):
        name, tool, label, st, path = m["name"], m["tool"], m["label"], m["st"], m["path"]
        r = None
        if st == "ok":
            fn = parsers.get((m["kind"], tool), default_loadgen if tool == "loadgen" else None)
            r, why = parse(fn, resolve(path, base))
            if r is None:
                notes.append(f"{name}: could not parse {tool} output {path}" + (f": {why}" if why else ""))
            elif r.get("error"):
                notes.append(f"{name}: {tool}: {r['error']}")
                r = None
            elif r.get("flags"):
                notes.append(f"{name}: {label}: result document says {', '.join(r['flags'])}")
        elif st.startswith("failed"):
            notes.append(f"{name}: {label} {st}, see {path.rsplit('.', 1)[0]}.err")
        m["r"] = r
        m["miss"] = {"ok": "badout", "skipped": "skipped", "unavailable": "n/a"}.get(st, "FAILED")
        by_kind.setdefault(m["kind"], []).append(m)
    return by_kind, notes


def render_net(manifest, duration, out=sys.stdout):
    by_kind, notes = net_entries(manifest, NET_FIELDS, NET_PARSE, loadgen_net)
    blast, lat, rate, veth = (by_kind.get(k, []) for k in ("blast", "latency", "rate", "veth"))
    dur = duration
    printed = False
    if blast:
        refs = [e["r"]["recv_pps"] for e in blast if e["tool"] != "loadgen" and e["r"] and e["r"].get("recv_pps")]
        best = max(refs) if refs else None
        rows = []
        for e in blast:
            label, tool, r, miss = e["label"], e["tool"], e["r"], e["miss"]
            if not r:
                rows.append([label, miss, miss, miss, "-"])
                continue
            rat = (f"{r['recv_pps'] / best:.2f}" if tool == "loadgen" and best and r.get("recv_pps") is not None
                   else "-")
            rows.append([label + (f" [{r['split']}]" if tool == "loadgen" else ""),
                         fmt(r.get("recv_pps")), fmt(r.get("sent_pps")), pctf(r.get("loss")), rat])
        print(f"== net: blast, 64-byte UDP payloads to 127.0.0.1, {dur}s each", file=out)
        table(["tool", "received pps", "sent pps", "loss", "lg/best ref"], rows, out)
        say(out, "received: iperf3 = receiver's packets - lost_packets over its seconds; sockperf = server's"
            " 'messages received' (incl. a few warm-up ones) over the client's run time;"
            " loadgen = its embedded receiver. lg/best ref = loadgen received pps / best of iperf3,"
            " sockperf. [Ns/Nr/Nf] = loadgen senders/receivers/flows. Tools run with their own"
            " socket buffers (loadgen forces 8 MiB, iperf3 and sockperf keep the system default)"
            " and no CPU pinning except loadgen's own.")
        printed = True
    if lat:
        rows = []
        for e in lat:
            label, r, miss = e["label"], e["r"], e["miss"]
            if not r:
                rows.append([label] + [miss] * 9)
                continue
            us = ("{:,.1f}", r["unit"])
            for lab, pre in ((label, ""), ("  same run, service_ns", "svc_")):
                if pre and r.get("svc_p50") is None:
                    continue
                rows.append([lab, fmt(r.get("sent_pps")), fmt(r.get("timed")), fmt(r.get("received")),
                             pctf(r.get("loss"))] +
                            [fmt(r.get(pre + q), *us) for q in ("p50", "p90", "p99", "p99.9", "max")])
        if printed:
            print(file=out)
        req = lat[0]["req"]
        print(f"== net: round-trip latency at {float(req):,.0f} pps, 64-byte UDP on 127.0.0.1, "
              f"{dur}s each, microseconds", file=out)
        table(["tool", "sent pps", "timed", "received", "lost", "p50", "p90", "p99", "p99.9", "max"], rows, out)
        say(out, "timed = round trips in the percentiles (sockperf: observations, loadgen: latency_ns.count);"
            " received = replies (sockperf, valid duration) / echoes (loadgen). sockperf asks for a reply"
            " to 1 message in 100 unless --reply-every 1, so its server echoes 1% of the rate;"
            " lost = sockperf's dropped replies / (timed + dropped), loadgen's lost / sent."
            " sockperf runs with --full-rtt (it reports half the round trip otherwise) and times from"
            " the actual send; loadgen's latency_ns counts from the scheduled send time (so includes"
            " its schedule lag), its service_ns from the actual send.")
        printed = True
    if rate:
        rows = []
        for e in rate:
            r, miss, reqf = e["r"], e["miss"], float(e["req"])
            if not r:
                rows.append([f"{reqf:,.0f}"] + [miss] * 6)
                continue
            err = "-" if r.get("sent_pps") is None else f"{(r['sent_pps'] - reqf) / reqf * 100:+.2f}%"
            rows.append([f"{reqf:,.0f}", fmt(r.get("sent_pps")), err, fmt(r.get("recv_pps")),
                         pctf(r.get("loss")), fmt(r.get("lag_max"), "{:,.1f}", 1000.0), fmt(r.get("late"))])
        if printed:
            print(file=out)
        print(f"== net: loadgen rate accuracy, 64-byte UDP to its embedded receiver, {dur}s each", file=out)
        table(["requested pps", "sent pps", "error", "received pps", "loss", "lag max us", "late ops"], rows, out)
        printed = True
    if veth:
        ref = next((e["r"]["recv_pps"] for e in veth
                    if e["tool"] == "trafgen" and e["r"] and e["r"].get("recv_pps")), None)
        rows = []
        for e in veth:
            label, tool, r, miss = e["label"], e["tool"], e["r"], e["miss"]
            if not r:
                rows.append([label, miss, miss, "-"])
                continue
            rat = (f"{r['recv_pps'] / ref:.2f}" if tool == "loadgen" and ref and r.get("recv_pps") is not None
                   else "-")
            rows.append([label, fmt(r.get("sent_pps")), fmt(r.get("recv_pps")), rat])
        if printed:
            print(file=out)
        print(f"== net: veth, 64-byte UDP payloads across a veth pair between two namespaces, {dur}s each",
              file=out)
        table(["tool", "sent pps", "received pps (veth rx_packets)", "lg/trafgen"], rows, out)
        say(out, "received = the rx veth's rx_packets delta over the run / duration, for both tools (what the"
            " veth delivered, before any socket drop). sent: trafgen = the tx veth's tx_packets +"
            " tx_dropped delta / duration; loadgen = its summary.sent_pps. trafgen runs with --cpus 1"
            " on a packet socket, loadgen net with its defaults (--ramp 0s) to loadgen serve --workers 1.")
    for n in notes:
        print("note: " + n, file=out)


# ------------------------------------------------------------------ pacing --

# pacing.manifest.tsv: NET_FIELDS + cpu (the bench.proc sample of the run's process tree);
# req is the requested rate. kinds: net (iperf3 -u vs loadgen net at a fixed pps), disk (fio
# --rate_iops vs loadgen disk --iops, 4k randread), echo (sockperf under-load vs loadgen echo).
PACING_FIELDS = NET_FIELDS + ("cpu",)


def _fio_pacing(path):
    return fio_result(path, "randread")


PACING_PARSE = {("net", "iperf3"): iperf3_result, ("disk", "fio"): _fio_pacing,
                ("disk", "loadgen"): loadgen_disk, ("echo", "sockperf"): sockperf_lat}


def render_pacing(manifest, duration, out=sys.stdout):
    by_kind, notes = net_entries(manifest, PACING_FIELDS, PACING_PARSE, loadgen_net)
    base = os.path.dirname(os.path.abspath(manifest))
    for entries in by_kind.values():
        for e in entries:
            c = cpu_result(resolve(e["cpu"], base)) if e["cpu"] else None
            e["cores"] = num(c.get("cores")) if c and "error" not in c else None
            if c and c.get("error"):
                notes.append(f"{e['name']}: {e['label']}: CPU not measured: {c['error']}")
            elif e["st"] == "ok" and c is None:
                notes.append(f"{e['name']}: {e['label']}: CPU sample missing ({e['cpu']})")
    dur = duration
    us = ("{:,.1f}", 1000.0)
    printed = False

    def pairs(entries):
        """[(case name, peer entry or None, loadgen entry or None)] in manifest order."""
        names = list(dict.fromkeys(e["name"] for e in entries))
        return [(n, next((e for e in entries if e["name"] == n and e["tool"] != "loadgen"), None),
                 next((e for e in entries if e["name"] == n and e["tool"] == "loadgen"), None)) for n in names]

    def get(e, k):
        return e["r"].get(k) if e and e["r"] else None

    def cell(e, k, *a):
        if e is None:
            return "-"
        if k == "cores":
            return fmt(e["cores"], "{:.3f}")
        return fmt(get(e, k), *a) if e["r"] else e["miss"]

    net = by_kind.get("net", [])
    if net:
        rows = []
        for _, peer, lg in pairs(net):
            for e in (peer, lg):
                if e is None:
                    continue
                rows.append([e["name"], e["label"], cell(e, "sent_pps"), cell(e, "recv_pps"),
                             pctf(get(e, "loss")) if e["r"] else e["miss"], cell(e, "cores"),
                             cell(e, "lag_max", *us) if e["tool"] == "loadgen" else "-",
                             ratio(lg and lg["cores"], peer and peer["cores"]) if e is lg else "-"])
        print(f"== pacing: net, 64-byte UDP to 127.0.0.1 at a fixed rate, {dur}s each", file=out)
        table(["case", "tool", "sent pps", "received pps", "loss", "cores", "lag max us", "cores lg/peer"],
              rows, out, left=2)
        printed = True
    disk = by_kind.get("disk", [])
    if disk:
        rows = []
        for _, peer, lg in pairs(disk):
            for e in (peer, lg):
                if e is None:
                    continue
                is_lg = e["tool"] == "loadgen"
                rows.append([e["name"], e["label"], cell(e, "iops"), cell(e, "cores"),
                             cell(e, "p99", *us), cell(e, "svc99" if is_lg else "clat_p99", *us),
                             ratio(lg and lg["cores"], peer and peer["cores"]) if is_lg else "-",
                             ratio(get(lg, "p99"), get(peer, "p99")) if is_lg else "-"])
        if printed:
            print(file=out)
        print(f"== pacing: disk, 4k randread, 1 job/worker, io_uring, at a fixed IOPS, {dur}s each, "
              "latency in microseconds", file=out)
        table(["case", "tool", "IOPS", "cores", "lat p99", "svc/clat p99", "cores lg/fio", "p99 lg/fio"],
              rows, out, left=2)
        printed = True
    echo = by_kind.get("echo", [])
    if echo:
        rows = []
        qs = ("p50", "p99", "p99.9")
        for _, peer, lg in pairs(echo):
            for e in (peer, lg):
                if e is None:
                    continue
                unit = e["r"]["unit"] if e["r"] else 1.0
                rows.append([e["name"], e["label"], cell(e, "sent_pps"), cell(e, "received"),
                             pctf(get(e, "loss")) if e["r"] else e["miss"], cell(e, "cores")] +
                            [cell(e, q, "{:,.1f}", unit) for q in qs])
            if peer and lg and peer["r"] and lg["r"]:
                rows.append(["", "ratio loadgen/sockperf", "", "", "", ratio(lg["cores"], peer["cores"])] +
                            [ratio(div(get(lg, q), lg["r"]["unit"]), div(get(peer, q), peer["r"]["unit"]))
                             for q in qs])
        if printed:
            print(file=out)
        print(f"== pacing: echo round trips, 64-byte UDP on 127.0.0.1, {dur}s each, microseconds", file=out)
        table(["case", "tool", "sent pps", "received", "lost", "cores", "p50", "p99", "p99.9"], rows, out, left=2)
        printed = True
    if printed:
        say(out, "cores = CPU time (utime+stime, plus reaped children) of each tool's whole process tree"
            " (client and server, loadgen and its children) read from /proc/PID/stat, over a window"
            " after warm-up, divided by the window's wall time. lag max = loadgen's"
            " summary.schedule_lag_ns.max. loss: iperf3 = receiver's lost_packets / packets, loadgen ="
            " loss_ratio. disk: lat p99 = fio lat_ns (from submission) / loadgen latency_ns (from the"
            " scheduled time); svc/clat p99 = loadgen service_ns / fio clat_ns. echo: sockperf"
            " under-load --reply-every 1 --full-rtt vs loadgen net --mode echo latency_ns (from the"
            " scheduled send); received = replies timed, lost as in the net section's latency table.")
    for n in notes:
        print("note: " + n, file=out)


# ------------------------------------------------------------------ raw --

# raw.manifest.tsv: NET_FIELDS + senders (trafgen --cpus, loadgen --workers), pair (the veth
# case's round, else empty) and cpu (bench.proc's sample of the sending tool's process tree, or
# empty). kinds: veth (--pps max on a 1-queue veth, interleaved rounds), scale (1 and 2 senders on
# a 2-queue veth), paced.
RAW_FIELDS = NET_FIELDS + ("senders", "pair", "cpu")


def raw_loadgen(path):
    """A raw-engine run (packet or xdp): the veth's counters beside its own receiver's (a paired run)."""
    lg = loadgen_net(path)
    if lg is None:
        return None
    doc = loadgen_doc(path)
    s = key(doc, "summary")
    c = load(path.rsplit(".", 1)[0] + ".counters.json")
    secs = num(c.get("seconds")) if isinstance(c, dict) else None
    lg.update(veth_pps=div(num(c.get("rx_packets")), secs) if isinstance(c, dict) else None,
              lost=num(key(s, "lost")), engine=doc.get("engine") if isinstance(doc, dict) else None,
              packet=key(doc, "config").get("packet") or key(doc, "config").get("xdp"),
              senders=key(doc, "config", "senders"))
    return lg


def raw_trafgen(path):
    r = veth_result(path)
    if r is not None:
        r["veth_pps"] = r.pop("recv_pps")
    return r


RAW_PARSE = {(k, "trafgen"): raw_trafgen for k in ("veth", "scale", "wire", "paced")}


def packet_note(r):
    """What a raw engine's result says about its interface, queues and (xdp) mode."""
    p = r.get("packet") if r else None
    if not isinstance(p, dict):
        return None
    parts = [f"{p.get('interface')} ({p.get('driver')}), {p.get('tx_queues')} TX queue(s)",
             f"AF_XDP in {p['mode']} mode" if "mode" in p else
             "qdisc bypass" if p.get("qdisc_bypass") else "through the qdisc"]
    senders = p.get("senders")
    if isinstance(senders, list) and senders:
        parts.append("senders: " + ", ".join(
            f"cpu {x.get('cpu')} -> tx-{x.get('queue')}" if x.get("queue") is not None else f"cpu {x.get('cpu')}"
            for x in senders))
    if p.get("queue_decided_by"):
        parts.append(f"queue decided by {p['queue_decided_by']}")
    if p.get("irq_note"):
        parts.append(p["irq_note"])
    if "zero_copy" in p:
        parts.append("zero-copy" if p["zero_copy"] else "copied (no zero-copy)")
    return "; ".join(parts)


def cell_of(e, k, *a):
    """A manifest entry's figure k, or what stands for a run that gave none (skipped, FAILED...)."""
    return fmt(e["r"].get(k), *a) if e["r"] else e["miss"]


def raw_veth_rows(veth, base, notes):
    """The veth case's table: every run by round, then each tool's median over the rounds; a row
    with no round (the packet receivers') is compared with trafgen's median."""
    rounds, rows = {}, []
    for e in veth:
        r = e["r"]
        c = cpu_result(resolve(e["cpu"], base)) if r and e["cpu"] else None
        if c and c.get("error"):
            notes.append(f"{e['name']} round {e['pair']}: {e['label']}: CPU not measured: {c['error']}")
        cores = num(c.get("cores")) if c and "error" not in c else None
        e["cpu_ns"] = None if cores is None else div(cores * 1e9, r.get("veth_pps"))
        rounds.setdefault(e["pair"], {})[e["label"]] = e
    labels = list(dict.fromkeys(e["label"] for e in veth if e["pair"]))
    trafgen = next((lb for lb in labels if lb.startswith("trafgen")), None)
    per = {lb: [] for lb in labels}

    def row(e, rnd, ref):
        r, is_lg = e["r"], e["tool"] == "loadgen"
        got = {"pps": r and r.get("veth_pps"), "cpu": e.get("cpu_ns")}
        got["ratio"] = div(got["pps"], ref and ref["r"] and ref["r"].get("veth_pps")) if is_lg else None
        got["cpu_ratio"] = div(got["cpu"], ref and ref.get("cpu_ns")) if is_lg else None
        rows.append([e["label"], rnd, cell_of(e, "sent_pps"), cell_of(e, "veth_pps"),
                     cell_of(e, "recv_pps") if is_lg else "-", cell_of(e, "lost") if is_lg else "-",
                     fmt(got["ratio"], "{:.2f}"), fmt(got["cpu"]), fmt(got["cpu_ratio"], "{:.2f}")])
        return got

    for rnd in sorted((p for p in rounds if p), key=int):
        tools = rounds[rnd]
        for lb in labels:
            if lb in tools:
                per[lb].append(row(tools[lb], rnd, tools.get(trafgen)))
    for lb in labels:
        m = {k: median([g[k] for g in per[lb]]) for k in ("pps", "cpu", "ratio", "cpu_ratio")}
        rows.append([lb, "median", "", fmt(m["pps"]), "", "", fmt(m["ratio"], "{:.2f}"), fmt(m["cpu"]),
                     fmt(m["cpu_ratio"], "{:.2f}")])
    ref = {"r": {"veth_pps": median([g["pps"] for g in per.get(trafgen, [])])},
           "cpu_ns": median([g["cpu"] for g in per.get(trafgen, [])])}
    for e in rounds.get("", {}).values():
        row(e, "-", ref)
    return rows


def raw_senders_rows(entries, facts):
    """The scale and wire cases' rows: each run, its ratio over the same tool's (and engine's) 1-sender
    run and (loadgen) over trafgen's with as many senders, both of its round; then each label's medians."""
    rows, per = [], {}

    def same_round(e, pred):
        x = next((x["r"] for x in entries if x["pair"] == e["pair"] and x["r"] and pred(x)), None)
        return x and x.get("veth_pps")

    for e in entries:
        r, is_lg = e["r"], e["tool"] == "loadgen"
        engine = (r or {}).get("engine")
        pps = r and r.get("veth_pps")
        x1 = div(pps, same_round(e, lambda x: x["tool"] == e["tool"] and x["senders"] == "1"
                                 and x["r"].get("engine") == engine))
        xt = div(pps, same_round(e, lambda x: x["tool"] == "trafgen" and x["senders"] == e["senders"])) \
            if is_lg else None
        per.setdefault(e["label"], []).append((pps, x1, xt))
        senders = str(r["senders"]) if is_lg and r and r.get("senders") is not None else e["senders"]
        rows.append([e["label"], e["pair"] or "-", senders, cell_of(e, "sent_pps"), cell_of(e, "veth_pps"),
                     cell_of(e, "recv_pps") if is_lg else "-", fmt(x1, "{:.2f}"), fmt(xt, "{:.2f}")])
        if is_lg and e["pair"] in ("", "1"):
            facts.append((engine or "packet", e["name"] + f" ({e['senders']})", packet_note(r)))
    for label, got in per.items():
        if len(got) > 1:
            rows.append([label, "median", "", "", fmt(median([g[0] for g in got])), "",
                         fmt(median([g[1] for g in got]), "{:.2f}"), fmt(median([g[2] for g in got]), "{:.2f}")])
    return rows


def wire_ip_note(base):
    """What the wire case's receiving namespace's IP layer counted across the case (it should be
    nothing: the frames are dropped before it), or "" without the counts."""
    try:
        start, end = (int(Path(base, f"raw-wire.ip-in.{w}").read_text()) for w in ("start", "end"))
    except (OSError, ValueError):
        return ""
    return f" IP packets the receiving namespace took in across the case: {end - start:,}."


def render_raw(manifest, duration, out=sys.stdout):
    by_kind, notes = net_entries(manifest, RAW_FIELDS, RAW_PARSE, raw_loadgen)
    dur = duration
    printed = False
    facts = []

    veth = by_kind.get("veth", [])
    if veth:
        rows = raw_veth_rows(veth, os.path.dirname(os.path.abspath(manifest)), notes)
        for e in veth:
            if e["tool"] == "loadgen" and e["pair"] in ("", "1"):
                facts.append(((e["r"] or {}).get("engine") or "packet", e["name"], packet_note(e["r"])))
        print(f"== raw: --pps max, 64-byte UDP across a 1-queue veth pair between two namespaces, {dur}s each",
              file=out)
        table(["tool", "round", "sent pps", "received pps (veth rx)", "received pps (lg receiver)", "lost",
               "lg/trafgen", "sender CPU ns/pkt", "CPU lg/trafgen"], rows, out)
        say(out, "Rounds interleave the tools (the order reversed in even rounds); median = each column's"
            " median over the rounds, lg/trafgen and CPU lg/trafgen the median of each round's ratio. The"
            " sender is on the first CPU and one receiver (trafgen's `loadgen serve`, loadgen's agent) is"
            " pinned to the last, where it spins (--busy-poll: veth delivers in the sender's context, which"
            " would pay for waking it; the packet receivers' row: rings that sleep). sender CPU ns/pkt ="
            " the sending tool's whole process tree's CPU over a window after warm-up, per packet the veth"
            " received (softirq work the kernel does in the sender's context counts where the kernel"
            " charges it). A row without a round is set against trafgen's median.")
        printed = True
    base = os.path.dirname(os.path.abspath(manifest))
    for kind, title, note in (
            ("scale", "scaling on a 2-queue veth pair", "Every tool's frames meet receivers in the receiving"
             " namespace (as many as senders; trafgen's a `loadgen serve`), on the same 2 CPUs as the senders."),
            ("wire", "scaling on a 2-queue veth pair, nothing received", "Every tool's frames go to a MAC no host"
             " has: the receiving veth counts them and its stack drops them at its first check (not for this"
             " host), so no receiving work shares the senders' CPUs, as on a NIC whose receiver is another"
             " host." + wire_ip_note(base))):
        entries = by_kind.get(kind, [])
        if not entries:
            continue
        if printed:
            print(file=out)
        print(f"== raw: {title}, 64-byte UDP, --pps max, {dur}s each", file=out)
        table(["tool", "round", "senders", "sent pps", "received pps (veth rx)", "received pps (lg receiver)",
               "x 1 sender", "x trafgen"], raw_senders_rows(entries, facts), out)
        say(out, note + " x 1 sender = the run over the same tool's (and engine's) 1-sender run of its round;"
            " x trafgen = a loadgen run over trafgen's with as many senders in its round; median = the median"
            " over the rounds (of each round's ratio for the ratios).")
        printed = True
    paced = by_kind.get("paced", [])
    if paced:
        rows = []
        for e in paced:
            r, reqf = e["r"], float(e["req"])
            err = "-" if not r or r.get("sent_pps") is None else f"{(r['sent_pps'] - reqf) / reqf * 100:+.2f}%"
            rows.append([e["label"], f"{reqf:,.0f}", cell_of(e, "sent_pps"), err, cell_of(e, "recv_pps"),
                         cell_of(e, "lost"), cell_of(e, "lag_max", "{:,.1f}", 1000.0), cell_of(e, "late")])
        if printed:
            print(file=out)
        engines = sorted({e["r"].get("engine") or "packet" for e in paced if e["tool"] == "loadgen" and e["r"]})
        which = " and ".join(engines or ["packet"]) + (" engines" if len(engines) > 1 else " engine")
        print(f"== raw: paced {which}, 64-byte UDP, {dur}s each", file=out)
        table(["tool", "requested pps", "sent pps", "error", "received pps", "lost", "lag max us", "late ops"],
              rows, out)
        say(out, "On a 1-queue veth into loadgen's agent; a (wire) row on the wire case's 2-queue veth, where"
            " nothing receives (received and lost: -). lag max = how far the schedule fell behind at worst; late"
            " ops = the sends that started more than one slot (1/rate) behind their scheduled time.")
        printed = True
    if printed:
        say(out, "veth rx = the receiving veth's rx_packets delta over the run / duration (what the veth"
            " delivered, before any socket drop; for loadgen it includes the few packets of its agent's"
            " control connection). lg receiver = loadgen's own receiver, an agent in the receiving"
            " namespace (a paired run): its received_pps, and lost = sent - received, counted exactly."
            " sent: trafgen = the tx veth's tx_packets + tx_dropped delta / duration; loadgen = its"
            " summary.sent_pps. lg/trafgen and x 1 sender compare veth rx. The --pps max runs have no"
            " ramp; the paced one's figures exclude its ramp.")
    for engine, name, note in dict.fromkeys(facts):
        if note:
            print(f"{engine} engine, {name}: {note}", file=out)
    for n in notes:
        print("note: " + n, file=out)


# ------------------------------------------------------------------ two targets --

TARGETS_FIELDS = ("name", "fst", "fjson", "fcpu", "lst", "ljson", "lcpu")


def loadgen_targets(path):
    """A loadgen run on several targets: its total (loadgen_disk) and each target's path, IOPS
    and the ratio of its device's I/Os to loadgen's (None where it has no crosscheck)."""
    doc = loadgen_doc(path)
    if doc is None:
        return None
    r = loadgen_disk(path)
    r["targets"] = [(key(t, "path"), num(key(t, "rate")), num((t.get("device_crosscheck") or {}).get("ratio")))
                    for t in key(doc, "targets")]
    return r


def _cores(path, base):
    c = cpu_result(resolve(path, base)) if path else None
    return num(c.get("cores")) if c and "error" not in c else None


def render_disk_targets(manifest, out=sys.stdout):
    """bench.sh disk's two-targets row: fio with a job per device against one loadgen run on both."""
    base = os.path.dirname(os.path.abspath(manifest))
    rows, notes = [], []
    for m in manifest_rows(manifest, TARGETS_FIELDS):
        f = fio_result(resolve(m["fjson"], base), "randread") if m["fst"] == "ok" else None
        g, why = parse(loadgen_targets, resolve(m["ljson"], base)) if m["lst"] == "ok" else (None, None)
        if m["fst"] != "ok":
            notes.append(f"{m['name']}: fio {m['fst']}")
        if m["lst"] != "ok" or g is None:
            notes.append(f"{m['name']}: loadgen {m['lst']}" + (f" ({why})" if why else ""))
        fc, gc = _cores(m["fcpu"], base), _cores(m["lcpu"], base)
        fi, gi = f and f["iops"], g and g["iops"]
        per_target = "; ".join(f"{os.path.basename(p)} {fmt(r)}" + (f" (device {c:.4f})" if c is not None else "")
                               for p, r, c in g["targets"]) if g else "-"
        rows.append([m["name"], fmt(fi), fmt(gi), ratio(gi, fi), fmt(fc, "{:.3f}"), fmt(gc, "{:.3f}"),
                     ratio(gc, fc), ratio(div(gc, gi), div(fc, fi)),
                     per_target])
    print("== disk: two zram devices in one run (4k randread, qd 32 each; fio a job per device, "
          "loadgen --target A,B with a worker each)", file=out)
    table(["case", "fio IOPS", "loadgen IOPS", "lg/fio", "fio cores", "lg cores", "cores lg/fio",
           "CPU/IO lg/fio", "loadgen per target (device I/Os / loadgen's)"], rows, out)
    say(out, "IOPS are the totals over both devices. cores = CPU time (utime+stime, plus reaped children) of "
        "each tool's whole process tree over the sampled window, per second; CPU/IO lg/fio = (cores / IOPS) "
        "of loadgen over fio's.")
    for n in notes:
        print("note: " + n, file=out)


# ------------------------------------------------------------------ stored directories --

SECTIONS = ("disk", "disk-targets", "net", "pacing", "raw")


def read_meta(results_dir):
    doc = load(os.path.join(results_dir, "meta.json"))
    return doc if isinstance(doc, dict) else {}


def render_section(section, manifest, duration, out=sys.stdout):
    if section == "disk":
        render_disk(manifest, out)
    elif section == "disk-targets":
        render_disk_targets(manifest, out)
    elif section == "net":
        render_net(manifest, duration, out)
    elif section == "raw":
        render_raw(manifest, duration, out)
    else:
        render_pacing(manifest, duration, out)


def render_dir(results_dir, out=sys.stdout):
    """Every section a stored results directory holds, in bench.sh's order; the count rendered."""
    meta, n = read_meta(results_dir), 0
    for section in SECTIONS:
        manifest = os.path.join(results_dir, f"{section}.manifest.tsv")
        if not os.path.exists(manifest):
            continue
        if n:
            print(file=out)
        render_section(section, manifest, meta.get("duration_s", "?"), out)
        n += 1
    return n


def main(argv):
    ap = argparse.ArgumentParser(prog="python3 -m bench.render", description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=SECTIONS + ("dir",))
    ap.add_argument("path", help="a section's manifest, or a results directory for `dir`")
    ap.add_argument("--duration", help="seconds per run, as printed (default: meta.json beside the manifest)")
    a = ap.parse_args(argv)
    if a.what == "dir":
        if render_dir(a.path) == 0:
            print(f"bench.render: no *.manifest.tsv in {a.path}", file=sys.stderr)
            return 1
        return 0
    duration = a.duration or read_meta(os.path.dirname(os.path.abspath(a.path))).get("duration_s", "?")
    render_section(a.what, a.path, duration)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
