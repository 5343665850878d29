"""Facts about the machine a result came from. Reads files only; never needs root.

Every fact that cannot be read is left out, and `missing` says why, so a
result never carries a guess. Vocabulary: a NIC is a /sys/class/net entry, a
disk a /sys/block entry; counters are read before and after a run by
counters.py, the static facts here. The readers of /sys and /proc take a
root (ROOT, "/", unless given), so tests read a fake tree the same way.
"""
import ipaddress
import os
import platform
import socket
import struct
from pathlib import Path

from loadgen import __version__
from loadgen.units import format_bits_per_s

ROOT = Path("/")

# CPUID vendor signatures (leaf 0x40000000) and the names people use.
HYPERVISOR_NAMES = {"KVMKVMKVM": "KVM", "XenVMMXenVMM": "Xen", "Microsoft Hv": "Hyper-V",
                    "VMwareVMware": "VMware", "TCGTCGTCGTCG": "QEMU (TCG)", "ACRNACRNACRN": "ACRN",
                    "bhyve bhyve": "bhyve", " lrpepyh  vr": "Parallels", "VBoxVBoxVBox": "VirtualBox"}


def _read(path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


class Facts:
    """A dict of facts plus the reasons for those that are missing."""

    def __init__(self) -> None:
        self.values: dict = {}
        self.missing: dict[str, str] = {}

    def put(self, key: str, value, why_missing: str) -> None:
        if value in (None, ""):
            self.missing[key] = why_missing
        else:
            self.values[key] = value

    def as_dict(self) -> dict:
        out = dict(self.values)
        if self.missing:
            out["missing"] = dict(self.missing)
        return out


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(root: Path = ROOT) -> set[str]:
    """The first CPU's flags in /proc/cpuinfo (x86); empty where there are none."""
    try:
        with open(root / "proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def read_cpuid_vendor() -> str | None:
    from loadgen.run import native

    try:
        return native.hypervisor_vendor()
    except Exception:  # noqa: BLE001 - a fact, never a failure
        return None


def hypervisor(root: Path = ROOT, cpuid_vendor=read_cpuid_vendor) -> dict:
    """What runs beneath us: the cpuinfo flag, CPUID vendor, /sys/hypervisor and DMI.
    cpuid_vendor() gives the CPUID signature ("" on bare metal, None off x86)."""
    f = Facts()
    f.put("cpu_flag", "hypervisor" in cpu_flags(root), "no 'hypervisor' flag in /proc/cpuinfo")
    vendor = cpuid_vendor()
    f.put("cpuid_vendor", vendor, "CPUID reports no hypervisor" if vendor == "" else "no CPUID here")
    f.put("name", HYPERVISOR_NAMES.get(vendor or "", vendor), "no hypervisor signature")
    f.put("sys_hypervisor", _read(root / "sys/hypervisor/type"), "no /sys/hypervisor/type")
    if "sys_hypervisor" in f.values:   # Xen says PV, HVM or PVH here (Linux >= 4.14)
        f.put("guest_type", _read(root / "sys/hypervisor/guest_type"), "no /sys/hypervisor/guest_type")
    dmi = root / "sys/class/dmi/id"
    for key, name in (("sys_vendor", "dmi_vendor"), ("product_name", "dmi_product"),
                      ("product_version", "dmi_product_version"), ("board_asset_tag", "dmi_asset_tag")):
        f.put(name, _read(dmi / key), "no DMI table (/sys/class/dmi/id)" if not dmi.exists() else f"{key} unreadable")
    # On EC2 the DMI product name is the instance type's family and the asset tag the instance id.
    vendor_dmi = f.values.get("dmi_vendor", "")
    if vendor_dmi.startswith("Amazon"):
        f.values["cloud"] = "Amazon EC2"
    return f.as_dict()


# What the kernel needs before it trusts the TSC as a clocksource (arch/x86/kernel/tsc.c).
TSC_FLAGS = ("constant_tsc", "nonstop_tsc", "tsc_known_freq", "tsc_reliable")


def clocksource(root: Path = ROOT) -> dict:
    base = root / "sys/devices/system/clocksource/clocksource0"
    f = Facts()
    f.put("current", _read(base / "current_clocksource"), "clocksource not readable")
    avail = _read(base / "available_clocksource")
    f.put("available", avail.split() if avail else None, "clocksource list not readable")
    flags = cpu_flags(root)
    f.put("tsc_flags", [flag for flag in TSC_FLAGS if flag in flags] if "tsc" in flags else None,
          "no TSC in /proc/cpuinfo")
    return f.as_dict()


def device_drivers(path: Path, root: Path = ROOT) -> list[str]:
    """The drivers bound along a device's path, nearest first: vda's ["virtio_blk", "virtio-pci"],
    nvme0n1's ["nvme"] (its controller's PCI function), sda's ["sd", "ahci"]."""
    try:
        device = path.resolve(strict=True)
    except OSError:
        return []
    top = (root / "sys/devices").resolve()
    drivers = []
    while device != top and top in device.parents:
        link = device / "driver"
        if link.is_symlink():
            drivers.append(os.path.basename(os.readlink(link)))
        device = device.parent
    return drivers


def nic(name: str, root: Path = ROOT) -> dict:
    """Driver, queues, MTU and speed of one interface."""
    base = root / "sys/class/net" / name
    f = Facts()
    f.values["name"] = name
    driver = base / "device" / "driver"
    f.put("driver", os.path.basename(os.readlink(driver)) if driver.is_symlink() else
          ("loopback" if name == "lo" else None), "no device driver link (virtual interface)")
    f.put("drivers", device_drivers(base / "device", root) or None, "no device (virtual interface)")
    queues = base / "queues"
    if queues.is_dir():
        entries = os.listdir(queues)
        f.values["rx_queues"] = sum(e.startswith("rx-") for e in entries)
        f.values["tx_queues"] = sum(e.startswith("tx-") for e in entries)
    else:
        f.missing["queues"] = "no queues directory"
    mtu = _read(base / "mtu")
    f.put("mtu", int(mtu) if mtu and mtu.isdigit() else None, "mtu unreadable")
    speed = _read(base / "speed")
    ok = speed is not None and speed.lstrip("-").isdigit() and int(speed) > 0
    f.put("speed_mbps", int(speed) if ok else None, "the driver reports no link speed")
    return f.as_dict()


def nic_for(address: str) -> str | None:
    """The interface the kernel routes an address (IPv4 or IPv6, or a name) through,
    by the longest prefix in the main table; None when it does not resolve or no route fits."""
    try:
        ip = ipaddress.ip_address(socket.getaddrinfo(address, None, type=socket.SOCK_DGRAM)[0][4][0].split("%")[0])
    except (OSError, UnicodeError, ValueError, IndexError):
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "lo"
    return _route_v4(int(ip)) if ip.version == 4 else _route_v6(int(ip))


def _route_v4(ip: int) -> str | None:
    best, best_mask = None, -1
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                # /proc/net/route prints each address's bytes as one host-order word
                dest, mask = (struct.unpack("!I", struct.pack("=I", int(fields[i], 16)))[0] for i in (1, 7))
                if ip & mask == dest and mask.bit_count() > best_mask:
                    best, best_mask = fields[0], mask.bit_count()
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return best


RTF_REJECT = 0x0200  # an unreachable or prohibit route: no interface carries it


def _route_v6(ip: int) -> str | None:
    best, best_len = None, -1
    try:
        with open("/proc/net/ipv6_route") as f:
            for line in f:
                fields = line.split()
                dest, length, flags = int(fields[0], 16), int(fields[1], 16), int(fields[8], 16)
                mask = ((1 << length) - 1) << (128 - length)
                if not flags & RTF_REJECT and ip & mask == dest and length > best_len:
                    best, best_len = fields[9], length
    except (OSError, IndexError, ValueError):
        return None
    return best


def block_device_of(path: str | int) -> str | None:
    """The /sys/block name holding path (or an open descriptor): the device itself, or the disk under its filesystem."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat as stat_mod

    dev = st.st_rdev if stat_mod.S_ISBLK(st.st_mode) else st.st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    try:
        real = sysfs.resolve(strict=True)
    except OSError:
        return None
    # A partition's directory sits inside its disk's.
    return real.parent.name if (real / "partition").exists() else real.name


def disk(name: str, root: Path = ROOT) -> dict:
    base = root / "sys/block" / name
    f = Facts()
    f.values["name"] = name
    model = _read(base / "device" / "model")
    driver = base / "device" / "driver"
    f.put("model", model, "the device reports no model")
    f.put("driver", os.path.basename(os.readlink(driver)) if driver.is_symlink() else None, "no driver link")
    f.put("drivers", device_drivers(base / "device", root) or None, "no device (a virtual disk)")
    sched = _read(base / "queue" / "scheduler")
    chosen = next((s.strip("[]") for s in sched.split() if s.startswith("[")), sched) if sched else None
    f.put("scheduler", chosen, "no scheduler file")
    limits = {}
    for key in ("nr_requests", "max_sectors_kb", "logical_block_size", "physical_block_size", "max_hw_sectors_kb"):
        v = _read(base / "queue" / key)
        if v and v.isdigit():
            limits[key] = int(v)
    f.put("queue", limits or None, "no queue limits")
    rot = _read(base / "queue" / "rotational")
    f.put("rotational", rot == "1" if rot in ("0", "1") else None, "rotational unknown")
    size = _read(base / "size")
    f.put("size_bytes", int(size) * 512 if size and size.isdigit() else None, "size unknown")
    return f.as_dict()


def basic_env() -> dict:
    """What every result document carries about its machine."""
    env = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "loadgen": __version__,
    }
    model = cpu_model()
    if model:
        env["cpu_model"] = model
    env["hypervisor"] = hypervisor()
    # Xen-era instances (i3 among them) show "HVM domU" in DMI, not their type: the user may say it.
    given = os.environ.get("LOADGEN_INSTANCE_TYPE", "").strip()
    if given:
        env["instance_type"] = given
        env["instance_type_source"] = "LOADGEN_INSTANCE_TYPE"
    elif env["hypervisor"].get("cloud") == "Amazon EC2" and env["hypervisor"].get("dmi_product"):
        env["instance_type"] = env["hypervisor"]["dmi_product"]
        env["instance_type_source"] = "DMI product name (Nitro)"
    env["clocksource"] = clocksource()
    from loadgen.facts import virtualization

    env["virtualization"] = virtualization.placed()
    return env


def run_env(engine: str, nics: list[str] = (), disks: list[str] = ()) -> dict:
    """basic_env plus the engine and the NICs and disks a run used."""
    env = basic_env()
    env["engine"] = engine
    if nics:
        env["nics"] = [nic(n) for n in nics]
    if disks:
        env["disks"] = [disk(d) for d in disks]
    return env


def format_env(env: dict) -> str:
    """The facts of run_env as lines for people (`loadgen sysinfo`)."""
    hv, cs = env["hypervisor"], env["clocksource"]
    lines = [f"loadgen {env['loadgen']}, engine {env['engine']}",
             f"kernel:      {env['kernel']}",
             f"cpu:         {env.get('cpu_model', '?')} x {env['cpus']} ({env['cpus_usable']} usable)"]
    if hv.get("name") or hv.get("cpu_flag"):
        where = ", ".join(f"{k}={hv[k]}" for k in ("dmi_vendor", "dmi_product") if k in hv)
        lines.append(f"hypervisor:  {hv.get('name', 'yes (unnamed)')}" + (f" ({where})" if where else "")
                     + f"; cpuinfo flag {'set' if hv.get('cpu_flag') else 'absent'}")
    else:
        lines.append("hypervisor:  none detected (bare metal?)")
    lines.append(f"clocksource: {cs.get('current', '?')} (available: {' '.join(cs.get('available', []))})")
    for n in env.get("nics", []):
        speed = format_bits_per_s(n["speed_mbps"] * 1e6) if "speed_mbps" in n else "speed unknown"
        lines.append(f"nic {n['name']}: driver {n.get('driver', 'none (virtual)')}, {n.get('rx_queues', '?')} rx / "
                     f"{n.get('tx_queues', '?')} tx queues, mtu {n.get('mtu', '?')}, {speed}")
    for d in env.get("disks", []):
        q = d.get("queue", {})
        lines.append(f"disk {d['name']}: {d.get('model') or d.get('driver', '?')}, scheduler {d.get('scheduler', '?')}, "
                     f"{'rotational' if d.get('rotational') else 'non-rotational'}, nr_requests "
                     f"{q.get('nr_requests', '?')}, max_sectors_kb {q.get('max_sectors_kb', '?')}")
    missing = {f"hypervisor.{k}": v for k, v in hv.get("missing", {}).items()}
    if missing:
        lines.append("not available: " + "; ".join(f"{k} ({v})" for k, v in missing.items()))
    return "\n".join(lines)
