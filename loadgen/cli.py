"""The command line. Commands are thin: they build one validated spec and hand it
to the job's entry point. Only main() turns errors into messages and exit codes:
2 for bad input, 1 for the environment, 130 when interrupted.

The help explains itself: every option names its type or unit (its metavar:
RATE, DURATION, FILE), shows its default once, and every command ends with
examples. A bare `loadgen` prints the help on stdout and exits 2, as a command
given nothing to do is a usage error (git prints its help and exits 1; click's
missing argument is 2, and loadgen keeps one code for bad input).
"""
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from loadgen import __version__, options
from loadgen.errors import LoadgenError, SetupError, UsageError

EXIT_INTERRUPTED = 130

PROG = "loadgen"


def examples(*lines: str) -> str:
    """A command's epilog: its examples, one a line (click keeps a paragraph that starts with \\b unwrapped)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Open-loop load generator: UDP packets per second and disk IOPS.",
                  epilog=examples("loadgen disk --duration 5s",
                                  "loadgen net --pps 100k --duration 5s",
                                  "loadgen run profiles/smoke.toml --json r.json && loadgen check r.json",
                                  "loadgen COMMAND --help"))


def _print_version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print loadgen's version and exit.")] = False,
) -> None:
    """Open-loop load generator: UDP packets per second and disk IOPS."""


# The outputs a run can send to stdout; at most one of them may.
_OUTPUTS = {"json_path": "--json", "hlog": "--hlog", "json_stream": "--json-stream"}


def _output_path(ctx: typer.Context, param: typer.CallbackParam, path: Optional[Path]) -> Optional[Path]:
    """--json, --hlog and --json-stream: refuse at once a path no write could succeed at
    (before a long run), and two of them on stdout together."""
    from loadgen import output

    if path is None:
        return None
    try:
        output.check(str(path))
    except OSError as e:
        raise UsageError(f"cannot write {path}: {output.describe(e)}") from None
    for name in _OUTPUTS:
        other = ctx.params.get(name) if name != param.name else None
        if other is not None and output.is_stdout(str(path)) and output.is_stdout(str(other)):
            first, second = sorted((name, param.name), key=list(_OUTPUTS).index)
            raise UsageError(f"{_OUTPUTS[first]} and {_OUTPUTS[second]} cannot both go to stdout")
    return path


def _file_argument(help: str, metavar: str):
    """A positional file: shown as `METAVAR <file>`; the command reads it itself."""
    return typer.Argument(help=help, metavar=metavar, dir_okay=False)


# Options every command shares that are not job options (those come from loadgen/options.py).
JsonOut = Annotated[Optional[Path], typer.Option("--json", callback=_output_path, metavar="FILE",
                                                 help="Write the result document here (- for stdout).")]
HlogOut = Annotated[Optional[Path], typer.Option("--hlog", callback=_output_path, metavar="FILE",
                                                 help="Write an HdrHistogram interval log here (- for stdout).")]
Metrics = Annotated[Optional[str], typer.Option(
    "--metrics", metavar="[ADDR:]PORT",
    help="Serve live metrics for Prometheus here during the run (ADDR: 127.0.0.1 unless given; PORT 0: any free one).")]
MetricsLinger = Annotated[Optional[str], typer.Option(
    "--metrics-linger", metavar="DURATION",
    help="After the run, keep serving --metrics until a scrape has seen the final counts, at most this long. "
         "[default: 0s]")]
JsonStream = Annotated[Optional[Path], typer.Option("--json-stream", callback=_output_path, metavar="FILE|-",
                                                    help="Write NDJSON here (- for stdout): a line per interval "
                                                         "as it ends, then the result document.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No header, no interval lines and no summary.")]
Strict = Annotated[bool, typer.Option("--strict", help="Exit 1 when the run stalled or fell short of its rate.")]
# LOADGEN_TOKEN holds the token itself, not a path (loadgen.fleet.agent.load_token).
TokenFile = Annotated[Optional[str], typer.Option(
    metavar="FILE", help="Read the agents' shared token from this file; without it, the token is the "
                         "value of the environment variable LOADGEN_TOKEN.")]
TlsCa = Annotated[Optional[str], typer.Option(
    metavar="FILE", help="Use TLS to agents, checking their certificate against this CA file (PEM).")]
Tls = Annotated[bool, typer.Option("--tls", help="Use TLS to agents without checking their certificate.")]
# Where a job runs, when not all here (net and disk, and their searches).
Peer = Annotated[Optional[str], typer.Option(help="HOST:PORT of a loadgen agent that receives (and echoes).",
                                             metavar="HOST:PORT")]
Clients = Annotated[Optional[str], typer.Option(
    help="Comma-separated HOST:PORT agents that send, instead of this host.", metavar="HOST:PORT,...")]
On = Annotated[Optional[str], typer.Option(help="HOST:PORT of a loadgen agent to run the job on.", metavar="HOST:PORT")]


def _connector(token_file: Optional[str], tls: bool, tls_ca: Optional[str]):
    """connect(host, port) -> AgentClient, with the token and TLS settings given."""
    from loadgen.fleet.agent import load_token
    from loadgen.fleet.remote import AgentClient, client_ssl_context

    token = load_token(token_file)
    ctx = client_ssl_context(tls_ca) if (tls or tls_ca) else None

    async def connect(host: str, port: int):
        return await AgentClient.connect(host, port, token, ctx)

    return connect


def _metrics(address: Optional[str], linger: Optional[str]):
    """(exporter or None, linger ns): --metrics starts serving now, so a port in use fails before the run."""
    from loadgen.run import metrics

    linger_ns = metrics.parse_linger_ns(linger) if linger else 0
    if address is None:
        if linger:
            raise UsageError("--metrics-linger needs --metrics")
        return None, 0
    exporter = metrics.Exporter()
    exporter.serve(*metrics.parse_address(address))
    sys.stderr.write(f"loadgen: metrics at {exporter.url()}\n")
    sys.stderr.flush()
    return exporter, linger_ns


def _linger(exporter, linger_ns: int) -> None:
    """Serve the final metrics a while after the result is written (--metrics-linger); a signal ends it."""
    from loadgen.run import interrupts

    if exporter is None:
        return
    before = interrupts.caught()
    try:
        exporter.linger(linger_ns, lambda: interrupts.caught() != before)
    except KeyboardInterrupt:
        pass   # a signal again after one during the run: the result is written, stop serving
    exporter.close()


def _run_job(coro) -> dict:
    import uvloop

    return uvloop.run(coro)


def _human_stream(*paths: Optional[Path]):
    """Where people's output goes: stderr when stdout carries an output, else stdout."""
    from loadgen import output

    return sys.stderr if any(p is not None and output.is_stdout(str(p)) for p in paths) else sys.stdout


