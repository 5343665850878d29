"""loadgen.facts.counters: NIC and disk counters read before and after a run, their differences,
the device's I/O count beside loadgen's, and ENA's allowance counters.

Real counters come from loopback (a 1 s, 5k pps run to the embedded receiver on 127.0.0.1)
and from the disk under /; the arithmetic is checked on crafted counters.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import RUN_TIMEOUT_S, loadgen_argv
from loadgen.facts import counters, sysinfo
from loadgen.facts.counters import Around, allowance_exceeded, disk_crosscheck

NET_PPS = 5_000   # --pps 5k for --duration 1s: at least this many datagrams cross lo


def disk_of_root() -> str:
    name = sysinfo.block_device_of("/")
    if name is None:
        pytest.skip("/ is on a filesystem with no block device")
    return name


# ---- reading -------------------------------------------------------------------------------------

def test_loopback_statistics():
    c = counters.nic_counters("lo")
    stats = c["statistics"]
    assert {"rx_packets", "tx_packets", "rx_bytes", "tx_bytes"} <= set(stats)
    assert all(isinstance(v, int) and v >= 0 for v in stats.values())
    assert "missing_statistics" not in c


def test_loopback_has_no_driver_statistics():
    stats, why = counters.driver_stats("lo")
    assert stats is None
    assert isinstance(why, str) and why
    assert "missing_driver" in counters.nic_counters("lo")


def test_virtio_net_driver_statistics():
    """ETHTOOL_GSTRINGS/GSTATS through a driver that has them (virtio_net keeps its own rx/tx counters)."""
    link = Path("/sys/class/net/eth0/device/driver")
    if not link.is_symlink() or os.path.basename(os.readlink(link)) != "virtio_net":
        pytest.skip("eth0 is not driven by virtio_net here")
    stats, why = counters.driver_stats("eth0")
    if stats is None:
        pytest.skip(f"the driver's statistics are not readable here: {why}")
    assert why is None and stats
    assert all(name.isprintable() and name.strip() == name and isinstance(v, int) and v >= 0
               for name, v in stats.items()), stats
    # Names differ across kernels (rx_queue_0_packets, rx0_kicks); every version has rx and tx ones.
    assert any(n.startswith("rx") for n in stats) and any(n.startswith("tx") for n in stats), sorted(stats)


def test_unknown_nic_counters_say_why():
    c = counters.nic_counters("nosuchnic0")
    assert set(c) == {"missing_statistics", "missing_driver"}
    assert "nosuchnic0" in c["missing_statistics"] and c["missing_driver"]


def test_disk_counters():
    name = disk_of_root()
    stat = counters.disk_counters(name)["stat"]
    fields = (Path("/sys/block") / name / "stat").read_text().split()
    assert list(stat) == list(counters.DISK_STAT_FIELDS[:len(fields)])
    assert len(stat) >= 11, "every kernel since 2.6 has the first eleven"
    assert all(isinstance(v, int) and v >= 0 for v in stat.values())


def test_unknown_disk_counters_say_why():
    c = counters.disk_counters("nosuchdisk")
    assert set(c) == {"missing"} and "/sys/block/nosuchdisk/stat" in c["missing"]


# ---- around a real run ---------------------------------------------------------------------------

def test_around_a_loopback_run(tmp_path):
    root = disk_of_root()
    around = Around(["lo", "lo"], [root])
    assert (around.nics, around.disks) == (["lo"], [root])
    p = subprocess.run(loadgen_argv("net", "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--quiet"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    delta = around.finish()
    lo = delta["nics"]["lo"]
    assert lo["statistics"]["tx_packets"] >= NET_PPS
    assert lo["statistics"]["rx_packets"] >= NET_PPS
    assert "missing_driver" in lo, "why there are no driver counters travels with the delta"
    stat = delta["disks"][root]["stat"]
    assert {"reads_completed", "writes_completed", "sectors_read", "in_flight", "io_ms"} <= set(stat)
    assert all(v >= 0 for k, v in stat.items())


# ---- the arithmetic, on crafted counters ---------------------------------------------------------

def test_around_differences(monkeypatch):
    reads = iter([
        ({"statistics": {"tx_packets": 10, "rx_packets": 5}, "driver": {"pps_allowance_exceeded": 1}},
         {"stat": {"reads_completed": 100, "writes_completed": 50, "in_flight": 7}}),
        ({"statistics": {"tx_packets": 60, "rx_packets": 5, "new_counter": 3},
          "driver": {"pps_allowance_exceeded": 4}, "missing_x": "why"},
         {"stat": {"reads_completed": 130, "writes_completed": 50, "in_flight": 2}}),
    ])
    state = {}

    def nic(name):
        state["now"] = next(reads)
        return state["now"][0]

    monkeypatch.setattr(counters, "nic_counters", nic)
    monkeypatch.setattr(counters, "disk_counters", lambda name: state["now"][1])
    around = Around(["eth0"], ["nvme0n1"])
    delta = around.finish()
    assert delta == {
        "nics": {"eth0": {"statistics": {"tx_packets": 50, "rx_packets": 0},
                          "driver": {"pps_allowance_exceeded": 3}, "missing_x": "why"}},
        "disks": {"nvme0n1": {"stat": {"reads_completed": 30, "writes_completed": 0,
                                       "in_flight": 2}}},   # in_flight is a level: as it ended
    }


@pytest.mark.parametrize("stat, reads, writes, expect", [
    ({"reads_completed": 1000, "writes_completed": 0}, 1000, 0,
     {"device_ios": 1000, "loadgen_ios": 1000, "ratio": 1.0}),
    ({"reads_completed": 600, "writes_completed": 400}, 300, 200,
     {"device_ios": 1000, "loadgen_ios": 500, "ratio": 2.0}),
    ({"reads_completed": 1, "writes_completed": 0}, 3, 0,
     {"device_ios": 1, "loadgen_ios": 3, "ratio": 0.3333}),
    ({"reads_completed": 5, "writes_completed": 5}, 0, 0,
     {"device_ios": 10, "loadgen_ios": 0, "ratio": None}),
])
def test_disk_crosscheck(stat, reads, writes, expect):
    assert disk_crosscheck({"stat": stat | {"in_flight": 3, "reads_merged": 9}}, reads, writes) == expect


def test_disk_crosscheck_without_counters():
    assert disk_crosscheck({"missing": "/sys/block/x/stat: gone"}, 1, 2) == {"missing": "/sys/block/x/stat: gone"}
    assert disk_crosscheck({}, 1, 2) == {"missing": "no counters"}


ENA_DRIVER = {
    "tx_timeout": 0, "queue_0_tx_cnt": 123456, "queue_0_rx_cnt": 654321,
    "bw_in_allowance_exceeded": 0, "bw_out_allowance_exceeded": 12,
    "pps_allowance_exceeded": 3456, "conntrack_allowance_exceeded": 0,
    "linklocal_allowance_exceeded": 7, "conntrack_allowance_available": 99999,
    "allowance_exceeded_total": 1,   # a name that merely contains the words is not one
}


def test_allowance_exceeded_picks_only_allowance_counters():
    assert allowance_exceeded({"driver": ENA_DRIVER, "statistics": {"pps_allowance_exceeded": 1}}) == {
        "bw_in_allowance_exceeded": 0, "bw_out_allowance_exceeded": 12, "pps_allowance_exceeded": 3456,
        "conntrack_allowance_exceeded": 0, "linklocal_allowance_exceeded": 7,
    }


@pytest.mark.parametrize("nic_delta", [{}, {"missing_driver": "not supported"}, {"driver": {"tx_timeout": 2}}])
def test_allowance_exceeded_without_ena(nic_delta):
    assert allowance_exceeded(nic_delta) == {}


# ---- what result documents carry -----------------------------------------------------------------

def test_disk_result_crosscheck(disk, tmp_path):
    done = disk("--quiet")
    assert done.returncode == 0, done.stderr
    s, device = done.summary, sysinfo.block_device_of(str(tmp_path))
    if device is None:
        assert "device_crosscheck" not in s
        pytest.skip("tmp_path has no block device to count I/Os on")
    check = s["device_crosscheck"]
    if "missing" in check:
        pytest.skip(f"the disk's counters are not readable: {check['missing']}")
    assert check["loadgen_ios"] == s["read"]["ops"] + s["write"]["ops"] + s["warmup_ops"] + s["drained_ops"]
    assert check["device_ios"] >= 0
    assert check["ratio"] == round(check["device_ios"] / check["loadgen_ios"], 4)
    stat = done.doc["counters"]["disks"][device]["stat"]
    assert check["device_ios"] == stat["reads_completed"] + stat["writes_completed"]
    assert done.doc["counters"]["nics"] == {}


def test_net_result_counters(cli, tmp_path):
    done = cli("net", "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--quiet", "--json", "r.json")
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    lo = doc["counters"]["nics"]["lo"]
    assert lo["statistics"]["tx_packets"] >= doc["summary"]["sent"] > 0
    assert "allowance_exceeded" not in doc["summary"], "loopback has no ENA allowances"
    assert doc["counters"]["disks"] == {}
