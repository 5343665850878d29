"""loadgen.results.result: the arithmetic every rate in a document shares."""
import pytest

from loadgen.results.result import per_s


@pytest.mark.parametrize("n, measured_ns, rate", [
    (1_000, 1_000_000_000, 1_000.0),
    (1_000, 2_000_000_000, 500.0),
    (1, 3_000_000_000, 0.333),            # to the thousandth
    (2, 3_000_000_000, 0.667),
    (0, 1_000_000_000, 0.0),
    (5, 0, 0.0),                          # nothing measured: no rate, not a division by zero
    (5, -1, 0.0),
    (2_000_000 * 8 * 1_070, 1_000_000_000, 17_120_000_000.0),
])
def test_per_s(n, measured_ns, rate):
    assert per_s(n, measured_ns) == rate