def _watched(job, quiet: bool, json_stream: Optional[Path], human) -> tuple[dict, object]:
    """Run job(watch) with the display (unless quiet) and the NDJSON stream; the document and
    the stream, still open for its last line (_finish closes it)."""
    from loadgen import output
    from loadgen.run import progress
    from loadgen.run.job import Watch
    from loadgen.run.jsonstream import JsonStream

    stream = None
    if json_stream is not None:
        try:
            stream = JsonStream.open(str(json_stream))
        except OSError as e:
            raise UsageError(f"cannot write {json_stream}: {output.describe(e)}") from None
    try:
        doc = _run_job(job(Watch(None if quiet else progress.for_stream(human), [stream] if stream else [])))
    except BaseException:
        if stream:
            try:
                stream.close()
            except OSError:
                pass   # the error that stopped the run is the one to report
        raise
    return doc, stream


def _end_stream(stream, path: Path, doc: dict, keep: bool) -> Optional[str]:
    """End the NDJSON stream with the document and close it; why not, if that failed.

    keep: the document has no other destination (no --json), so if the stream
    did not take it (now, or it failed during the run), it goes to a fallback file."""
    from loadgen.run import interrupts
    from loadgen import output
    from loadgen.results import result

    why = None
    try:
        stream.result(doc)   # nothing, if the stream failed during the run (that was reported then)
        stream.close()
    except OSError as e:   # kept in output.failures(): the exit code is 1
        why = output.describe(e)
    except KeyboardInterrupt:   # a second signal: a reader that does not read
        why = f"interrupted by {interrupts.caught()}"
    if why:
        sys.stderr.write(f"loadgen: cannot write {'stdout' if output.is_stdout(str(path)) else path}: {why}\n")
    if (why or stream.error) and keep:
        text = result.json_text(doc)
        kept = output.fallback(text, ".json")
        sys.stderr.write(f"loadgen: the result is in {kept}\n" if kept else "loadgen: the result follows\n")
        if not kept:
            sys.stderr.write(text)
    return why


def _write_json(doc: dict, json_path: Path) -> Optional[str]:
    """Write the document to --json; why not, if that failed, after keeping it in a
    fallback file (or on stderr) whose name is printed."""
    from loadgen import output
    from loadgen.results import result
    from loadgen.run import interrupts

    why = None
    text = result.json_text(doc)
    try:
        output.write_document(str(json_path), text)
    except OSError as e:
        why = output.describe(e)
    except KeyboardInterrupt:   # a second signal: the destination would not take it (a FIFO with no reader)
        why = f"interrupted by {interrupts.caught()}"
    if why:
        kept = output.fallback(text, ".json")
        sys.stderr.write(f"loadgen: cannot write {json_path}: {why}; "
                         + (f"the result is in {kept}\n" if kept else "the result follows\n"))
        if not kept:
            sys.stderr.write(text)
    return why


def _finish(doc: dict, json_path: Optional[Path], quiet: bool, formatter, hlog: Optional[Path] = None,
            strict: bool = False, stream=None, json_stream: Optional[Path] = None) -> int:
    """Print the summary, then write the document: a result is never lost.

    The summary goes first, so a document that cannot be written still leaves
    the numbers on the screen; it goes to stderr when stdout carries --json,
    --hlog or --json-stream. A document that cannot be written goes to a
    fallback file whose name is printed, or to stderr, and the exit code is 1
    (130 if a signal stopped the write), as it is when the .hlog or the NDJSON
    stream failed during the run. The stream gets the document as its last line
    after --json has it, so a stream whose reader stalls holds up nothing else.
    Otherwise: 130 interrupted, 1 failed, 0 success."""
    from loadgen.run import interrupts
    from loadgen import output
    from loadgen.results import result

    if not quiet:
        print(formatter(doc), file=_human_stream(json_path, hlog, json_stream), flush=True)
    for warning in doc.get("warnings", []):
        sys.stderr.write(f"loadgen: warning: {warning}\n")
    why = _write_json(doc, json_path) if json_path else None
    if stream is not None:
        why = _end_stream(stream, json_stream, doc, keep=json_path is None) or why
    if why and why.startswith("interrupted"):
        return EXIT_INTERRUPTED
    if why or output.failures():
        return 1
    if doc["interrupted"]:
        return EXIT_INTERRUPTED
    if doc["failed"]:
        sys.stderr.write(f"loadgen: {doc['stop_reason']}\n")
        return 1
    if interrupts.caught():
        sys.stderr.write(f"loadgen: interrupted by {interrupts.caught()} after the run; its result is complete\n")
        return EXIT_INTERRUPTED
    if strict and result.falls_short(doc):
        return 1
    return 0


