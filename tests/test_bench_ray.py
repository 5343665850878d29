"""bench/ray.py's pure parts: which CPU each node runs on, and the table it prints from a document."""
import pytest

from bench import ray as bench_ray


@pytest.mark.parametrize("n_cpus, cpus", [
    (1, {"head": "0", "w1": "0", "w2": "0"}),
    (2, {"head": "0", "w1": "1", "w2": "0"}),     # the receiver shares the first sender's CPU
    (4, {"head": "0", "w1": "1", "w2": "2"}),
])
def test_each_node_gets_its_own_cpu_while_there_are_enough(n_cpus, cpus):
    assert bench_ray.node_cpus(n_cpus) == cpus


def doc() -> dict:
    sender = {"role": "sender", "sent_pps": 100_000.0, "clock": {"error_ns": 900_000}}
    return {
        "config": {"mode": "stream", "size_bytes": 64, "pps": 200_000, "clients": ["10.77.0.2", "10.77.0.3"]},
        "summary": {"duration_s": 10.0, "sent": 2_000_000, "sent_pps": 200_000.0, "received": 1_999_000,
                    "received_pps": 199_900.0, "lost": 1_000, "loss_ratio": 0.0005,
                    "schedule_lag_ns": {"late_ops": 12, "unsent": 0, "max": 3_000_000}},
        "hosts": [sender | {"host": "10.77.0.2 (ray node aa)", "sent": 1_000_000},
                  sender | {"host": "10.77.0.3 (ray node bb)", "sent": 1_000_000},
                  {"role": "receiver", "host": "10.77.0.4 (ray node cc)", "received": 1_999_000,
                   "received_pps": 199_900.0, "clock": {"error_ns": 1_000_000}}],
    }


def test_the_table_has_the_totals_the_loss_and_a_line_per_node():
    text = bench_ray.render(doc())
    assert "sent         2,000,000" in text
    assert "received     1,999,000" in text and "lost 1,000 (0.050%)" in text
    assert "10.77.0.3 (ray node bb)" in text and "receiver  10.77.0.4 (ray node cc)" in text
    assert "the senders' sections add up to the total sent: True" in text
