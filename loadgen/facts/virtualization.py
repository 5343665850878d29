"""Which virtualization tier each component of a machine sits in, and why.

Vocabulary:
  component  cpu, network, storage, timers: the rows of the seed's table.
  tier       how the component reaches the hardware, costliest first:
             emulated     software emulates it (QEMU TCG, an e1000 or IDE model): 2-10x slower;
             paravirtual  the guest knows and calls the hypervisor (virtio, Xen PV, kvm-clock): 10-50%;
             hardware     virtualized in hardware (VT-x/AMD-V, SR-IOV, Nitro): 0.1-0.5%;
             bare-metal   no hypervisor beneath;
             unknown      the evidence names nothing in the tables below (said, never guessed).
  evidence   the facts sysinfo reads: the hypervisor, the clocksource and its TSC flags,
             and the drivers bound along each NIC's and disk's device path.

Rules: classify() is pure (evidence in, tiers out) so tables test it; evidence()
reads the files under a root, so tests give it a fake sysfs tree. Measured
figures (probe.py) may add reasons, never change a tier: a tier rests on what
the machine says it is, a cost on one run of a busy machine does not.
"""
from functools import lru_cache
from pathlib import Path

from loadgen.facts import sysinfo

TIERS = ("emulated", "paravirtual", "hardware", "bare-metal")
UNKNOWN = "unknown"
COMPONENTS = ("cpu", "network", "storage", "timers")

# Drivers by what they tell of the device beneath. A physical device's driver in a
# guest means the device was passed through (SR-IOV VF or PCI passthrough).
NET_PARAVIRTUAL = {"virtio_net": "virtio", "vif": "Xen netfront", "xen-netfront": "Xen netfront",
                   "hv_netvsc": "Hyper-V netvsc", "vmxnet3": "VMware vmxnet3", "gve": "Google gVNIC"}
NET_SRIOV = {"ena": "AWS ENA (an SR-IOV function of the Nitro card)", "ixgbevf": "Intel 82599 SR-IOV VF",
             "iavf": "Intel SR-IOV VF", "i40evf": "Intel SR-IOV VF", "igbvf": "Intel SR-IOV VF",
             "mlx4_core": "Mellanox ConnectX", "mlx5_core": "Mellanox ConnectX"}
# Device models QEMU and VMware emulate; on bare metal the same drivers run real NICs.
NET_EMULATED = {"e1000": "Intel e1000 model", "e1000e": "Intel e1000e model", "8139cp": "RTL8139 model",
                "8139too": "RTL8139 model", "ne2k-pci": "NE2000 model", "pcnet32": "AMD PCnet model"}
DISK_PARAVIRTUAL = {"virtio_blk": "virtio", "virtio_scsi": "virtio-scsi", "vbd": "Xen blkfront",
                    "xen-blkfront": "Xen blkfront", "hv_storvsc": "Hyper-V storvsc", "vmw_pvscsi": "VMware PVSCSI"}
DISK_EMULATED = {"ata_piix": "IDE model", "ahci": "AHCI model", "sym53c8xx": "LSI SCSI model",
                 "mptspi": "LSI SCSI model", "mptsas": "LSI SAS model"}
# NVMe models that say who makes the controller (/sys/block/nvme*/device/model).
NVME_MODELS = {"Amazon Elastic Block Store": ("hardware", "EBS through the Nitro card's NVMe controller"),
               "Amazon EC2 NVMe Instance Storage": ("hardware", "local NVMe passed through by Nitro"),
               "QEMU NVMe Ctrl": ("emulated", "QEMU's NVMe model")}
# Clocksources a guest reads from a page the hypervisor keeps (pvclock), in the vDSO.
CLOCK_PARAVIRTUAL = {"kvm-clock", "xen", "hyperv_clocksource_tsc_page"}
# Clocksources whose every read touches a device the hypervisor must emulate (a VM exit).
CLOCK_DEVICE = {"hpet", "acpi_pm", "pit", "hyperv_clocksource_msr"}
# The CPU counters a guest reads without exiting: the TSC on x86, the generic timer on arm64.
CLOCK_COUNTER = {"tsc", "arch_sys_counter"}
HARDWARE_HYPERVISORS = {"KVM", "Hyper-V", "VMware", "bhyve", "ACRN", "VirtualBox", "Parallels"}
# A CPUID that exits costs a VM round trip, ~1 us; on bare metal it is ~0.1 us (the figure).
CPUID_EXIT_NS = 500


