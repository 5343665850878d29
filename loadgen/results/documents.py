"""Documents: result documents ("loadgen/1") and profiles, read and checked in one place.

`load_result` and `load_profile` are the only ways check, compare, report and run
read a document. Each returns plain data that its schema (loadgen/results/schemas/*.json,
published with the package) vouches for, or raises UsageError: one line naming the
file, the JSON path of the first problem ("$.summary.rate") and what is wrong.

Rules, in the order they are applied:
- size: at most MAX_RESULT_BYTES or MAX_PROFILE_BYTES are read, so /dev/zero is refused
  instead of filling memory;
- syntax: JSON or TOML; nesting that exhausts the parser's recursion is refused;
- numbers: JSON has no NaN or Infinity, though Python's json module reads them, and a
  literal such as 1e400 or a 400-digit integer is beyond a double's range (RFC 8259 §6;
  Python makes 1e400 inf). TOML's nan and inf are refused likewise. No value may nest
  deeper than MAX_DEPTH. These hold anywhere in a document, even where the schema is open;
- structure: the schema, checked with jsonschema (Draft 2020-12).

A schema may word its own errors: "x-message" on a subschema replaces the text of an
error from that subschema's keywords, "x-missing" ({key}) that of a missing required key,
and "x-unknown" ({keys}) that of keys it does not allow. Validators ignore them.
"""
import json
import math
import re
import sys
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from loadgen.errors import UsageError

RESULT_SCHEMA = "loadgen/1"
# A day of 100 ms intervals is about 130 MB of JSON; anything far beyond is not a result.
MAX_RESULT_BYTES = 256 << 20
MAX_PROFILE_BYTES = 1 << 20
# loadgen's documents nest 6 levels deep; 32 leaves room to grow and keeps every
# recursive reader (jsonschema, json.dumps, copy) far from Python's recursion limit.
MAX_DEPTH = 32
# Decimal digits beyond which an integer cannot be a double (1.8e308).
_MAX_INT_DIGITS = 309
_SHOWN_DEPTH = 8     # of a path that nests too deep, the part an error message shows
_READ_CHUNK_BYTES = 1 << 20
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Unfit:
    """A number, as the file wrote it, that no JSON reader can hold: NaN, Infinity, inf, 1e400."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text[:40]

    def why(self) -> str:
        if self.text.lstrip("+-").lower() in ("nan", "infinity", "inf"):
            return f"{self.text} is not a number (documents hold no NaN or Infinity)"
        if self.text.lstrip("-").isdigit() and len(self.text) > 20:
            return f"an integer of {len(self.text.lstrip('-'))} digits is beyond the range of a double"
        return f"{self.text[:40]} is beyond the range of a double"


def _float(text: str):
    """parse_float of json and tomllib: keeps the text of what is not finite, for the message."""
    value = float(text)
    return value if math.isfinite(value) else _Unfit(text)


def _json_int(text: str):
    """parse_int of json: a 5000-digit integer is refused by length, before Python's
    int conversion limit (4300 digits) raises on it."""
    return _Unfit(text) if len(text.lstrip("-")) > _MAX_INT_DIGITS else int(text)


# ---- schemas ----------------------------------------------------------------------------------------

def schema_text(name: str) -> str:
    """The published schema, "result" or "profile", as shipped in the package."""
    return resources.files("loadgen.results").joinpath("schemas", f"{name}.schema.json").read_text()


# jsonschema is imported here, not at the top: it takes a good part of a second, and
# only the commands that read documents need it.

@lru_cache(maxsize=None)
def _validator(ref: str):
    """A Draft 2020-12 validator for the schema at ref ("urn:loadgen:schema:result", or a
    $defs path in one); the two schemas refer to each other through one registry."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    shipped = [Resource.from_contents(json.loads(schema_text(n))) for n in ("result", "profile")]
    registry = Registry().with_resources((r.id(), r) for r in shipped)
    return Draft202012Validator({"$ref": ref}, registry=registry)


def json_path(parts) -> str:
    """["summary", "latency_ns", "p99.9"] -> "$.summary.latency_ns['p99.9']"."""
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _IDENTIFIER.fullmatch(p):
            out += f".{p}"
        else:
            out += "[" + repr(p) + "]"
    return out


