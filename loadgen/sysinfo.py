"""Facts about the machine a result came from. Reads files only; never needs root.

A fact that cannot be read is left out rather than guessed.
"""
import os
import platform
import socket
from pathlib import Path


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def basic_env() -> dict:
    """kernel, cpus and hostname: the keys every result document carries."""
    env = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
    }
    model = cpu_model()
    if model:
        env["cpu_model"] = model
    clocksource = _read("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    if clocksource:
        env["clocksource"] = clocksource
    return env
