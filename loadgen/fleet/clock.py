"""Clock offset between the controller and an agent, NTP-style, from ping exchanges.

Each exchange gives t0 (controller sends), a (agent's clock when it answered)
and t1 (controller receives). If the agent answered halfway, its clock is
offset = a - (t0 + t1) / 2 ahead of ours; wherever in [t0, t1] it really
answered, the truth lies within rtt / 2 of that. The exchange with the smallest
round trip gives the tightest bound. Pure arithmetic: callers pass the times.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class ClockEstimate:
    offset_ns: int   # agent clock minus controller clock
    rtt_ns: int      # of the best exchange
    error_ns: int    # |true offset - offset_ns| <= error_ns

    def to_agent(self, controller_ns: int) -> int:
        return controller_ns + self.offset_ns

    def to_controller(self, agent_ns: int) -> int:
        return agent_ns - self.offset_ns

    def as_dict(self) -> dict:
        return {"offset_ns": self.offset_ns, "rtt_ns": self.rtt_ns, "error_ns": self.error_ns}


def estimate(samples: list[tuple[int, int, int]]) -> ClockEstimate:
    """samples: (t0, agent_ns, t1) per exchange; the best one's estimate."""
    if not samples:
        raise ValueError("no clock samples")
    t0, a, t1 = min(samples, key=lambda s: s[2] - s[0])
    rtt = t1 - t0
    if rtt < 0:
        raise ValueError("a sample's reply precedes its request")
    return ClockEstimate(offset_ns=a - (t0 + t1) // 2, rtt_ns=rtt, error_ns=(rtt + 1) // 2)


def one_way_meaningful(error_ns: int, median_one_way_ns: int, max_share: float = 0.25) -> bool:
    """One-way delay is worth reporting when the clock bound is a small share of it."""
    return median_one_way_ns > 0 and error_ns <= max_share * median_one_way_ns