def _found(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"     # TOML dates and times


_TYPE_NAMES = {"number": "a number", "integer": "a whole number", "string": "a string", "object": "an object",
               "array": "an array", "boolean": "true or false", "null": "null"}


def _describe(error) -> tuple[list, str]:
    """(path, text) of one jsonschema error, in loadgen's words."""
    schema, value, path = error.schema, error.instance, list(error.absolute_path)
    kind = error.validator
    if kind == "required":
        key = next(k for k in error.validator_value if k not in value)
        own = schema.get("properties", {}).get(key, {})
        if "x-missing" in schema:
            return path, schema["x-missing"].format(key=key)
        return path + [key], own.get("x-message") or "missing (a required key)"
    if kind == "additionalProperties":
        known = set(schema.get("properties", {}))
        keys = ", ".join(sorted(k for k in value if k not in known))
        if "x-unknown" in schema:
            return path, schema["x-unknown"].format(keys=keys)
        return path, schema.get("x-message") or f"unknown keys: {keys}"
    if "x-message" in schema:
        return path, f"{schema['x-message']} (found {_found(value)})"
    if kind == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return path, f"expected {' or '.join(_TYPE_NAMES.get(t, t) for t in types)}, found {_found(value)}"
    if kind == "minimum":
        bound = error.validator_value
        return path, (f"must not be negative, found {value!r}" if bound == 0
                      else f"must be at least {bound}, found {value!r}")
    if kind == "maximum":
        return path, f"must be at most {error.validator_value}, found {value!r}"
    if kind == "const":
        return path, f"must be {json.dumps(error.validator_value)}, found {_found(value)}"
    if kind == "enum":
        return path, (f"must be one of {', '.join(json.dumps(v) for v in error.validator_value)}, "
                      f"found {_found(value)}")
    text = error.message.splitlines()[0] if error.message else kind
    return path, text if len(text) <= 160 else text[:157] + "..."


def _unfit_value(doc) -> tuple[list, str] | None:
    """(path, why) of the first value no JSON reader can hold, or nested too deeply; else None.
    Iterative, so a deep document cannot exhaust the stack here."""
    stack = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return path[:_SHOWN_DEPTH], f"nests more than {MAX_DEPTH} levels deep"
        if isinstance(value, _Unfit):
            return path, value.why()
        if isinstance(value, float) and not math.isfinite(value):
            return path, f"{value!r} is not a number"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max:
            return path, f"an integer of {len(str(abs(value)))} digits is beyond the range of a double"
        if isinstance(value, dict):
            stack.extend((v, path + [k]) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, path + [i]) for i, v in reversed(list(enumerate(value))))
    return None


def check(value, ref: str, where: str) -> None:
    """UsageError naming `where` and the first problem's path, unless value fits the schema at ref."""
    unfit = _unfit_value(value)
    if unfit:
        path, why = unfit
        raise UsageError(f"{where}: {json_path(path)}: {why}")
    from jsonschema.exceptions import best_match

    error = best_match(_validator(ref).iter_errors(value))
    if error is not None:
        path, why = _describe(error)
        raise UsageError(f"{where}: {json_path(path)}: {why}")


# ---- reading ----------------------------------------------------------------------------------------

def _read(path: Path, limit_bytes: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            chunks, size = [], 0
            while size <= limit_bytes:
                chunk = f.read(_READ_CHUNK_BYTES)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise UsageError(f"no such {what}: {path}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    raise UsageError(f"{path} is larger than {limit_bytes >> 20} MiB: not a loadgen {what}")


def load_result(path: str | Path) -> dict:
    """Read a result document and check it against result.schema.json."""
    data = _read(Path(path), MAX_RESULT_BYTES, "result")
    try:
        doc = json.loads(data, parse_constant=_Unfit, parse_float=_float, parse_int=_json_int)
    except RecursionError:
        raise UsageError(f"{path} is not a readable result document: nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is not a readable result document: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != RESULT_SCHEMA:
        got = f"schema {repr(doc.get('schema'))[:60]}" if isinstance(doc, dict) else f"{_found(doc)} at the top"
        raise UsageError(f"{path} is not a {RESULT_SCHEMA} result document ({got})")
    check(doc, "urn:loadgen:schema:result", str(path))
    return doc


def load_profile(path: str | Path) -> dict:
    """Read a profile's TOML and check it against profile.schema.json (options are left
    to the option parsers)."""
    data = _read(Path(path), MAX_PROFILE_BYTES, "profile")
    try:
        raw = tomllib.loads(data.decode("utf-8"), parse_float=_float)
    except RecursionError:
        raise UsageError(f"{path}: not valid TOML: nested too deeply") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    except ValueError as e:     # TOMLDecodeError, and integers past Python's digit limit
        raise UsageError(f"{path}: not valid TOML: {str(e).splitlines()[0]}") from None
    check(raw, "urn:loadgen:schema:profile", str(path))
    return raw


def check_claim(raw, where: str) -> None:
    """A claim table (a profile's [claim], or the one a result recorded) against the schema."""
    check(raw, "urn:loadgen:schema:profile#/$defs/claim", where)
