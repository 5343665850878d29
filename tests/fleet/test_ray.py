"""loadgen across a real Ray cluster (issue 15): a head and two workers, each in its own network
namespace with its own IP on a shared bridge, and its own PID namespace (tests/fleet/raycluster.py).

The controller runs in the head's namespace, as a driver of the cluster. One cluster serves the
whole module; the node-lost test stops a worker, so it runs last. Nothing here asserts timing.

Pure logic (selectors, roles) is table-tested without a cluster.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from netns import children, clean_env, is_agent_job, loadgen_argv, netns_unavailable
from raycluster import Cluster, ray_unavailable

from loadgen.errors import UsageError
from loadgen.fleet import ray_fleet

RUN_TIMEOUT_S = 240   # a run on a busy 2-CPU machine: placing actors, clock probes, the job, teardown


def node(ip: str, labels=None, resources=None, alive=True) -> dict:
    return {"NodeID": ip.replace(".", ""), "NodeManagerAddress": ip, "Alive": alive,
            "Labels": labels or {}, "Resources": {"CPU": 1.0, **(resources or {})}}


@pytest.mark.parametrize("selector, labels, resources, picked", [
    ("role=server", {"role": "server"}, {}, True),
    ("role=server", {"role": "client"}, {}, False),
    ("role=server", {}, {"role_server": 1.0}, True),
    ("role_server", {}, {"role_server": 1.0}, True),
    ("role_server", {"role_server": "x"}, {}, False),
    ("big", {}, {"big": 0.0}, False),
])
def test_a_selector_picks_by_label_or_custom_resource(selector, labels, resources, picked):
    assert ray_fleet.matches(node("10.0.0.1", labels, resources), selector) is picked


def test_roles_default_to_the_first_node_receiving_and_the_rest_sending():
    nodes = [node("10.0.0.10"), node("10.0.0.9"), node("10.0.0.2", alive=False)]
    receiver, senders = ray_fleet.net_roles(nodes, None, None)
    assert receiver["NodeManagerAddress"] == "10.0.0.9"
    assert [n["NodeManagerAddress"] for n in senders] == ["10.0.0.10"]


def test_roles_refuse_a_selection_that_leaves_no_sender_or_two_receivers():
    nodes = [node("10.0.0.1", {"role": "server"}), node("10.0.0.2", {"role": "server"})]
    with pytest.raises(UsageError, match="one receiving node"):
        ray_fleet.net_roles(nodes, None, "role=server")
    with pytest.raises(UsageError, match="no Ray node is left to send"):
        ray_fleet.net_roles(nodes[:1], None, "role=server")
    with pytest.raises(UsageError, match="matches no live Ray node"):
        ray_fleet.net_roles(nodes, "role=client", None)


def test_a_silent_node_is_blamed_only_when_another_was_heard_since():
    pulse = ray_fleet.Pulse()
    pulse.heard = {"a": 10.0, "b": 12.0}
    assert pulse.others_heard_since("a", 11.0)        # b answered after a's poll went out
    assert not pulse.others_heard_since("b", 11.0)    # only b itself was heard since
    assert not pulse.others_heard_since("a", 12.0)    # nobody answered: the controller may have stalled


@pytest.mark.parametrize("silent_s, others_heard, lost", [
    (0.5, True, False),                                  # a poll on its way
    (ray_fleet.HEARTBEAT_DEADLINE_S, True, True),        # past the deadline while another node answered
    (ray_fleet.HEARTBEAT_DEADLINE_S, False, False),      # nobody answered: the controller may have stalled
    (ray_fleet.LONGEST_SILENCE_S, False, True),          # ... but not for ever
])
def test_a_node_is_lost_at_loadgens_own_heartbeat_deadline(silent_s, others_heard, lost):
    assert ray_fleet.silent(silent_s, others_heard) is lost


class ActorUnavailableError(Exception):
    pass


@pytest.mark.parametrize("message, line", [
    ("The actor 5be688a3 is unavailable: The actor is temporarily unavailable: RpcError: RPC error: "
     "recvmsg:Connection reset by peer rpc_code: 14. The task may or may not have been executed on the actor.",
     "The actor 5be688a3 is unavailable (ActorUnavailableError)"),
    ("", "ActorUnavailableError"),
    ("first line\nTraceback (most recent call last):", "first line (ActorUnavailableError)"),
])
def test_rays_error_about_a_node_is_one_short_line(message, line):
    assert ray_fleet.describe_ray_error(ActorUnavailableError(message)) == line


def test_rays_log_lines_go_to_a_file_not_the_terminal(tmp_path, monkeypatch, capfd):
    import logging
    import types

    def print_to_stdstream(data, ignore_prefix):
        print(*data["lines"])

    # Ray's error listener prints what the cluster publishes for the driver through this function.
    worker = types.SimpleNamespace(print_to_stdstream=print_to_stdstream)
    monkeypatch.setitem(sys.modules, "ray._private.worker", worker)
    monkeypatch.setattr(ray_fleet, "ray_log_path", lambda: tmp_path / "ray.log")
    logger = logging.getLogger("ray")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        ray_fleet.keep_ray_quiet()
        assert not (tmp_path / "ray.log").exists()      # made only when Ray logs something
        logging.getLogger("ray._private.worker").error("Unhandled error: ActorDiedError")
        worker.print_to_stdstream({"lines": ["A worker died or was killed"], "pid": "raylet", "is_err": False},
                                  ignore_prefix=False)
        for handler in logger.handlers:
            handler.flush()
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:], logger.level, logger.propagate = saved
    out, err = capfd.readouterr()
    assert "Unhandled error" not in out + err and "worker died" not in out + err
    log = (tmp_path / "ray.log").read_text()
    assert "ERROR ray._private.worker: Unhandled error: ActorDiedError" in log
    assert "WARNING ray: (raylet) A worker died or was killed" in log


def test_instance_type_comes_from_dmi_on_ec2_only(tmp_path):
    (tmp_path / "sys_vendor").write_text("Amazon EC2\n")
    (tmp_path / "product_name").write_text("c6in.8xlarge\n")
    assert ray_fleet.instance_type(tmp_path) == "c6in.8xlarge"
    (tmp_path / "sys_vendor").write_text("QEMU\n")
    assert ray_fleet.instance_type(tmp_path) is None
    assert ray_fleet.instance_type(tmp_path / "missing") is None


@pytest.mark.parametrize("args", [
    ("run", "PROFILE", "--ray", "auto"),
    ("run", "PROFILE", "--set", "ray=auto"),
    ("search", "net", "--ray", "auto"),
    ("search", "disk", "--ray", "auto"),
])
def test_run_and_search_refuse_ray_in_one_line(tmp_path, args):
    """Not silently ignored: a profile or a search would run here instead of on the cluster."""
    profile = Path(__file__).parents[2] / "profiles" / "smoke.toml"
    argv = [str(profile) if a == "PROFILE" else a for a in args]
    p = subprocess.run(loadgen_argv(*argv), cwd=tmp_path, capture_output=True, text=True, timeout=60, env=clean_env())
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and "ray" in lines[0]


def test_ray_options_need_ray(tmp_path):
    p = subprocess.run(loadgen_argv("net", "--ray-senders", "role=client"), cwd=tmp_path, capture_output=True,
                       text=True, timeout=60, env=clean_env())
    assert p.returncode == 2 and p.stderr.strip() == "loadgen: --ray-senders needs --ray"


# ---- a real cluster -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = netns_unavailable() or ray_unavailable()
    if why:
        pytest.skip(why)
    c = Cluster(tmp_path_factory.mktemp("ray"), {
        "w1": ["--resources", '{"role_client": 1}'],
        "w2": ["--labels", "role=server"],
    })
    try:
        yield c
    finally:
        c.close()


def run_on(cluster: Cluster, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = tmp_path / "r.json"
    p = subprocess.run(loadgen_argv(*args, "--ray", cluster.address, "--json", str(out),
                                    ns=cluster.nodes["head"].ns),
                       cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=clean_env())
    return p, json.loads(out.read_text()) if out.exists() else None


def decode_counts(b64: str) -> np.ndarray:
    h = HdrHistogram.decode(b64.encode("ascii"))
    return np.array([h.get_count_at_index(i) for i in range(h.counts_len)], dtype=np.uint64)


def test_fleet_status_lists_every_node_with_its_nics_and_selectors(cluster, tmp_path):
    p = subprocess.run(loadgen_argv("fleet", "status", "--ray", cluster.address, "--json",
                                    ns=cluster.nodes["head"].ns),
                       cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=clean_env())
    assert p.returncode == 0, p.stderr
    nodes = {n["ip"]: n for n in json.loads(p.stdout)}
    assert set(nodes) == {n.ip for n in cluster.nodes.values()}
    for n in nodes.values():
        assert "eth0" in n["nics"]      # each actor saw its own node's namespace
        assert n["instance_type"] is None  # not EC2
    assert nodes[cluster.nodes["w1"].ip]["resources"] == {"role_client": 1.0}
    assert nodes[cluster.nodes["w2"].ip]["labels"] == {"role": "server"}


def test_net_senders_on_two_nodes_and_the_receiver_on_the_third(cluster, tmp_path):
    p, doc = run_on(cluster, tmp_path, "net", "--ray-receivers", "role=server", "--mode", "echo",
                    "--pps", "20k", "--duration", "2s", "--ramp", "0s")
    assert p.returncode == 0, p.stderr
    s, hosts = doc["summary"], doc["hosts"]
    receiver_ip, sender_ips = cluster.nodes["w2"].ip, {cluster.nodes["head"].ip, cluster.nodes["w1"].ip}
    by_role = {"sender": [h for h in hosts if h["role"] == "sender"],
               "receiver": [h for h in hosts if h["role"] == "receiver"]}
    # Each host is named by its node's IP; the receiver bound its own node's IP and the senders aimed there.
    assert {h["agent"]["ip"] for h in by_role["sender"]} == sender_ips
    assert [h["agent"]["ip"] for h in by_role["receiver"]] == [receiver_ip]
    assert doc["config"]["target_address"].startswith(f"{receiver_ip}:")
    assert {n["ip"]: n["role"] for n in doc["config"]["ray"]["nodes"]} == {
        receiver_ip: "receiver", **{ip: "sender" for ip in sender_ips}}
    # Every datagram sent is received or lost, none twice; the hosts' sections add up to the totals.
    # (How many are lost is the bench's to measure: bench.sh ray, on a quiet machine.)
    assert s["sent"] > 0 and s["received"] > 0
    assert s["received"] + s["lost"] == s["sent"]
    assert sum(h["sent"] for h in by_role["sender"]) == s["sent"]
    assert sum(h["received"] for h in by_role["sender"]) == s["received"]
    # Every sender's clock offset was estimated, with its bound.
    assert all(h["clock"]["error_ns"] >= 0 for h in hosts)
    # The total histograms are the senders' added, bucket by bucket.
    for tag in ("latency", "service"):
        total = decode_counts(doc["histograms"][tag])
        parts = [decode_counts(h["histograms"][tag]) for h in by_role["sender"]]
        assert all(len(part) == len(total) for part in parts)
        assert np.array_equal(total, sum(parts[1:], parts[0]))
        assert int(total.sum()) == s["received"]


def test_net_one_way_the_receiving_node_counts_what_both_sending_nodes_sent(cluster, tmp_path):
    p, doc = run_on(cluster, tmp_path, "net", "--ray-receivers", "role=server", "--pps", "20k", "--duration", "2s",
                    "--ramp", "0s")
    assert p.returncode == 0, p.stderr
    s, hosts = doc["summary"], doc["hosts"]
    senders = [h for h in hosts if h["role"] == "sender"]
    [receiver] = [h for h in hosts if h["role"] == "receiver"]
    assert receiver["agent"]["ip"] == cluster.nodes["w2"].ip and len(senders) == 2
    assert s["measured_at"] == "receiver" and s["sent"] > 0 and s["received"] > 0
    assert sum(h["sent"] for h in senders) == s["sent"]
    assert receiver["received"] == s["received"]
    assert s["received"] + s["lost"] == s["sent"]
    # Each interval's hosts add up to the interval too.
    for row in doc["intervals"]:
        assert sum(h["ops"] for h in row["hosts"].values() if h["role"] == "sender") == row["ops"]
        assert sum(h["ops"] for h in row["hosts"].values() if h["role"] == "receiver") == row["received"]


def test_disk_on_every_node_gives_each_its_iops_and_the_total(cluster, tmp_path):
    p, doc = run_on(cluster, tmp_path, "disk", "--size", "16m", "--workers", "1", "--qd", "4",
                    "--duration", "2s", "--ramp", "0s")
    assert p.returncode == 0, p.stderr
    hosts = doc["hosts"]
    assert {h["agent"]["ip"] for h in hosts} == {n.ip for n in cluster.nodes.values()}
    assert all(h["ops"] > 0 and h["rate"] > 0 for h in hosts)
    assert sum(h["ops"] for h in hosts) == doc["summary"]["ops"]
    total = decode_counts(doc["histograms"]["latency"])
    parts = [decode_counts(h["histograms"]["latency"]) for h in hosts]
    assert np.array_equal(total, sum(parts[1:], parts[0]))
    for h in hosts:   # the human summary names each node with its IOPS
        assert f"host {h['host']}: IOPS=" in p.stdout


def start_long_run(cluster: Cluster, tmp_path, out: Path) -> subprocess.Popen:
    """A 60 s one-way run from head and w1 to w2, once every node measures."""
    argv = loadgen_argv("net", "--ray", cluster.address, "--ray-receivers", "role=server", "--pps", "5k",
                        "--duration", "60s", "--ramp", "0s", "--interval", "500ms", "--json", str(out),
                        ns=cluster.nodes["head"].ns)
    controller = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=clean_env())
    # With --json to a file the human lines go to stdout; an interval line means every node is
    # measuring. Reading ends at the first one, or at end of file if the run ends first.
    for line in controller.stdout:
        if line.startswith("["):
            break
    assert controller.poll() is None, "the run ended before the node could be lost"
    return controller


def check_partial_result(controller: subprocess.Popen, stdout: str, stderr: str, out: Path, node_ip: str) -> str:
    """Exit 1, one line from loadgen naming the node and nothing of Ray's on the terminal (no log
    lines, no traceback, none of the messages Ray prints for a driver), and the measured part kept
    in the document; the line."""
    assert controller.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert all(line.startswith("loadgen: ") for line in lines), stderr
    assert "(raylet)" not in stdout and "Traceback" not in stdout, stdout
    assert node_ip in lines[-1]
    doc = json.loads(out.read_text())
    assert doc["failed"] and node_ip in doc["stop_reason"]
    assert doc["summary"]["sent"] > 0   # what was measured before the loss is kept
    return lines[-1]


def test_a_frozen_node_is_lost_by_loadgens_own_heartbeat(cluster, tmp_path):
    """w1's actor stopped (SIGSTOP), its node and connections left up: Ray sees nothing wrong, so only
    loadgen's heartbeat deadline can end the run. Resumed afterwards; removing the run's placement
    group has ended that actor, and the node takes the next run's."""
    frozen = cluster.nodes["w1"]
    out = tmp_path / "r.json"
    controller = start_long_run(cluster, tmp_path, out)
    actors = []
    try:
        actors = [pid for pid in frozen.pids("ray::NodeActor") if any(map(is_agent_job, children(pid)))]
        assert len(actors) == 1, actors
        os.kill(actors[0], signal.SIGSTOP)
        frozen_s = time.monotonic()
        stdout, stderr = controller.communicate(timeout=RUN_TIMEOUT_S)
        exited_s = time.monotonic()
    finally:
        for pid in actors:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass    # ended with the run's placement group
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    print(f"\nnode frozen: the controller exited {exited_s - frozen_s:.2f} s after the node's actor stopped")
    assert "no heartbeat" in check_partial_result(controller, stdout, stderr, out, frozen.ip)


