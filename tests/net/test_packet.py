"""The datagram header on the wire (native/loadgen.h), through loadgen.run.native.pkt_encode.

32 bytes, little-endian: magic u32 | flow u32 | seq u32 | run_tag u32 | sched_ns i64 | send_ns i64.
"""
import struct

import pytest

from loadgen import workload
from loadgen.run import native

HEADER = struct.Struct("<IIIIqq")
MAGIC = 0x4C47504B
U32_MAX = 2**32 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


@pytest.mark.parametrize("flow, seq, run_tag, sched_ns, send_ns", [
    (0, 0, 0, 0, 0),
    (1, 2, 3, 4, 5),
    (7, 123_456, 0xDEADBEEF, 1_700_000_000_123_456_789, 1_700_000_000_123_999_999),
    (U32_MAX, U32_MAX, U32_MAX, I64_MAX, I64_MAX),
    (65535, 2**31, 1, -1, -2),
    (0, 2**31 - 1, 2**31, I64_MIN, I64_MIN),
    (U32_MAX - 1, 1, U32_MAX, -1_000_000_000, 1_000_000_000),
    (0x01020304, 0x05060708, 0x090A0B0C, 0x0D0E0F1011121314, -0x0D0E0F1011121314),
])
def test_header_encoding(flow, seq, run_tag, sched_ns, send_ns):
    encoded = native.pkt_encode(flow, seq, run_tag, sched_ns, send_ns)
    assert encoded == HEADER.pack(MAGIC, flow, seq, run_tag, sched_ns, send_ns)
    assert HEADER.unpack(encoded) == (MAGIC, flow, seq, run_tag, sched_ns, send_ns)


def test_header_is_32_bytes_and_starts_with_the_magic():
    encoded = native.pkt_encode(1, 2, 3, 4, 5)
    assert len(encoded) == HEADER.size == native.PKT_HEADER_BYTES == 32
    assert encoded[:4] == b"KPGL"  # 0x4C47504B little-endian


def test_magic_constant():
    assert native.PKT_MAGIC == MAGIC


def test_python_and_native_limits_agree():
    """workload validates sizes with its own copies of the ABI's constants."""
    assert workload.PKT_HEADER_BYTES == native.PKT_HEADER_BYTES
    assert workload.PKT_MAX_BYTES == native.PKT_MAX_BYTES == 65507
