"""The agent's control protocol, sans I/O: framing, parsing and the authentication handshake.

Pure: bytes go in, frames or ProtocolErrors come out; no sockets, no clock.
"""
import json
import random

import pytest

from loadgen.fleet import protocol
from loadgen.fleet.protocol import FrameDecoder, ProtocolError

TOKEN = b"0123456789abcdef0123456789abcdef"
AGENT_NONCE = "a" * 32
CONTROLLER_NONCE = "0123456789abcdef" * 2

FRAMES = [
    {"type": "ping", "id": 1},
    {"type": "pong", "id": 1, "agent_ns": 123456789012345},
    {"type": "start", "id": 2, "job": {"kind": "udp-receive", "options": {"pps": "10k", "flows": "4"}}},
    {"type": "snapshot", "job": 3, "words": "x" * 5000, "unicode": "åäö ✓"},
    {"type": "error", "code": "busy", "message": "another controller is using this agent"},
]


def frame(body: bytes) -> bytes:
    return protocol.HEADER.pack(len(body)) + body


# ---- framing ----------------------------------------------------------------------------------------

def test_encode_is_a_big_endian_length_then_compact_json():
    body = b'{"type":"ping","id":7}'
    assert protocol.encode({"type": "ping", "id": 7}) == len(body).to_bytes(4, "big") + body


def test_several_frames_in_one_feed():
    stream = b"".join(protocol.encode(f) for f in FRAMES)
    assert FrameDecoder().feed(stream) == FRAMES


@pytest.mark.parametrize("seed", range(20))
def test_frames_survive_any_chunking(seed):
    rng = random.Random(seed)
    stream = b"".join(protocol.encode(f) for f in FRAMES)
    decoder, out, at = FrameDecoder(), [], 0
    while at < len(stream):
        step = rng.choice([1, 2, 3, 4, 5, 7, 64, 1000, 10_000])
        out += decoder.feed(stream[at : at + step])
        at += step
    assert out == FRAMES


def test_byte_by_byte_yields_each_frame_when_its_last_byte_arrives():
    data = protocol.encode(FRAMES[0])
    decoder = FrameDecoder()
    for b in data[:-1]:
        assert decoder.feed(bytes([b])) == []
    assert decoder.feed(data[-1:]) == [FRAMES[0]]
    assert decoder.feed(b"") == []


def test_an_empty_feed_and_a_partial_header_yield_nothing():
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\x00\x00") == []


def test_a_length_prefix_over_the_limit_is_too_large_before_the_body_arrives():
    decoder = FrameDecoder(max_frame_bytes=100)
    with pytest.raises(ProtocolError) as e:
        decoder.feed(protocol.HEADER.pack(101))
    assert e.value.code == "too-large"


def test_a_frame_at_the_limit_is_accepted():
    body = json.dumps({"type": "x", "pad": ""}).encode()
    body = json.dumps({"type": "x", "pad": "p" * (100 - len(body))}).encode()
    assert len(body) == 100
    assert FrameDecoder(max_frame_bytes=100).feed(frame(body)) == [json.loads(body)]


def test_the_default_limit_is_max_frame_bytes():
    with pytest.raises(ProtocolError) as e:
        FrameDecoder().feed(protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1))
    assert e.value.code == "too-large"
    with pytest.raises(ProtocolError) as e:
        FrameDecoder().feed(b"\xff\xff\xff\xff")
    assert e.value.code == "too-large"


def test_encode_refuses_a_message_over_the_limit():
    with pytest.raises(ProtocolError) as e:
        protocol.encode({"type": "x", "pad": "p" * protocol.MAX_FRAME_BYTES})
    assert e.value.code == "too-large"


@pytest.mark.parametrize("body", [
    b"",                           # not JSON
    b"not json",
    b"{\"type\": \"ping\"",        # truncated
    b"\xff\xfe{}",                 # not UTF-8
    b"[1, 2, 3]",                  # not an object
    b"\"ping\"",
    b"42",
    b"null",
    b"{}",                         # no type
    b"{\"id\": 1}",
    b"{\"type\": 5}",              # type not a string
    b"{\"type\": null}",
    b"{\"type\": [\"ping\"]}",
], ids=repr)
def test_malformed_bodies(body):
    with pytest.raises(ProtocolError) as e:
        FrameDecoder().feed(frame(body))
    assert e.value.code == "malformed"


def test_deeply_nested_json_is_malformed():
    # 64 KiB of '[' fits in the agent's pre-auth frame limit.
    with pytest.raises(ProtocolError) as e:
        FrameDecoder().feed(frame(b"[" * 60_000))
    assert e.value.code == "malformed"


def test_an_integer_too_long_to_convert_is_malformed():
    with pytest.raises(ProtocolError) as e:
        FrameDecoder().feed(frame(b'{"type": "ping", "id": ' + b"1" * 5000 + b"}"))
    assert e.value.code == "malformed"


def test_after_a_malformed_frame_the_next_complete_one_still_decodes():
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(frame(b"[]") + protocol.encode(FRAMES[0]))
    assert decoder.feed(b"") == [FRAMES[0]]


# ---- authentication ---------------------------------------------------------------------------------

def auth(token: bytes | None = TOKEN, **changes) -> dict:
    msg = {"type": "auth", "version": protocol.VERSION, "nonce": CONTROLLER_NONCE}
    if token is not None:
        msg["mac"] = protocol.controller_proof(token, AGENT_NONCE, CONTROLLER_NONCE)
    msg.update(changes)
    return {k: v for k, v in msg.items() if v is not ...}


def test_the_right_mac_is_accepted_and_gives_the_controllers_nonce():
    assert protocol.check_auth(auth(), TOKEN, AGENT_NONCE) == CONTROLLER_NONCE


