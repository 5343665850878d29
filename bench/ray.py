"""The ray section: `loadgen net --ray` across a 3-node Ray cluster in network namespaces.

Issue 15's run: senders on two nodes, the receiver on the third, 200k pps in all
(100k from each sending node), one way. The cluster is the Ray tests' own
(tests/fleet/raycluster.py): a head and two workers, each in its own network and
PID namespace with its own IP on a veth to a shared bridge. Each node runs on
its own CPU (taskset), as if it were a machine of its own: a job pins its
workers to the first CPUs it may use, so nodes sharing every CPU would all pin
to CPU 0. With more nodes than CPUs they wrap round (the receiver shares the
first sender's CPU on a 2-CPU machine). The bridge calls no netfilter hooks
(bridge-nf-call-*=0 in its namespace): a fabric, not a firewall.

It measures and prints, never asserts: sent, received, loss, and each node's
section, from the result document it keeps.

    python3 -m bench.ray run --out DIR [--pps 200k] [--duration 10] [--ramp 1] [--prefix NAME]
    python3 -m bench.ray show DIR/ray.json        # print a kept result again

Root only (namespaces); needs ray, taskset, unshare and nsenter.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
NODES = ("head", "w1", "w2")   # head and w1 send, w2 (labelled role=server) receives


def node_cpus(n_cpus: int) -> dict[str, str]:
    """A CPU per node, the senders first: on 2 CPUs the receiver wraps round to the head's."""
    return {name: str(i % n_cpus) for i, name in enumerate(NODES)}


def start_cluster(tmp: Path, prefix: str | None):
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fleet")]
    from raycluster import Cluster, ray_unavailable

    why = ray_unavailable()
    if why:
        raise SystemExit(f"bench.ray: {why}")
    workers = {"w1": ["--resources", '{"role_client": 1}'], "w2": ["--labels", "role=server"]}
    cluster = Cluster(tmp, workers, cpus=node_cpus(len(os.sched_getaffinity(0))),
                      prefix=prefix or f"lgb-ray-{os.getpid()}")
    try:
        subprocess.run(["ip", "netns", "exec", cluster.hub.hub, "sysctl", "-qw",
                        "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0",
                        "net.bridge.bridge-nf-call-arptables=0"], capture_output=True, timeout=30)
    except BaseException:
        cluster.close()
        raise
    return cluster


def run(out_dir: Path, pps: str, duration_s: str, ramp_s: str, prefix: str | None = None) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    doc_path = out_dir / "ray.json"
    with tempfile.TemporaryDirectory(prefix="lgb-ray-") as tmp:
        print("starting a 3-node Ray cluster in namespaces ...", file=sys.stderr, flush=True)
        cluster = start_cluster(Path(tmp), prefix)
        try:
            argv = ["ip", "netns", "exec", cluster.nodes["head"].ns, sys.executable, "-m", "loadgen", "net",
                    "--ray", cluster.address, "--ray-receivers", "role=server", "--pps", pps,
                    "--duration", f"{duration_s}s", "--ramp", f"{ramp_s}s", "--json", str(doc_path), "--quiet"]
            (out_dir / "ray.cmd").write_text(" ".join(argv) + "\n")
            print(f"cpus per node: {cluster.cpus}", file=sys.stderr)
            print(" ".join(argv), file=sys.stderr, flush=True)
            p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                               env=dict(os.environ, PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"))
            (out_dir / "ray.err").write_text(p.stderr)
        finally:
            cluster.close()
    if not doc_path.exists():
        print(f"bench.ray: loadgen wrote no result (exit {p.returncode}): {p.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    print(render(json.loads(doc_path.read_text())))
    if p.stderr.strip():
        print(p.stderr.strip())
    return 0


def render(doc: dict) -> str:
    """The run's totals, then a line per node."""
    s, c = doc["summary"], doc["config"]
    loss = f"{100 * s['loss_ratio']:.3f}%" if s.get("loss_ratio") is not None else "?"
    lines = [
        f"ray: net {c['mode']} {c['size_bytes']}-byte datagrams, requested {c['pps']} pps over "
        f"{len(c['clients'])} sending nodes, {s['duration_s']} s",
        f"  sent      {s['sent']:>12,}  {s['sent_pps']:>12,.0f} pps",
        f"  received  {s['received']:>12,}  {s['received_pps']:>12,.0f} pps   lost {s['lost']:,} ({loss})",
        f"  schedule  late {s['schedule_lag_ns']['late_ops']:,}, never sent {s['schedule_lag_ns']['unsent']:,}, "
        f"max lag {s['schedule_lag_ns']['max'] / 1e6:.1f} ms",
    ]
    for h in doc["hosts"]:
        n = h["sent"] if h["role"] == "sender" else h["received"]
        rate = h["sent_pps"] if h["role"] == "sender" else h["received_pps"]
        verb = "sent" if h["role"] == "sender" else "received"
        clock = h.get("clock") or {}
        lines.append(f"  {h['role']:<8}  {h['host']:<32} {verb:>8} {n:>12,}  {rate:>12,.0f} pps  "
                     f"clock ± {clock.get('error_ns', 0) / 1e3:.0f} us")
    parts = sum(h["sent"] for h in doc["hosts"] if h["role"] == "sender")
    lines.append(f"  the senders' sections add up to the total sent: {parts == s['sent']}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.ray", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--pps", default="200k")
    r.add_argument("--duration", default="10")
    r.add_argument("--ramp", default="1")
    r.add_argument("--prefix", help="the namespaces' names start with this (default lgb-ray-PID)")
    show = sub.add_parser("show")
    show.add_argument("path", type=Path)
    a = ap.parse_args(argv)
    if a.what == "show":
        print(render(json.loads(a.path.read_text())))
        return 0
    if os.geteuid() != 0:
        print("bench.ray: skipped: needs root (network namespaces)", file=sys.stderr)
        return 0
    return run(a.out, a.pps, a.duration, a.ramp, a.prefix)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
