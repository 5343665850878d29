"""Planning a paired run: how the rate is shared among client agents, and which IP family sizes the wire.

The agents are fakes that record what they are asked to prepare; nothing is sent.
A run across real agents is tested in fleet/test_agent.py.
"""
import asyncio
import socket

import pytest

from loadgen.errors import UsageError
from loadgen.net.job import _prepare_paired, split_rate
from loadgen.workload import parse_net


@pytest.mark.parametrize("rate_pps, parts, rates", [
    (2_000_000, 3, [666_667, 666_667, 666_666]),
    (10, 1, [10]),
    (10, 4, [3, 3, 2, 2]),
    (3, 3, [1, 1, 1]),
    (2, 3, [1, 1, 0]),
    (7, 7, [1] * 7),
])
def test_split_rate(rate_pps, parts, rates):
    assert split_rate(rate_pps, parts) == rates


@pytest.mark.parametrize("parts", range(1, 17))
def test_split_rate_adds_up_exactly(parts):
    for rate_pps in (parts, 999_999, 1_000_000, 2_000_000, 12_345_679):
        rates = split_rate(rate_pps, parts)
        assert sum(rates) == rate_pps and max(rates) - min(rates) <= 1


class FakeClock:
    def as_dict(self) -> dict:
        return {"offset_ns": 0, "rtt_ns": 0, "error_ns": 0}


class FakePrepared:
    def __init__(self, ready: dict) -> None:
        self.ready = ready
        self.workers = 2


class FakeAgent:
    """Records each prepare request; a receive job answers with its data port."""

    def __init__(self, name: str) -> None:
        self.name = name   # as AgentClient names itself: HOST:PORT
        self.requests: list[dict] = []
        self.clock, self.info = FakeClock(), {"cpus": 1}

    async def prepare(self, request: dict) -> FakePrepared:
        self.requests.append(request)
        return FakePrepared({"port": 9} if request["kind"] == "udp-receive" else {})


def plan(pps: str, peer_host: str, n_clients: int):
    peer = (peer_host, 7000)
    clients = [(peer_host, 7001 + i) for i in range(n_clients)]
    agents = {addr: FakeAgent(f"{addr[0]}:{addr[1]}") for addr in [peer, *clients]}
    spec = parse_net(pps=pps, duration="1s")
    result = asyncio.run(_prepare_paired(spec, peer, clients, agents, []))
    sent_pps = [r["options"]["pps"] for addr in clients for r in agents[addr].requests]
    return result, sent_pps


def test_clients_share_the_whole_rate():
    """2M pps over 3 clients: 2,000,000 in all, not 3 x 666,666."""
    _, sent_pps = plan("2M", "127.0.0.1", 3)
    assert sent_pps == [666_667, 666_667, 666_666]
    assert sum(sent_pps) == 2_000_000


def test_a_rate_below_one_per_client_is_refused():
    with pytest.raises(UsageError, match="below one datagram per second per client"):
        plan("2", "127.0.0.1", 3)


@pytest.mark.parametrize("host, family", [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)])
def test_the_plan_knows_the_data_family(host, family):
    """Wire bits count the IP header of the family the datagrams travel in (IPv6: 40 bytes, not 20)."""
    result, _ = plan("10k", host, 2)
    assert result.family == family


def test_each_part_has_its_rows_before_anything_starts():
    """Senders first, the receiver last, stacked as the run will be: per-host rows and metrics
    never wait for the start."""
    result, _ = plan("10k", "127.0.0.1", 2)
    assert [m["role"] for m in result.meta] == ["sender", "sender", "receiver"]
    assert result.rows == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert [rows for _, rows in result.hosts()] == result.rows


def test_without_clients_the_local_senders_are_prepared_here():
    peer = ("127.0.0.1", 7000)
    agents = {peer: FakeAgent("127.0.0.1:7000")}
    spec = parse_net(pps="10k", duration="1s", workers=3)
    local_jobs: list = []
    result = asyncio.run(_prepare_paired(spec, peer, [], agents, local_jobs))
    try:
        (local,) = local_jobs
        assert result.parts[0] is local and result.meta[0]["host"] == "local"
        assert local.workers == 3 and not local.receivers
        assert result.rows == [slice(0, 3), slice(3, 5)]
        assert result.family == local.family == socket.AF_INET
    finally:
        for job in local_jobs:
            job.close()
