"""Profiles: a workload saved as TOML, with an optional claim to check it against.

    description = "..."
    kind = "net" | "disk"
    [options]            # the CLI's option names and values, "4k", "10s"...
    [claim]              # optional: what the result should show
    metric = "summary.rate"       # a dotted path into the result document
    op = ">=" | "<=" | "overhead<="   # overhead<=: percent below a baseline run
    value = 100125
    source = "..."                # where the figure comes from (CLAIMS.md)
    scope = { instance_types = ["i3.large"] }   # optional: where it applies

Options go through the same parse functions as the command line, so a profile
is valid exactly when the equivalent command line is.
"""
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.errors import UsageError

OPS = (">=", "<=", "overhead<=")
# Options a profile may set beyond the job's own: where the far end is.
NET_REMOTE_KEYS = {"peer", "clients"}
DISK_REMOTE_KEYS = {"on"}


@dataclass(frozen=True)
class Claim:
    metric: str
    op: str
    value: float
    source: str
    scope: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    path: str
    kind: str
    description: str
    options: dict
    claim: Claim | None

    def as_dict(self) -> dict:
        out = {"name": self.name, "path": self.path, "description": self.description}
        if self.claim:
            out["claim"] = {"metric": self.claim.metric, "op": self.claim.op, "value": self.claim.value,
                            "source": self.claim.source, "scope": self.claim.scope}
        return out


def _parse_claim(raw, where: str) -> Claim | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: [claim] must be a table")
    unknown = set(raw) - {"metric", "op", "value", "source", "scope"}
    if unknown:
        raise UsageError(f"{where}: unknown claim keys: {', '.join(sorted(unknown))}")
    for key in ("metric", "op", "value", "source"):
        if key not in raw:
            raise UsageError(f"{where}: the claim needs {key}")
    if raw["op"] not in OPS:
        raise UsageError(f"{where}: claim op must be one of {', '.join(OPS)}")
    if not isinstance(raw["value"], (int, float)) or isinstance(raw["value"], bool):
        raise UsageError(f"{where}: claim value must be a number")
    if not isinstance(raw["metric"], str) or not raw["metric"].startswith("summary."):
        raise UsageError(f"{where}: claim metric must be a path into the summary, such as summary.rate")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise UsageError(f"{where}: the claim must cite its source")
    scope = raw.get("scope", {})
    if not isinstance(scope, dict) or set(scope) - {"instance_types", "hypervisor"}:
        raise UsageError(f"{where}: claim scope may hold instance_types and hypervisor")
    types = scope.get("instance_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise UsageError(f"{where}: scope instance_types must be a list of names such as [\"i3.large\"]")
    if not isinstance(scope.get("hypervisor", ""), str):
        raise UsageError(f"{where}: scope hypervisor must be a name such as \"KVM\"")
    return Claim(raw["metric"], raw["op"], float(raw["value"]), raw["source"], dict(scope))


def load(path: str | Path) -> Profile:
    """Read and validate a profile; UsageError names the file and the problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such profile: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    unknown = set(raw) - {"description", "kind", "options", "claim"}
    if unknown:
        raise UsageError(f"{path}: unknown keys: {', '.join(sorted(unknown))}")
    kind = raw.get("kind")
    if kind not in ("net", "disk"):
        raise UsageError(f"{path}: kind must be net or disk")
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise UsageError(f"{path}: [options] must be a table")
    profile = Profile(path.stem, str(path), kind, str(raw.get("description", "")).strip(),
                      {k.replace("-", "_"): _as_option(v) for k, v in options.items()},
                      _parse_claim(raw.get("claim"), str(path)))
    validate(profile.kind, profile.options, str(path))
    return profile


def _as_option(value):
    return value if isinstance(value, (bool, str)) or value is None else str(value)


def apply_sets(options: dict, sets: list[str]) -> dict:
    """--set key=value overrides, each key an option name."""
    out = dict(options)
    for item in sets:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UsageError(f"invalid --set {item!r} (expected key=value)")
        value = value.strip()
        out[key] = {"true": True, "false": False}.get(value.lower(), value)
    return out


def split_remote(kind: str, options: dict) -> tuple[dict, dict]:
    """(job options, remote options such as peer or on)."""
    keys = NET_REMOTE_KEYS if kind == "net" else DISK_REMOTE_KEYS
    return ({k: v for k, v in options.items() if k not in keys},
            {k: v for k, v in options.items() if k in keys})


def validate(kind: str, options: dict, where: str):
    """Parse options exactly as the command line would; the spec, or UsageError.
    The accepted names are the option table's (loadgen/options.py) and the remote keys."""
    from loadgen.workload import parse_disk, parse_net

    job, _ = split_remote(kind, options)
    parse = parse_net if kind == "net" else parse_disk
    try:
        return parse(**job)
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
