"""Live metrics: what a run has counted so far, served over HTTP for Prometheus (--metrics).

Families (prometheus-client serves them as Prometheus text or OpenMetrics, as
the scraper asks); every series has a `host` label ("local": this process's
host, else the agent's HOST:PORT) and a `role` label (disk, sender, receiver):
  loadgen_ops_total                operations done: I/Os (disk), datagrams sent (sender)
  loadgen_received_total           datagrams received, duplicates left out: echoes
                                   back at an echo sender, arrivals at a receiver
  loadgen_errors_total             operations that failed
  loadgen_latency_seconds          histogram: latency from the scheduled time (disk
                                   I/Os, echo round trips)
  loadgen_oneway_latency_seconds   histogram: one-way delay at a receiver (across
                                   hosts, as good as their clocks' agreement)
  loadgen_jobs_running, loadgen_jobs_finished_total   (no labels)

Rules:
- The values are the document's: they come from the controller's cumulative
  snapshots at the end of each interval (consistent ones only, loadgen.run.stats),
  so after the last interval they equal the final document's totals exactly.
- Histogram buckets are fixed, as a Prometheus histogram's must be: a 1-2-5
  series from 1 us to 10 s, each bound raised to the top of the HDR bucket
  holding it (histogram.bucket_top_ns). The count at every bound is then exact,
  and on the same grid as the document's percentiles. _sum is the document's
  mean times its count.
- Counters only grow over the process's life: an agent adds each finished
  job's counts to what earlier jobs left.
- The server runs on its own thread; the run hands it finished values under a
  lock and never waits for a scrape.
"""
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from loadgen.errors import SetupError, UsageError
from loadgen.results import histogram
from loadgen.run.stats import Snapshot
from loadgen.units import parse_duration_ns

DEFAULT_HOST = "127.0.0.1"
BOUNDS_NS = [histogram.bucket_top_ns(m * 10**e) for e in range(3, 10) for m in (1, 2, 5)] + [
    histogram.bucket_top_ns(10**10)]
MAX_LINGER_NS = 3600 * 10**9

COUNTERS = {
    "ops": "Operations done: I/Os (role disk), datagrams sent (role sender).",
    "received": "Datagrams received, duplicates left out: echoes at an echo sender, arrivals at a receiver.",
    "errors": "Operations that failed.",
}
HISTOGRAMS = {
    "latency": "Latency from the scheduled time: disk I/Os, echo round trips.",
    "oneway_latency": "One-way delay at a receiver; across hosts only as exact as their clocks agree.",
}
ROLES = ("disk", "sender", "receiver")


def parse_address(text: str) -> tuple[str, int]:
    """'[ADDR:]PORT' -> (addr, port); ADDR defaults to 127.0.0.1, '[v6]:PORT' for IPv6."""
    text = str(text).strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host = DEFAULT_HOST
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    bad = not port.isdigit() or int(port) > 65535 or (sep and (not host or "[" in host or "]" in host))
    if bad or (":" in host and not text.startswith("[")):
        raise UsageError(f"invalid --metrics: {text!r} (expected [ADDR:]PORT, such as 9100 or 0.0.0.0:9100)")
    return host, int(port)


def parse_linger_ns(text: str) -> int:
    """--metrics-linger: a duration from 0s to MAX_LINGER_NS."""
    linger_ns = parse_duration_ns(text, "metrics-linger")
    if not 0 <= linger_ns <= MAX_LINGER_NS:
        raise UsageError(f"invalid metrics-linger: {text!r} (0s to 1h)")
    return linger_ns


@dataclass(frozen=True)
class Part:
    """Rows of a run's snapshots that one host ran in one role."""

    host: str
    role: str
    rows: slice | None = None   # None: every row
    echo: bool = False          # a sender that times echoes


@dataclass
class Sample:
    """One host and role's cumulative counts."""

    counters: dict[str, int] = field(default_factory=dict)
    hists: dict[str, np.ndarray] = field(default_factory=dict)

    def plus(self, other: "Sample") -> "Sample":
        counters = dict(self.counters)
        for k, v in other.counters.items():
            counters[k] = counters.get(k, 0) + v
        hists = dict(self.hists)
        for k, v in other.hists.items():
            hists[k] = hists[k] + v if k in hists else v.copy()
        return Sample(counters, hists)


def sample(part: Part, cumulative: Snapshot) -> Sample:
    """What a part's rows counted, named as the document names it (net/job.py, results/result.py)."""
    s = cumulative if part.rows is None else cumulative.rows(part.rows)
    unique = s.counter("received") - s.counter("duplicated")   # as net._unique
    if part.role == "disk":
        return Sample({"ops": s.counter("ops_read") + s.counter("ops_write"), "errors": s.counter("errors")},
                      {"latency": s.hist("latency_read", "latency_write")})
    if part.role == "sender":
        if part.echo:
            return Sample({"ops": s.counter("sent"), "received": unique, "errors": s.counter("errors")},
                          {"latency": s.hist("latency_packet")})
        return Sample({"ops": s.counter("sent"), "errors": s.counter("errors")})
    return Sample({"received": unique, "errors": s.counter("errors")}, {"oneway_latency": s.hist("latency_packet")})


