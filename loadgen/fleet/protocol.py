"""The agent's control protocol, sans I/O: framing, messages, authentication and limits.

Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding
one object with a "type". Nothing here opens a socket or reads a clock; the
agent and the controller feed bytes in and take frames out.

Handshake (the token never crosses the wire; both sides prove they hold it):
  controller -> {"type": "hello", "version": V}, at once and optional: speaking first
                makes a TLS agent close a plaintext controller's connection at once,
                where both would otherwise wait; the agent skips it
  agent      -> {"type": "challenge", "version": V, "nonce": hex32}
  controller -> {"type": "auth", "version": V, "nonce": hex32, "mac": HMAC(token, "controller" | agent_nonce | controller_nonce)}
  agent      -> {"type": "welcome", "mac": HMAC(token, "agent" | agent_nonce | controller_nonce), "agent": {...}}
            or {"type": "error", "code": "auth", ...} and the connection closes.
After it, every request carries an "id" that its reply repeats. An error reply is
  {"type": "error", "code": C, "kind": "usage" | "setup" | "protocol", "message": M}.
A job's final frame ("done") carries "counters": what its host's NICs or disk counted
over the run (loadgen.facts.counters), checked by check_counters before anything uses them.
"""
import hashlib
import hmac
import json
import secrets
import struct

VERSION = 1
MAX_FRAME_BYTES = 4 << 20     # one interval of HDR payloads fits with room to spare
HEADER = struct.Struct(">I")
NONCE_BYTES = 16

# Bounds on what a controller may ask of an agent.
MAX_DURATION_NS = 24 * 3600 * 10**9
MAX_RATE_PPS = 100_000_000
MAX_IOPS = 100_000_000
MAX_WORKERS = 1024
MAX_FLOW_BASE = 1 << 20


# Bounds on a done frame's counters: {"nics": {NAME: DEVICE}, "disks": {NAME: DEVICE}}, each DEVICE
# an object of groups ("statistics", "driver", "stat") of named integer differences and of
# "missing..." reasons. Differences of uint64 counters may wrap, so either sign is allowed.
COUNTER_GROUPS = ("nics", "disks")
MAX_COUNTER_DEVICES = 64
MAX_COUNTER_NAMES = 4096        # per group: drivers keep a few hundred at most
MAX_COUNTER_NAME_CHARS = 64     # ETH_GSTRING_LEN is 32, IFNAMSIZ 16
MAX_REASON_CHARS = 1000
COUNTER_BOUND = 1 << 64


class ProtocolError(Exception):
    """A peer broke the protocol; the connection that carried it should close."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError("too-large", f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental: feed() bytes as they arrive, then take complete messages from frames()."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length > self._max:
                raise ProtocolError("too-large", f"frame of {length} bytes exceeds {self._max}")
            if len(self._buf) < HEADER.size + length:
                break
            body = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            out.append(parse(body))
        return out


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number here")


def parse(body: bytes) -> dict:
    try:
        # NaN and Infinity are not JSON and nothing here wants them (int(inf) raises).
        message = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ProtocolError("malformed", "frame is not UTF-8 JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("malformed", "frame is not an object with a type")
    return message


def hello() -> dict:
    return {"type": "hello", "version": VERSION}


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def _mac(token: bytes, role: str, agent_nonce: str, controller_nonce: str) -> str:
    msg = f"{role}|{agent_nonce}|{controller_nonce}".encode()
    return hmac.new(token, msg, hashlib.sha256).hexdigest()


def controller_proof(token: bytes, agent_nonce: str, controller_nonce: str) -> str:
    return _mac(token, "controller", agent_nonce, controller_nonce)


def agent_proof(token: bytes, agent_nonce: str, controller_nonce: str) -> str:
    return _mac(token, "agent", agent_nonce, controller_nonce)


def verify(expected: str, given) -> bool:
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


def _is_nonce(value) -> bool:
    return isinstance(value, str) and len(value) == 2 * NONCE_BYTES and all(c in "0123456789abcdef" for c in value)


def check_auth(message: dict, token: bytes | None, agent_nonce: str) -> str:
    """Validate a controller's auth frame; its nonce on success, ProtocolError otherwise.

    token None: the agent runs without authentication (loopback only)."""
    if message.get("type") != "auth":
        raise ProtocolError("auth", "expected auth")
    if message.get("version") != VERSION:
        raise ProtocolError("version", f"protocol version {message.get('version')!r} is not {VERSION}")
    nonce = message.get("nonce")
    if not _is_nonce(nonce):
        raise ProtocolError("auth", "bad nonce")
    if token is not None and not verify(controller_proof(token, agent_nonce, nonce), message.get("mac")):
        raise ProtocolError("auth", "authentication failed")
    return nonce


# What each error code means for the controller's exit code: "usage" is bad input (exit 2, as the same
# input would give locally), "setup" is this host refusing or failing, "protocol" a peer's mistake.
ERROR_KINDS = {
    "bad-job": "usage", "limit": "usage",
    "forbidden": "setup", "job-failed": "setup", "busy": "setup", "auth": "setup", "internal": "setup",
    "malformed": "protocol", "unknown": "protocol", "no-job": "protocol", "version": "protocol",
    "too-large": "protocol",
}


def error_kind(frame: dict) -> str:
    """An error frame's kind; a frame without one (an older agent) is judged by its code."""
    kind = frame.get("kind")
    return kind if kind in ("usage", "setup", "protocol") else ERROR_KINDS.get(frame.get("code"), "setup")


def error(code: str, message: str, request_id=None) -> dict:
    out = {"type": "error", "code": code, "kind": ERROR_KINDS.get(code, "setup"), "message": message}
    if request_id is not None:
        out["id"] = request_id
    return out


def _counter_name(name, where: str) -> None:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_COUNTER_NAME_CHARS or not name.isprintable():
        raise ProtocolError("malformed", f"counters: {where} has a bad name {str(name)[:MAX_COUNTER_NAME_CHARS]!r}")


def _counter_device(device, where: str) -> dict:
    if not isinstance(device, dict):
        raise ProtocolError("malformed", f"counters: {where} is not an object")
    for key, value in device.items():
        _counter_name(key, where)
        if key.startswith("missing"):
            if not isinstance(value, str) or len(value) > MAX_REASON_CHARS:
                raise ProtocolError("malformed", f"counters: {where}.{key} is not a reason")
            continue
        if not isinstance(value, dict) or len(value) > MAX_COUNTER_NAMES:
            raise ProtocolError("malformed", f"counters: {where}.{key} is not an object of counters")
        for name, n in value.items():
            _counter_name(name, f"{where}.{key}")
            if not isinstance(n, int) or isinstance(n, bool) or not -COUNTER_BOUND < n < COUNTER_BOUND:
                raise ProtocolError("malformed", f"counters: {where}.{key}.{name} is not a counter difference")
    return device


def check_counters(value) -> dict:
    """A done frame's counters, checked against the bounds above; ProtocolError otherwise."""
    if not isinstance(value, dict) or not set(value) <= set(COUNTER_GROUPS):
        raise ProtocolError("malformed", f"counters must be an object of {' and '.join(COUNTER_GROUPS)}")
    for group, devices in value.items():
        if not isinstance(devices, dict) or len(devices) > MAX_COUNTER_DEVICES:
            raise ProtocolError("malformed", f"counters: {group} is not an object of at most "
                                             f"{MAX_COUNTER_DEVICES} devices")
        for name, device in devices.items():
            _counter_name(name, group)
            _counter_device(device, f"{group}.{name}")
    return value