def _with_options(table: dict[str, options.Option]):
    """Give a command one CLI option per entry of an option table, in table order and
    before its own: flag, default, help and metavar come from the table alone. The
    command receives them raw, as **job_options, for the job's parser to check."""
    import inspect

    def cli_param(opt: options.Option) -> inspect.Parameter:
        if opt.type is bool:
            info = typer.Option(*(opt.flag or f"--{opt.name.replace('_', '-')}").split(), help=opt.help)
            annotation, default = Annotated[bool, info], opt.default
        else:
            info = typer.Option(f"--{opt.name.replace('_', '-')}", help=options.help_text(opt), metavar=opt.metavar)
            annotation, default = Annotated[Optional[str], info], None if opt.default is None else str(opt.default)
        return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    def decorate(command):
        sig = inspect.signature(command)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in sig.parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        command.__signature__ = sig.replace(parameters=[cli_param(o) for o in table.values()] + own)
        return command

    return decorate


disk_app = typer.Typer(rich_markup_mode=None)
app.add_typer(disk_app, name="disk")


@disk_app.callback(invoke_without_command=True, epilog=examples(
    "loadgen disk --duration 5s                          # 4k random reads of a temporary 1g file",
    "loadgen disk --target /dev/nvme1n1 --qd 32 --iops max --json r.json --hlog r.hlog",
    "loadgen disk --iops 50k --rw randrw --mix 70        # open loop: 50k IOPS on a schedule",
    "loadgen disk --on hostB:7070 --target /mnt/nvme/test.dat --token-file loadgen.token",
    "loadgen disk prepare --target /dev/nvme1n1 --passes 2   # fill it before measuring (see prepare --help)"))
@_with_options(options.DISK | options.RAY_DISK)
def disk(
    ctx: typer.Context,
    on: On = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    hlog: HlogOut = None,
    metrics: Metrics = None,
    metrics_linger: MetricsLinger = None,
    json_stream: JsonStream = None,
    quiet: Quiet = False,
    strict: Strict = False,
    **job_options,
) -> None:
    """Drive IOPS against a file or block device with io_uring workers, one per core."""
    from loadgen.results.result import format_disk
    from loadgen.workload import parse_disk

    if ctx.invoked_subcommand:
        return   # loadgen disk prepare / verify: the subcommand takes its own options

    ray = _ray_options(options.RAY_DISK, job_options, "--on" if on else None)
    _one_target_each(on and "--on" or ray["ray"] and "--ray", job_options.get("target"))
    spec = parse_disk(**job_options)
    connect = _connector(token_file, tls, tls_ca) if on else None
    exporter, linger_ns = _metrics(metrics, metrics_linger)
    human = _human_stream(json_path, hlog, json_stream)
    doc, stream = _watched(lambda watch: _disk_job(spec, on, connect, hlog, watch, exporter, ray), quiet,
                           json_stream, human)
    code = _finish(doc, json_path, quiet, format_disk, hlog, strict, stream, json_stream)
    bad = (doc["summary"].get("verify") or {}).get("bad")
    if bad and code == 0:
        first = doc["summary"]["verify"]["mismatches"][:1]
        sys.stderr.write(f"loadgen: --verify found {bad} bad blocks"
                         + (f", the first at offset {first[0]['offset_bytes']}\n" if first else "\n"))
        code = 1
    _linger(exporter, linger_ns)
    raise SystemExit(code)


@disk_app.command("prepare", epilog=examples(
    "loadgen disk prepare --target /dev/nvme1n1 --passes 2",
    "loadgen disk prepare --target test.dat --size 4g --verify --bs 4k --seed 7"))
def disk_prepare(
    target: Annotated[str, typer.Option(help="File or block device to fill (a file is made at --size).",
                                        metavar="PATH")],
    passes: Annotated[str, typer.Option(help="Times to write the whole span.", metavar="N")] = "1",
    size: Annotated[Optional[str], typer.Option(help="Span to fill; makes a missing file this big.",
                                                metavar="SIZE")] = None,
    qd: Annotated[str, typer.Option(help="Writes in flight.", metavar="N")] = "16",
    verify: Annotated[bool, typer.Option("--verify", help="Stamp every --bs block with a header (generation 1, "
                                                         "--seed) for a later 'loadgen disk verify'.")] = False,
    bs: Annotated[str, typer.Option(help="Block size of the headers under --verify.", metavar="SIZE")] = "4k",
    seed: Annotated[Optional[str], typer.Option(help="Seed in the headers under --verify.", metavar="N")] = None,
    allow_destroy: Annotated[bool, typer.Option("--allow-destroy",
                                                help="Write even to a device that holds data.")] = False,
    json_path: Annotated[Optional[Path], typer.Option("--json", metavar="FILE",
                                                      help="Write the fill's figures (bytes, ns, bytes/s, passes).")] = None,
    quiet: Quiet = False,
) -> None:
    """Fill a target sequentially at full bandwidth (128k writes, queued), so reads reach real blocks
    and a flash device is in its steady state before a measured run (SNIA-style preconditioning)."""
    from loadgen.disk import prepare

    raise SystemExit(prepare.prepare(prepare.spec(target, size, bs, qd, seed, verify, allow_destroy, passes),
                                     _human_stream(), quiet, json_path))


@disk_app.command("verify", epilog=examples(
    "loadgen disk verify --target test.dat --bs 4k --seed 7"))
