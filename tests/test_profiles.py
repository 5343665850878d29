"""loadgen.profiles: every shipped profile loads, its claim matches profiles/README.md, bad files are
refused with the file's name, --set overrides, and `loadgen run` end to end (loopback, 1 s).

The shipped set is found by content (kind, options, claim), not only by file name, so a
renamed profile still counts and a new one is loaded and validated automatically.
"""
import json
import re
from pathlib import Path

import pytest

from loadgen import profiles
from loadgen.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
PROFILE_PATHS = sorted((REPO / "profiles").glob("*.toml"))
CLAIMS_MD = REPO / "profiles" / "README.md"   # the repository's record of the published figures

# The figures of profiles/README.md a shipped profile checks, and who published them.
PPS_2M = 2_000_000
I3_RANDREAD_IOPS = {"i3.large": 100_125, "i3.2xlarge": 412_500, "i3.16xlarge": 3_300_000}
AWS_GUIDE = "AWS EC2 user guide"
GREGG_2017 = "Brendan Gregg"


@pytest.fixture(scope="module")
def shipped() -> list[profiles.Profile]:
    return [profiles.load(p) for p in PROFILE_PATHS]


def assert_one_line_error(done, code: int = 2) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: "), done.stderr
    return lines[0]


# ---- every shipped profile -----------------------------------------------------------------------

def test_there_are_profiles():
    assert PROFILE_PATHS, "profiles/ holds no *.toml"


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=lambda p: p.name)
def test_profile_loads_and_validates(path):
    prof = profiles.load(path)
    assert prof.name == path.stem
    assert prof.kind in ("net", "disk")
    assert prof.description, "a profile says what it is for"
    # load() validated already; validating again is what `loadgen run` does after --set.
    assert profiles.validate(prof.kind, prof.options, prof.path) is not None


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=lambda p: p.name)
def test_claim_cites_a_source(path):
    claim = profiles.load(path).claim
    if claim is None:
        pytest.skip(f"{path.name} makes no claim")
    assert claim.source.strip()
    assert claim.metric.startswith(("summary.", "search.knee_"))
    assert claim.op in profiles.OPS


def test_the_claims_figures_are_those_of_claims_md():
    """Guards this file's own table: each figure it expects is written in profiles/README.md."""
    if not CLAIMS_MD.exists():
        pytest.skip(f"{CLAIMS_MD} is not here")
    text = CLAIMS_MD.read_text()
    assert "2 million packets per second" in text
    for instance, iops in I3_RANDREAD_IOPS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| {instance}")), None)
        assert row is not None, instance
        first = row.split("|")[2].strip()   # the random read IOPS column
        assert _figure(first) == iops, (instance, first)


def _figure(text: str) -> int:
    """'100,125' -> 100125, '3.3 M' -> 3300000, '720 K' -> 720000."""
    m = re.fullmatch(r"([\d.,]+)\s*([KM]?)", text.strip())
    assert m, text
    return round(float(m.group(1).replace(",", "")) * {"": 1, "K": 1e3, "M": 1e6}[m.group(2)])


def _claims(shipped, **where) -> list[profiles.Profile]:
    return [p for p in shipped if p.claim and all(getattr(p.claim, k) == v for k, v in where.items())]


def test_shipped_loopback_smoke_test(shipped):
    smoke = [p for p in shipped if p.kind == "net" and not {"target", "peer", "clients"} & set(p.options)
             and p.claim and p.claim.metric == "summary.loss_ratio" and p.claim.op == "<="]
    assert smoke, "a loopback net profile that claims no loss"
    assert any(p.name == "smoke" for p in smoke)


def test_shipped_qd1_latency_profile(shipped):
    assert [p for p in shipped if p.kind == "disk" and p.options.get("qd") == "1"
            and p.options.get("rw") == "randread"]


def test_shipped_randread_saturation_profile(shipped):
    # Saturation: closed loop (iops max) with depth, not tied to an instance type.
    assert [p for p in shipped if p.kind == "disk" and p.options.get("rw") == "randread"
            and p.options.get("iops", "max") == "max" and int(p.options.get("qd", "32")) >= 32
            and (p.claim is None or not p.claim.scope)]


