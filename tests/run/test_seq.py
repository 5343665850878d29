"""native/seq.h through loadgen.run.native.seq_replay: the per-flow sequence tracker.

A fresh tracker expects first_seq; each arrival is in order (possibly jumping
ahead and leaving holes), a late hole-filler ("reordered"), a copy of a number
seen before ("duplicated"), or older than the 4096-number window ("too_old").
Sequence numbers are 32-bit on the wire and wrap; the tracker unwraps them
against the highest seen. holes = numbers jumped over and not filled since. A number
below first_seq was never sent, so it fills no hole: it is too old.
"""
import pytest

from loadgen.run import native

WINDOW = 4096
U32 = 2**32
NEAR_WRAP = U32 - 3  # first_seq three numbers below the wrap: ..., 2^32-1, 0, 1, ...


def verdicts(in_order=0, reordered=0, duplicated=0, too_old=0, holes=0) -> dict[str, int]:
    return {"in_order": in_order, "reordered": reordered, "duplicated": duplicated, "too_old": too_old,
            "holes": holes}


CASES = [
    # name, seqs, first_seq, expected
    ("empty", [], 0, verdicts()),
    ("one", [0], 0, verdicts(in_order=1)),
    ("in order", list(range(10)), 0, verdicts(in_order=10)),
    ("in order from a non-zero first", [7, 8, 9], 7, verdicts(in_order=3)),
    ("first arrival skips ahead", [3, 4], 0, verdicts(in_order=2, holes=3)),
    ("single gap", [0, 1, 3, 4], 0, verdicts(in_order=4, holes=1)),
    ("two gaps", [0, 2, 5], 0, verdicts(in_order=3, holes=3)),
    ("gap filled later", [0, 2, 1], 0, verdicts(in_order=2, reordered=1)),
    ("wide gap filled backwards", [0, 4, 3, 2, 1], 0, verdicts(in_order=2, reordered=3)),
    ("gap partly filled", [0, 4, 2], 0, verdicts(in_order=2, reordered=1, holes=2)),
    ("first number arrives second", [1, 0], 0, verdicts(in_order=1, reordered=1)),
    ("immediate duplicate", [0, 0, 1], 0, verdicts(in_order=2, duplicated=1)),
    ("later duplicate", [0, 1, 2, 3, 1], 0, verdicts(in_order=4, duplicated=1)),
    ("many copies", [0, 0, 0, 1, 1, 0], 0, verdicts(in_order=2, duplicated=4)),
    ("duplicate of a hole-filler", [0, 2, 1, 1], 0, verdicts(in_order=2, reordered=1, duplicated=1)),
    ("duplicate of a hole-filler, later", [0, 3, 1, 2, 4, 1], 0, verdicts(in_order=3, reordered=2, duplicated=1)),
    ("duplicate of the number that jumped", [0, 2, 2, 1], 0, verdicts(in_order=2, reordered=1, duplicated=1)),
    # before the flow's first number nothing was sent, so nothing there was skipped
    ("below the first number", [9], 10, verdicts(too_old=1)),
    ("below a first number of 0, across the wrap", [U32 - 1], 0, verdicts(too_old=1)),
    ("below the first number, after a gap", [10, 12, 9, 11], 10, verdicts(in_order=2, reordered=1, too_old=1)),
    ("below a first number near the wrap", [NEAR_WRAP - 100, NEAR_WRAP], NEAR_WRAP, verdicts(in_order=1, too_old=1)),
    # 32-bit wrap-around
    ("wrap in order", [U32 - 3, U32 - 2, U32 - 1, 0, 1], NEAR_WRAP, verdicts(in_order=5)),
    ("gap across the wrap", [U32 - 3, U32 - 1, 1], NEAR_WRAP, verdicts(in_order=3, holes=2)),
    ("gap across the wrap filled", [U32 - 3, U32 - 1, 1, 0, U32 - 2], NEAR_WRAP,
     verdicts(in_order=3, reordered=2)),
    ("reorder across the wrap", [U32 - 3, U32 - 2, 0, U32 - 1, 1], NEAR_WRAP, verdicts(in_order=4, reordered=1)),
    ("duplicate across the wrap", [U32 - 3, U32 - 2, U32 - 1, 0, U32 - 1], NEAR_WRAP,
     verdicts(in_order=4, duplicated=1)),
    ("first number is the last before the wrap", [U32 - 1, 0, 1], U32 - 1, verdicts(in_order=3)),
    ("too old across the wrap", [U32 - 3, 5000, U32 - 2], NEAR_WRAP, verdicts(in_order=2, too_old=1, holes=5002)),
    # the 4096-number window below the highest seen
    ("far behind is too old", [0, 5000, 1], 0, verdicts(in_order=2, too_old=1, holes=4999)),
    ("oldest number in the window is reordered", [0, WINDOW, 1], 0,
     verdicts(in_order=2, reordered=1, holes=WINDOW - 2)),
    ("one below the window is too old", [0, WINDOW, 0], 0, verdicts(in_order=2, too_old=1, holes=WINDOW - 1)),
    ("jump of exactly the window", [0, WINDOW + 1, 2, 1], 0,
     verdicts(in_order=2, reordered=1, too_old=1, holes=WINDOW - 1)),
    ("duplicate inside the window after a jump", [0, 5000, 4999, 4999], 0,
     verdicts(in_order=2, reordered=1, duplicated=1, holes=4998)),
    ("too old twice is not a duplicate", [0, 1, 9000, 1, 1], 0, verdicts(in_order=3, too_old=2, holes=8998)),
    # huge forward jumps: serial-number arithmetic (RFC 1982) takes up to 2^31 - 1 as ahead
    ("huge forward jump", [0, 1, 1_000_000], 0, verdicts(in_order=3, holes=999_998)),
    ("huge jump then in order", [0, 1_000_000, 1_000_001], 0, verdicts(in_order=3, holes=999_999)),
    ("largest forward jump", [0, 2**31 - 1], 0, verdicts(in_order=2, holes=2**31 - 2)),
    ("huge jump, then the old numbers are too old", [0, 1, 2**31, 2], 0,
     verdicts(in_order=3, too_old=1, holes=2**31 - 2)),
    ("jump across the wrap", [U32 - 3, 1_000_000], NEAR_WRAP, verdicts(in_order=2, holes=1_000_002)),
    ("long flow across the wrap", [*range(U32 - 3, U32), *range(0, 5000)], NEAR_WRAP, verdicts(in_order=5003)),
]


