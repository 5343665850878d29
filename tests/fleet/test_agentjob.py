"""A job run in-process through agentjob.frames(): the frames the job process writes, and the
same preparation a local run makes.

Runs are short (a few hundred ms at a few thousand operations per second) and bounded;
traffic stays on loopback, disk I/O in the test's temporary directory. The job process
itself, under a real agent, is tested in test_agent.py.
"""
import asyncio
import contextlib

from loadgen.disk import job as disk_job
from loadgen.fleet import agentjob
from loadgen.fleet.agent import open_disk_target, validate_job
from loadgen.run import native
from loadgen.run.stats import Snapshot, decode_words
from loadgen.workload import parse_disk, parse_net

MS = 1_000_000


async def collect(job: dict, control_after_ready) -> list[dict]:
    """Every frame of job; control_after_ready(control, ready) is called once "ready" is out."""
    control = agentjob.Control()
    out = []
    async with contextlib.aclosing(agentjob.frames(job, control)) as frames:
        async for frame in frames:
            out.append(frame)
            if frame["type"] == "ready":
                control_after_ready(control, frame)
    return out


def go_now(duration_ms: int):
    def go(control: agentjob.Control, ready: dict) -> None:
        start = native.now_ns() + 20 * MS
        control.go({"start_ns": start, "ramp_end_ns": start, "end_ns": start + duration_ms * MS})
    return go


def final(frames: list[dict]) -> Snapshot:
    assert frames[-1]["type"] == "done"
    return Snapshot(native.Layout(), decode_words(frames[-1]["words"]), 0)


def test_a_bad_job_is_one_error_frame():
    frames = asyncio.run(collect({"kind": "fork-bomb", "options": {}}, go_now(100)))
    assert frames == [{"type": "error", "code": "usage", "message": "unknown job kind 'fork-bomb'"}]


def test_a_send_job_without_a_target_is_refused_as_bad_input():
    frames = asyncio.run(collect({"kind": "udp-send", "options": parse_net(pps="1k").to_wire()}, go_now(100)))
    assert [(f["type"], f["code"]) for f in frames] == [("error", "usage")]


def test_stopped_before_go_it_ends_after_ready_and_closes_its_sockets():
    spec = parse_net(pps="1k", receivers=2)
    job = {"kind": "udp-receive", "run_tag": 7, "bind": "127.0.0.1", "options": spec.to_wire(port=0, target=None)}
    frames = asyncio.run(collect(job, lambda control, ready: control.stop()))
    (ready,) = frames
    assert ready["type"] == "ready" and ready["workers"] == 2 and len(ready["cpus"]) == 2 and ready["port"] > 0
    # closed: the port is free to bind again, alone
    again = agentjob.prepare(job | {"options": spec.to_wire(port=ready["port"], target=None)})
    again.close()


def test_a_sender_and_a_receiver_in_process_count_the_same_datagrams():
    spec = parse_net(pps="2k", duration="300ms", ramp="0s", timeout="200ms", workers=1, receivers=1)

    async def both() -> tuple[list[dict], list[dict]]:
        recv_control, send_control = agentjob.Control(), agentjob.Control()
        recv_job = {"kind": "udp-receive", "run_tag": 99, "bind": "127.0.0.1",
                    "options": spec.to_wire(port=0, target=None)}
        receiver = agentjob.frames(recv_job, recv_control)
        recv_ready = await anext(receiver)
        send_job = {"kind": "udp-send", "run_tag": 99, "flow_base": 0,
                    "options": spec.to_wire(target=f"127.0.0.1:{recv_ready['port']}")}
        sender = agentjob.frames(send_job, send_control)
        send_ready = await anext(sender)
        start = native.now_ns() + 50 * MS
        timeline = {"start_ns": start, "ramp_end_ns": start, "end_ns": start + 300 * MS}
        recv_control.go(timeline)
        send_control.go(timeline)
        async with contextlib.aclosing(receiver), contextlib.aclosing(sender):
            sent, received = await asyncio.gather(_rest(sender), _rest(receiver))
        return [send_ready, *sent], [recv_ready, *received]

    sent, received = asyncio.run(both())
    assert [f["type"] for f in sent][0] == "ready" and sent[0]["family"] in (2, 10)
    assert {f["type"] for f in sent[1:-1]} <= {"snapshot"} and {f["type"] for f in received[1:-1]} <= {"snapshot"}
    n_sent, n_received = final(sent).counter("sent"), final(received).counter("received")
    assert 0 < n_received <= n_sent
    assert final(received).counter("foreign") == 0   # both carry run tag 99


async def _rest(frames) -> list[dict]:
    return [f async for f in frames]


def test_a_disk_job_in_process_has_the_facts_a_local_run_has(tmp_path):
    spec = parse_disk(target=str(tmp_path / "t"), size="4m", duration="200ms", ramp="0s", workers=1, qd=2,
                      iops="2k")
    job, _ = validate_job({"kind": "disk", "options": spec.to_wire()}, [tmp_path])
    job.update(open_disk_target(spec, [tmp_path])[0])
    frames = asyncio.run(collect(job, go_now(200)))
    ready = frames[0]
    assert ready["type"] == "ready" and ready["workers"] == 1
    done = final(frames)
    assert done.counter("ops_read") + done.counter("ops_write") > 0
    assert done.counter("errors") == 0
    # The local run's own preparation of the same spec says the same things.
    local = disk_job.prepare(spec)
    try:
        facts = local.facts()
    finally:
        local.close()
    assert set(facts) == set(ready) - {"type", "workers", "layout", "env"}
    assert {k: ready[k] for k in ("engine", "target_kind", "span_bytes", "cpus")} == \
           {k: facts[k] for k in ("engine", "target_kind", "span_bytes", "cpus")}
    assert decode_words(frames[-1]["words"]).shape == (1, native.Layout().words)
