"""An agent that goes silent mid-run: SIGSTOP, the controller notices, SIGCONT, the agent recovers.

The README: "An agent that dies, hangs or is cut off is noticed after 3 s without a
heartbeat: the others stop, the measured part is written, the failure is named, and
the exit code is 1." A stopped process keeps its TCP connection open, so only the
missing heartbeat can tell the controller (test_agent.py covers an agent killed,
whose connection closes). Every agent listens on 127.0.0.1:0 and reports its port;
every wait is bounded and none is asserted.
"""
import json
import os
import signal

from netns import is_agent_job, wait_until
from test_agent import (agent, agents, assert_paired_ok, controllers, paired_net, running_job,  # noqa: F401
                        token)


def test_a_stopped_agent_is_noticed_by_its_silence_and_named(agent, token, tmp_path, controllers):  # noqa: F811
    json_path = tmp_path / "r.json"
    c = controllers("net", "--peer", agent.address, "--pps", "10k", "--duration", "60s", "--ramp", "0s",
                    "--interval", "200ms", "--token-file", str(token), "--json", str(json_path), tty=True)
    job_pid, _ = running_job(agent, c)
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        # The controller ends the run on its own, long before the 60 s it was given: nothing
        # else could end it, since the agent can neither answer nor close the connection.
        done = c.finish(timeout_s=45)
        assert agent.alive(), "SIGSTOP must stop the agent, not end it"
    finally:
        os.kill(agent.pid, signal.SIGCONT)

    line = done.error_line(1)
    assert "stopped answering" in line and "without a heartbeat" in line, line
    assert agent.address in line
    doc = json.loads(json_path.read_text())
    assert (doc["failed"], doc["interrupted"]) == (True, False)
    assert doc["stop_reason"] in line
    s = doc["summary"]
    assert s["sent"] > 0 and "note" in s            # the measured part, marked approximate at its end
    assert sum(r["ops"] for r in doc["intervals"]) == s["sent"]
    receiver = next(h for h in doc["hosts"] if h["role"] == "receiver")
    assert receiver["host"] == agent.address and 0 <= receiver["received"] <= s["sent"]

    # Resumed, the agent finds its controller gone: it ends the job and serves the next one.
    wait_until(lambda: not agent.jobs() and not is_agent_job(job_pid), 30,
               "the resumed agent to end the job of a controller that left")
    assert agent.alive()
    done, doc = paired_net(tmp_path, agent, token, json_name="after.json")
    s = assert_paired_ok(done, doc)
    assert s["sent"] > 0 and s["received"] == s["sent"]


def test_a_stopped_sender_agent_fails_the_run_and_the_others_stop(agents, token, tmp_path, controllers):  # noqa: F811
    """Senders on two agents, the receiver on a third; the one stopped is the one named."""
    receiver = agents("--token-file", str(token), name="receiver")
    quiet, stopped = (agents("--token-file", str(token), name=n) for n in ("quiet", "stopped"))
    json_path = tmp_path / "r.json"
    c = controllers("net", "--peer", receiver.address, "--clients", f"{quiet.address},{stopped.address}",
                    "--pps", "10k", "--duration", "60s", "--ramp", "0s", "--interval", "200ms",
                    "--token-file", str(token), "--json", str(json_path), tty=True)
    wait_until(c.measuring, 30, "the controller to report datagrams sent")
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        done = c.finish(timeout_s=45)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)

    line = done.error_line(1)
    assert "stopped answering" in line and stopped.address in line, line
    assert quiet.address not in line and receiver.address not in line
    doc = json.loads(json_path.read_text())
    assert doc["failed"] is True and doc["stop_reason"] in line
    hosts = {h["host"]: h for h in doc["hosts"]}
    assert set(hosts) == {receiver.address, quiet.address, stopped.address}
    assert doc["summary"]["sent"] == hosts[quiet.address]["sent"] + hosts[stopped.address]["sent"]
    assert hosts[quiet.address]["sent"] > 0

    # Every agent, the resumed one too, ends its job once the controller is gone.
    for a in (receiver, quiet, stopped):
        wait_until(lambda a=a: not a.jobs(), 30, f"{a.address} to end its job")
        assert a.alive()