def test_shipped_2m_pps_claim(shipped):
    found = [p for p in shipped if p.kind == "net" and p.claim and p.claim.op == ">="
             and p.claim.metric.endswith("_pps") and p.claim.value == PPS_2M]
    assert found, "a net profile claiming 2,000,000 pps"
    for p in found:
        assert GREGG_2017 in p.claim.source
        assert p.claim.metric == "search.knee_pps", "a capacity is a search's knee, not one run's rate"
        assert p.search is not None and "max_loss" in p.search


@pytest.mark.parametrize("instance, iops", I3_RANDREAD_IOPS.items())
def test_shipped_i3_claims(shipped, instance, iops):
    found = [p for p in shipped if p.claim and instance in p.claim.scope.get("instance_types", [])]
    assert found, f"a profile scoped to {instance}"
    for p in found:
        assert p.kind == "disk"
        assert (p.options.get("rw"), p.options.get("bs")) == ("randread", "4k")
        assert (p.claim.metric, p.claim.op) == ("search.knee_iops", ">=")
        assert p.search is not None, "a capacity is a search's knee"
        assert p.claim.value == iops, f"{p.path}: {p.claim.value:g} but profiles/README.md says {iops}"
        assert AWS_GUIDE in p.claim.source


def test_every_claimed_i3_figure_is_claims_md(shipped):
    """No profile scoped to an i3 type claims a number profiles/README.md does not give for it."""
    for p in shipped:
        for instance in p.claim.scope.get("instance_types", []) if p.claim else []:
            if instance in I3_RANDREAD_IOPS and p.claim.metric in ("summary.rate", "search.knee_iops"):
                assert p.claim.value == I3_RANDREAD_IOPS[instance], p.path


def test_3_3m_claim_covers_i3_metal(shipped):
    found = [p for p in shipped if p.claim and p.claim.value == I3_RANDREAD_IOPS["i3.16xlarge"]]
    assert found
    for p in found:
        assert "i3.metal" in p.claim.scope.get("instance_types", [])


def test_shipped_nitro_overhead_claim(shipped):
    found = _claims(shipped, op="overhead<=")
    assert found, "an overhead claim"
    assert any(p.claim.value == 1.0 and GREGG_2017 in p.claim.source for p in found)


def test_as_dict_carries_the_claim(shipped):
    for p in shipped:
        d = p.as_dict()
        assert (d["name"], d["path"]) == (p.name, p.path)
        assert ("claim" in d) == (p.claim is not None)
        if p.claim:
            assert d["claim"]["source"] == p.claim.source and d["claim"]["value"] == p.claim.value


# ---- crafted files that must be refused ----------------------------------------------------------

GOOD_CLAIM = '[claim]\nmetric = "summary.rate"\nop = ">="\nvalue = 1\nsource = "a test"\n'

