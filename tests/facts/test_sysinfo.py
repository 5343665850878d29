"""loadgen.facts.sysinfo: the machine's facts as results record them, checked against this host's own
/sys and /proc (read here independently), and `loadgen sysinfo` end to end.

A fact that cannot be read is absent and `missing` says why; assertions that depend on what
this host is (a KVM guest, virtio_net on eth0) skip with a reason elsewhere.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import RUN_TIMEOUT_S, loadgen_argv
from loadgen import __version__
from loadgen.facts import sysinfo

CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0")
DMI = Path("/sys/class/dmi/id")
DMI_FACTS = ("dmi_vendor", "dmi_product", "dmi_product_version", "dmi_asset_tag")
ENV_KEYS = ("kernel", "cpus", "cpus_usable", "hostname", "python", "loadgen", "hypervisor", "clocksource")


def read(path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def kvm_guest() -> bool:
    """Independently of CPUID: KVM guests offer the kvm-clock clocksource."""
    return "kvm-clock" in (read(CLOCKSOURCE / "available_clocksource") or "").split()


def nic_driver(name: str) -> str | None:
    link = Path("/sys/class/net") / name / "device" / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def dev_of(path) -> str:
    st = os.stat(path)
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def holds(disk: str, majmin: str) -> bool:
    """Whether /sys/block/DISK is the device majmin or the disk of that partition."""
    base = Path("/sys/block") / disk
    return read(base / "dev") == majmin or any(read(p / "dev") == majmin for p in base.glob(f"{disk}*"))


def assert_facts(d: dict) -> None:
    """No fact is both given and missing, and none is an empty guess."""
    missing = d.get("missing", {})
    assert all(isinstance(why, str) and why for why in missing.values()), missing
    assert not set(missing) & (set(d) - {"missing"}), d
    assert all(v not in (None, "") for v in d.values()), d


@pytest.fixture(scope="module")
def sysinfo_json() -> dict:
    p = subprocess.run(loadgen_argv("sysinfo", "--json"), capture_output=True, text=True,
                       timeout=RUN_TIMEOUT_S)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def root_disk() -> str:
    name = sysinfo.block_device_of("/")
    if name is None:
        pytest.skip(f"/ is on a filesystem with no block device (st_dev {dev_of('/')})")
    return name


# ---- loadgen sysinfo -----------------------------------------------------------------------------

def test_sysinfo_text(cli, root_disk):
    done = cli("sysinfo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(f"loadgen {__version__}, engine ")
    assert f"clocksource: {read(CLOCKSOURCE / 'current_clocksource')} " in out
    assert f"disk {root_disk}: " in out
    assert "nic lo: driver loopback" in out
    if kvm_guest():
        assert "hypervisor:  KVM" in out
    if not DMI.exists():
        assert "hypervisor.dmi_product (no DMI table (/sys/class/dmi/id))" in out


def test_sysinfo_names_kvm():
    if not kvm_guest():
        pytest.skip("not a KVM guest (no kvm-clock clocksource)")
    hv = sysinfo.hypervisor()
    assert (hv["name"], hv["cpuid_vendor"], hv["cpu_flag"]) == ("KVM", "KVMKVMKVM", True)


def test_sysinfo_names_virtio_net(cli):
    if nic_driver("eth0") != "virtio_net":
        pytest.skip("eth0 is not driven by virtio_net here")
    done = cli("sysinfo")
    assert "nic eth0: driver virtio_net," in done.stdout
    assert {"name": "eth0", "driver": "virtio_net"}.items() <= sysinfo.nic("eth0").items()


def test_sysinfo_json(sysinfo_json, root_disk):
    env = sysinfo_json
    for key in ENV_KEYS + ("engine", "nics", "disks"):
        assert key in env, key
    assert env["loadgen"] == __version__
    assert env["kernel"] == os.uname().release
    assert env["cpus"] == os.cpu_count()
    assert env["engine"] in ("io_uring", "psync")
    assert env["clocksource"]["current"] == read(CLOCKSOURCE / "current_clocksource")
    assert env["clocksource"]["available"] == read(CLOCKSOURCE / "available_clocksource").split()
    assert sorted(n["name"] for n in env["nics"]) == sorted(os.listdir("/sys/class/net"))
    disks = {d["name"] for d in env["disks"]}
    assert root_disk in disks
    assert not {d for d in disks if d.startswith(("loop", "ram", "zram"))}
    for facts in [env["hypervisor"], env["clocksource"], *env["nics"], *env["disks"]]:
        assert_facts(facts)


def test_sysinfo_json_target_describes_only_its_disk(cli, tmp_path):
    done = cli("sysinfo", "--json", "--target", str(tmp_path))
    assert done.returncode == 0, done.stderr
    want = sysinfo.block_device_of(str(tmp_path))
    assert [d["name"] for d in json.loads(done.stdout).get("disks", [])] == ([want] if want else [])


def test_sysinfo_json_peer_on_loopback(cli):
    done = cli("sysinfo", "--json", "--peer", "127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert [n["name"] for n in json.loads(done.stdout)["nics"]] == ["lo"]


@pytest.mark.parametrize("peer", ["[::1]:9000", "[::1]", "::1", "127.0.0.1:9000", "127.0.0.1", "localhost",
                                  "localhost:9000", "[::ffff:127.0.0.1]:9000"])
def test_sysinfo_peer_in_every_form_on_loopback(cli, peer):
    done = cli("sysinfo", "--json", "--peer", peer)
    assert done.returncode == 0, done.stderr
    assert [n["name"] for n in json.loads(done.stdout)["nics"]] == ["lo"]


@pytest.mark.parametrize("args, says", [
    (["--target", "/nonexistent"], "--target /nonexistent: no such file or directory"),
    (["--peer", "[::1"], "invalid address"),
    (["--peer", "[::1]x"], "invalid address"),
    (["--peer", "host:port"], "invalid address"),
])
def test_sysinfo_bad_input_is_one_line_and_exit_2(cli, args, says):
    done = cli("sysinfo", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadgen: ") and says in lines[0], done.stderr
    assert done.stdout == ""


# ---- facts that cannot be read -------------------------------------------------------------------

def test_hypervisor_missing_facts_say_why():
    hv = sysinfo.hypervisor()
    assert_facts(hv)
    if DMI.exists():
        for key in DMI_FACTS:
            assert key in hv or key in hv["missing"], key
    else:
        for key in DMI_FACTS:
            assert key not in hv
            assert hv["missing"][key] == "no DMI table (/sys/class/dmi/id)"
    if not Path("/sys/hypervisor/type").exists():
        assert "sys_hypervisor" not in hv and "/sys/hypervisor/type" in hv["missing"]["sys_hypervisor"]


def test_no_cloud_without_amazon_dmi():
    hv = sysinfo.hypervisor()
    if (read(DMI / "sys_vendor") or "").startswith("Amazon"):
        assert hv["cloud"] == "Amazon EC2"
    else:
        assert "cloud" not in hv


def test_unknown_nic_does_not_raise():
    d = sysinfo.nic("nosuchnic0")
    assert d["name"] == "nosuchnic0"
    assert {"driver", "queues", "mtu", "speed_mbps"} <= set(d["missing"])
    assert_facts(d)


def test_unknown_disk_does_not_raise():
    d = sysinfo.disk("nosuchdisk")
    assert d["name"] == "nosuchdisk"
    assert {"model", "driver", "scheduler", "queue", "rotational", "size_bytes"} <= set(d["missing"])
    assert_facts(d)


def test_loopback_nic():
    d = sysinfo.nic("lo")
    assert d["driver"] == "loopback"
    assert d["mtu"] == int(read("/sys/class/net/lo/mtu"))
    assert_facts(d)


def test_root_disk_facts(root_disk):
    d = sysinfo.disk(root_disk)
    assert_facts(d)
    size = read(f"/sys/block/{root_disk}/size")
    assert d["size_bytes"] == int(size) * 512
    assert d.get("rotational") == (read(f"/sys/block/{root_disk}/queue/rotational") == "1")
    sched = read(f"/sys/block/{root_disk}/queue/scheduler")
    if sched and "[" in sched:
        assert f"[{d['scheduler']}]" in sched


# ---- which disk, which NIC -----------------------------------------------------------------------

def test_block_device_of_root(root_disk):
    assert (Path("/sys/block") / root_disk).is_dir()
    assert holds(root_disk, dev_of("/"))


def test_block_device_of_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"x")
    name = sysinfo.block_device_of(str(f))
    if os.major(os.stat(f).st_dev) == 0:
        assert name is None, "a filesystem with no block device (tmpfs, overlay) has no disk"
        pytest.skip("tmp_path is on a filesystem with no block device")
    assert name and (Path("/sys/block") / name).is_dir()
    assert holds(name, dev_of(f))
    assert name == sysinfo.block_device_of(str(tmp_path))


def test_block_device_of_missing_path(tmp_path):
    assert sysinfo.block_device_of(str(tmp_path / "nope")) is None


def test_block_device_of_tmpfs():
    if not Path("/dev/shm").is_dir() or os.major(os.stat("/dev/shm").st_dev) != 0:
        pytest.skip("no tmpfs at /dev/shm")
    assert sysinfo.block_device_of("/dev/shm") is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost"])
def test_nic_for_loopback(address):
    assert sysinfo.nic_for(address) == "lo"


def test_nic_for_follows_the_longest_prefix_of_either_family():
    """Off loopback: the same interface /proc's route tables give, read here independently."""
    def default_v4():
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            f = line.split()
            if f[1] == "00000000" and f[7] == "00000000":
                return f[0]
        return None

    want = default_v4()
    if want is None:
        pytest.skip("no IPv4 default route here")
    assert sysinfo.nic_for("192.0.2.1") == want     # TEST-NET-1: only a default route reaches it