def test_a_node_lost_mid_run_gives_a_partial_result_naming_it(cluster, tmp_path):
    """Runs last: the worker it stops stays stopped. How long the controller took to give up after the
    node died is printed (pytest -s), not asserted: issue 15 wants it within 5 s."""
    lost = cluster.nodes["w1"]
    out = tmp_path / "r.json"
    controller = start_long_run(cluster, tmp_path, out)
    try:
        raylet = lost.pids("raylet")
        stopping = threading.Thread(target=lost.stop)
        stopping.start()
        died_s = wait_gone(raylet)   # ray stop's own start-up takes seconds: time from the node's death
        stdout, stderr = controller.communicate(timeout=RUN_TIMEOUT_S)
        exited_s = time.monotonic()
        stopping.join(RUN_TIMEOUT_S)
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
    print(f"\nnode lost: the controller exited {exited_s - died_s:.2f} s after the node's raylet died")
    check_partial_result(controller, stdout, stderr, out, lost.ip)


def wait_gone(pids: list[int], timeout_s: float = RUN_TIMEOUT_S) -> float:
    """When the first of pids ended (time.monotonic())."""
    assert pids, "no such process on the node"
    deadline = time.monotonic() + timeout_s
    while all(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "the node's processes did not end"
        time.sleep(0.01)
    return time.monotonic()


def test_without_ray_the_ray_option_says_how_to_get_it(tmp_path):
    # ray made unimportable in this one process, as on a host without the extra.
    code = "import sys; sys.modules['ray'] = None; from loadgen.cli import main; main()"
    argv = [sys.executable, "-c", code, "net", "--ray", "auto", "--duration", "1s"]
    p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60, env=clean_env())
    assert p.returncode == 1
    assert p.stderr.strip() == "loadgen: --ray needs the ray extra: pip install 'loadgen[ray]'"