BAD_PROFILES = [
    ("invalid-toml", 'kind = "net\n', "not valid TOML"),
    ("unknown-top-key", 'kind = "net"\nbogus = 1\n', "unknown keys: bogus"),
    ("kind-missing", '[options]\npps = "1k"\n', "kind must be net or disk"),
    ("kind-bogus", 'kind = "cpu"\n', "kind must be net or disk"),
    ("kind-not-string", 'kind = 3\n', "kind must be net or disk"),
    ("options-not-table", 'kind = "net"\noptions = 3\n', "[options] must be a table"),
    ("unknown-option", 'kind = "net"\n[options]\nfoo = "1"\n', "unknown net options: foo"),
    ("disk-option-on-net", 'kind = "net"\n[options]\nqd = "1"\n', "unknown net options: qd"),
    ("bad-unit-duration", 'kind = "net"\n[options]\nduration = "4q"\n', "invalid duration"),
    ("bad-unit-bs", 'kind = "disk"\n[options]\nbs = "4q"\n', "'4q'"),
    ("duration-bool", 'kind = "disk"\n[options]\nduration = true\n', "invalid duration: True"),
    ("qd-bool", 'kind = "disk"\n[options]\nqd = false\n', "invalid qd: False"),
    ("duration-overflow", 'kind = "net"\n[options]\nduration = "10000000000h"\n', "invalid duration"),
    ("iops-over-u64", 'kind = "disk"\n[options]\niops = 18446744073709551615\n', "invalid rate: iops"),
    ("seed-over-u64", 'kind = "disk"\n[options]\nseed = "18446744073709551616"\n', "invalid seed"),
    ("duration-inf", 'kind = "disk"\n[options]\nduration = inf\n', "duration"),
    ("claim-not-table", 'kind = "disk"\nclaim = 3\n', "[claim] must be a table"),
    ("claim-no-source", 'kind = "disk"\n' + GOOD_CLAIM.replace('source = "a test"\n', ""),
     "the claim needs source"),
    ("claim-empty-source", 'kind = "disk"\n' + GOOD_CLAIM.replace('"a test"', '"  "'), "must cite its source"),
    ("claim-bad-op", 'kind = "disk"\n' + GOOD_CLAIM.replace('">="', '"=="'), "claim op must be one of"),
    ("claim-value-string", 'kind = "disk"\n' + GOOD_CLAIM.replace("value = 1", 'value = "1M"'),
     "claim value must be a number"),
    ("claim-value-bool", 'kind = "disk"\n' + GOOD_CLAIM.replace("value = 1", "value = true"),
     "claim value must be a number"),
    ("claim-metric-outside-summary", 'kind = "disk"\n' + GOOD_CLAIM.replace("summary.rate", "env.kernel"),
     "path into the summary"),
    ("claim-unknown-key", 'kind = "disk"\n' + GOOD_CLAIM + 'unit = "iops"\n', "unknown claim keys: unit"),
    ("scope-unknown-key", 'kind = "disk"\n' + GOOD_CLAIM + 'scope = { region = "us-east-1" }\n',
     "scope may hold"),
]


def test_a_profile_accepts_every_option_the_cli_has():
    """The table is the one list: every name in it is a valid profile key (with its default)."""
    from loadgen import options

    for kind, table in (("disk", options.DISK), ("net", options.NET)):
        raw = {name: opt.default for name, opt in table.items() if opt.default is not None}
        assert profiles.validate(kind, raw, "test")


