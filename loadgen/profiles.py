"""Profiles: a workload saved as TOML, with an optional claim to check it against.

    description = "..."
    kind = "net" | "disk"
    [options]            # the CLI's option names and values, "4k", "10s"...
    target = "/dev/nvme1n1,/dev/nvme2n1"   # several targets, or a glob ("/dev/nvme*n1"), as --target takes
    [claim]              # optional: what the result should show
    metric = "summary.rate"       # a dotted path into the result document
    op = ">=" | "<=" | "overhead<="   # overhead<=: percent below a baseline run
    value = 100125
    source = "..."                # where the figure comes from (profiles/README.md)
    scope = { instance_types = ["i3.large"] }   # optional: where it applies
    [search]             # optional: run it as `loadgen search` (its options, such as max_loss)
    max_loss = "0.1%"             # the trial's rate and duration are the search's: not in [options]

The document's shape (keys, types, the claim) is checked against
loadgen/results/schemas/profile.schema.json by loadgen.results.documents. Options go through the
same parse functions as the command line, so a profile is valid exactly when the
equivalent command line is.
"""
from dataclasses import dataclass, field
from pathlib import Path

from loadgen.errors import UsageError
from loadgen.results import documents

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
    search: dict | None = None   # raw search options (options.SEARCH); None: a single run

    def as_dict(self) -> dict:
        out = {"name": self.name, "path": self.path, "description": self.description}
        if self.claim:
            out["claim"] = {"metric": self.claim.metric, "op": self.claim.op, "value": self.claim.value,
                            "source": self.claim.source, "scope": self.claim.scope}
        if self.search is not None:
            out["search"] = self.search
        return out


def parse_claim(raw, where: str) -> Claim | None:
    """A claim table (a profile's [claim], or the one a result recorded) as a Claim; None for none.
    UsageError, naming `where` and the claim's problem, when it does not fit the profile schema."""
    if raw is None:
        return None
    documents.check_claim(raw, where)
    return Claim(raw["metric"], raw["op"], float(raw["value"]), raw["source"], dict(raw.get("scope", {})))


def load(path: str | Path) -> Profile:
    """Read and validate a profile; UsageError names the file and the problem."""
    path = Path(path)
    raw = documents.load_profile(path)     # the document's shape; the options' values below
    options = raw.get("options", {})
    profile = Profile(path.stem, str(path), raw["kind"], raw.get("description", "").strip(),
                      {k.replace("-", "_"): _as_option(v) for k, v in options.items()},
                      parse_claim(raw.get("claim"), str(path)),
                      None if "search" not in raw else
                      {k.replace("-", "_"): _as_option(v) for k, v in raw["search"].items()})
    validate(profile.kind, profile.options, str(path), profile.search)
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


# Options a search sets for each trial itself (loadgen search leaves them out).
SEARCHED_OPTIONS = {"net": ("pps", "duration"), "disk": ("iops", "duration")}


def validate(kind: str, options: dict, where: str, search: dict | None = None):
    """Parse options exactly as the command line would; the spec, or UsageError.
    The accepted names are the option table's (loadgen/options.py) and the remote keys;
    with a search, its options too, and not the rate and duration it sets."""
    from loadgen.search import parse_search
    from loadgen.workload import parse_disk, parse_net

    from loadgen.workload import is_target_list

    job, remote = split_remote(kind, options)
    parse = parse_net if kind == "net" else parse_disk
    try:
        if kind == "disk" and remote.get("on") and is_target_list(job.get("target")):
            raise UsageError(f"on runs one target on its host: target {job['target']} names several "
                             "(a list or a glob)")
        if search is not None:
            set_here = [k for k in SEARCHED_OPTIONS[kind] if k in job]
            if set_here:
                raise UsageError(f"a search sets each trial's {' and '.join(set_here)}: "
                                 "leave them out of [options]")
            parse_search(kind, **search)
        return parse(**job)
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
