"""Claims on a search's knee (loadgen/results/claims.py): pass, fail, or not comparable."""
import copy
import json
from pathlib import Path

import pytest

from loadgen import profiles
from loadgen.errors import UsageError
from loadgen.profiles import Claim
from loadgen.results import claims

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "results"
REPO = Path(__file__).resolve().parents[2]


def single(name: str = "net-stream.json") -> dict:
    return json.loads((FIXTURES / name).read_text())


def searched(knee, kind: str = "net", why: str = "w") -> dict:
    """A search document as loadgen/run/trials.py makes it: a run's own, kind search, with the section."""
    doc = copy.deepcopy(single("net-stream.json" if kind == "net" else "disk-randread.json"))
    key = "knee_pps" if kind == "net" else "knee_iops"
    doc |= {"kind": "search", "search": {"kind": kind, key: knee, "why": why, "trials": [], "load_curve": []}}
    return doc


KNEE = Claim("search.knee_pps", ">=", 2_000_000, "Gregg 2017")


@pytest.mark.parametrize("knee, verdict", [(2_100_000, "pass"), (2_000_000, "pass"), (1_500_000, "fail")])
def test_a_search_result_is_judged_by_its_knee(knee, verdict):
    v = claims.check(searched(knee), KNEE, kind="net")
    assert (v.verdict, v.measured, v.claimed) == (verdict, knee, 2_000_000)


def test_a_single_run_is_not_comparable_with_a_knee_claim():
    v = claims.check(single(), KNEE, kind="net")
    assert v.verdict == "not comparable" and "search's knee" in v.why and "single net run" in v.why


def test_a_search_that_found_no_knee_is_not_comparable_and_says_why():
    v = claims.check(searched(None, why="fails at the floor, 1/s"), KNEE, kind="net")
    assert v.verdict == "not comparable" and "no knee: fails at the floor" in v.why


def test_a_search_of_the_other_kind_is_not_comparable():
    v = claims.check(searched(400_000, kind="disk"), Claim("search.knee_iops", ">=", 1, "s"), kind="net")
    assert v.verdict == "not comparable" and "search over disk runs" in v.why


def test_a_disk_knee_claim():
    claim = Claim("search.knee_iops", ">=", 412_500, "AWS")
    assert claims.check(searched(420_000, kind="disk"), claim, kind="disk").verdict == "pass"
    assert claims.check(searched(100_000, kind="disk"), claim, kind="disk").verdict == "fail"


def test_summary_claims_read_a_search_documents_knee_trial():
    claim = Claim("summary.loss_ratio", "<=", 0.0, "own")
    assert claims.check(searched(10_000), claim, kind="net").verdict == "pass"


def test_the_shipped_knee_profiles_judge_a_search_result():
    prof = profiles.load(REPO / "profiles" / "enhanced-networking-2mpps.toml")
    doc = searched(2_200_000)
    doc["env"]["instance_type"] = "c5n.18xlarge"
    assert claims.check(doc, prof.claim, kind=prof.kind).verdict == "pass"
    assert claims.check(single() | {"env": doc["env"]}, prof.claim, kind=prof.kind).verdict == "not comparable"


def test_profile_search_table_is_validated(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('kind = "net"\n[options]\npps = "10k"\n[search]\nmax_loss = "0.1%"\n')
    with pytest.raises(UsageError, match="a search sets each trial's pps"):
        profiles.load(path)
    path.write_text('kind = "net"\n[search]\nmax_loss = "5"\n')
    with pytest.raises(UsageError, match="max-loss"):
        profiles.load(path)
    path.write_text('kind = "net"\n[search]\nmax_loss = "0.1%"\ntrial = "5s"\n')
    assert profiles.load(path).search == {"max_loss": "0.1%", "trial": "5s"}
