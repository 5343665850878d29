"""loadgen.units: sizes are binary, counts and rates decimal, durations integer ns."""
import re

import pytest

from loadgen.errors import UsageError
from loadgen.units import (format_bits_per_s, format_bytes_per_s, format_ns, format_si, format_size, parse_count,
                           parse_duration_ns, parse_rate, parse_size_bytes)

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
SECOND_NS = 10**9


@pytest.mark.parametrize("text, size_bytes", [
    ("4k", 4096),
    ("4K", 4096),
    ("4kb", 4096),
    ("4KiB", 4096),
    ("512", 512),
    ("512B", 512),
    ("1m", MiB),
    ("16m", 16 * MiB),
    ("1g", GiB),
    ("2T", 2 * TiB),
    ("1.5M", 1_572_864),     # fractional, but a whole number of bytes
    ("0.5k", 512),
    (" 8k ", 8192),
    (4096, 4096),
])
def test_parse_size_bytes(text, size_bytes):
    assert parse_size_bytes(text) == size_bytes


@pytest.mark.parametrize("text", [
    "4q", "10x", "", "k", "-4k", "4kk", "1.5", "0.3k", "1e3", "4 kilobytes",
])
def test_parse_size_bytes_rejects(text):
    with pytest.raises(UsageError, match="size"):
        parse_size_bytes(text)


@pytest.mark.parametrize("text, count", [
    ("50k", 50_000),
    ("1.5M", 1_500_000),
    ("1.5m", 1_500_000),
    ("2g", 2_000_000_000),
    ("7", 7),
    ("0", 0),
    ("2.5k", 2500),
    (12, 12),
])
def test_parse_count(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["1.5", "10x", "4q", "", "-1", "k", "1.0001k"])
def test_parse_count_rejects(text):
    with pytest.raises(UsageError, match="number"):
        parse_count(text)


@pytest.mark.parametrize("text, count", [("2.01k", 2010), ("4.02k", 4020), ("16.1k", 16_100)])
def test_parse_count_exact_decimal_fractions(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text, rate", [
    ("max", None),
    ("MAX", None),
    (" max ", None),
    ("2k", 2000),
    ("50k", 50_000),
    ("1.5M", 1_500_000),
    ("1", 1),
    (300, 300),
])
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0", "-5", "10x", "0.5", "", "maximum", 0, -5])
def test_parse_rate_rejects(text):
    with pytest.raises(UsageError, match="invalid rate"):
        parse_rate(text)


@pytest.mark.parametrize("text, duration_ns", [
    ("10s", 10 * SECOND_NS),
    ("500ms", 500_000_000),
    ("2m", 120 * SECOND_NS),
    ("1h", 3600 * SECOND_NS),
    ("250us", 250_000),
    ("75ns", 75),
    ("10", 10 * SECOND_NS),          # a bare number is seconds
    ("1.5", 1_500_000_000),
    ("0.5s", 500_000_000),
    ("0s", 0),
    ("10S", 10 * SECOND_NS),
    (3, 3 * SECOND_NS),
    (0.25, 250_000_000),
])
def test_parse_duration_ns(text, duration_ns):
    assert parse_duration_ns(text) == duration_ns


@pytest.mark.parametrize("text", ["10q", "10x", "", "s", "-1s", "1d", "10 seconds", "1e3s"])
def test_parse_duration_ns_rejects(text):
    with pytest.raises(UsageError, match="duration"):
        parse_duration_ns(text)


@pytest.mark.parametrize("text, duration_ns", [("1.001s", 1_001_000_000), ("1.003s", 1_003_000_000)])
def test_parse_duration_ns_exact_decimal_fractions(text, duration_ns):
    assert parse_duration_ns(text) == duration_ns


@pytest.mark.parametrize("size_bytes, text", [
    (4096, "4k"), (MiB, "1m"), (16 * MiB, "16m"), (GiB, "1g"), (3 * TiB, "3t"), (1000, "1000"), (1536, "1536"),
])
def test_format_size_inverts_parse(size_bytes, text):
    assert format_size(size_bytes) == text
    assert parse_size_bytes(text) == size_bytes


@pytest.mark.parametrize("value, text", [
    (481_234.0, "481.2k"), (2_000_000, "2.0M"), (3e9, "3.0G"), (999, "999"), (0, "0"),
])
def test_format_si(value, text):
    assert format_si(value) == text


@pytest.mark.parametrize("value_ns, text", [
    (51_234, "51.2 µs"), (999, "999 ns"), (1_000, "1.0 µs"), (1_500_000, "1.5 ms"), (2_000_000_000, "2.0 s"),
    (0, "0 ns"), (60_000.4, "60.0 µs"),
    # negative durations (clock offsets) take the unit their size calls for
    (-2_529, "-2.5 µs"), (-76_569, "-76.6 µs"), (-999, "-999 ns"), (-3_000_000, "-3.0 ms"),
])
def test_format_ns(value_ns, text):
    assert format_ns(value_ns) == text


@pytest.mark.parametrize("bits_per_s, text", [
    (0, "0 bit/s"), (999, "999 bit/s"), (1_000, "1.0 kbit/s"), (51_200_000.0, "51.2 Mbit/s"),
    (25e9, "25.0 Gbit/s"), (1e12, "1000.0 Gbit/s"),
])
def test_format_bits_per_s(bits_per_s, text):
    assert format_bits_per_s(bits_per_s) == text


@pytest.mark.parametrize("bytes_per_s, text", [
    (0, "0 B/s"), (1023, "1023 B/s"), (1024, "1.0 KiB/s"), (4096 * 100_000, "390.6 MiB/s"),
    (1 << 20, "1.0 MiB/s"), (15e9, "14.0 GiB/s"), (1 << 40, "1.0 TiB/s"),
])
def test_format_bytes_per_s(bytes_per_s, text):
    assert format_bytes_per_s(bytes_per_s) == text


# ---- a bool is never a number; errors name the option --------------------------------------------------

@pytest.mark.parametrize("parse", [parse_count, parse_size_bytes, parse_duration_ns, parse_rate])
@pytest.mark.parametrize("flag", [True, False])
def test_a_bool_is_not_a_number(parse, flag):
    with pytest.raises(UsageError):
        parse(flag)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_duration_is_refused(value):
    with pytest.raises(UsageError, match="invalid duration"):
        parse_duration_ns(value)


@pytest.mark.parametrize("parse, text, says", [
    (lambda t: parse_count(t, "qd"), "x", "invalid qd: 'x'"),
    (lambda t: parse_count(t, "qd"), "1.5", "invalid qd: '1.5' is not whole"),
    (lambda t: parse_duration_ns(t, "timeout"), "5q", "invalid timeout: '5q'"),
    (lambda t: parse_rate(t, "pps"), "lots", "invalid rate: pps 'lots'"),
    (lambda t: parse_rate(t, "iops"), "0", "invalid rate: iops '0' must be above zero"),
])
def test_errors_name_the_option(parse, text, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        parse(text)