def disk_verify(
    target: Annotated[str, typer.Option(help="File or block device written by --verify runs.", metavar="PATH")],
    bs: Annotated[str, typer.Option(help="Block size it was written with.", metavar="SIZE")] = "4k",
    seed: Annotated[Optional[str], typer.Option(help="Seed every header must carry (default: any).",
                                                metavar="N")] = None,
    size: Annotated[Optional[str], typer.Option(help="Check only this much from the start.", metavar="SIZE")] = None,
    qd: Annotated[str, typer.Option(help="Reads in flight.", metavar="N")] = "16",
    quiet: Quiet = False,
) -> None:
    """Read a whole target back and check every block's --verify header: magic, offset, size, crc32c and
    the seed if given. Every block must have been written by --verify runs (or a prepare --verify):
    a block without a header is bad. Exit 1 if any block is bad."""
    from loadgen.disk import prepare

    raise SystemExit(prepare.verify(prepare.spec(target, size, bs, qd, seed, False, False, "1", reads=True),
                                    _human_stream(), quiet))
def _one_target_each(where, target: Optional[str]) -> None:
    """A disk job on agents or Ray nodes opens one target on each host: refuse a list or a glob
    there (it would be expanded here, or taken by the host as one name)."""
    from loadgen.workload import is_target_list

    if where and is_target_list(target):
        raise UsageError(f"{where} runs one target on each host: --target {target} names several "
                         f"(a list or a glob); give one path, or run it here without {where}")


def _ray_options(table: dict, job_options: dict, conflict: Optional[str]) -> dict:
    """Take the Ray options out of a command's options; with --ray, check ray is installed."""
    ray = options.values(table, {name: job_options.pop(name) for name in table}, "ray")
    if ray["ray"] is None:
        if any(ray.values()):
            raise UsageError(f"{', '.join('--' + k.replace('_', '-') for k, v in ray.items() if v)} needs --ray")
        return ray
    if conflict:
        raise UsageError(f"--ray places the job on Ray nodes: drop {conflict}")
    from loadgen.fleet import ray_fleet

    for name, value in ray.items():
        if name != "ray":
            ray_fleet.check_selector(value, "--" + name.replace("_", "-"))
    ray_fleet.import_ray()
    return ray


def _disk_job(spec, on: Optional[str], connect, hlog: Optional[Path], watch, exporter=None, ray=None):
    """The coroutine that runs a disk spec here, on the agent at `on`, or on Ray nodes."""
    from loadgen.disk.job import run_disk, run_disk_remote
    from loadgen.workload import parse_host_port

    hlog_path = str(hlog) if hlog else None
    if ray and ray["ray"]:
        from loadgen.fleet import ray_fleet

        return ray_fleet.run_disk(spec, ray["ray"], ray["ray_nodes"], hlog_path, watch, metrics=exporter)
    if on:
        return run_disk_remote(spec, parse_host_port(on), connect, hlog_path, watch, metrics=exporter)
    return run_disk(spec, hlog_path=hlog_path, watch=watch, metrics=exporter)


def _check_net_ends(peer: Optional[str], clients: Optional[str], target: Optional[str]) -> None:
    """Where a net job's two ends are: a --target, or agents (--peer, and --clients sending)."""
    if (peer or clients) and target:
        raise UsageError("--target is for a plain UDP endpoint; --peer and --clients use agents")
    if clients and not peer:
        raise UsageError("--clients needs --peer, the agent that receives")


def _net_job(spec, peer: Optional[str], clients: Optional[str], connect, hlog: Optional[Path], watch,
             exporter=None, ray=None):
    """The coroutine that runs a net spec here, across agents, or across Ray nodes."""
    from loadgen.net.job import run_net, run_net_paired
    from loadgen.workload import parse_host_port

    hlog_path = str(hlog) if hlog else None
    if ray and ray["ray"]:
        from loadgen.fleet import ray_fleet

        return ray_fleet.run_net(spec, ray["ray"], ray["ray_senders"], ray["ray_receivers"], hlog_path, watch,
                                 metrics=exporter)
    if peer:
        client_addrs = [parse_host_port(c) for c in str(clients or "").split(",") if c.strip()]
        return run_net_paired(spec, parse_host_port(peer), client_addrs, connect, hlog_path, watch,
                              metrics=exporter)
    return run_net(spec, hlog_path=hlog_path, watch=watch, metrics=exporter)


@app.command(epilog=examples(
    "loadgen net --pps 100k --duration 5s                # embedded receiver on loopback",
    "loadgen net --pps 100k --mode echo                  # time every round trip",
    "loadgen net --target far-host:9001 --mode echo --pps 200k --json r.json",
    "loadgen net --peer hostB:7070 --pps 2M --token-file loadgen.token"))
@_with_options(options.NET | options.RAY_NET)
def net(
    peer: Peer = None,
    clients: Clients = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    hlog: HlogOut = None,
    metrics: Metrics = None,
    metrics_linger: MetricsLinger = None,
    json_stream: JsonStream = None,
    quiet: Quiet = False,
    strict: Strict = False,
    **job_options,
) -> None:
    """Send UDP datagrams at an exact rate and count what arrives, with latency in echo mode."""
    from loadgen.results.result import format_net
    from loadgen.workload import parse_net

    _check_net_ends(peer, clients, job_options.get("target"))
    ray = _ray_options(options.RAY_NET, job_options, "--peer" if peer else "--target" if job_options.get("target")
                       else None)
    spec = parse_net(**job_options)
    connect = _connector(token_file, tls, tls_ca) if peer else None
    exporter, linger_ns = _metrics(metrics, metrics_linger)
    human = _human_stream(json_path, hlog, json_stream)
    doc, stream = _watched(lambda watch: _net_job(spec, peer, clients, connect, hlog, watch, exporter, ray),
                           quiet, json_stream, human)
    code = _finish(doc, json_path, quiet, format_net, hlog, strict, stream, json_stream)
    _linger(exporter, linger_ns)
    raise SystemExit(code)


