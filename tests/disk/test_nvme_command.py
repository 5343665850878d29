"""The nvme engine's commands and ring, short of an NVMe device (this host has none).

The encoding is checked against the specification's layout, decoded here with struct
from offsets written out by hand (native/nvme.h cites the spec):
  struct nvme_uring_cmd, 72 bytes: opcode u8 @0, flags u8 @1, rsvd1 u16 @2, nsid @4,
  cdw2 @8, cdw3 @12, metadata u64 @16, addr u64 @24, metadata_len @32, data_len @36,
  cdw10..cdw15 @40..60, timeout_ms @64, rsvd2 @68.
  NVM Read (02h) and Write (01h): CDW10 = SLBA bits 31:0, CDW11 = SLBA bits 63:32,
  CDW12 bits 15:0 = NLB, 0's based; the rest 0.
The SQE: IORING_OP_URING_CMD (46), cmd_op NVME_URING_CMD_IO at 8, uring_cmd_flags at 28,
buf_index at 40, and the command in the cmd area from 48.

The ring: the kernel's /dev/null answers every io_uring command with 0 (drivers/char/mem.c,
uring_cmd_null, Linux >= 6.1) and a regular file with EOPNOTSUPP, so the worker's whole
passthrough path (128-byte SQEs, 32-byte CQEs, prep, reap, accounting) runs against them.
What those cannot show: that an NVMe controller accepts the commands.
"""
import errno
import os
import struct

import pytest

from loadgen.run import native
from loadgen.run.stats import Snapshot

CMD = struct.Struct("<BBHIIIQQIIIIIIIIII")
CMD_FIELDS = ("opcode", "flags", "rsvd1", "nsid", "cdw2", "cdw3", "metadata", "addr", "metadata_len", "data_len",
              "cdw10", "cdw11", "cdw12", "cdw13", "cdw14", "cdw15", "timeout_ms", "rsvd2")
READ, WRITE, IDENTIFY = 0x02, 0x01, 0x06
IORING_OP_URING_CMD = 46
IOSQE_FIXED_FILE = 1
IORING_URING_CMD_FIXED = 1


