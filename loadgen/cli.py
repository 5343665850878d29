"""The command line. Commands are thin: they build one validated spec and hand it
to the job's entry point. Only main() turns errors into messages and exit codes:
2 for bad input, 1 for the environment, 130 when interrupted.
"""
import asyncio
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from loadgen import __version__
from loadgen.errors import LoadgenError, SetupError, UsageError

EXIT_INTERRUPTED = 130

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Open-loop load generator: UDP packets per second and disk IOPS.")

# Options shared by every job, declared once.
Duration = Annotated[str, typer.Option(help="Measured time, after the ramp: 10s, 2m.")]
Ramp = Annotated[str, typer.Option(help="Warm-up left out of the results.")]
Interval = Annotated[str, typer.Option(help="Snapshot and progress interval.")]
Workers = Annotated[Optional[str], typer.Option(help="Worker threads, one per core [default: one per usable CPU].")]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="Write the result document here.")]
HlogOut = Annotated[Optional[Path], typer.Option("--hlog", help="Write an HdrHistogram interval log here.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress line and no summary.")]
TokenFile = Annotated[Optional[str], typer.Option(help="Shared token for agents [default: $LOADGEN_TOKEN].")]
TlsCa = Annotated[Optional[str], typer.Option(help="Use TLS to agents, checking their certificate against this CA file.")]
Tls = Annotated[bool, typer.Option("--tls", help="Use TLS to agents without checking their certificate.")]


def _connector(token_file: Optional[str], tls: bool, tls_ca: Optional[str]):
    """connect(host, port) -> AgentClient, with the token and TLS settings given."""
    from loadgen.agent import load_token
    from loadgen.remote import AgentClient, client_ssl_context

    token = load_token(token_file)
    ctx = client_ssl_context(tls_ca) if (tls or tls_ca) else None

    async def connect(host: str, port: int):
        return await AgentClient.connect(host, port, token, ctx)

    return connect


def _run_job(coro) -> dict:
    import uvloop

    return uvloop.run(coro)


def _finish(doc: dict, json_path: Optional[Path], quiet: bool, formatter) -> int:
    from loadgen import results

    if json_path:
        try:
            results.write_json(doc, str(json_path))
        except OSError as e:
            raise UsageError(f"cannot write {json_path}: {e.strerror}") from None
    if not quiet:
        print(formatter(doc))
    if doc["interrupted"]:
        return EXIT_INTERRUPTED
    if doc["failed"]:
        sys.stderr.write(f"loadgen: {doc['stop_reason']}\n")
        return 1
    return 0


@app.command()
def disk(
    target: Annotated[Optional[str], typer.Option(help="File or block device [default: a temporary file here].")] = None,
    size: Annotated[Optional[str], typer.Option(help="Temporary file size, or a cap on the target's span [default: 1g].")] = None,
    iops: Annotated[str, typer.Option(help="Target rate (50k, 1.5M) or max for closed loop at qd.")] = "max",
    rw: Annotated[str, typer.Option(help="randread, randwrite, read, write, randrw or rw.")] = "randread",
    mix: Annotated[Optional[str], typer.Option(help="Read share in percent for randrw/rw [default: 50].")] = None,
    bs: Annotated[str, typer.Option(help="Block size.")] = "4k",
    qd: Annotated[str, typer.Option(help="I/Os in flight per worker.")] = "32",
    workers: Workers = None,
    duration: Duration = "10s",
    ramp: Ramp = "1s",
    interval: Interval = "1s",
    direct: Annotated[bool, typer.Option("--direct/--buffered", help="O_DIRECT, or through the page cache.")] = True,
    engine: Annotated[str, typer.Option(help="auto, io_uring or psync.")] = "auto",
    allow_destroy: Annotated[bool, typer.Option("--allow-destroy", help="Write even to a device that holds data.")] = False,
    seed: Annotated[Optional[str], typer.Option(help="Seed for offsets and the read/write mix.")] = None,
    on: Annotated[Optional[str], typer.Option(help="HOST:PORT of a loadgen agent to run the job on.")] = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    json_path: JsonOut = None,
    hlog: HlogOut = None,
    quiet: Quiet = False,
) -> None:
    """Drive IOPS against a file or block device with io_uring workers, one per core."""
    from loadgen.disk import run_disk, run_disk_remote
    from loadgen.results import format_disk
    from loadgen.workload import parse_disk, parse_host_port

    spec = parse_disk(target=target, size=size, rw=rw, mix=mix, bs=bs, qd=qd, iops=iops, direct=direct,
                      engine=engine, allow_destroy=allow_destroy, seed=seed, duration=duration,
                      ramp=ramp, interval=interval, workers=workers)
    hlog_path = str(hlog) if hlog else None
    if on:
        job = run_disk_remote(spec, parse_host_port(on), _connector(token_file, tls, tls_ca), hlog_path, quiet)
    else:
        job = run_disk(spec, hlog_path=hlog_path, quiet=quiet)
    doc = _run_job(job)
    raise SystemExit(_finish(doc, json_path, quiet, format_disk))


