"""Units, parsed in one place for the CLI and profiles alike.

- sizes are binary, like fio: "4k" = 4096 bytes, "1g" = 1 GiB; "B" and "iB" suffixes are accepted.
- counts and rates are decimal: "50k" = 50_000, "1.5M" = 1_500_000.
- durations become integer nanoseconds: "10s", "500ms", "2m", "1h", "250us";
  a bare number is seconds.

Formatting, for the human summaries (the documents keep raw integers): durations in
ns, µs, ms or s, whichever the value fills; network rates in bits (bit/s with k, M,
G); disk rates in bytes with binary prefixes (MiB/s), as sizes are given; counts and
operation rates with a decimal k, M or G.
"""
import re
from decimal import Decimal, InvalidOperation

from loadgen.errors import UsageError

_SIZE_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_DURATION_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


def _split(text: str, what: str, pattern: str) -> tuple[Decimal, str]:
    """(number, unit) with the number exact: "2.01k" must be 2010, not 2009.99..."""
    m = re.fullmatch(_NUMBER + r"\s*" + pattern, str(text).strip(), re.IGNORECASE)
    if not m:
        raise UsageError(f"invalid {what}: {text!r}")
    try:
        return Decimal(m.group(1)), m.group(2).lower()
    except InvalidOperation:
        raise UsageError(f"invalid {what}: {text!r}") from None


def _not_a_flag(value, option: str) -> None:
    """A bool is an int to Python, never a number to a user: `duration = true` is an error."""
    if isinstance(value, bool):
        raise UsageError(f"invalid {option}: {value!r}")


def parse_size_bytes(text: str | int, option: str = "size") -> int:
    """'4k' -> 4096. Whole bytes only; errors name the option."""
    _not_a_flag(text, option)
    if isinstance(text, int):
        return text
    value, suffix = _split(text, option, r"([kmgt]?)(?:i?b)?")
    size = value * _SIZE_SUFFIX[suffix]
    if size != int(size):
        raise UsageError(f"invalid {option}: {text!r} is not a whole number of bytes")
    return int(size)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_bool(value: str | bool | int, option: str) -> bool:
    """True/false from a flag or a profile: true/false, yes/no, on/off, 1/0; anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"invalid {option}: {value!r} (true or false)")


def parse_count(text: str | int, option: str = "number") -> int:
    """'1.5M' -> 1_500_000. Whole numbers only; errors name the option."""
    _not_a_flag(text, option)
    if isinstance(text, int):
        return text
    value, suffix = _split(text, option, r"([kmg]?)")
    count = value * _COUNT_SUFFIX[suffix]
    if count != int(count):
        raise UsageError(f"invalid {option}: {text!r} is not whole")
    return int(count)


def parse_rate(text: str | int, option: str = "") -> int | None:
    """'max' -> None (closed loop), else operations per second, which must be positive."""
    if isinstance(text, str) and text.strip().lower() == "max":
        return None
    named = f"{option} " if option else ""
    try:
        rate = parse_count(text)
    except UsageError:
        raise UsageError(f"invalid rate: {named}{text!r} (use a number such as 50k or 1.5M, or 'max')") from None
    if rate <= 0:
        raise UsageError(f"invalid rate: {named}{text!r} must be above zero (or 'max')")
    return rate


def parse_ratio(text: str | int | float, option: str = "ratio") -> float:
    """'0.001' or '0.1%' -> 0.001: a share, given as a fraction or in percent."""
    _not_a_flag(text, option)
    if isinstance(text, (int, float)):
        return float(text)
    value, suffix = _split(text, option, r"(%?)")
    return float(value / 100 if suffix else value)


def parse_percent(text: str | int | float, option: str = "percent") -> float:
    """'1%' or '1' -> 0.01: a share, given in percent (with or without the sign)."""
    _not_a_flag(text, option)
    if isinstance(text, (int, float)):
        return float(text) / 100
    value, _ = _split(text, option, r"(%?)")
    return float(value / 100)


def parse_duration_ns(text: str | int | float, option: str = "duration") -> int:
    """'10s' -> 10_000_000_000. Errors name the option."""
    what = option
    _not_a_flag(text, what)
    if isinstance(text, (int, float)):
        value = Decimal(str(text))
        if not value.is_finite():
            raise UsageError(f"invalid {what}: {text!r}")
        return int(value * 10**9)
    value, suffix = _split(text, what, r"(ns|us|ms|s|m|h|)")
    return int(value * _DURATION_NS[suffix or "s"])


def format_size(size_bytes: int) -> str:
    """4096 -> '4k', the inverse of parse_size_bytes for exact multiples."""
    for suffix in "tgmk":
        unit = _SIZE_SUFFIX[suffix]
        if size_bytes >= unit and size_bytes % unit == 0:
            return f"{size_bytes // unit}{suffix}"
    return str(size_bytes)


def format_si(value: float) -> str:
    """A count or a rate with a decimal prefix: 481234.0 -> '481.2k'."""
    for suffix, unit in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= unit:
            return f"{value / unit:.1f}{suffix}"
    return f"{value:.0f}"


# The prefix is chosen by magnitude, so a negative value (a clock offset) reads like a positive one.
_NS_UNITS = (("s", 1e9), ("ms", 1e6), ("µs", 1e3))


def format_ns(value_ns: float) -> str:
    """A duration for people, in the largest unit it fills: 51234 -> '51.2 µs', -2529 -> '-2.5 µs'."""
    for suffix, unit in _NS_UNITS:
        if abs(value_ns) >= unit:
            return f"{value_ns / unit:.1f} {suffix}"
    return f"{value_ns:.0f} ns"


def format_bits_per_s(value_bits_per_s: float) -> str:
    """Network throughput in bits, with decimal prefixes as links are rated: 25e9 -> '25.0 Gbit/s'."""
    for prefix, unit in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value_bits_per_s) >= unit:
            return f"{value_bits_per_s / unit:.1f} {prefix}bit/s"
    return f"{value_bits_per_s:.0f} bit/s"


def format_bytes_per_s(value_bytes_per_s: float) -> str:
    """Disk throughput in bytes, with binary prefixes as sizes are given: 4096 * 1000 -> '3.9 MiB/s'."""
    for prefix, unit in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if abs(value_bytes_per_s) >= unit:
            return f"{value_bytes_per_s / unit:.1f} {prefix}B/s"
    return f"{value_bytes_per_s:.0f} B/s"