@pytest.mark.parametrize("seqs, first_seq, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_seq_replay(seqs, first_seq, expected):
    assert native.seq_replay(seqs, first_seq=first_seq) == expected


@pytest.mark.parametrize("first_seq", [0, 1, 12345, 2**31 - 1, 2**31, NEAR_WRAP, U32 - 1])
def test_every_arrival_gets_exactly_one_verdict(first_seq):
    """in_order + reordered + duplicated + too_old == arrivals, wherever the flow starts."""
    offsets = [0, 1, 2, 5, 3, 3, 4, 10_000, 9_999, 0, 10_001]
    seqs = [(first_seq + d) % U32 for d in offsets]
    got = native.seq_replay(seqs, first_seq=first_seq)
    assert got == verdicts(in_order=6, reordered=3, duplicated=1, too_old=1, holes=9_993)
    assert sum(v for k, v in got.items() if k != "holes") == len(seqs)


@pytest.mark.parametrize("n", [1, 100, 10_000])
def test_a_reversed_block_is_all_reordered(n):
    """The last number first, then the rest backwards: each fills a hole while the window holds it.

    The window is the highest number seen and the WINDOW - 1 below it.
    """
    seqs = [n - 1, *range(n - 2, -1, -1)]
    inside = min(n - 1, WINDOW - 1)
    assert native.seq_replay(seqs) == verdicts(in_order=1, reordered=inside, too_old=n - 1 - inside,
                                               holes=n - 1 - inside)