def histogram_buckets(counts: np.ndarray) -> tuple[list[tuple[str, int]], float]:
    """(buckets as (le in seconds, count at or below), sum in seconds) of an HDR counts array."""
    from prometheus_client.utils import floatToGoString

    at = histogram.counts_at_or_below(counts, BOUNDS_NS)
    buckets = [(floatToGoString(b / 1e9), n) for b, n in zip(BOUNDS_NS, at)]
    buckets.append(("+Inf", int(np.asarray(counts, dtype=np.uint64).sum())))
    return buckets, histogram.midpoint_sum_ns(counts) / 1e9


class Exporter:
    """The metrics a process serves: finished jobs' totals plus each running job's latest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: dict[tuple[str, str], Sample] = {}
        self._live: dict[int, dict[tuple[str, str], Sample]] = {}
        self._next_job = 0
        self._finished = 0
        self.final_scraped = threading.Event()   # a scrape has seen every job finished
        self._server = None
        self.address: tuple[str, int] | None = None

    # -- the run's side ------------------------------------------------------------------------

    def feed(self, parts: Callable[[], list[Part]]) -> "Feed":
        """A new job's feed; parts() names its rows once the run has started."""
        with self._lock:
            self._next_job += 1
            self._live[self._next_job] = {}
            self.final_scraped.clear()
            return Feed(self, self._next_job, parts)

    def _publish(self, job: int, samples: dict[tuple[str, str], Sample], finished: bool) -> None:
        with self._lock:
            if finished:
                self._live.pop(job, None)
                for key, s in samples.items():
                    self._base[key] = self._base[key].plus(s) if key in self._base else s
                self._finished += 1
            elif job in self._live:
                self._live[job] = samples

    # -- the server's side ---------------------------------------------------------------------

    def collect(self):
        """prometheus-client's Collector interface: the families, as of now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        with self._lock:
            totals = dict(self._base)
            for live in self._live.values():
                for key, s in live.items():
                    totals[key] = totals[key].plus(s) if key in totals else s
            running, finished = len(self._live), self._finished
            if not running and finished:
                self.final_scraped.set()
        keys = sorted(totals, key=lambda k: (k[0] != "local", k[0], ROLES.index(k[1])))
        for name, text in COUNTERS.items():
            family = CounterMetricFamily(f"loadgen_{name}", text, labels=["host", "role"])
            for key in keys:
                if name in totals[key].counters:
                    family.add_metric(list(key), totals[key].counters[name])
            yield family
        for name, text in HISTOGRAMS.items():
            family = HistogramMetricFamily(f"loadgen_{name}_seconds", text, labels=["host", "role"], unit="seconds")
            for key in keys:
                if name in totals[key].hists:
                    buckets, sum_s = histogram_buckets(totals[key].hists[name])
                    family.add_metric(list(key), buckets, sum_s)
            yield family
        yield GaugeMetricFamily("loadgen_jobs_running", "Runs under way in this process.", value=running)
        yield CounterMetricFamily("loadgen_jobs_finished", "Runs finished in this process.", value=finished)

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Start serving on host:port (0: any free port); the address bound. SetupError if it cannot."""
        from prometheus_client import start_http_server
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server, _ = start_http_server(port, host, registry=registry)
        except OSError as e:
            raise SetupError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        # The scrape that sees the final counts ends --metrics-linger from inside collect(),
        # before its response is written: request threads must be joined by close(), not
        # dropped with the process (prometheus-client makes them daemons).
        self._server.daemon_threads = False
        self._server.block_on_close = True
        bound = self._server.server_address
        self.address = (bound[0], bound[1])
        return self.address

    def url(self) -> str:
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"

    def linger(self, timeout_ns: int, interrupted: Callable[[], bool] = lambda: False) -> None:
        """Keep serving after the run until a scrape has seen its final counts, at most timeout_ns,
        or until interrupted() says a signal came."""
        deadline = timeout_ns / 1e9
        waited = 0.0
        while waited < deadline and not interrupted():
            step = min(0.05, deadline - waited)
            if self.final_scraped.wait(step):
                return
            waited += step

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def feed(exporter: "Exporter | None", parts: Callable[[], list[Part]]) -> "Feed | None":
    """A job's feed when the process serves metrics, else None."""
    return exporter.feed(parts) if exporter is not None else None


class Feed:
    """One job's side of the exporter: observe() its cumulative snapshots, then finish()."""

    def __init__(self, exporter: Exporter, job: int, parts: Callable[[], list[Part]]) -> None:
        self.exporter, self.job, self.parts = exporter, job, parts
        self._last: dict[tuple[str, str], Sample] = {}
        self.done = False

    def _samples(self, cumulative: Snapshot) -> dict[tuple[str, str], Sample]:
        out: dict[tuple[str, str], Sample] = {}
        for part in self.parts():
            s = sample(part, cumulative)
            key = (part.host, part.role)
            out[key] = out[key].plus(s) if key in out else s
        return out

    def observe(self, cumulative: Snapshot) -> None:
        """A consistent cumulative snapshot of the job: the values to serve from now."""
        if not self.done:
            self._last = self._samples(cumulative)
            self.exporter._publish(self.job, self._last, finished=False)

    def finish(self, final: Snapshot | None = None) -> None:
        """The job is over: its final snapshot (or the last observed) joins the process's totals."""
        if self.done:
            return
        self.done = True
        if final is not None:
            self._last = self._samples(final)
        self.exporter._publish(self.job, self._last, finished=True)
