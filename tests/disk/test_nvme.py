"""loadgen.disk.nvme: the ng device behind --engine nvme, its LBA format, and every refusal.

This host has no NVMe device. What stands in:
- Identify Namespace data built here, byte by byte, for parse_identify_ns;
- a fake sysfs tree (the sys_root seam) that lists /dev/null's device number as ng0n1, so
  discovery, the sysfs fallback (Identify on /dev/null fails with ENOTTY) and the checks
  against the LBA format run on a real open descriptor; Identify itself is replaced where
  a test needs its answer;
- the real host for the refusals `loadgen disk --engine nvme` prints: /dev/null, a regular
  file, a zram device made for the test, a missing /dev/ng0n1.
"""
import errno
import fcntl
import functools
import json
import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import main_in_process
from netfixtures import RUN_TIMEOUT_S, loadgen_argv

from loadgen.disk import job as disk_job, nvme
from loadgen.disk.nvme import LbaFormat, generic_devices, open_nvme_target, parse_identify_ns
from loadgen.errors import SetupError, UsageError
from loadgen.results import documents
from loadgen.run import native
from loadgen.workload import parse_disk

NULL_DEVNO = f"{os.major(os.stat('/dev/null').st_rdev)}:{os.minor(os.stat('/dev/null').st_rdev)}"


def identify_ns(formats: list[tuple[int, int]], flbas: int, nsze: int = 1 << 20) -> bytes:
    """An Identify Namespace data structure: NSZE, NLBAF (0's based), FLBAS and the LBA Format
    table of (LBADS, MS) entries, everything else zero."""
    data = bytearray(4096)
    struct.pack_into("<Q", data, 0, nsze)
    data[25] = len(formats) - 1
    data[26] = flbas
    for i, (lbads, ms) in enumerate(formats):
        struct.pack_into("<HBB", data, 128 + 4 * i, ms, lbads, 0)
    return bytes(data)


@pytest.mark.parametrize("data, want", [
    (identify_ns([(9, 0)], 0x00), LbaFormat(512, 0, False, 1 << 20)),
    (identify_ns([(9, 0), (12, 0)], 0x01, nsze=12345), LbaFormat(4096, 0, False, 12345)),
    (identify_ns([(9, 0), (12, 0)], 0x00), LbaFormat(512, 0, False, 1 << 20)),
    (identify_ns([(9, 0), (9, 8), (12, 8)], 0x12), LbaFormat(4096, 8, True, 1 << 20)),     # bit 4: extended
    (identify_ns([(9, 0), (9, 8), (12, 64)], 0x02), LbaFormat(4096, 64, False, 1 << 20)),  # separate metadata
    # 20 formats: FLBAS bits 6:5 are the index's high bits, 0b01 and 0b0010 make format 18
    (identify_ns([(9, 0)] * 18 + [(12, 0), (9, 0)], (1 << 5) | 0x2), LbaFormat(4096, 0, False, 1 << 20)),
    # 4 formats: bits 6:5 are reserved and ignored
    (identify_ns([(9, 0), (12, 0), (9, 0), (9, 0)], (1 << 5) | 0x1), LbaFormat(4096, 0, False, 1 << 20)),
    (identify_ns([(9, 0), (16, 0)], 0x01, nsze=2**40), LbaFormat(65536, 0, False, 2**40)),
])
def test_identify_names_the_lba_format_in_use(data, want):
    assert parse_identify_ns(data) == want


@pytest.mark.parametrize("data, says", [
    (identify_ns([(9, 0), (12, 0)], 0x02), "FLBAS names LBA format 2, but the namespace has 2"),
    (identify_ns([(0, 0)], 0x00), "LBADS 0"),                   # a format the namespace does not offer
    (identify_ns([(8, 0)], 0x00), "LBADS 8"),
    (bytes(100), "returned 100 bytes"),
])
def test_identify_that_names_no_usable_format_is_refused(data, says):
    with pytest.raises(ValueError, match=says):
        parse_identify_ns(data)