def test_nic_for_unknown_name():
    assert sysinfo.nic_for("nosuchhost.invalid") is None


# ---- what result documents carry -----------------------------------------------------------------

def test_disk_result_env(disk, tmp_path):
    done = disk("--quiet")
    assert done.returncode == 0, done.stderr
    env = done.doc["env"]
    for key in ENV_KEYS + ("engine",):
        assert key in env, key
    assert env["loadgen"] == __version__
    assert env["engine"] == done.doc["engine"]
    assert "name" in env["hypervisor"] or "missing" in env["hypervisor"]
    assert "current" in env["clocksource"]
    want = sysinfo.block_device_of(str(tmp_path))
    if want is None:
        assert "disks" not in env
    else:
        assert [d["name"] for d in env["disks"]] == [want]
        assert_facts(env["disks"][0])


def test_net_result_env_has_loopback(cli, tmp_path):
    done = cli("net", "--pps", "5k", "--duration", "1s", "--ramp", "0s", "--quiet", "--json", "r.json")
    assert done.returncode == 0, done.stderr
    env = json.loads((tmp_path / "r.json").read_text())["env"]
    assert env["engine"] == "udp"
    assert [n["name"] for n in env["nics"]] == ["lo"]
    assert env["nics"][0]["driver"] == "loopback"
    for key in ENV_KEYS:
        assert key in env, key


def test_format_env_gives_link_speed_in_bits():
    env = {"loadgen": "x", "engine": "io_uring", "kernel": "6.1", "cpus": 2, "cpus_usable": 2,
           "hypervisor": {}, "clocksource": {"current": "tsc"},
           "nics": [{"name": "eth0", "driver": "ena", "speed_mbps": 25000}, {"name": "lo"}]}
    text = sysinfo.format_env(env)
    assert "nic eth0: driver ena" in text and "25.0 Gbit/s" in text
    assert "nic lo:" in text and "speed unknown" in text