search_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="RFC 2544's search for the knee: the highest rate that passes, then latency below it.")
app.add_typer(search_app, name="search")


def _search_table(job_table: dict, kind: str) -> dict:
    """A job's options without those a search sets itself (a trial's rate and length), and the search's."""
    from loadgen.profiles import SEARCHED_OPTIONS

    return {name: opt for name, opt in job_table.items() if name not in SEARCHED_OPTIONS[kind]} | options.SEARCH


def _search(kind: str, job_options: dict, search_options: dict, run_job, human, quiet: bool) -> dict:
    """Run the search and return its document: each trial an ordinary job at a rate through
    run_job(spec, watch), a line per trial on human as it ends."""
    from loadgen.run.job import Watch
    from loadgen.run.trials import run_search
    from loadgen.search import RATE_KEY, format_trial, parse_search
    from loadgen.workload import parse_disk, parse_net

    spec = parse_search(kind, **search_options)
    parse = parse_net if kind == "net" else parse_disk
    duration = options.format_duration(spec.trial_ns)

    def job_spec(rate: Optional[int]):
        return parse(**job_options, **{RATE_KEY[kind]: "max" if rate is None else str(rate), "duration": duration})

    job_spec(spec.floor)   # bad workload options stop here, before any trial

    def on_trial(entry: dict) -> None:
        if not quiet:
            print(format_trial(kind, entry), file=human, flush=True)

    if not quiet:
        print(f"loadgen search {kind}: loss <= {spec.max_loss:.4%}"
              + (f", p99 <= {options.format_duration(spec.max_p99_ns)}" if spec.max_p99_ns else "")
              + f", trials of {duration}, resolution {spec.resolution:.2%}", file=human, flush=True)
    return _run_job(run_search(spec, lambda rate: run_job(job_spec(rate), Watch()), on_trial))


def _patient_connector(token_file: Optional[str], tls: bool, tls_ca: Optional[str]):
    """_connector for a search: trial after trial, an agent may still be ending the last one's session."""
    from loadgen.run.trials import patient

    return patient(_connector(token_file, tls, tls_ca))


def _knee_text(doc: dict) -> str:
    from loadgen.search import format_knee

    return format_knee(doc["search"])


@search_app.command("net", epilog=examples(
    "loadgen search net --max-loss 0.001 --trial 10s                # to the embedded receiver",
    "loadgen search net --peer hostB:7070 --max-loss 0.1% --trial 60s --json knee.json",
    "loadgen search net --peer hostB:7070 --mode echo --max-p99 200us --ceiling 1M"))
@_with_options(_search_table(options.NET, "net"))
def search_net(
    peer: Peer = None,
    clients: Clients = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    quiet: Quiet = False,
    **all_options,
) -> None:
    """The highest --pps whose trials pass, by binary search; then latency at percentages of it."""
    search_options = {k: all_options.pop(k) for k in options.SEARCH}
    _check_net_ends(peer, clients, all_options.get("target"))
    if all_options.get("target") and all_options.get("mode", "stream") == "stream":
        raise UsageError("a stream to --target counts no arrivals, so no loss to search by: "
                         "use --mode echo or --peer")
    connect = _patient_connector(token_file, tls, tls_ca) if peer else None
    doc = _search("net", all_options, search_options,
                  lambda spec, watch: _net_job(spec, peer, clients, connect, None, watch),
                  _human_stream(json_path), quiet)
    raise SystemExit(_finish(doc, json_path, quiet, _knee_text))


@search_app.command("disk", epilog=examples(
    "loadgen search disk --target /mnt/nvme/f --max-p99 1ms --trial 10s",
    "loadgen search disk --on hostB:7070 --target /mnt/nvme/f --max-p99 500us --json knee.json"))
@_with_options(_search_table(options.DISK, "disk"))
def search_disk(
    on: On = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    quiet: Quiet = False,
    **all_options,
) -> None:
    """The highest --iops whose trials pass, by binary search; then latency at percentages of it."""
    search_options = {k: all_options.pop(k) for k in options.SEARCH}
    _one_target_each(on and "--on", all_options.get("target"))
    connect = _patient_connector(token_file, tls, tls_ca) if on else None
    doc = _search("disk", all_options, search_options,
                  lambda spec, watch: _disk_job(spec, on, connect, None, watch), _human_stream(json_path), quiet)
    raise SystemExit(_finish(doc, json_path, quiet, _knee_text))


@app.command(epilog=examples(
    "loadgen serve --port 9000 --echo-port 9001 --host 0.0.0.0",
    "LOADGEN_TOKEN=s3cret loadgen serve --listen 0.0.0.0:7070 --allow-path /mnt/nvme",
    "loadgen serve --listen 0.0.0.0:7070 --token-file /etc/loadgen.token --tls-cert c.pem --tls-key k.pem"))
