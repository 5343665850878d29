"""The packet engine's senders placed by TX queue: which CPU each runs on, and which queue that feeds.

Vocabulary:
- queue    a TX queue of the egress interface, /sys/class/net/DEV/queues/tx-N; their
           count is the device's real_num_tx_queues.
- irq      the interrupt that signals a queue's completions, found by name in
           /proc/interrupts (a name that mentions the interface, or the device it sits
           on, with "tx"/"output" in it, or "TxRx"/"comp" for a queue pair's shared one;
           the queue is the last number left once those names are taken out). Its CPUs are
           /proc/irq/N/smp_affinity_list. veth, lo and other virtual devices have none.
- decided  what picks a sender's queue, as net/packet/af_packet.c and net/core/dev.c do:
           with PACKET_QDISC_BYPASS, packet_pick_tx_queue asks the driver's ndo_select_queue
           if it has one (invisible from here), else netdev_pick_tx: the XPS map of the
           sending CPU (tx-N/xps_cpus) when one is set ("xps"), else the queue
           skb_tx_hash takes from the one recorded as cpu % real_num_tx_queues ("cpu").
           Through the qdisc (no bypass) an XPS map still decides; without one the flow
           hash does ("flow hash"), so a sender feeds many queues and none is recorded.
           Either way a sender's queue follows the CPU it is pinned to: there is no socket
           option that names a TX queue for AF_PACKET (PACKET_FANOUT is for receiving).
           An AF_XDP socket names its queue itself: it is bound to it ("bind"), one socket per
           queue, wherever its sender runs (bound_plan).

Rules: reads files under a root (fake trees in tests), never writes; no sockets. By
default one sender per queue a pinned sender can reach, on a CPU near the queue's IRQ when
there is one, at most one per CPU this process may use; --workers N places N senders on
worker_cpus' CPUs instead and records the queue each feeds.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/")


@dataclass(frozen=True)
class Place:
    cpu: int
    queue: int | None     # None: the flow hash decides, per datagram
    irq: int | None       # the queue's interrupt, when it has one

    def as_dict(self) -> dict:
        return {"cpu": self.cpu, "queue": self.queue, "irq": self.irq}


@dataclass(frozen=True)
class Plan:
    places: list[Place]   # one per sender
    tx_queues: int
    decided: str          # "xps", "cpu", "flow hash" or "bind" (see the module's docstring)
    irqs: dict[int, int]  # queue -> irq, those found

    def facts(self) -> dict:
        """The result's config.packet fields about queues."""
        note = None if self.irqs else "no queue IRQs (a virtual device such as veth has none)"
        return {"tx_queues": self.tx_queues, "queue_decided_by": self.decided,
                "senders": [p.as_dict() for p in self.places], "irq_note": note}