@pytest.mark.parametrize("message, code", [
    (auth(b"another token of 32 bytes......."), "auth"),     # another token
    (auth(mac="0" * 64), "auth"),
    (auth(mac=...), "auth"),                                     # no mac
    (auth(mac=None), "auth"),
    (auth(mac=12345), "auth"),
    (auth(mac=""), "auth"),
    (auth(version=protocol.VERSION + 1), "version"),
    (auth(version=str(protocol.VERSION)), "version"),
    (auth(version=...), "version"),
    (auth(nonce=...), "auth"),                                   # bad nonces
    (auth(nonce="a" * 31), "auth"),
    (auth(nonce="a" * 33), "auth"),
    (auth(nonce="A" * 32), "auth"),                              # hex, but not lower case
    (auth(nonce="g" * 32), "auth"),
    (auth(nonce=1234), "auth"),
    (auth(type="ping"), "auth"),                                 # not an auth message
    ({"type": "start", "job": {}}, "auth"),
], ids=lambda v: repr(v) if isinstance(v, dict) and len(repr(v)) < 80 else None)
def test_bad_auth_is_refused(message, code):
    with pytest.raises(ProtocolError) as e:
        protocol.check_auth(message, TOKEN, AGENT_NONCE)
    assert e.value.code == code


def test_a_mac_for_another_agent_nonce_is_refused():
    """A recorded auth replayed against a fresh challenge fails."""
    with pytest.raises(ProtocolError) as e:
        protocol.check_auth(auth(), TOKEN, "b" * 32)
    assert e.value.code == "auth"


def test_without_a_token_any_mac_or_none_is_accepted():
    assert protocol.check_auth(auth(token=None), None, AGENT_NONCE) == CONTROLLER_NONCE
    assert protocol.check_auth(auth(mac="whatever"), None, AGENT_NONCE) == CONTROLLER_NONCE


def test_without_a_token_version_and_nonce_are_still_checked():
    with pytest.raises(ProtocolError) as e:
        protocol.check_auth(auth(token=None, version=99), None, AGENT_NONCE)
    assert e.value.code == "version"
    with pytest.raises(ProtocolError) as e:
        protocol.check_auth(auth(token=None, nonce="xyz"), None, AGENT_NONCE)
    assert e.value.code == "auth"


def test_the_agent_and_controller_proofs_differ():
    """A controller's proof cannot be reflected back as the agent's, or the reverse."""
    c = protocol.controller_proof(TOKEN, AGENT_NONCE, CONTROLLER_NONCE)
    a = protocol.agent_proof(TOKEN, AGENT_NONCE, CONTROLLER_NONCE)
    assert a != c
    assert len(a) == len(c) == 64 and int(a, 16) >= 0 and int(c, 16) >= 0
    with pytest.raises(ProtocolError):
        protocol.check_auth(auth(mac=a), TOKEN, AGENT_NONCE)


def test_proofs_depend_on_token_and_both_nonces():
    base = protocol.agent_proof(TOKEN, AGENT_NONCE, CONTROLLER_NONCE)
    assert protocol.agent_proof(TOKEN, AGENT_NONCE, CONTROLLER_NONCE) == base
    assert protocol.agent_proof(TOKEN[::-1], AGENT_NONCE, CONTROLLER_NONCE) != base
    assert protocol.agent_proof(TOKEN, "c" * 32, CONTROLLER_NONCE) != base
    assert protocol.agent_proof(TOKEN, AGENT_NONCE, "c" * 32) != base
    # The nonces are not interchangeable.
    assert protocol.agent_proof(TOKEN, CONTROLLER_NONCE, AGENT_NONCE) != base


@pytest.mark.parametrize("given, ok", [
    ("abc123", True),
    ("abc124", False),
    ("abc12", False),
    ("abc1234", False),
    ("", False),
    (None, False),
    (b"abc123", False),
    (123, False),
    (["abc123"], False),
])
def test_verify(given, ok):
    assert protocol.verify("abc123", given) is ok


def test_new_nonces_are_fresh_lowercase_hex_of_the_agreed_length():
    nonces = {protocol.new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    for n in nonces:
        assert protocol.check_auth(auth(token=None, nonce=n), None, AGENT_NONCE) == n


def test_error_messages():
    assert protocol.error("busy", "taken") == {"type": "error", "code": "busy", "kind": "setup", "message": "taken"}
    assert protocol.error("no-job", "none", 7) == {"type": "error", "code": "no-job", "kind": "protocol",
                                                   "message": "none", "id": 7}
    assert protocol.error("x", "y", 0)["id"] == 0


@pytest.mark.parametrize("frame, kind", [
    (protocol.error("bad-job", "m"), "usage"),
    (protocol.error("limit", "m"), "usage"),
    (protocol.error("forbidden", "m"), "setup"),
    (protocol.error("job-failed", "m"), "setup"),
    (protocol.error("malformed", "m"), "protocol"),
    (protocol.error("something-new", "m"), "setup"),           # an unknown code is never called bad input
    ({"type": "error", "code": "bad-job", "message": "m"}, "usage"),   # an older agent: judged by the code
    ({"type": "error", "code": "bad-job", "kind": "weird"}, "usage"),
    ({"type": "error", "code": "limit", "kind": "setup"}, "setup"),    # the agent's word wins
    ({"type": "error"}, "setup"),
])
def test_error_kinds(frame, kind):
    assert protocol.error_kind(frame) == kind


def test_hello_is_a_frame_of_this_version():
    assert protocol.FrameDecoder().feed(protocol.encode(protocol.hello())) == [{"type": "hello",
                                                                                "version": protocol.VERSION}]