def ioc_readwrite(kind: str, nr: int, size: int) -> int:
    """_IOWR(kind, nr, size) of <asm-generic/ioctl.h>: direction 3 in bits 31:30, size in 29:16."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr


NVME_URING_CMD_IO = ioc_readwrite("N", 0x80, 72)


def decode(raw: bytes) -> dict:
    assert len(raw) == CMD.size == 72
    return dict(zip(CMD_FIELDS, CMD.unpack(raw)))


def expected(opcode: int, nsid: int, addr: int, data_len: int, cdw10: int, cdw11: int, cdw12: int) -> dict:
    return dict.fromkeys(CMD_FIELDS, 0) | {"opcode": opcode, "nsid": nsid, "addr": addr, "data_len": data_len,
                                           "cdw10": cdw10, "cdw11": cdw11, "cdw12": cdw12}


# (is_write, LBA bytes, offset, length, nsid) -> CDW10, CDW11, CDW12, written out by hand
CASES = [
    (False, 512, 0, 512, 1, 0x00000000, 0x00000000, 0x0000),                      # one LBA: NLB 0
    (True, 512, 0, 512, 1, 0x00000000, 0x00000000, 0x0000),
    (False, 512, 512 * 7, 4096, 1, 0x00000007, 0x00000000, 0x0007),               # 8 LBAs at 7
    (False, 4096, 4096 * 5, 8192, 2, 0x00000005, 0x00000000, 0x0001),             # 2 LBAs at 5
    (True, 4096, 4096 * 0xFFFFFFFF, 4096, 1, 0xFFFFFFFF, 0x00000000, 0x0000),     # SLBA 2^32 - 1: CDW11 still 0
    (True, 512, 512 << 32, 512, 1, 0x00000000, 0x00000001, 0x0000),               # SLBA 2^32: the high dword
    (False, 4096, 4096 * 0x1_2345_6789, 131072, 7, 0x23456789, 0x00000001, 0x001F),  # 128k = 32 LBAs
    (True, 4096, 4096 * 0xABCD_0000_0001, 65536 * 4096, 1, 0x00000001, 0x0000ABCD, 0xFFFF),  # 65536 LBAs: NLB FFFFh
    (False, 512, 512 * 0xDEAD_BEEF_CAFE, 65536 * 512, 0xFFFFFFFE, 0xBEEFCAFE, 0x0000DEAD, 0xFFFF),
]


@pytest.mark.parametrize("is_write, lba, offset, length, nsid, cdw10, cdw11, cdw12", CASES)
def test_read_and_write_encode_as_the_spec_lays_them_out(is_write, lba, offset, length, nsid, cdw10, cdw11, cdw12):
    addr = 0x7F00_1234_5000
    raw = native.nvme_encode(is_write, nsid, lba.bit_length() - 1, offset, length, addr)
    assert decode(raw) == expected(WRITE if is_write else READ, nsid, addr, length, cdw10, cdw11, cdw12)


@pytest.mark.parametrize("lba", [512, 4096])
@pytest.mark.parametrize("is_write", [False, True])
def test_slba_and_nlb_follow_offset_and_length_at_every_scale(lba, is_write):
    """SLBA = offset / LBA split into two dwords, NLB = length / LBA - 1, across 2^0 .. 2^50 LBAs."""
    shift = lba.bit_length() - 1
    for slba in [0, 1, 3, 255, 65535, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 17, 2**50 - 1]:
        for nlb in [1, 2, 8, 32, 256, 65535, 65536]:
            cmd = decode(native.nvme_encode(is_write, 1, shift, slba * lba, nlb * lba, 0))
            assert (cmd["cdw11"] << 32 | cmd["cdw10"]) == slba
            assert cmd["cdw12"] == nlb - 1 and cmd["data_len"] == nlb * lba
            assert cmd["opcode"] == (WRITE if is_write else READ)
            assert cmd["flags"] == cmd["cdw13"] == cmd["cdw14"] == cmd["cdw15"] == cmd["metadata"] == 0


@pytest.mark.parametrize("lba_shift, offset, length", [
    (9, 256, 512),              # offset not a whole LBA
    (12, 512, 4096),            # 512-aligned is not 4096-aligned
    (12, 0, 512),               # length not a whole LBA
    (9, 0, 0),                  # nothing to move
    (9, 0, 65537 * 512),        # NLB has 16 bits: 65536 LBAs at most
    (8, 0, 256),                # LBADS below 9 is not a format
    (31, 0, 1 << 31),
])
def test_what_no_command_can_say_is_refused(lba_shift, offset, length):
    with pytest.raises(OSError) as e:
        native.nvme_encode(False, 1, lba_shift, offset, length, 0)
    assert e.value.errno == errno.EINVAL


def test_identify_namespace_encodes_opcode_06h_and_cns_0():
    cmd = decode(native.nvme_encode_identify(3, 0x1000))
    assert cmd == expected(IDENTIFY, 3, 0x1000, 4096, 0, 0, 0)


@pytest.mark.parametrize("fixed_file, buf_index", [(False, -1), (True, -1), (True, 5), (False, 0)])
def test_the_sqe_carries_the_command_in_its_cmd_area(fixed_file, buf_index):
    fd, addr = (0 if fixed_file else 9), 0x7F00_0000_2000
    sqe = native.nvme_sqe(fd, fixed_file, buf_index, True, 1, 12, 4096 * 10, 16384, addr)
    assert len(sqe) == 128
    opcode, flags, ioprio, sqe_fd, cmd_op, pad1 = struct.unpack_from("<BBHiII", sqe, 0)
    assert (opcode, ioprio, sqe_fd, cmd_op, pad1) == (IORING_OP_URING_CMD, 0, fd, NVME_URING_CMD_IO, 0)
    assert cmd_op == 0xC0484E80
    assert flags == (IOSQE_FIXED_FILE if fixed_file else 0)
    (uring_cmd_flags,) = struct.unpack_from("<I", sqe, 28)
    (index,) = struct.unpack_from("<H", sqe, 40)
    assert uring_cmd_flags == (IORING_URING_CMD_FIXED if buf_index >= 0 else 0)
    assert index == max(buf_index, 0)
    assert sqe[48:120] == native.nvme_encode(True, 1, 12, 4096 * 10, 16384, addr)
    assert decode(sqe[48:120]) == expected(WRITE, 1, addr, 16384, 10, 0, 3)
    assert sqe[120:] == bytes(8) and sqe[16:28] == bytes(12)   # addr, len and user_data are the caller's


def test_a_ring_with_128_byte_sqes_and_32_byte_cqes_works_here(io_uring):
    """Set up, NOPs round-tripped past the ring's wrap with their own user_data, torn down."""
    assert native.nvme_ring_probe() == 0