def parse_cpu_list(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_cpu_mask(text: str) -> set[int]:
    """A sysfs CPU mask ('00000000,00000003', hex words, most significant first) -> {0, 1}."""
    value = int(text.strip().replace(",", "") or "0", 16)
    return {i for i in range(value.bit_length()) if value >> i & 1}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def tx_queue_count(dev: str, root: Path = ROOT) -> int:
    """The device's TX queues (real_num_tx_queues: sysfs lists only those); 1 if unreadable."""
    try:
        return max(1, sum(e.startswith("tx-") for e in os.listdir(root / "sys/class/net" / dev / "queues")))
    except OSError:
        return 1


def xps_map(dev: str, queues: int, root: Path = ROOT) -> dict[int, set[int]]:
    """CPU -> the queues XPS sends it to; empty when no map is set (the files exist only on multi-queue devices)."""
    by_cpu: dict[int, set[int]] = {}
    for q in range(queues):
        text = _read(root / "sys/class/net" / dev / "queues" / f"tx-{q}" / "xps_cpus")
        try:
            cpus = parse_cpu_mask(text) if text else set()
        except ValueError:
            cpus = set()
        for c in cpus:
            by_cpu.setdefault(c, set()).add(q)
    return by_cpu


def _device_names(dev: str, root: Path) -> list[str]:
    names = [dev]
    link = root / "sys/class/net" / dev / "device"
    if link.is_symlink():
        names.append(os.path.basename(os.readlink(link)))
    return names


def queue_irqs(dev: str, root: Path = ROOT) -> dict[int, int]:
    """TX queue -> its IRQ, from /proc/interrupts names (see the module's docstring); {} when none."""
    text = _read(root / "proc/interrupts") or ""
    patterns = [re.compile(rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])") for n in _device_names(dev, root)]
    own, shared = {}, {}
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit() or not rest.split():
            continue
        name = rest.split()[-1]
        if not any(p.search(name) for p in patterns):
            continue
        bare = name
        for p in patterns:
            bare = p.sub("", bare)
        low = bare.lower()
        numbers = re.findall(r"\d+", bare)
        if not numbers:
            continue
        queue = int(numbers[-1])
        tx, rx = re.search(r"tx|output", low), re.search(r"rx|input", low)
        if tx and not rx:
            own.setdefault(queue, int(head))
        elif (tx and rx) or "comp" in low:
            shared.setdefault(queue, int(head))
    return shared | own


def irq_cpus(irq: int, root: Path = ROOT) -> list[int]:
    """The CPUs an IRQ may fire on; [] when unreadable."""
    text = _read(root / "proc/irq" / str(irq) / "smp_affinity_list")
    try:
        return parse_cpu_list(text) if text else []
    except ValueError:
        return []


def kernel_queue(cpu: int, queues: int, xps: dict[int, set[int]], bypass: bool) -> int | None:
    """The queue the kernel sends a pinned sender's frames to, or None when the flow hash picks it."""
    mapped = xps.get(cpu)
    if mapped and len(mapped) == 1:
        return next(iter(mapped))
    if mapped:
        return None   # XPS spreads this CPU's flows over several queues by hash
    return cpu % queues if bypass else None


def plan(dev: str, allowed_cpus: list[int], workers: int | None, bypass: bool, root: Path = ROOT) -> Plan:
    """Where the senders run: workers None is one per reachable queue (capped by the CPUs), else that many."""
    queues = tx_queue_count(dev, root)
    xps = xps_map(dev, queues, root)
    irqs = queue_irqs(dev, root)
    decided = "xps" if xps else "cpu" if bypass else "flow hash"
    cpus = sorted(allowed_cpus)
    if workers is not None:
        places = [cpus[i % len(cpus)] for i in range(workers)]
        return Plan([Place(c, kernel_queue(c, queues, xps, bypass), irqs.get(kernel_queue(c, queues, xps, bypass)))
                     for c in places], queues, decided, irqs)
    chosen: list[Place] = []
    used: set[int] = set()
    for q in range(queues):
        if len(chosen) == len(cpus):
            break
        free = [c for c in cpus if c not in used]
        near = irq_cpus(irqs[q], root) if q in irqs else []
        reach = [c for c in free if kernel_queue(c, queues, xps, bypass) == q]
        if decided == "flow hash":
            reach = free   # the hash spreads every sender over the queues: place them by IRQ only
        if not reach:
            continue   # no free CPU's frames go to this queue
        cpu = next((c for c in reach if c in near), reach[0])
        used.add(cpu)
        chosen.append(Place(cpu, kernel_queue(cpu, queues, xps, bypass), irqs.get(q)))
    if not chosen:
        chosen.append(Place(cpus[0], kernel_queue(cpus[0], queues, xps, bypass), None))
    return Plan(chosen, queues, decided, irqs)


def bound_plan(dev: str, allowed_cpus: list[int], workers: int | None, root: Path = ROOT) -> Plan:
    """Senders bound to queues 0, 1, ... (AF_XDP): workers None is one per queue (capped by the
    CPUs), else that many, at most one per queue; each on a free CPU near its queue's IRQ where
    there is one. ValueError when workers exceeds the queues."""
    queues = tx_queue_count(dev, root)
    irqs = queue_irqs(dev, root)
    cpus = sorted(allowed_cpus)
    n = min(queues, len(cpus)) if workers is None else workers
    if n > queues:
        raise ValueError(f"{dev} has {queues} TX queue{'s' if queues > 1 else ''}")
    places: list[Place] = []
    used: set[int] = set()
    for q in range(n):
        free = [c for c in cpus if c not in used] or cpus
        near = irq_cpus(irqs[q], root) if q in irqs else []
        cpu = next((c for c in free if c in near), free[0])
        used.add(cpu)
        places.append(Place(cpu, q, irqs.get(q)))
    return Plan(places, queues, "bind", irqs)