def evidence(root: Path = sysinfo.ROOT, cpuid_vendor=sysinfo.read_cpuid_vendor) -> dict:
    """The facts classify() reads, from the files under root: every NIC and disk with a device."""
    def names(directory: str) -> list[str]:
        try:
            return sorted(p.name for p in (root / directory).iterdir())
        except OSError:
            return []

    nics = [sysinfo.nic(n, root) for n in names("sys/class/net")]
    disks = [sysinfo.disk(d, root) for d in names("sys/block")]
    return {"hypervisor": sysinfo.hypervisor(root, cpuid_vendor),
            "clocksource": sysinfo.clocksource(root),
            "nics": [_device(n) for n in nics if n.get("drivers")],
            "disks": [_device(d) for d in disks if d.get("drivers")]}


def _device(facts: dict) -> dict:
    return {k: facts[k] for k in ("name", "drivers", "model") if k in facts}


def classify(ev: dict, figures: dict | None = None) -> dict:
    """Per component: {"tier", "reasons": [...], "evidence": {...}}; network and storage
    also list their "devices", each with its own tier."""
    figures = figures or {}
    hv = ev.get("hypervisor") or {}
    guest = _guest(hv)
    return {"cpu": _cpu(hv, guest, figures), "network": _devices(ev.get("nics") or [], guest, _nic, "NIC"),
            "storage": _devices(ev.get("disks") or [], guest, _disk, "disk"),
            "timers": _timers(ev.get("clocksource") or {}, guest, figures)}


def _guest(hv: dict) -> str | None:
    """Why we are a guest, or None on bare metal."""
    if hv.get("cpuid_vendor"):
        return f"CPUID signature {hv['cpuid_vendor']!r} ({hv.get('name', 'unnamed')})"
    if hv.get("cpu_flag"):
        return "the 'hypervisor' flag in /proc/cpuinfo"
    if hv.get("sys_hypervisor"):
        return f"/sys/hypervisor/type is {hv['sys_hypervisor']!r}"
    return None


def _nitro(hv: dict) -> bool:
    return str(hv.get("dmi_vendor", "")).startswith("Amazon")


def _cpu(hv: dict, guest: str | None, figures: dict) -> dict:
    facts = {k: hv[k] for k in ("cpu_flag", "cpuid_vendor", "name", "sys_hypervisor", "guest_type", "dmi_vendor")
             if k in hv}
    name = hv.get("name")
    if guest is None:
        tier, why = "bare-metal", ["no hypervisor: no CPUID signature, no 'hypervisor' flag, no /sys/hypervisor"]
        if _nitro(hv):
            why.append(f"DMI vendor {hv['dmi_vendor']!r} without a hypervisor: a Nitro bare-metal instance")
    elif name == "QEMU (TCG)":
        tier, why = "emulated", [f"{guest}: QEMU translates every instruction in software"]
    elif hv.get("sys_hypervisor") == "xen" and hv.get("guest_type") == "PV":
        tier, why = "paravirtual", ["Xen guest_type PV: privileged operations are hypercalls"]
    elif name == "Xen" or hv.get("sys_hypervisor") == "xen":
        tier, why = "hardware", [f"{guest}, guest_type {hv.get('guest_type', 'unknown')}: a Xen HVM guest on VT-x/AMD-V"]
    elif name in HARDWARE_HYPERVISORS:
        tier, why = "hardware", [f"{guest}: a hardware-assisted (VT-x/AMD-V) hypervisor"]
        if name == "KVM" and _nitro(hv):
            why.append(f"DMI vendor {hv['dmi_vendor']!r}: the Nitro hypervisor (KVM-based)")
    else:
        tier, why = UNKNOWN, [f"{guest}, a hypervisor loadgen does not know"]
    cpuid = (figures.get("cpuid_ns") or {}).get("median")
    if cpuid is not None:
        exits = cpuid >= CPUID_EXIT_NS
        why.append(f"cpuid takes {cpuid:.0f} ns: " + ("a VM exit's cost (bare metal: ~100 ns)" if exits
                                                       else "no VM exit (an exit costs ~1 us)"))
    return {"tier": tier, "reasons": why, "evidence": facts}