# ---- a fake sysfs: /dev/null listed as ng0n1 -------------------------------------------------------

def fake_sys(root: Path, devno: str = NULL_DEVNO, *, lba: int | None = 4096, sectors: int = 1 << 21,
             nsid: int | None = 1, max_hw_kb: int | None = 512, metadata: int | None = None) -> Path:
    (root / "class" / "nvme-generic" / "ng0n1").mkdir(parents=True)
    (root / "class" / "nvme-generic" / "ng0n1" / "dev").write_text(devno + "\n")
    block = root / "block" / "nvme0n1"
    (block / "queue").mkdir(parents=True)
    (block / "size").write_text(f"{sectors}\n")
    for path, value in ((block / "queue" / "logical_block_size", lba), (block / "nsid", nsid),
                        (block / "queue" / "max_hw_sectors_kb", max_hw_kb), (block / "metadata_bytes", metadata)):
        if value is not None:
            path.write_text(f"{value}\n")
    return root


def spec(**options):
    return parse_disk(**({"engine": "nvme", "target": "/dev/null", "seed": "1", "workers": "1", "duration": "1s"}
                         | options))


def identify_answers(monkeypatch, nsid: int, data: bytes) -> list[int]:
    """Replace the native Identify with one answering (nsid, data); returns the fds it was asked about."""
    asked: list[int] = []

    def identify(fd: int):
        asked.append(fd)
        return nsid, data

    monkeypatch.setattr(native, "nvme_identify", identify)
    return asked


def test_generic_devices_lists_the_class_by_device_number(tmp_path):
    assert generic_devices(fake_sys(tmp_path)) == {NULL_DEVNO: "ng0n1"}
    assert generic_devices(tmp_path / "nowhere") == {}


