"""SIGINT and SIGTERM: setup unwinds, and a measurement is never lost to them.

install() puts one handler in place before any work. Until a run's workers
start, a signal raises KeyboardInterrupt: setup unwinds and cleans up (the
temporary target), and there is nothing measured to keep. measuring() marks
the start of the run: from then on a signal is only recorded. While the
controller drives the run, its own loop handler takes the signal and stops the
run; a signal that lands just before that handler is in place is raised again
once the loop runs, when the controller hears it. After the run the handler is
back (the controller restores it) and only records, so the result is built and
written in full; the CLI then exits 130 for the signal (caught()).

A second signal outside the controller's hands is the user insisting (say, the
--json FIFO has no reader): it raises KeyboardInterrupt, and the CLI puts the
document it was writing into its fallback file.
"""
import asyncio
import os
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_caught: list[str] = []
_measuring = False
_caught_before_run = 0


def _handler(signum: int, frame) -> None:
    name = signal.Signals(signum).name
    _caught.append(name)
    if not _measuring or len(_caught) - _caught_before_run > 1:
        raise KeyboardInterrupt
    try:   # os.write, not sys.stderr: the handler may have interrupted a write to sys.stderr
        os.write(2, f"loadgen: {name}: keeping the result first (send it again to give up on writing it)\n".encode())
    except OSError:
        pass   # no stderr to tell: the record is what counts
    hand_on(signum)


def hand_on(signum: int) -> None:
    """Raise signum again once the event loop runs, if the controller is listening by then."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return   # no loop: the run is over, and the record is all that is needed
    loop.call_soon_threadsafe(_forward, signum)


def _forward(signum: int) -> None:
    if signal.getsignal(signum) is not _handler:
        signal.raise_signal(signum)   # the controller's loop handler has it now


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def measuring() -> None:
    """The run's workers are about to start: record signals from now on, never raise them.

    Call it, then start the run, then call pending() right before the controller
    takes over."""
    global _measuring, _caught_before_run
    _measuring, _caught_before_run = True, len(_caught)
    install()


def pending() -> None:
    """Hand a signal caught since measuring() to the controller, which is about to listen."""
    if len(_caught) > _caught_before_run:
        hand_on(signal.Signals[_caught[-1]])


def caught() -> str | None:
    """The name of the last signal caught, or None."""
    return _caught[-1] if _caught else None


def run_started() -> bool:
    """Whether a run has started, so that an interrupt may cost a result."""
    return _measuring
