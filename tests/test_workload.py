"""loadgen.workload and loadgen.options: raw option values -> a validated DiskSpec or NetSpec,
or a one-line UsageError; every limit at its edge; typed specs to and from the wire."""
import os

import pytest

from loadgen import options
from loadgen.errors import UsageError
from loadgen.run import native
from loadgen.workload import DiskSpec, NetSpec, parse_common, parse_disk, parse_net

MiB = 1 << 20


def spec(**options) -> DiskSpec:
    """parse_disk with a fixed seed and one worker unless a test says otherwise."""
    return parse_disk(**({"seed": "1", "workers": "1"} | options))


@pytest.mark.parametrize("options, message", [
    ({"qd": 0}, "invalid qd"),
    ({"qd": "0"}, "invalid qd"),
    ({"qd": "4097"}, "invalid qd"),
    ({"qd": "-1"}, "invalid qd"),
    ({"iops": "0"}, "invalid rate"),
    ({"iops": "-5"}, "invalid rate"),
    ({"iops": "10x"}, "invalid rate"),
    ({"bs": "1000"}, "not a multiple of 512"),           # direct is the default
    ({"bs": "1000", "direct": True}, "not a multiple of 512"),
    ({"bs": "0"}, "invalid bs"),
    ({"bs": "128m"}, "invalid bs"),
    ({"bs": "4q"}, "invalid bs"),
    ({"rw": "bogus"}, "invalid rw"),
    ({"rw": "RandRead"}, "invalid rw"),
    ({"rw": "randrw", "mix": "101"}, "invalid mix"),
    ({"rw": "randrw", "mix": "-1"}, "invalid mix"),
    ({"rw": "rw", "mix": "200"}, "invalid mix"),
    ({"rw": "randread", "mix": "70"}, "--mix applies to randrw and rw"),
    ({"rw": "write", "mix": "70"}, "--mix applies to randrw and rw"),
    ({"size": "2k"}, "smaller than one block"),
    ({"size": "0"}, "smaller than one block"),
    ({"engine": "aio"}, "invalid engine"),
    ({"duration": "0s"}, "invalid duration"),
    ({"duration": "10q"}, "invalid duration"),
    ({"ramp": "-1s"}, "invalid ramp"),
    ({"interval": "5ms"}, "invalid interval"),
    ({"workers": "1025"}, "invalid workers"),
    ({"seed": "x"}, "invalid seed"),
    ({"qd": ""}, "invalid qd"),               # "" is a default only where the default is decided later
    ({"duration": ""}, "invalid duration"),
    ({"iops": ""}, "invalid rate"),
])
def test_parse_disk_rejects(options, message):
    with pytest.raises(UsageError, match=message) as info:
        spec(**options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("options, expected", [
    ({}, {"rw": "randread", "read_pct": 100, "sequential": False, "bs_bytes": 4096, "qd": 32,
          "rate_ops_per_s": None, "direct": True, "engine": "auto", "target": None}),
    ({"bs": "1000", "direct": False}, {"bs_bytes": 1000, "direct": False}),
    ({"bs": "512"}, {"bs_bytes": 512, "direct": True}),
    ({"bs": "64m", "size": "64m"}, {"bs_bytes": 64 * MiB}),
    ({"rw": "randwrite"}, {"read_pct": 0, "sequential": False}),
    ({"rw": "read"}, {"read_pct": 100, "sequential": True}),
    ({"rw": "write"}, {"read_pct": 0, "sequential": True}),
    ({"rw": "randrw"}, {"read_pct": 50, "sequential": False}),
    ({"rw": "randrw", "mix": ""}, {"read_pct": 50}),
    ({"rw": "randrw", "mix": "70"}, {"read_pct": 70}),
    ({"rw": "randrw", "mix": "0"}, {"read_pct": 0}),
    ({"rw": "rw", "mix": "100"}, {"read_pct": 100, "sequential": True}),
    ({"iops": "2k"}, {"rate_ops_per_s": 2000}),
    ({"iops": "max"}, {"rate_ops_per_s": None}),
    ({"qd": "1"}, {"qd": 1}),
    ({"qd": "4096"}, {"qd": 4096}),
    ({"engine": "psync"}, {"engine": "psync"}),
    ({"target": "/dev/null"}, {"target": "/dev/null"}),
    ({"target": ""}, {"target": None}),
    ({"allow_destroy": True}, {"allow_destroy": True}),
    ({"seed": "42"}, {"seed": 42}),
])
def test_parse_disk_accepts(options, expected):
    s = spec(**options)
    assert {k: getattr(s, k) for k in expected} == expected


@pytest.mark.parametrize("size, bs, size_bytes, size_given", [
    (None, "4k", 1 << 30, False),            # the default temporary file: 1g
    ("16m", "4k", 16 * MiB, True),
    ("10000", "4k", 8192, True),             # rounded down to whole blocks
    ("1m", "3k", 1023 * 1024, True),
])
def test_size_is_whole_blocks(size, bs, size_bytes, size_given):
    s = spec(size=size, bs=bs, direct=False)
    assert (s.size_bytes, s.size_given) == (size_bytes, size_given)


@pytest.mark.parametrize("rw, mix, writes", [
    ("randread", None, False), ("read", None, False), ("randwrite", None, True), ("write", None, True),
    ("randrw", "100", False), ("randrw", "99", True), ("rw", "0", True),
])
def test_writes(rw, mix, writes):
    assert spec(rw=rw, mix=mix).writes is writes


def test_seed_is_random_when_not_given():
    seeds = {parse_disk(workers="1").seed for _ in range(4)}
    assert len(seeds) == 4
    assert all(0 <= s < 2**64 for s in seeds)


def test_to_config():
    s = spec(size="16m", bs="8k", qd="4", iops="2k", rw="randrw", mix="70", duration="2s", ramp="0s",
             interval="500ms", workers="3", seed="7", direct=False)
    assert s.to_config() == {
        "target": None, "size_bytes": 16 * MiB, "rw": "randrw", "read_pct": 70, "bs": "8k", "bs_bytes": 8192,
        "qd": 4, "iops": 2000, "direct": False, "engine": "auto", "seed": 7,
        "duration_ns": 2_000_000_000, "ramp_ns": 0, "interval_ns": 500_000_000, "workers": 3,
        "busy_poll": False, "prefill": False, "allow_sparse": False, "verify": False,
        "batch_submit": None, "batch_complete": None, "batch_wait": None,   # paced: no batches
        "poll": False, "sqpoll": None, "register_ring": True,
    }
    assert spec(iops="max").to_config()["iops"] == "max"


@pytest.mark.parametrize("workers, expected", [
    (None, None), ("", None), ("0", None), (0, None), ("1", 1), ("8", 8), ("1024", 1024),
])
def test_workers_default_to_one_per_usable_cpu(workers, expected):
    want = len(os.sched_getaffinity(0)) if expected is None else expected
    assert parse_common(workers=workers).workers == want


def test_parse_common_units():
    c = parse_common(duration="2m", ramp="250ms", interval="100ms", workers="2")
    assert (c.duration_ns, c.ramp_ns, c.interval_ns, c.workers) == (120 * 10**9, 250_000_000, 100_000_000, 2)


# ---- limits: every number is checked where it is parsed ------------------------------------------------

U64 = 2**64
OVER_U64 = "18446744073709551617"

# (parser, option, the largest value accepted, the smallest refused above it, what the message says)
LIMITS = [
    (parse_disk, "duration", "720h", "720.000000001h", "invalid duration"),
    (parse_disk, "duration", "1ns", "10000000000h", "invalid duration"),
    (parse_disk, "ramp", "719h", "721h", "invalid ramp"),   # with the 10s duration: under 720h
    (parse_disk, "interval", "1h", "3601s", "invalid interval"),
    (parse_disk, "iops", "1G", "1000000001", "invalid rate: iops"),
    (parse_disk, "iops", "1G", OVER_U64, "invalid rate: iops"),
    (parse_disk, "workers", "1024", "1025", "invalid workers"),
    (parse_disk, "workers", "1024", OVER_U64, "invalid workers"),
    (parse_disk, "qd", "4096", "4097", "invalid qd"),
    (parse_disk, "qd", "4096", OVER_U64, "invalid qd"),
    (parse_disk, "bs", "64m", "65m", "invalid bs"),
    (parse_disk, "size", "1024t", "1025t", "invalid size"),
    (parse_disk, "size", "1024t", OVER_U64, "invalid size"),
    (parse_disk, "seed", str(U64 - 1), str(U64), "invalid seed"),
    (parse_disk, "mix", "100", "101", "invalid mix"),
    (parse_net, "pps", "1G", OVER_U64, "invalid rate: pps"),
    (parse_net, "size", "65507", "65508", "invalid size"),
    (parse_net, "flows", "65536", "65537", "invalid flows"),
    (parse_net, "batch", "1024", "1025", "invalid batch"),
    (parse_net, "port", "65535", "65536", "invalid port"),
    (parse_net, "timeout", "1h", "3601s", "invalid timeout"),
    (parse_net, "receivers", "1024", "1025", "invalid receivers"),
    (parse_net, "duration", "720h", "10000000000h", "invalid duration"),
]


@pytest.mark.parametrize("parse, name, highest, refused, says", LIMITS,
                         ids=[f"{p.__name__}-{n}-{r}" for p, n, _, r, _ in LIMITS])
def test_each_limit_accepts_its_edge_and_refuses_past_it(parse, name, highest, refused, says):
    base = {"workers": "1", "ramp": "0s"}
    if name == "mix":
        base["rw"] = "randrw"
    if (parse, name) == (parse_disk, "bs"):
        base["size"] = "64m"
    if (parse, name) == (parse_net, "flows"):
        base["receivers"] = "1"
    parse(**base | {name: highest})
    with pytest.raises(UsageError, match=says) as info:
        parse(**base | {name: refused})
    assert "\n" not in str(info.value) and str(refused) in str(info.value)


@pytest.mark.parametrize("parse, options, says", [
    (parse_disk, {"duration": "700h", "ramp": "21h"}, "ramp and duration together"),
    (parse_net, {"duration": "700h", "ramp": "21h"}, "ramp and duration together"),
    (parse_net, {"workers": "4", "flows": "3"}, "at least one per worker"),
    (parse_net, {"size": "31"}, "invalid size"),
    (parse_net, {"batch": "0"}, "invalid batch"),
    (parse_net, {"timeout": "0s"}, "invalid timeout"),
    (parse_net, {"target": "::1"}, "invalid address"),
    (parse_net, {"target": "[::1:9000"}, "invalid address"),
    (parse_disk, {"qd": True}, "invalid qd"),
    (parse_disk, {"duration": True}, "invalid duration"),
    (parse_disk, {"seed": "-1"}, "invalid seed"),
    (parse_disk, {"bogus": "1"}, "unknown disk options: bogus"),
    (parse_net, {"qd": "1"}, "unknown net options: qd"),
])
def test_joined_and_typed_rules(parse, options, says):
    with pytest.raises(UsageError, match=says):
        parse(**options)


def test_the_longest_run_still_fits_int64_nanoseconds():
    """end_ns = now + lead + ramp + duration, and receivers wait a timeout more: at the limits
    that stays far inside int64 (the native timeline's type), whatever the uptime."""
    longest = options.MAX_RUN_NS + options.MAX_TIMEOUT_NS + 60 * 10**9  # a minute of lead
    assert native.now_ns() + longest < 2**63 - 1
    assert 100 * 365 * 86400 * 10**9 + longest < 2**63 - 1   # a century of uptime


@pytest.mark.parametrize("copy, name", [
    (options.MAX_QD, "max_qd"), (options.MAX_FLOWS, "max_flows"), (options.MAX_BATCH, "max_batch"),
    (options.MAX_BATCH_WAIT_NS, "max_batch_wait_ns"),
    (options.PKT_HEADER_BYTES, "pkt_header_bytes"), (options.PKT_MAX_BYTES, "pkt_max_bytes"),
    (native.PKT_HEADER_BYTES, "pkt_header_bytes"), (native.PKT_MAX_BYTES, "pkt_max_bytes"),
    (native.PKT_MAGIC, "pkt_magic"),
])
def test_limits_copied_from_the_native_library_match_it(copy, name):
    assert copy == native.limit(name)


def test_native_limit_of_an_unknown_name():
    with pytest.raises(KeyError):
        native.limit("max_everything")


# ---- the option tables ---------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [options.DISK, options.NET, options.SERVE], ids=["disk", "net", "serve"])
def test_every_default_passes_its_own_option(table):
    for opt in table.values():
        opt.value(None)
        assert opt.help and (opt.type is bool or opt.metavar), opt.name
        assert (opt.lo is None) == (opt.hi is None), opt.name


def test_profiles_and_agents_accept_exactly_the_tables_names():
    assert set(parse_disk(workers="1").wire) == set(options.DISK)
    assert set(parse_net(workers="1").wire) == set(options.NET)


# ---- typed specs on the wire ---------------------------------------------------------------------------

@pytest.mark.parametrize("parse, spec_type, raw", [
    (parse_disk, DiskSpec, {}),
    (parse_disk, DiskSpec, {"target": "/dev/null", "size": "16m", "rw": "randrw", "mix": "30", "bs": "8k",
                            "qd": "7", "iops": "2.5k", "direct": False, "engine": "psync", "allow_destroy": True,
                            "seed": str(2**64 - 1), "duration": "2.5s", "ramp": "0s", "interval": "250ms",
                            "workers": "3"}),
    (parse_net, NetSpec, {}),
    (parse_net, NetSpec, {"target": "[::1]:9000", "pps": "100k", "size": "1500", "flows": "8", "mode": "echo",
                          "timeout": "250ms", "batch": "4", "receivers": "2", "port": "7", "workers": "2"}),
])
def test_a_spec_survives_the_wire_exactly(parse, spec_type, raw):
    import json

    spec = parse(**raw)
    wire = json.loads(json.dumps(spec.to_wire()))  # as the agent receives it
    assert spec_type.from_wire(wire) == spec
    assert spec_type.from_wire(wire).to_wire() == spec.to_wire()


@pytest.mark.parametrize("spec_type, wire, says", [
    (DiskSpec, {"duration": True}, "invalid duration: True"),
    (DiskSpec, {"qd": True}, "invalid qd"),
    (DiskSpec, {"qd": "32"}, "invalid qd: '32' \\(expected int\\)"),
    (DiskSpec, {"duration": 1.5}, "invalid duration"),
    (DiskSpec, {"direct": 1}, "invalid direct"),
    (DiskSpec, {"iops": U64 + 1}, "invalid rate: iops"),
    (DiskSpec, {"seed": -1}, "invalid seed"),
    (DiskSpec, {"seed": U64}, "invalid seed"),
    (DiskSpec, {"qd": None}, "invalid qd"),
    (DiskSpec, {"rw": "shred"}, "invalid rw"),
    (DiskSpec, {"target": 5}, "invalid target"),
    (DiskSpec, {"evil": 1}, "unknown disk options: evil"),
    (DiskSpec, [1], "must be an object"),
    (NetSpec, {"pps": "10k"}, "invalid pps"),
    (NetSpec, {"port": 70000}, "invalid port"),
    (NetSpec, {"timeout": 10**30}, "invalid timeout"),
    (NetSpec, {"target": "nowhere"}, "invalid address"),
])
def test_from_wire_is_strict(spec_type, wire, says):
    with pytest.raises(UsageError, match=says):
        spec_type.from_wire(wire)


def test_from_wire_fills_missing_names_with_defaults():
    s = NetSpec.from_wire({"workers": 2, "duration": 10**9})
    assert (s.common.workers, s.common.duration_ns, s.size_bytes, s.flows) == (2, 10**9, 64, 2)


@pytest.mark.parametrize("text, host", [
    ("example.com", "example.com"), ("example.com:9000", "example.com"), ("10.0.0.1:1", "10.0.0.1"),
    ("[::1]:9000", "::1"), ("[::1]", "::1"), ("::1", "::1"), ("fe80::1%eth0", "fe80::1%eth0"),
])
def test_host_of(text, host):
    from loadgen.workload import host_of

    assert host_of(text) == host


@pytest.mark.parametrize("text", ["", "[::1", "[]:9000", "[::1]:x", "host:", "host:port", ":9000"])
def test_host_of_rejects(text):
    from loadgen.workload import host_of

    with pytest.raises(UsageError, match="invalid address"):
        host_of(text)


@pytest.mark.parametrize("host, port, text", [("127.0.0.1", 9, "127.0.0.1:9"), ("::1", 9000, "[::1]:9000")])
def test_format_host_port_inverts_parse(host, port, text):
    from loadgen.workload import format_host_port, parse_host_port

    assert format_host_port(host, port) == text and parse_host_port(text) == (host, port)
