"""loadgen.results.documents and the published schemas: real documents fit them, and each way a
document can be malformed is refused with one UsageError line naming the file and the JSON
path of the problem. Also the claims' guards against dividing by zero.

Real documents come from tests/fixtures/results (outputs of loadgen, see its README) and
from short runs of today's code.
"""
import copy
import fnmatch
import json
import math
import tomllib
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from loadgen import profiles
from loadgen.errors import UsageError
from loadgen.results import claims, documents
from loadgen.results.claims import Claim

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "results").glob("*.json"))
PROFILE_PATHS = sorted((REPO / "profiles").glob("*.toml"))
SCHEMAS = sorted((REPO / "loadgen" / "results" / "schemas").glob("*.json"))


def fixture(name: str) -> dict:
    return json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "results" / name).read_text())


def refused(path, says: str, at: str | None = None, load=documents.load_result) -> str:
    """The one-line UsageError loading path gives; it names the file, `says`, and the JSON path `at`."""
    with pytest.raises(UsageError) as e:
        load(path)
    text = str(e.value)
    assert "\n" not in text
    assert str(path) in text
    assert says in text, text
    if at is not None:
        assert f": {at}: " in text, text
    return text


# ---- the schemas -------------------------------------------------------------------------------

def test_there_are_fixtures_and_schemas():
    assert len(FIXTURES) >= 5 and [p.name for p in SCHEMAS] == ["profile.schema.json", "result.schema.json"]


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schemas_are_valid_json_schema(path):
    Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_package_ships_the_schemas():
    """A non-editable install gets them: pyproject's package data names every schema file."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["loadgen.results"]
    for path in SCHEMAS:
        assert any(fnmatch.fnmatch(f"schemas/{path.name}", p) for p in patterns), path.name
        assert json.loads(documents.schema_text(path.name.removesuffix(".schema.json"))) == json.loads(path.read_text())
    assert any(d.startswith("jsonschema") for d in config["project"]["dependencies"])


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_real_results_fit(path):
    doc = documents.load_result(path)
    assert doc == json.loads(path.read_text())


@pytest.mark.parametrize("path", PROFILE_PATHS, ids=lambda p: p.name)
def test_shipped_profiles_fit(path):
    assert documents.load_profile(path) == tomllib.loads(path.read_text())


def test_fresh_disk_run_fits(disk):
    done = disk("--rw", "randrw", "--iops", "2k", "--interval", "200ms")
    assert done.returncode == 0, done.stderr
    documents.load_result(done.json_path)


@pytest.mark.parametrize("mode", ["stream", "echo"])
def test_fresh_net_run_fits(cli, tmp_path, mode):
    done = cli("net", "--mode", mode, "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--json", "r.json", "-q")
    assert done.returncode == 0, done.stderr
    documents.load_result(tmp_path / "r.json")


def test_a_new_optional_section_is_welcome(tmp_path):
    """Documents grow: keys the schema does not know are allowed at every level."""
    doc = fixture("disk-randread.json")
    doc["stalls"] = {"count": 2, "longest_ns": 5_000_000, "anything": [{"x": "y"}]}
    doc["summary"]["shortfall"] = {"ops": 3}
    doc["summary"]["read"]["new_percentile"] = 7
    doc["intervals"][0]["stalled"] = True
    doc["warnings"] = ["a warning", {"code": "structured"}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert documents.load_result(path) == doc


# ---- results refused: syntax, numbers, nesting, size ------------------------------------------

def _result_text(value_text: str) -> str:
    """A real result with summary.rate written as value_text, byte for byte."""
    doc = fixture("disk-randread.json")
    doc["summary"]["rate"] = "@@"
    return json.dumps(doc).replace('"@@"', value_text)


@pytest.mark.parametrize("value_text, says", [
    ("NaN", "NaN is not a number (documents hold no NaN or Infinity)"),
    ("Infinity", "Infinity is not a number"),
    ("-Infinity", "-Infinity is not a number"),
    ("1e400", "1e400 is beyond the range of a double"),
    ("-1e400", "-1e400 is beyond the range of a double"),
    ("1" + "0" * 400, "an integer of 401 digits is beyond the range of a double"),
    ("9" * 309, "an integer of 309 digits is beyond the range of a double"),
    ("1" * 5000, "an integer of 5000 digits"),   # past Python's int digit limit: no ValueError
    ("-5", "must not be negative, found -5"),
    (str(2**64), f"must be at most {2**64 - 1}, found {2**64}"),
    ('"fast"', "expected a number, found a string 'fast'"),
    ("true", "expected a number, found true"),
    ("null", "expected a number, found null"),
    ("[1]", "expected a number, found an array"),
])
def test_unfit_numbers_are_refused_with_their_path(tmp_path, value_text, says):
    path = tmp_path / "r.json"
    path.write_text(_result_text(value_text))
    refused(path, says, at="$.summary.rate")


def test_the_largest_double_is_a_number(tmp_path):
    """Where the schema is open (counters may wrap), any double is allowed; a rate stops at 2^64 - 1."""
    doc = fixture("net-stream.json")
    doc["counters"]["nics"]["lo"]["statistics"]["rx_bytes"] = 1.7976931348623157e308
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    assert documents.load_result(path) == doc
    path.write_text(_result_text("1e19"))
    assert documents.load_result(path)["summary"]["rate"] == 1e19
    path.write_text(_result_text("1.7976931348623157e308"))
    refused(path, "must be at most", at="$.summary.rate")


def test_nan_is_refused_where_the_schema_is_open(tmp_path):
    doc = fixture("net-stream.json")
    doc["counters"]["nics"]["lo"]["statistics"]["rx_bytes"] = "@@"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc).replace('"@@"', "NaN"))
    refused(path, "NaN", at="$.counters.nics.lo.statistics.rx_bytes")


@pytest.mark.parametrize("depth, says, at", [
    (100_000, "nested too deeply", None),            # the parser's own recursion gives out
    (documents.MAX_DEPTH + 5, f"nests more than {documents.MAX_DEPTH} levels deep", "$.extra"),
])
def test_deep_nesting_is_refused(tmp_path, depth, says, at):
    doc = fixture("disk-randread.json")
    doc["extra"] = "@@"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc).replace('"@@"', "[" * depth + "]" * depth))
    text = refused(path, says)
    if at:
        assert f": {at}[0][0][0][0][0][0][0]: " in text, "the path, shortened"


def test_nesting_within_the_limit_is_allowed(tmp_path):
    doc = fixture("disk-randread.json")
    doc["extra"] = json.loads("[" * 20 + "]" * 20)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    documents.load_result(path)


def test_oversized_input_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    monkeypatch.setattr(documents, "MAX_RESULT_BYTES", 4 << 20)
    path = tmp_path / "big.json"
    path.write_text(" " * (5 << 20))
    refused(path, "is larger than 4 MiB: not a loadgen result")


def test_dev_zero_is_refused(monkeypatch):
    monkeypatch.setattr(documents, "MAX_RESULT_BYTES", 2 << 20)
    refused("/dev/zero", "larger than 2 MiB")


@pytest.mark.parametrize("content, says", [
    (b"\xff\xfe\x00garbage", "is not a readable result document"),
    (b"{not json", "is not a readable result document"),
    (b"", "is not a readable result document"),
    (b'"a string"', "is not a loadgen/1 result document (a string 'a string' at the top)"),
    (b"[1, 2]", "is not a loadgen/1 result document (an array at the top)"),
    (b'{"schema": "loadgen/2"}', "is not a loadgen/1 result document (schema 'loadgen/2')"),
])
def test_what_is_not_a_result(tmp_path, content, says):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    refused(path, says)


def test_missing_and_unreadable(tmp_path):
    refused(tmp_path / "nope.json", "no such result")
    refused(tmp_path, "cannot read")


# ---- results refused: structure -----------------------------------------------------------------

def _set(doc: dict, path: list, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


DELETE = object()


@pytest.mark.parametrize("name, path, value, says, at", [
    ("net-stream.json", ["profile"], "smoke", "expected an object, found a string 'smoke'", "$.profile"),
    ("disk-randread.json", ["config"], [1, 2], "expected an object, found an array", "$.config"),
    ("disk-randread.json", ["summary", "latency_ns", "p99"], "1ms", "expected a whole number", "$.summary.latency_ns.p99"),
    ("disk-randread.json", ["summary", "read", "latency_ns", "p99.9"], -1, "must not be negative",
     "$.summary.read.latency_ns['p99.9']"),
    ("disk-randread.json", ["intervals", 0, "t_s"], "x", "expected a number, found a string 'x'", "$.intervals[0].t_s"),
    ("disk-randread.json", ["kind"], DELETE, "missing", "$.kind"),
    ("disk-randread.json", ["kind"], "cpu", 'must be one of "disk", "net"', "$.kind"),
    ("disk-randread.json", ["summary", "rate"], DELETE, "missing", "$.summary.rate"),
    ("net-stream.json", ["summary", "received_pps"], DELETE, "missing", "$.summary.received_pps"),
    ("net-stream.json", ["summary", "loss_ratio"], 1.5, "must be at most 1", "$.summary.loss_ratio"),
    ("net-stream.json", ["config", "pps"], 0, 'whole number above zero or "max"', "$.config.pps"),
    ("net-stream.json", ["config", "pps"], "fast", 'whole number above zero or "max"', "$.config.pps"),
    ("disk-randread.json", ["interrupted"], "no", "expected true or false", "$.interrupted"),
    ("disk-randread.json", ["env", "hypervisor", "dmi_product"], 5, "expected a string", "$.env.hypervisor.dmi_product"),
    ("disk-randread.json", ["histograms", "../x"], "AAAA", "a histogram tag names a file", "$.histograms"),
    ("net-paired.json", ["hosts", 0, "host"], DELETE, "missing", "$.hosts[0].host"),
    ("run-smoke.json", ["profile", "claim", "value"], float("nan"), "NaN", "$.profile.claim.value"),
    ("run-smoke.json", ["profile", "claim", "value"], -1, "claim value must not be negative",
     "$.profile.claim.value"),
    ("run-smoke.json", ["profile", "claim", "op"], "==", "claim op must be one of", "$.profile.claim.op"),
    ("run-smoke.json", ["profile", "claim", "source"], DELETE, "the claim needs source", "$.profile.claim"),
])
def test_structure_is_refused_with_the_path(tmp_path, name, path, value, says, at):
    doc = fixture(name)
    _set(doc, path, value)
    file = tmp_path / "r.json"
    file.write_text(json.dumps(doc))     # writes NaN as Python does
    refused(file, says, at=at)


# ---- profiles -----------------------------------------------------------------------------------

CLAIM = '[claim]\nmetric = "summary.rate"\nop = ">="\nvalue = {value}\nsource = "a test"\n'


@pytest.mark.parametrize("text, says, at", [
    ('kind = "disk"\n' + CLAIM.format(value="nan"), "nan is not a number", "$.claim.value"),
    ('kind = "disk"\n' + CLAIM.format(value="-inf"), "-inf is not a number", "$.claim.value"),
    ('kind = "disk"\n' + CLAIM.format(value="1e400"), "1e400 is beyond the range of a double", "$.claim.value"),
    ('kind = "disk"\n' + CLAIM.format(value="1" + "0" * 400), "beyond the range of a double", "$.claim.value"),
    ('kind = "disk"\n' + CLAIM.format(value="-5"), "claim value must not be negative", "$.claim.value"),
    ('kind = "disk"\n' + CLAIM.format(value='"1M"'), "claim value must be a number", "$.claim.value"),
    ('kind = "disk"\n[options]\nqd = nan\n', "nan is not a number", "$.options.qd"),
    ('kind = "disk"\n[options]\nqd = [1, 2]\n', "an option's value is a string, a number, true or false",
     "$.options.qd"),
    ('kind = "disk"\n[options]\nqd = 1979-05-27\n', "found a date", "$.options.qd"),
    ('kind = 3\n', "kind must be net or disk", "$.kind"),
    ('[options]\nqd = "1"\n', "kind must be net or disk", "$.kind"),
    ('kind = "disk"\noptions = [1]\n', "[options] must be a table", "$.options"),
    ('kind = "disk"\nclaim = "fast"\n', "[claim] must be a table", "$.claim"),
    ('kind = "disk"\ndescription = 5\n', "expected a string, found 5", "$.description"),
    ('kind = "disk"\nx = ' + "[" * 20 + "]" * 20 + "\n", "unknown keys: x", "$"),
    ('kind = "disk"\n[options]\nqd = ' + "[" * 40 + "]" * 40 + "\n", "nests more than", "$.options.qd[0][0][0][0][0][0]"),
])
def test_profiles_are_refused_with_the_path(tmp_path, text, says, at):
    path = tmp_path / "p.toml"
    path.write_text(text)
    refused(path, says, at=at, load=profiles.load)


def test_overhead_claims_may_be_negative(tmp_path):
    """overhead<= -5: at least 5% better than the baseline; only rates, counts and latencies are never negative."""
    path = tmp_path / "p.toml"
    path.write_text('kind = "disk"\n' + CLAIM.format(value="-5").replace('">="', '"overhead<="'))
    assert profiles.load(path).claim.value == -5.0


@pytest.mark.parametrize("text, says", [
    ('"a profile that is a string"\n', "not valid TOML"),
    ('kind = "disk"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ('kind = "disk"\n[options]\nqd = ' + "1" * 5000 + "\n", "not valid TOML"),
])
def test_profiles_beyond_the_parser(tmp_path, text, says):
    path = tmp_path / "p.toml"
    path.write_text(text)
    refused(path, says, load=profiles.load)


def test_profile_not_utf8_and_oversized(tmp_path, monkeypatch):
    path = tmp_path / "p.toml"
    path.write_bytes(b'kind = "disk"\ndescription = "\xff"\n')
    refused(path, "cannot read", load=profiles.load)
    monkeypatch.setattr(documents, "MAX_PROFILE_BYTES", 1 << 20)
    path.write_text("#" * (2 << 20))
    refused(path, "larger than 1 MiB", load=profiles.load)


def test_parse_claim_checks_a_recorded_claim():
    good = {"metric": "summary.rate", "op": "<=", "value": 3, "source": "s", "scope": {"hypervisor": "KVM"}}
    assert profiles.parse_claim(good, "r.json") == Claim("summary.rate", "<=", 3.0, "s", {"hypervisor": "KVM"})
    assert profiles.parse_claim(None, "r.json") is None
    with pytest.raises(UsageError, match=r"^r.json: \$.metric: claim metric must be a path into the summary"):
        profiles.parse_claim(good | {"metric": "env.kernel"}, "r.json")


# ---- json_path ----------------------------------------------------------------------------------

@pytest.mark.parametrize("parts, path", [
    ([], "$"),
    (["summary", "rate"], "$.summary.rate"),
    (["summary", "latency_ns", "p99.9"], "$.summary.latency_ns['p99.9']"),
    (["intervals", 3, "t_s"], "$.intervals[3].t_s"),
    (["histograms", "oneway-latency"], "$.histograms['oneway-latency']"),
])
def test_json_path(parts, path):
    assert documents.json_path(parts) == path


# ---- claims never make nan or inf ---------------------------------------------------------------

RATE = Claim("summary.rate", ">=", 1.0, "a test")


def _doc(rate) -> dict:
    doc = fixture("disk-randread.json")
    doc["summary"]["rate"] = rate
    return doc


@pytest.mark.parametrize("rate", [-1.0, math.nan, math.inf, "x", None, True])
def test_check_takes_only_measurements(rate):
    v = claims.check(_doc(rate), RATE)
    assert v.verdict == "not comparable" and "summary.rate" in v.why


@pytest.mark.parametrize("claim_value", [math.nan, math.inf])
def test_check_refuses_a_claim_that_is_not_a_number(claim_value):
    v = claims.check(_doc(5.0), Claim("summary.rate", ">=", claim_value, "a test"))
    assert v.verdict == "not comparable" and "the claim's value" in v.why and v.ratio is None


def test_check_ratio_is_none_where_it_would_be_infinite():
    v = claims.check(_doc(1e300), Claim("summary.rate", ">=", 1e-300, "a test"))
    assert v.verdict == "pass" and v.ratio is None
    assert claims.check(_doc(5.0), Claim("summary.rate", "<=", 0.0, "a test")).ratio is None


def test_overhead_against_a_zero_baseline_is_not_comparable():
    nitro = Claim("summary.rate", "overhead<=", 1.0, "a test")
    v = claims.check(_doc(100.0), nitro, baseline=_doc(0.0))
    assert v.verdict == "not comparable" and "baseline" in v.why
    v = claims.check(_doc(1e308), nitro, baseline=_doc(1e-308))
    assert v.verdict == "not comparable" and "finite" in v.why


@pytest.mark.parametrize("base, other", [(0.0, 5.0), (-1.0, 5.0), (5.0, -1.0), (math.nan, 1.0), (1.0, math.inf),
                                         (1e-308, 1e308)])
def test_overhead_is_none_rather_than_nan_or_inf(base, other):
    assert claims.overhead_pct(base, other, True) is None
    assert claims.overhead_pct(base, other, False) is None


def test_compare_with_a_zero_base_shows_no_overhead(capsys, tmp_path):
    from loadgen import cli

    a, b = _doc(0.0), _doc(100.0)
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")])   # returns: exit 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "inf" not in out.lower()
    iops = next(line for line in out.splitlines() if line.startswith("IOPS"))
    assert iops.split()[-1] == "-"


def test_pure_functions_leave_documents_alone():
    doc = _doc(5.0)
    before = copy.deepcopy(doc)
    claims.check(doc, RATE)
    assert doc == before