@_with_options(options.SERVE)
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).", metavar="ADDR")] = "127.0.0.1",
    listen: Annotated[Optional[str], typer.Option(help="Run as an agent that controllers drive, listening here.", metavar="ADDR:PORT")] = None,
    token_file: Annotated[Optional[str], typer.Option(
        help="Agent: read the shared token from this file; without it, the token is the value of the "
             "environment variable LOADGEN_TOKEN.", metavar="FILE")] = None,
    allow_path: Annotated[Optional[list[str]], typer.Option(help="Agent: a directory disk jobs may use (repeatable).", metavar="DIR")] = None,
    tls_cert: Annotated[Optional[str], typer.Option(help="Agent: TLS certificate for the control channel (PEM).", metavar="FILE")] = None,
    tls_key: Annotated[Optional[str], typer.Option(help="Agent: TLS private key (PEM).", metavar="FILE")] = None,
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="Agent: no token, loopback only.")] = False,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", metavar="[ADDR:]PORT",
        help="Agent: serve its jobs' live metrics for Prometheus here (ADDR: 127.0.0.1 unless given).")] = None,
    **serve_options,
) -> None:
    """Receive (and echo) loadgen datagrams, printing received pps and loss each interval;
    with --listen, run as an agent for paired runs."""
    from loadgen.net.serve import parse_serve, serve as run_serve

    if listen:
        _run_agent(listen, token_file, allow_path or [], tls_cert, tls_key, insecure_no_auth, metrics)
        return
    if metrics:
        raise UsageError("--metrics on serve is for the agent (--listen)")

    interrupted = _run_job(run_serve(parse_serve(host, **serve_options)))
    raise SystemExit(EXIT_INTERRUPTED if interrupted else 0)


def _run_agent(listen: str, token_file, allow_paths: list[str], tls_cert, tls_key, insecure_no_auth: bool,
               metrics: Optional[str] = None) -> None:
    from loadgen.fleet.agent import Agent, AgentConfig, allowed_roots, check_startup, load_token, server_ssl_context
    from loadgen.workload import parse_host_port

    host, port = parse_host_port(listen) if not listen.endswith(":0") else (listen[:-2].strip("[]"), 0)
    roots = allowed_roots(allow_paths)
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    cfg = AgentConfig(host=host, port=port, token=load_token(token_file), allow_paths=roots,
                      ssl_context=server_ssl_context(tls_cert, tls_key) if tls_cert else None)
    check_startup(cfg, insecure_no_auth)
    cfg.metrics, _ = _metrics(metrics, None)
    try:
        _run_job(Agent(cfg).run())
    except OSError as e:
        raise SetupError(f"cannot listen on {listen}: {e.strerror}") from None


@app.command(epilog=examples(
    "loadgen run profiles/smoke.toml --json r.json && loadgen check r.json",
    "loadgen run profiles/i3-large-randread.toml --set target=/dev/nvme0n1 --json i3.json",
    "loadgen run profiles/enhanced-networking-2mpps.toml --set peer=hostB:7070 --token-file loadgen.token"))
def run(
    profile: Annotated[Path, _file_argument("A profile, such as profiles/smoke.toml.", "PROFILE")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override an option (repeatable).",
                                                      metavar="KEY=VALUE")] = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    hlog: HlogOut = None,
    metrics: Metrics = None,
    metrics_linger: MetricsLinger = None,
    json_stream: JsonStream = None,
    quiet: Quiet = False,
    strict: Strict = False,
) -> None:
    """Run a profile: a saved net or disk workload, with its claim recorded in the result;
    a profile with a [search] table runs as loadgen search."""
    from loadgen import profiles
    from loadgen.options import SEARCH
    from loadgen.results.result import format_disk, format_net

    prof = profiles.load(str(profile))
    options = profiles.apply_sets(prof.options, set_ or [])
    if prof.search is not None:
        search = prof.search | {k: options.pop(k) for k in list(options) if k in SEARCH}
        remote = profiles.split_remote(prof.kind, options)[1]
        _run_search_profile(prof, options, search, _patient_connector(token_file, tls, tls_ca) if remote else None,
                            json_path, quiet,
                            hlog=hlog, metrics=metrics, json_stream=json_stream)
    spec = profiles.validate(prof.kind, options, prof.path)
    _, remote = profiles.split_remote(prof.kind, options)
    connect = _connector(token_file, tls, tls_ca) if remote else None
    exporter, linger_ns = _metrics(metrics, metrics_linger)
    if prof.kind == "net":
        job, formatter = (lambda w: _net_job(spec, remote.get("peer"), remote.get("clients"), connect, hlog, w,
                                             exporter), format_net)
    else:
        job, formatter = (lambda w: _disk_job(spec, remote.get("on"), connect, hlog, w, exporter)), format_disk
    doc, stream = _watched(job, quiet, json_stream, _human_stream(json_path, hlog, json_stream))
    doc["profile"] = prof.as_dict() | {"options": options}
    code = _finish(doc, json_path, quiet, formatter, hlog, strict, stream, json_stream)
    _linger(exporter, linger_ns)
    raise SystemExit(code)


def _run_search_profile(prof, options: dict, search: dict, connect, json_path: Optional[Path], quiet: bool,
                        **single_run_only) -> None:
    """`loadgen run` of a profile with [search]: loadgen search with its options, the profile recorded."""
    from loadgen import profiles

    for name, given in single_run_only.items():
        if given:
            raise UsageError(f"--{name.replace('_', '-')} is for single runs; {prof.name} runs a search")
    profiles.validate(prof.kind, options, prof.path, search)
    job, remote = profiles.split_remote(prof.kind, options)
    if prof.kind == "net":
        peer, clients = remote.get("peer"), remote.get("clients")
        run_job = lambda spec, watch: _net_job(spec, peer, clients, connect, None, watch)
    else:
        on = remote.get("on")
        run_job = lambda spec, watch: _disk_job(spec, on, connect, None, watch)
    doc = _search(prof.kind, job, search, run_job, _human_stream(json_path), quiet)
    doc["profile"] = prof.as_dict() | {"options": options, "search": search}
    raise SystemExit(_finish(doc, json_path, quiet, _knee_text))