@app.command()
def net(
    pps: Annotated[str, typer.Option(help="Target rate over all flows (100k, 2M), or max.")] = "max",
    target: Annotated[Optional[str], typer.Option(help="HOST:PORT of any UDP endpoint [default: an embedded receiver on 127.0.0.1].")] = None,
    size: Annotated[str, typer.Option(help="UDP payload bytes, 32 to 65507.")] = "64",
    flows: Annotated[Optional[str], typer.Option(help="Distinct 5-tuples (source ports) [default: one per worker].")] = None,
    mode: Annotated[str, typer.Option(help="stream (one way) or echo (time every round trip).")] = "stream",
    timeout: Annotated[str, typer.Option(help="Echoes later than this count as lost; the receiver drains this long.")] = "1s",
    batch: Annotated[str, typer.Option(help="Datagrams per sendmmsg/recvmmsg.")] = "32",
    receivers: Annotated[Optional[str], typer.Option(help="Embedded receiver threads [default: as many as senders].")] = None,
    port: Annotated[str, typer.Option(help="Embedded receiver port [default: any free one].")] = "0",
    peer: Annotated[Optional[str], typer.Option(help="HOST:PORT of a loadgen agent that receives (and echoes).")] = None,
    clients: Annotated[Optional[str], typer.Option(help="Comma-separated HOST:PORT agents that send, instead of this host.")] = None,
    token_file: TokenFile = None,
    tls: Tls = False,
    tls_ca: TlsCa = None,
    workers: Workers = None,
    duration: Duration = "10s",
    ramp: Ramp = "1s",
    interval: Interval = "1s",
    json_path: JsonOut = None,
    hlog: HlogOut = None,
    quiet: Quiet = False,
) -> None:
    """Send UDP datagrams at an exact rate and count what arrives, with latency in echo mode."""
    from loadgen.net import run_net, run_net_paired
    from loadgen.results import format_net
    from loadgen.workload import parse_host_port, parse_net

    if (peer or clients) and target:
        raise UsageError("--target is for a plain UDP endpoint; --peer and --clients use agents")
    if clients and not peer:
        raise UsageError("--clients needs --peer, the agent that receives")
    spec = parse_net(target=target, pps=pps, size=size, flows=flows, mode=mode, timeout=timeout, batch=batch,
                     receivers=receivers, port=port, duration=duration, ramp=ramp, interval=interval,
                     workers=workers, paired=bool(peer))
    hlog_path = str(hlog) if hlog else None
    if peer:
        client_addrs = [parse_host_port(c) for c in clients.split(",") if c.strip()] if clients else []
        job = run_net_paired(spec, parse_host_port(peer), client_addrs, _connector(token_file, tls, tls_ca),
                             hlog_path, quiet)
    else:
        job = run_net(spec, hlog_path=hlog_path, quiet=quiet)
    doc = _run_job(job)
    raise SystemExit(_finish(doc, json_path, quiet, format_net))