# ---- the disk worker's passthrough path, against /dev/null and a regular file ----------------

def nvme_run(fd: int, *, bs: int = 4096, lba_shift: int = 12, nsid: int = 1, read_pct: int = 100, qd: int = 8,
             workers: int = 1, run_ns: int = 300_000_000) -> Snapshot:
    """A short closed-loop nvme run on fd; its final snapshot."""
    start = native.now_ns() + 20_000_000
    cfg = native.DiskConfig(fd=fd, engine=native.ENGINE_NVME, workers=workers, qd=qd, bs_bytes=bs, read_pct=read_pct,
                            span_bytes=64 << 20, start_ns=start, ramp_end_ns=start, end_ns=start + run_ns, seed=7,
                            cpus=native.int32_array([-1] * workers), nvme_nsid=nsid, nvme_lba_shift=lba_shift)
    run = native.start_disk(cfg)
    try:
        assert run.join() == 0
        return Snapshot(run.layout, run.read(), native.now_ns())
    finally:
        run.free()


@pytest.mark.parametrize("read_pct", [100, 0, 50])
def test_every_command_round_trips_through_the_worker_on_dev_null(io_uring, read_pct):
    """/dev/null completes each command with 0: counted as bs bytes moved, none lost, none failed."""
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        snap = nvme_run(fd, bs=8192, read_pct=read_pct, qd=16)
    finally:
        os.close(fd)
    reads, writes = snap.counter("ops_read"), snap.counter("ops_write")
    assert snap.counter("errors") == 0 and snap.errors_by_errno() == {}
    assert reads + writes > 100
    assert snap.counter("bytes_read") == 8192 * reads and snap.counter("bytes_write") == 8192 * writes
    assert (reads > 0, writes > 0) == (read_pct > 0, read_pct < 100)
    assert int(snap.hist("service_read", "service_write").sum()) == reads + writes


def test_a_file_without_passthrough_fails_every_command_with_eopnotsupp(io_uring, tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(bytes(1 << 20))
    fd = os.open(path, os.O_RDONLY)
    try:
        snap = nvme_run(fd, run_ns=100_000_000)
    finally:
        os.close(fd)
    assert snap.counter("ops_read") == 0 and snap.counter("errors") > 0
    assert snap.errors_by_errno() == {errno.EOPNOTSUPP: snap.counter("errors")}


@pytest.mark.parametrize("change", [
    {"nvme_nsid": 0},                               # no namespace
    {"nvme_lba_shift": 8},                          # LBADS below 9
    {"nvme_lba_shift": 13},                         # bs 4096 is not a whole 8k LBA
    {"bs_bytes": 4096 + 512},                       # nor is 4.5k a whole 4k LBA
    {"bs_bytes": 65537 * 512, "nvme_lba_shift": 9},  # more LBAs than NLB can count
])
def test_the_native_start_refuses_what_no_command_can_carry(change):
    fd = os.open("/dev/null", os.O_RDWR)
    try:
        cfg = native.DiskConfig(fd=fd, engine=native.ENGINE_NVME, workers=1, qd=1, bs_bytes=4096, read_pct=100,
                                span_bytes=64 << 20, end_ns=native.now_ns(), nvme_nsid=1, nvme_lba_shift=12)
        for key, value in change.items():
            setattr(cfg, key, value)
        with pytest.raises(Exception) as e:
            native.start_disk(cfg)
        assert os.strerror(errno.EINVAL) in str(e.value)
    finally:
        os.close(fd)

