"""Kernel and driver counters read before and after a run, and their differences.

- NICs: /sys/class/net/NAME/statistics/* and the driver's own statistics
  through the ETHTOOL_GSTATS ioctl, where ENA keeps pps_allowance_exceeded
  and its other allowance counters.
- Disks: /sys/block/NAME/stat (Documentation/admin-guide/iostats.rst), so the
  device's own count of completed I/Os can be set beside loadgen's.
Reading needs no root; what cannot be read is absent, with the reason.

Every host a run uses counts the same way: a local run for its document, and
an agent's job for its host's section (it sends them in its final frame), so a
paired or remote document holds each host's counters where a local one holds
its own. What a job counts: the NIC the kernel routes its datagrams through
(route_to), or the disk under its target (device_of).
"""
import ctypes
import fcntl
import socket
import struct
from pathlib import Path

from loadgen.facts import sysinfo

SIOCETHTOOL = 0x8946          # <linux/sockios.h>
ETHTOOL_GDRVINFO = 0x03       # <linux/ethtool.h>
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32
DRVINFO_BYTES = 196           # sizeof(struct ethtool_drvinfo)
DRVINFO_N_STATS_OFFSET = 180  # offsetof(struct ethtool_drvinfo, n_stats)
IFNAMSIZ = 16

# Fields of /sys/block/NAME/stat, in order.
DISK_STAT_FIELDS = ("reads_completed", "reads_merged", "sectors_read", "read_ms",
                    "writes_completed", "writes_merged", "sectors_written", "write_ms",
                    "in_flight", "io_ms", "weighted_io_ms",
                    "discards_completed", "discards_merged", "sectors_discarded", "discard_ms",
                    "flushes_completed", "flush_ms")


def _ethtool(sock: socket.socket, name: str, buf: ctypes.Array) -> None:
    ifreq = struct.pack(f"{IFNAMSIZ}sP", name.encode()[:IFNAMSIZ - 1], ctypes.addressof(buf))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)


def driver_stats(name: str) -> tuple[dict[str, int] | None, str | None]:
    """The driver's named counters (ethtool -S), or None and why not."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            info = ctypes.create_string_buffer(DRVINFO_BYTES)
            struct.pack_into("I", info, 0, ETHTOOL_GDRVINFO)
            _ethtool(sock, name, info)
            n = struct.unpack_from("I", info, DRVINFO_N_STATS_OFFSET)[0]
            if n == 0:
                return None, "the driver keeps no statistics of its own"
            strings = ctypes.create_string_buffer(12 + n * ETH_GSTRING_LEN)
            struct.pack_into("III", strings, 0, ETHTOOL_GSTRINGS, ETH_SS_STATS, n)
            _ethtool(sock, name, strings)
            stats = ctypes.create_string_buffer(8 + n * 8)
            struct.pack_into("II", stats, 0, ETHTOOL_GSTATS, n)
            _ethtool(sock, name, stats)
    except OSError as e:
        return None, f"ETHTOOL_GSTATS: {e.strerror}"
    names = [strings.raw[12 + i * ETH_GSTRING_LEN: 12 + (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode(
        "ascii", "replace") for i in range(n)]
    values = struct.unpack_from(f"{n}Q", stats, 8)
    return dict(zip(names, values)), None


def nic_counters(name: str) -> dict:
    out: dict = {}
    base = Path("/sys/class/net") / name / "statistics"
    try:
        out["statistics"] = {p.name: int(p.read_text()) for p in sorted(base.iterdir())}
    except (OSError, ValueError) as e:
        out["missing_statistics"] = f"{base}: {getattr(e, 'strerror', e)}"
    driver, why = driver_stats(name)
    if driver is not None:
        out["driver"] = driver
    else:
        out["missing_driver"] = why
    return out


def disk_counters(name: str) -> dict:
    try:
        fields = [int(x) for x in (Path("/sys/block") / name / "stat").read_text().split()]
    except (OSError, ValueError) as e:
        return {"missing": f"/sys/block/{name}/stat: {getattr(e, 'strerror', e)}"}
    return {"stat": dict(zip(DISK_STAT_FIELDS, fields))}


def _delta(before: dict, after: dict) -> dict:
    out = {}
    for key, a in after.items():
        b = before.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out[key] = _delta(b, a)
        elif isinstance(a, int) and isinstance(b, int):
            out[key] = a - b
        elif key.startswith("missing"):
            out[key] = a
    return out


class Around:
    """Counters of some NICs and disks, read before a run and after it."""

    def __init__(self, nics: list[str], disks: list[str]) -> None:
        self.nics, self.disks = list(dict.fromkeys(nics)), list(dict.fromkeys(disks))
        self.before = self._read()

    def _read(self) -> dict:
        return {"nics": {n: nic_counters(n) for n in self.nics},
                "disks": {d: disk_counters(d) for d in self.disks}}

    def finish(self) -> dict:
        """The differences over the run (in_flight is a level, shown as it ended)."""
        after = self._read()
        delta = _delta(self.before, after)
        for name, d in delta["disks"].items():
            if "stat" in d:
                d["stat"]["in_flight"] = after["disks"][name]["stat"]["in_flight"]
        return delta


def route_to(address: str) -> Around:
    """Counters of the NIC the kernel routes address through (none when no route fits).

    A receiver counts the NIC toward its own address: the main table's route to it is
    the interface that holds it (lo for loopback)."""
    nic = sysinfo.nic_for(address)
    return Around([nic] if nic else [], [])


def device_of(target: str | int) -> Around:
    """Counters of the disk holding target, a path or an open descriptor (none when it has no disk)."""
    device = sysinfo.block_device_of(target)
    return Around([], [device] if device else [])


def host_fields(measured: dict) -> dict:
    """A host section's counter fields: the counters, and any of ENA's allowance counters that moved."""
    exceeded = {n: allowance_exceeded(d) for n, d in (measured.get("nics") or {}).items()}
    exceeded = {n: e for n, e in exceeded.items() if e}
    return {"counters": measured} | ({"allowance_exceeded": exceeded} if exceeded else {})


def allowance_exceeded(nic_delta: dict) -> dict[str, int]:
    """ENA's *_allowance_exceeded counters among a NIC's driver deltas, if any."""
    return {k: v for k, v in nic_delta.get("driver", {}).items() if k.endswith("_allowance_exceeded")}


def disk_crosscheck(disk_delta: dict, reads: int, writes: int) -> dict:
    """The device's completed I/Os beside loadgen's own (warm-up included on both sides)."""
    stat = disk_delta.get("stat")
    if not stat:
        return {"missing": disk_delta.get("missing", "no counters")}
    dev = stat["reads_completed"] + stat["writes_completed"]
    ours = reads + writes
    return {"device_ios": dev, "loadgen_ios": ours,
            "ratio": round(dev / ours, 4) if ours else None}