@pytest.mark.parametrize("name, text, says", BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_bad_profile_is_a_usage_error_naming_the_file(tmp_path, name, text, says):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as e:
        profiles.load(path)
    assert str(path) in str(e.value)
    assert says in str(e.value)


def test_bad_bs_names_bs():
    with pytest.raises(UsageError, match="bs"):
        profiles.validate("disk", {"bs": "4q"}, "here")


def test_missing_profile(tmp_path):
    with pytest.raises(UsageError, match="no such profile"):
        profiles.load(tmp_path / "nope.toml")


def test_scope_instance_types_must_be_a_list(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('kind = "disk"\n' + GOOD_CLAIM + 'scope = { instance_types = "i3.large" }\n')
    with pytest.raises(UsageError):
        profiles.load(path)


def test_minimal_profile_loads(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text('kind = "disk"\n[options]\nqd = 4\ndirect = false\n' + GOOD_CLAIM)
    prof = profiles.load(path)
    assert (prof.name, prof.kind, prof.description) == ("mini", "disk", "")
    assert prof.options == {"qd": "4", "direct": False}, "numbers become option strings; booleans stay"
    assert prof.claim == profiles.Claim("summary.rate", ">=", 1.0, "a test", {})


def test_remote_keys_are_allowed_and_split(tmp_path):
    path = tmp_path / "remote.toml"
    path.write_text('kind = "net"\n[options]\npeer = "10.0.0.2:7000"\npps = "1k"\n')
    prof = profiles.load(path)
    assert profiles.split_remote("net", prof.options) == ({"pps": "1k"}, {"peer": "10.0.0.2:7000"})
    assert profiles.split_remote("disk", {"on": "h:1", "qd": "1"}) == ({"qd": "1"}, {"on": "h:1"})


# ---- --set ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sets, expect", [
    ([], {"pps": "50k"}),
    (["duration=1s"], {"pps": "50k", "duration": "1s"}),
    (["pps=1k"], {"pps": "1k"}),
    (["pps=1k", "pps=2k"], {"pps": "2k"}),
    (["allow-destroy=true"], {"pps": "50k", "allow_destroy": True}),
    (["direct=FALSE"], {"pps": "50k", "direct": False}),
    (["direct=True"], {"pps": "50k", "direct": True}),
    ([" ramp = 0s "], {"pps": "50k", "ramp": "0s"}),
    (["target=a=b"], {"pps": "50k", "target": "a=b"}),
    (["seed="], {"pps": "50k", "seed": ""}),
])
def test_apply_sets(sets, expect):
    base = {"pps": "50k"}
    assert profiles.apply_sets(base, sets) == expect
    assert base == {"pps": "50k"}, "the profile's own options are not changed"


@pytest.mark.parametrize("item", ["duration", "=1s", " =1s", ""])
def test_apply_sets_malformed(item):
    with pytest.raises(UsageError, match="invalid --set"):
        profiles.apply_sets({}, [item])


BOOL_BUG = ("workload.py:126-127 parse_disk does bool(direct)/bool(allow_destroy), and apply_sets only "
            "converts true/false, so 'no', '0', 'off' (or a TOML string \"false\") mean True")


@pytest.mark.parametrize("value", ["no", "0", "off"])
def test_set_allow_destroy_no_never_allows(value):
    options = profiles.apply_sets({}, [f"allow-destroy={value}"])
    try:
        spec = profiles.validate("disk", options, "here")
    except UsageError:
        return   # refusing the value is as good as reading it right
    assert spec.allow_destroy is False


def test_profile_direct_false_string_means_buffered(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('kind = "disk"\n[options]\ndirect = "false"\n')
    try:
        prof = profiles.load(path)
    except UsageError:
        return
    assert profiles.validate(prof.kind, prof.options, prof.path).direct is False


# ---- loadgen run and check, end to end -----------------------------------------------------------

SMOKE = str(REPO / "profiles" / "smoke.toml")


def test_run_smoke_profile_then_check(cli, tmp_path):
    done = cli("run", SMOKE, "--set", "duration=1s", "--set", "ramp=0s", "--json", "r.json", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    doc = json.loads((tmp_path / "r.json").read_text())
    prof = profiles.load(SMOKE)
    assert doc["kind"] == "net"
    assert doc["profile"]["name"] == "smoke"
    assert doc["profile"]["claim"]["metric"] == prof.claim.metric
    assert doc["profile"]["claim"]["source"] == prof.claim.source
    assert doc["profile"]["options"] == prof.options | {"duration": "1s", "ramp": "0s"}
    assert doc["config"]["duration_ns"] == 1_000_000_000 and doc["config"]["ramp_ns"] == 0

    checked = cli("check", "r.json")
    verdicts = [line for line in checked.stdout.splitlines() if line.strip().startswith("verdict:")]
    assert len(verdicts) == 1, checked.stdout
    assert checked.returncode == 0, checked.stdout
    assert "PASS" in verdicts[0]
    assert f"source: {prof.claim.source}" in checked.stdout


def test_run_unknown_set_key_is_one_line(cli):
    line = assert_one_line_error(cli("run", SMOKE, "--set", "bogus=1", "--quiet"))
    assert "unknown net options: bogus" in line and "smoke.toml" in line


def test_run_malformed_set_is_one_line(cli):
    assert "invalid --set" in assert_one_line_error(cli("run", SMOKE, "--set", "duration", "--quiet"))


def test_run_bad_profile_is_one_line_naming_it(cli, tmp_path):
    (tmp_path / "bad.toml").write_text('kind = "cpu"\n')
    line = assert_one_line_error(cli("run", "bad.toml", "--quiet"))
    assert "bad.toml" in line and "kind must be net or disk" in line