def test_identify_gives_the_namespace_and_its_lba_format(tmp_path, monkeypatch):
    asked = identify_answers(monkeypatch, 3, identify_ns([(9, 0), (12, 0)], 0x01, nsze=1 << 20))
    target = open_nvme_target(spec(bs="8k"), sys_root=fake_sys(tmp_path, lba=512))   # sysfs disagrees: not read
    try:
        assert asked == [target.fd] and target.fd >= 0
        assert (target.kind, target.nsid, target.lba_bytes, target.lba_shift, target.lba_source) == (
            "nvme", 3, 4096, 12, "identify")
        assert target.span_bytes == (1 << 20) * 4096
        assert target.notes == []
        assert target.facts()["nvme"] == {"nsid": 3, "lba_bytes": 4096, "lba_source": "identify"}
        assert target.facts()["target_kind"] == "nvme"
        assert fcntl.fcntl(target.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY   # a read job reads
    finally:
        target.close()


def test_size_caps_the_span_in_whole_blocks(tmp_path, monkeypatch):
    identify_answers(monkeypatch, 1, identify_ns([(12, 0)], 0x00, nsze=1 << 20))
    target = open_nvme_target(spec(bs="8k", size="100000k"), sys_root=fake_sys(tmp_path))
    try:
        assert target.span_bytes == 100000 * 1024 - (100000 * 1024) % 8192
    finally:
        target.close()


def test_where_identify_fails_sysfs_gives_the_lba_format_and_the_result_says_so(tmp_path):
    """The real Identify on /dev/null: ENOTTY, so the block twin's sysfs answers."""
    target = open_nvme_target(spec(bs="4k"), sys_root=fake_sys(tmp_path, lba=4096, sectors=1 << 21, nsid=5))
    try:
        assert (target.nsid, target.lba_bytes, target.lba_source) == (5, 4096, "sysfs")
        assert target.span_bytes == (1 << 21) * 512
        assert target.notes == ["/dev/null: Identify Namespace failed; its LBA size (4096 bytes) is "
                                "/sys/block/nvme0n1's"]
    finally:
        target.close()


def test_where_neither_identify_nor_sysfs_says_it_is_an_environment_error(tmp_path):
    with pytest.raises(SetupError) as e:
        open_nvme_target(spec(), sys_root=fake_sys(tmp_path, lba=None))
    assert e.value.exit_code == 1
    assert str(e.value) == (f"cannot learn /dev/null's LBA format: Identify Namespace failed "
                            f"({os.strerror(errno.ENOTTY)}) and /sys/block/nvme0n1 does not say")


@pytest.mark.parametrize("lba, bs, says", [
    (4096, "512", "bs 512 is not a multiple of /dev/null's 4096-byte LBA"),
    (4096, "6k", "bs 6k is not a multiple of /dev/null's 4096-byte LBA"),
    (512, "1m", "bs 1m is more than /dev/null's largest transfer, 512k (queue/max_hw_sectors_kb)"),
])
def test_bs_must_be_whole_lbas_within_one_transfer(tmp_path, lba, bs, says):
    with pytest.raises(UsageError) as e:
        open_nvme_target(spec(bs=bs), sys_root=fake_sys(tmp_path, lba=lba))
    assert e.value.exit_code == 2 and str(e.value) == says


def test_bs_beyond_what_nlb_counts_is_refused(tmp_path, monkeypatch):
    identify_answers(monkeypatch, 1, identify_ns([(9, 0)], 0x00, nsze=1 << 30))
    with pytest.raises(UsageError, match="more than one NVMe command moves: 65536 LBAs of 512 bytes"):
        open_nvme_target(spec(bs="64m"), sys_root=fake_sys(tmp_path, max_hw_kb=None))


@pytest.mark.parametrize("formats, flbas, says", [
    ([(12, 8)], 0x10, r"carries 8 bytes of metadata per LBA \(extended\)"),
    ([(12, 64)], 0x00, "carries 64 bytes of metadata per LBA,"),
])
def test_a_namespace_with_metadata_is_refused(tmp_path, monkeypatch, formats, flbas, says):
    identify_answers(monkeypatch, 1, identify_ns(formats, flbas))
    with pytest.raises(SetupError, match=says):
        open_nvme_target(spec(), sys_root=fake_sys(tmp_path))


def test_metadata_that_only_sysfs_reports_is_refused_too(tmp_path):
    with pytest.raises(SetupError, match="carries 16 bytes of metadata"):
        open_nvme_target(spec(), sys_root=fake_sys(tmp_path, metadata=16))


def test_writes_need_allow_destroy(tmp_path, monkeypatch):
    asked = identify_answers(monkeypatch, 1, identify_ns([(12, 0)], 0x00))
    with pytest.raises(UsageError) as e:
        open_nvme_target(spec(rw="randwrite"), sys_root=fake_sys(tmp_path))
    assert str(e.value) == ("refusing to write to /dev/null: loadgen cannot check an NVMe namespace for data "
                            "through its char device (--allow-destroy overrides)")
    assert asked == []          # refused before anything was opened or asked
    target = open_nvme_target(spec(rw="randrw", allow_destroy=True), sys_root=fake_sys(tmp_path / "again"))
    try:
        assert fcntl.fcntl(target.fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR   # writes need it
    finally:
        target.close()


def test_no_permission_is_an_environment_error(tmp_path, monkeypatch):
    def denied(path, flags, *args):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(nvme.os, "open", denied)
    with pytest.raises(SetupError) as e:
        open_nvme_target(spec(), sys_root=fake_sys(tmp_path))
    assert e.value.exit_code == 1 and str(e.value) == "no permission to open /dev/null"


def test_a_char_device_the_class_does_not_list_is_never_opened(tmp_path, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(nvme.os, "open", lambda path, *a: opened.append(path))
    with pytest.raises(UsageError) as e:
        open_nvme_target(spec(target="/dev/zero"), sys_root=fake_sys(tmp_path))
    assert "/dev/zero is a char device (/sys/class/nvme-generic does not list its device number 1:5)" in str(e.value)
    assert opened == []


def test_a_missing_path_is_a_typo_when_the_host_has_ng_devices(tmp_path):
    with pytest.raises(UsageError) as e:
        open_nvme_target(spec(target="/dev/ng7n7"), sys_root=fake_sys(tmp_path))
    assert str(e.value) == "target not found: /dev/ng7n7 (NVMe generic char devices here: /dev/ng0n1)"


def test_a_missing_path_on_a_host_without_ng_devices_is_an_environment_error(tmp_path):
    with pytest.raises(SetupError) as e:
        open_nvme_target(spec(target="/dev/ng0n1"), sys_root=tmp_path)
    assert str(e.value) == ("no NVMe generic char device here: /dev/ng0n1 does not exist and "
                            "/sys/class/nvme-generic lists none (--engine nvme needs /dev/ngXnY)")


@pytest.mark.parametrize("options, says", [
    ({"target": ""}, "--engine nvme needs --target /dev/ngXnY (an NVMe namespace's generic char device)"),
    ({"direct": False}, "--buffered does not apply to --engine nvme: passthrough commands never use the page cache"),
    ({"prefill": True}, "--prefill and --allow-sparse are for files; --engine nvme reads a namespace as it is"),
    ({"allow_sparse": True}, "--prefill and --allow-sparse are for files"),
])
def test_options_that_make_no_sense_for_passthrough_are_refused_by_the_spec(options, says):
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        spec(**options)


def test_a_kernel_without_big_sqes_is_told_in_one_line(monkeypatch):
    monkeypatch.setattr(native, "nvme_ring_probe", lambda: -errno.EINVAL)
    with pytest.raises(SetupError) as e:
        disk_job.choose_engine("nvme")
    assert str(e.value) == ("--engine nvme needs io_uring rings with 128-byte SQEs and 32-byte CQEs "
                            f"(Linux >= 5.19): {os.strerror(errno.EINVAL)}")


def test_the_engine_is_chosen_here(io_uring):
    assert disk_job.choose_engine("nvme") == ("nvme", None)


# ---- the CLI on this host: one line and the exit code, never a traceback ---------------------------

def loadgen(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(loadgen_argv("disk", "--engine", "nvme", "--duration", "1s", "--ramp", "0s", *args),
                          cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def one_line(p: subprocess.CompletedProcess, code: int, says: str) -> None:
    assert (p.returncode, p.stdout) == (code, ""), p.stderr
    assert p.stderr == f"loadgen: {says}\n"


def test_cli_refuses_dev_null(tmp_path):
    one_line(loadgen(tmp_path, "--target", "/dev/null"), 2,
             "--engine nvme needs an NVMe namespace's generic char device (/dev/ngXnY); /dev/null is a char device "
             f"(/sys/class/nvme-generic does not list its device number {NULL_DEVNO})")


def test_cli_refuses_a_regular_file(tmp_path):
    (tmp_path / "data").write_bytes(bytes(1 << 20))
    one_line(loadgen(tmp_path, "--target", str(tmp_path / "data")), 2,
             f"--engine nvme needs an NVMe namespace's generic char device (/dev/ngXnY); {tmp_path / 'data'} "
             "is a regular file")


def test_cli_refuses_no_target(tmp_path):
    one_line(loadgen(tmp_path), 2, "--engine nvme needs --target /dev/ngXnY (an NVMe namespace's generic char device)")
    assert list(tmp_path.iterdir()) == []      # no temporary target was made


def test_cli_on_a_missing_ng_device(tmp_path):
    if generic_devices():
        pytest.skip("this host has NVMe generic char devices: /dev/ng0n1 missing would be a typo here")
    one_line(loadgen(tmp_path, "--target", "/dev/ng0n1"), 1,
             "no NVMe generic char device here: /dev/ng0n1 does not exist and /sys/class/nvme-generic lists none "
             "(--engine nvme needs /dev/ngXnY)")


@pytest.fixture
def zram_device():
    """A zram device of this test's own (hot_add), removed afterwards; never zram0."""
    control = Path("/sys/class/zram-control")
    if not control.is_dir():
        pytest.skip("no zram here (/sys/class/zram-control is absent)")
    if os.geteuid() != 0:
        pytest.skip("needs root: it hot-adds a zram device")
    n = int((control / "hot_add").read_text())
    try:
        yield Path(f"/dev/zram{n}")
    finally:
        (control / "hot_remove").write_text(str(n))


@pytest.mark.root
def test_cli_refuses_a_zram_block_device(tmp_path, zram_device):
    assert stat.S_ISBLK(os.stat(zram_device).st_mode)
    one_line(loadgen(tmp_path, "--target", str(zram_device)), 2,
             f"--engine nvme needs an NVMe namespace's generic char device (/dev/ngXnY); {zram_device} is a block device")


@pytest.mark.root
def test_cli_names_the_ng_device_of_an_nvme_block_device(tmp_path, zram_device):
    """A block device node called nvme9n1 (zram's device number, made here) is pointed to /dev/ng9n1."""
    node = tmp_path / "nvme9n1"
    st = os.stat(zram_device)
    os.mknod(node, stat.S_IFBLK | 0o600, st.st_rdev)
    one_line(loadgen(tmp_path, "--target", str(node)), 2,
             f"--engine nvme needs an NVMe namespace's generic char device (/dev/ngXnY); {node} is a block device "
             "(its char device is /dev/ng9n1)")


@pytest.mark.root
@pytest.mark.parametrize("name, hint", [("nvme12n3", " (its char device is /dev/ng12n3)"),
                                        ("nvme0n1p1", ""),    # a partition: no ng device of its own
                                        ("nvme0", "")])       # no namespace in the name
def test_only_a_namespace_block_device_is_pointed_to_an_ng_name(tmp_path, zram_device, name, hint):
    node = tmp_path / name
    os.mknod(node, stat.S_IFBLK | 0o600, os.stat(zram_device).st_rdev)
    with pytest.raises(UsageError) as e:
        open_nvme_target(spec(target=str(node)), sys_root=fake_sys(tmp_path / "sys"))
    assert str(e.value).endswith(f"{node} is a block device{hint}")


# ---- a whole run, in this process, on /dev/null listed as ng0n1 -------------------------------------

@pytest.fixture
def run_cli(monkeypatch, tmp_path, capsys):
    """cli.main(["disk", *args]) in tmp_path with the fake sysfs: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nvme, "open_nvme_target",
                        functools.partial(nvme.open_nvme_target, sys_root=fake_sys(tmp_path / "sys")))

    def run(*args: str) -> tuple[int, str, str]:
        return main_in_process(["disk", "--duration", "300ms", "--ramp", "0s", "--interval", "100ms", *args], capsys)

    return run


@pytest.mark.parametrize("rw", ["randread", "randrw"])
def test_a_whole_nvme_run_writes_a_valid_document(io_uring, tmp_path, monkeypatch, run_cli, rw):
    """prepare, the native config (nsid, LBA shift), the SQE128 worker and the document, end to end;
    /dev/null completes every command with 0."""
    identify_answers(monkeypatch, 1, identify_ns([(9, 0), (12, 0)], 0x01, nsze=1 << 18))
    code, out, err = run_cli("--engine", "nvme", "--target", "/dev/null", "--rw", rw, "--bs", "8k", "--allow-destroy",
                             "--workers", "1", "--json", "r.json")
    assert code == 0, err
    doc = documents.load_result(tmp_path / "r.json")     # and it fits the schema
    assert doc["engine"] == doc["config"]["engine"] == "nvme"
    assert doc["config"]["target_kind"] == "nvme"
    assert doc["config"]["nvme"] == {"nsid": 1, "lba_bytes": 4096, "lba_source": "identify"}
    assert doc["config"]["span_bytes"] == (1 << 18) * 4096
    s = doc["summary"]
    assert s["ops"] > 0 and s["errors"] == 0
    assert sum(r["ops"] for r in doc["intervals"]) == s["ops"]
    assert " engine=nvme " in out
    assert err == ""
    json.dumps(doc)