@app.command()
def serve(
    port: Annotated[Optional[int], typer.Option(help="UDP port that counts arrivals.")] = None,
    echo_port: Annotated[Optional[int], typer.Option(help="UDP port that counts and echoes every datagram back.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    workers: Workers = None,
    max_flows: Annotated[str, typer.Option(help="Flow ids tracked per receiver.")] = "1024",
    duration: Annotated[str, typer.Option(help="Stop after this long [default: 0, until Ctrl-C].")] = "0",
    interval: Interval = "1s",
    listen: Annotated[Optional[str], typer.Option(help="ADDR:PORT: run as an agent that controllers drive.")] = None,
    token_file: Annotated[Optional[str], typer.Option(help="Agent: the shared token [default: $LOADGEN_TOKEN].")] = None,
    allow_path: Annotated[Optional[list[str]], typer.Option(help="Agent: a directory disk jobs may use (repeatable).")] = None,
    tls_cert: Annotated[Optional[str], typer.Option(help="Agent: TLS certificate for the control channel.")] = None,
    tls_key: Annotated[Optional[str], typer.Option(help="Agent: TLS private key.")] = None,
    insecure_no_auth: Annotated[bool, typer.Option("--insecure-no-auth", help="Agent: no token, loopback only.")] = False,
) -> None:
    """Receive (and echo) loadgen datagrams, printing received pps and loss each interval;
    with --listen, run as an agent for paired runs."""
    from loadgen.serve import ServeSpec, serve as run_serve
    from loadgen.units import parse_count, parse_duration_ns
    from loadgen.workload import MAX_FLOWS, parse_common

    if listen:
        _run_agent(listen, token_file, allow_path or [], tls_cert, tls_key, insecure_no_auth)
        return

    common = parse_common("1s", "0s", interval, workers)
    flows = parse_count(max_flows)
    if not 1 <= flows <= MAX_FLOWS:
        raise UsageError(f"invalid max-flows: {max_flows!r} (1 to {MAX_FLOWS})")
    for name, p in (("port", port), ("echo-port", echo_port)):
        if p is not None and not 0 <= p < 65536:
            raise UsageError(f"invalid {name}: {p}")
    spec = ServeSpec(host=host, port=port, echo_port=echo_port, workers=common.workers, max_flows=flows,
                     duration_ns=parse_duration_ns(duration), interval_ns=common.interval_ns)
    interrupted = _run_job(run_serve(spec))
    raise SystemExit(EXIT_INTERRUPTED if interrupted else 0)


def _run_agent(listen: str, token_file, allow_paths: list[str], tls_cert, tls_key, insecure_no_auth: bool) -> None:
    from pathlib import Path

    from loadgen.agent import Agent, AgentConfig, check_startup, load_token, server_ssl_context
    from loadgen.workload import parse_host_port

    host, port = parse_host_port(listen) if not listen.endswith(":0") else (listen[:-2].strip("[]"), 0)
    roots = []
    for p in allow_paths:
        root = Path(p).resolve()
        if not root.is_dir():
            raise UsageError(f"--allow-path {p} is not a directory")
        roots.append(root)
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    cfg = AgentConfig(host=host, port=port, token=load_token(token_file), allow_paths=roots,
                      ssl_context=server_ssl_context(tls_cert, tls_key) if tls_cert else None)
    check_startup(cfg, insecure_no_auth)
    try:
        _run_job(Agent(cfg).run())
    except OSError as e:
        raise SetupError(f"cannot listen on {listen}: {e.strerror}") from None


@app.command()
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


def _terminate(signum, frame) -> None:
    """SIGTERM before the run's own handler is in place: unwind like Ctrl-C, so
    cleanup (the temporary target) still happens."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    import signal

    usage_errors, aborts = _parser_exceptions()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(args=argv, standalone_mode=False)
    except aborts:
        sys.stderr.write("loadgen: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    except usage_errors as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            raise SystemExit(2) from None  # the help is already printed
        sys.stderr.write(f"loadgen: {e.format_message()}\n")
        raise SystemExit(2) from None
    except LoadgenError as e:
        sys.stderr.write(f"loadgen: {e}\n")
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        sys.stderr.write("loadgen: interrupted\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