def _load_result(path: str | Path) -> dict:
    from loadgen.results import documents

    return documents.load_result(str(path))


@app.command(epilog=examples(
    "loadgen check r.json                                # the claim of the profile the run came from",
    "loadgen check i3.json --profile profiles/i3-large-randread.toml",
    "loadgen check nitro.json --profile profiles/nitro-overhead.toml --baseline metal.json"))
def check(
    result: Annotated[Path, _file_argument("A result document (--json output).", "RESULT")],
    profile: Annotated[Optional[str], typer.Option(help="The profile whose claim to check [default: the one the run recorded].",
                                                   metavar="FILE")] = None,
    baseline: Annotated[Optional[str], typer.Option(help="A baseline result, for overhead claims.",
                                                    metavar="FILE")] = None,
) -> None:
    """Judge a result against a claim: measured, claimed, ratio, and pass, fail or not comparable.
    Exit code 0 pass, 1 fail, 3 not comparable, 2 bad input."""
    from loadgen.results import claims
    from loadgen import profiles

    doc = _load_result(result)
    if profile:
        prof = profiles.load(profile)
        claim, name, kind = prof.claim, prof.name, prof.kind
    else:
        recorded = doc.get("profile") or {}
        raw = recorded.get("claim")
        claim = profiles.parse_claim(raw, str(result)) if raw else None
        name, kind = recorded.get("name"), None
        if not recorded:
            raise UsageError(f"{result} was not run from a profile; name one with --profile")
    if claim is None:
        raise UsageError(f"profile {name} makes no claim to check")
    v = claims.check(doc, claim, _load_result(baseline) if baseline else None, kind=kind)
    print(claims.format_verdict(claim, name, v))
    raise SystemExit({"pass": 0, "fail": 1}.get(v.verdict, 3))


@app.command(epilog=examples(
    "loadgen disk --iops max --json metal.json           # on bare metal; the same on the VM: nitro.json",
    "loadgen compare metal.json nitro.json               # closed loop: IOPS side by side",
    "loadgen net --pps 100k --mode echo --json a.json    # a fixed rate: compare shows latency"))
def compare(
    base: Annotated[Path, _file_argument("The baseline result (e.g. bare metal).", "BASE")],
    other: Annotated[Path, _file_argument("The result to set against it.", "OTHER")],
) -> None:
    """What the workload leaves free, side by side: the achieved rate of closed-loop runs
    (rate max), the latency percentiles of open-loop runs (a fixed rate); the overhead
    in %, and the virtualization tier it falls in, named from a measured metric."""
    from loadgen.results import claims

    a, b = _load_result(base), _load_result(other)
    try:
        c = claims.compare(a, b)
    except ValueError as e:
        raise UsageError(f"refusing to compare: {e}") from None
    print(claims.format_comparison(c, str(base), str(other)))