def _nic(dev: dict, guest: str | None) -> tuple[str, str]:
    for driver in dev["drivers"]:
        if driver in NET_PARAVIRTUAL:
            return "paravirtual", f"{driver}: {NET_PARAVIRTUAL[driver]}, a paravirtual NIC"
        if driver in NET_SRIOV:
            if guest is None:
                return "bare-metal", f"{driver}: {NET_SRIOV[driver]}, no hypervisor"
            return "hardware", f"{driver}: {NET_SRIOV[driver]} in a guest, SR-IOV or passthrough"
        if driver in NET_EMULATED and guest is not None:
            return "emulated", f"{driver}: the hypervisor's {NET_EMULATED[driver]}"
    if guest is None:
        return "bare-metal", f"{dev['drivers'][0]} on bare metal"
    return UNKNOWN, f"{', '.join(dev['drivers'])}: not a driver loadgen knows"


def _disk(dev: dict, guest: str | None) -> tuple[str, str]:
    model = dev.get("model")
    for driver in dev["drivers"]:
        if driver in DISK_PARAVIRTUAL:
            return "paravirtual", f"{driver}: {DISK_PARAVIRTUAL[driver]}, a paravirtual disk"
        if driver == "nvme":
            if guest is None:
                return "bare-metal", f"nvme on bare metal, model {model!r}"
            if model in NVME_MODELS:
                tier, what = NVME_MODELS[model]
                return tier, f"nvme, model {model!r}: {what}"
            return "hardware", (f"nvme in a guest, model {model!r}: assumed passed through or offloaded "
                                "(no table entry says the hypervisor emulates it)")
        if driver in DISK_EMULATED and guest is not None:
            return "emulated", f"{driver}: the hypervisor's {DISK_EMULATED[driver]}"
    if guest is None:
        return "bare-metal", f"{dev['drivers'][0]} on bare metal"
    return UNKNOWN, f"{', '.join(dev['drivers'])}: not a driver loadgen knows"


def _devices(devices: list[dict], guest: str | None, rule, noun: str) -> dict:
    """Each device's tier; the component's is theirs when they agree, else the one
    closest to bare metal (the device a load would be put on), and the reasons say so."""
    rows = []
    for dev in devices:
        tier, why = rule(dev, guest)
        rows.append({"name": dev["name"], "drivers": dev["drivers"], "tier": tier, "reason": why})
    if not rows:
        return {"tier": UNKNOWN, "reasons": [f"no {noun} with a device (only virtual ones)"], "devices": []}
    tiers = {r["tier"] for r in rows}
    known = [t for t in TIERS if t in tiers]
    tier = next(iter(tiers)) if len(tiers) == 1 else (known[-1] if known else UNKNOWN)
    reasons = [f"{r['name']}: {r['reason']}" for r in rows]
    if len(tiers) > 1:
        reasons.append(f"the {noun}s differ; the component is named from the one closest to bare metal")
    return {"tier": tier, "reasons": reasons, "devices": rows}


def _timers(cs: dict, guest: str | None, figures: dict) -> dict:
    current = cs.get("current")
    flags = cs.get("tsc_flags") or []
    facts = {k: cs[k] for k in ("current", "available", "tsc_flags") if k in cs}
    if current is None:
        tier, why = UNKNOWN, ["the current clocksource is not readable"]
    elif guest is None:
        tier, why = "bare-metal", [f"clocksource {current} with no hypervisor"]
    elif current in CLOCK_COUNTER:
        tier, why = "hardware", [f"clocksource {current}: the guest reads the CPU's counter itself, no VM exit"]
        if current == "tsc":
            invariant = "constant_tsc" in flags and "nonstop_tsc" in flags
            why.append(f"TSC flags {' '.join(flags) or 'none'}: " + (
                "invariant, so the kernel keeps it" if invariant else "not invariant, the kernel may drop it"))
    elif current in CLOCK_PARAVIRTUAL:
        tier, why = "paravirtual", [f"clocksource {current}: a time page the hypervisor keeps (pvclock)"]
    elif current in CLOCK_DEVICE:
        tier, why = "emulated", [f"clocksource {current}: every read reaches an emulated device, a VM exit"]
    else:
        tier, why = UNKNOWN, [f"clocksource {current}: not one loadgen knows"]
    clock = (figures.get("clock_ns") or {}).get("median")
    if clock is not None:
        why.append(f"a clock read takes {clock:.0f} ns")
    return {"tier": tier, "reasons": why, "evidence": facts}


@lru_cache(maxsize=1)
def placed() -> dict:
    """This machine's tiers, read once per process: what every result's env carries.
    Sysfs reads and one CPUID only, no timing (`loadgen probe` times). The cpu and
    timers evidence is left out: env's hypervisor and clocksource hold it already."""
    return {name: {k: v for k, v in part.items() if k != "evidence"}
            for name, part in classify(evidence()).items()}
