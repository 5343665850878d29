"""loadgen.workload: raw option values -> a validated DiskSpec, or a one-line UsageError."""
import os

import pytest

from loadgen.errors import UsageError
from loadgen.workload import DiskSpec, parse_common, parse_disk

MiB = 1 << 20


def spec(**options) -> DiskSpec:
    """parse_disk with a fixed seed and one worker unless a test says otherwise."""
    return parse_disk(**({"seed": "1", "workers": "1"} | options))


@pytest.mark.parametrize("options, message", [
    ({"qd": 0}, "invalid qd"),
    ({"qd": "0"}, "invalid qd"),
    ({"qd": "4097"}, "invalid qd"),
    ({"qd": "-1"}, "invalid number"),
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
    ({"rw": "randrw", "mix": "-1"}, "invalid number"),
    ({"rw": "rw", "mix": "200"}, "invalid mix"),
    ({"rw": "randread", "mix": "70"}, "--mix applies to randrw and rw"),
    ({"rw": "write", "mix": "70"}, "--mix applies to randrw and rw"),
    ({"size": "2k"}, "smaller than one block"),
    ({"size": "0"}, "smaller than one block"),
    ({"engine": "aio"}, "invalid engine"),
    ({"duration": "0s"}, "invalid duration"),
    ({"duration": "10q"}, "invalid duration"),
    ({"ramp": "-1s"}, "invalid duration"),
    ({"interval": "5ms"}, "invalid interval"),
    ({"workers": "1025"}, "invalid workers"),
    ({"seed": "x"}, "invalid number"),
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
        "busy_poll": False,
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