fleet_app = typer.Typer(no_args_is_help=True, help="The nodes of a Ray cluster that loadgen runs across.")
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("status", epilog=examples("loadgen fleet status", "loadgen fleet status --ray 10.0.0.5:6379 --json"))
def fleet_status(
    ray: Annotated[str, typer.Option(help=options.RAY.help, metavar=options.RAY.metavar)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the nodes as JSON.")] = False,
) -> None:
    """Each live Ray node with what sysinfo records: NICs and drivers, disks, instance type (on EC2)."""
    import asyncio
    import json

    from loadgen.fleet import ray_fleet

    ray_fleet.import_ray()
    nodes = asyncio.run(ray_fleet.status(ray))
    print(json.dumps(nodes, indent=2) if as_json else ray_fleet.format_status(nodes))


@app.command(epilog=examples("loadgen report r.json", "loadgen report r.json --out plots/"))
def report(
    result: Annotated[Path, _file_argument("A result document (--json output).", "RESULT")],
    out: Annotated[Path, typer.Option(help="Directory for the plots and text files.", metavar="DIR")] = Path("report"),
) -> None:
    """Plots (latency nines, rate and p99 over time) and HdrHistogram percentile tables."""
    from loadgen.results.report import write_report

    for path in write_report(_load_result(result), out):
        print(path)


@app.command(epilog=examples("loadgen sysinfo", "loadgen sysinfo --target /mnt/nvme --peer hostB",
                             "loadgen sysinfo --json"))
def sysinfo(
    json_out: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
    target: Annotated[Optional[str], typer.Option(help="Also describe the disk under this path.", metavar="PATH")] = None,
    peer: Annotated[Optional[str], typer.Option(help="Also describe the NIC that routes to this host (HOST, HOST:PORT or [v6]:PORT).", metavar="HOST")] = None,
) -> None:
    """The machine's facts as results record them: CPU, hypervisor, clocksource, NICs, disks."""
    import json

    from loadgen.facts import sysinfo as facts

    from loadgen.workload import host_of

    if peer is None:
        nics = sorted(os.listdir("/sys/class/net"))
    else:
        host = host_of(peer)
        nic = facts.nic_for(host)
        if nic is None:
            raise UsageError(f"no route to {host} (or it does not resolve)")
        nics = [nic]
    if target is not None and not os.path.exists(target):
        raise UsageError(f"--target {target}: no such file or directory")
    disks = [facts.block_device_of(target)] if target else sorted(
        d for d in os.listdir("/sys/block") if not d.startswith(("loop", "ram", "zram")))
    env = facts.run_env("io_uring" if _uring_ok() else "psync", nics=nics, disks=[d for d in disks if d])
    if json_out:
        print(json.dumps(env, indent=2))
        return
    print(facts.format_env(env))


def _uring_ok() -> bool:
    from loadgen.run import native

    return native.io_uring_probe() == 0


@app.command(epilog=examples("loadgen probe", "loadgen probe --repetitions 5 --json probe.json",
                             "loadgen probe --json - | jq .components"))
def probe(
    json_path: JsonOut = None,
    repetitions: Annotated[int, typer.Option(min=1, max=100, metavar="N",
                                             help="Multiply each figure's 200 samples by N.")] = 1,
) -> None:
    """What this machine's virtualization costs: a syscall, a clock read, a sleep's
    overshoot, cpuid, a context switch and a page fault, timed natively with their
    spread; then each component's tier (emulated, paravirtual, hardware, bare-metal)
    with the evidence for it."""
    from loadgen.facts.probe import probe as run_probe

    doc = run_probe(repetitions)
    print(_format_probe(doc), file=_human_stream(json_path), flush=True)
    why = _write_json(doc, json_path) if json_path else None
    if why:
        raise SystemExit(EXIT_INTERRUPTED if why.startswith("interrupted") else 1)


def _format_probe(doc: dict) -> str:
    from loadgen.facts.probe import FIGURES
    from loadgen.units import format_ns

    lines = [f"{'figure':<26}{'median':>10}{'p90':>10}{'spread':>9}"]
    for key, label, _ in FIGURES:
        f = doc["figures"].get(key)
        if f is None:
            lines.append(f"{label:<26}{'-':>10}{'-':>10}{'-':>9}  ({doc['missing'].get(key, 'not measured')})")
            continue
        spread = "-" if f["spread"] is None else f"{f['spread']:.0%}" if f["spread"] < 10 else f"{f['spread']:.0f}x"
        lines.append(f"{label:<26}{format_ns(f['median']):>10}{format_ns(f['p90']):>10}{spread:>9}")
    lines.append(f"({doc['figures']['syscall_ns']['samples']} samples each; spread = (p90 - p10) / median)")
    cs = doc["clocksources"]
    others = [c for c in cs["available"] if c != cs["current"]]
    lines.append(f"clocksource: {cs['current'] or '?'} timed above"
                 + (f"; also available, not timed: {' '.join(others)}" if others else "")
                 + " (switching it needs root and changes the machine; loadgen does not)")
    lines.append("")
    lines.append(f"{'component':<11}{'tier':<13}why")
    for name, part in doc["components"].items():
        reasons = part["reasons"] or ["-"]
        lines.append(f"{name:<11}{part['tier']:<13}{reasons[0]}")
        lines.extend(f"{'':<24}{r}" for r in reasons[1:])
    return "\n".join(lines)


@app.command(epilog=examples("loadgen version", "loadgen --version"))
def version() -> None:
    """Print loadgen's version."""
    print(f"loadgen {__version__}")


def _parser_exceptions() -> tuple[tuple, tuple]:
    """(usage errors, aborts) of click and of the copy of click that newer typer bundles."""
    usage, aborts = [], [typer.Abort]
    try:
        import click

        usage.append(click.ClickException)
        aborts.append(click.exceptions.Abort)
    except ImportError:
        pass
    try:
        from typer._click.exceptions import ClickException

        usage.append(ClickException)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts)


# Options whose value may be left out, and the value that stands for it: typer has no
# optional-value options, so main() writes it in (`--sqpoll` alone is `--sqpoll any`).
OPTIONAL_VALUES = {"--sqpoll": "any"}


def with_optional_values(argv: list[str]) -> list[str]:
    """argv with OPTIONAL_VALUES' stand-ins after any of them given no value (last, or before an option)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "--":
            return out + argv[i + 1:]
        if arg in OPTIONAL_VALUES and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUES[arg])
    return out


def main(argv: list[str] | None = None) -> None:
    """The process's entry point: after a command that connected to Ray, the process ends at once."""
    try:
        _main(argv)
    except SystemExit as e:
        ray_fleet = sys.modules.get("loadgen.fleet.ray_fleet")
        if ray_fleet is not None:   # imported only for --ray: exit without Ray's slow teardown
            ray_fleet.exit_at_once(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
        raise


def _main(argv: list[str] | None) -> None:
    from loadgen.run import interrupts

    interrupts.install()   # before any work: SIGTERM unwinds like Ctrl-C, and never loses a result
    usage_errors, aborts = _parser_exceptions()
    given = sys.argv[1:] if argv is None else list(argv)
    if with_optional_values(given) != given:   # else as given: None lets click read sys.argv itself
        argv = with_optional_values(given)
    try:
        if app(args=argv, prog_name=PROG, standalone_mode=False) == EXIT_INTERRUPTED:
            raise KeyboardInterrupt   # typer >= 0.16 returns this for a KeyboardInterrupt it caught
    except aborts:
        sys.stderr.write("loadgen: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except usage_errors as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            # Asked nothing: the help, on stdout so it pages, and the exit code of bad input.
            print(e.format_message())
            raise SystemExit(2) from None
        sys.stderr.write(f"loadgen: {e.format_message()}\n")
        raise SystemExit(2) from None
    except LoadgenError as e:
        sys.stderr.write(f"loadgen: {e}\n")
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        # Setup unwinds this way; once a run starts, only a second signal does (loadgen.run.interrupts).
        lost = "its result was not written" if interrupts.run_started() else "nothing was measured"
        sys.stderr.write(f"loadgen: interrupted; {lost}\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except OSError as e:
        # The environment refused something no edge anticipated: still one line.
        sys.stderr.write(f"loadgen: {e.strerror or e}{f': {e.filename}' if e.filename else ''}\n")
        raise SystemExit(1) from None
