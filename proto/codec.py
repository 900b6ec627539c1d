"""The reference codec: Message <-> wire frames (PROTOCOL.md §5).

frames = [SIGNATURE, header (msgpack), content (msgpack), buffer...]; arrays in the content
travel as raw little-endian C-order buffers described by {"__nd__": i, "dtype", "shape"}.
No pickle. Every decode validates; failures raise a ProtocolError subclass with a reason.
"""
from __future__ import annotations

import math
import time
from typing import Any
from collections.abc import Sequence

import msgpack
import numpy as np

from cosim.proto.messages import (PUB_TOPICS, SCHEMAS, SIGNAL_FIELDS, SIGNATURE, WINDOWED, WINDOWED_ANY, Message, MessageType,
                            signals_ok)

ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4", "|u1"}
_ITEMSIZE = {d: np.dtype(d).itemsize for d in ALLOWED_DTYPES}
_TYPES = {t.value: t for t in MessageType}
DEFAULT_MAX_BYTES = 64 * 2**20
_MAX_DEPTH = 16


from cosim.errors import ProtocolError  # noqa: E402  (one hierarchy: cosim.errors)


class MalformedMessage(ProtocolError):
    kind = "MalformedMessage"


class VersionMismatch(ProtocolError):
    kind = "VersionMismatch"


class MessageTooLarge(ProtocolError):
    kind = "MalformedMessage"


class UnknownType(ProtocolError):
    kind = "UnknownType"


# ---------------------------------------------------------------- encode
_SCALARS = (str, int, float, bool, type(None), bytes)


def _pack_value(v: Any, buffers: list, depth: int = 0) -> Any:
    if type(v) in _SCALARS:          # fast path: most values are plain scalars
        return v
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt.str not in ALLOWED_DTYPES:
            raise TypeError(f"array dtype {a.dtype} cannot travel; allowed {sorted(ALLOWED_DTYPES)}")
        a = a.astype(dt, copy=False)
        buffers.append(memoryview(a).cast("B") if a.size else b"")  # type: ignore[arg-type]  # ndarray is a buffer
        return {"__nd__": len(buffers) - 1, "dtype": dt.str, "shape": list(a.shape)}
    if isinstance(v, dict):
        return {k: _pack_value(x, buffers, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_pack_value(x, buffers, depth + 1) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def encode(msg: Message) -> list:
    """Frames for `msg` (without the ROUTER identity frame)."""
    buffers: list = []
    content = _data_content(msg, buffers) if msg.type is MessageType.DATA else None
    if content is None:
        content = _packb(_pack_value(msg.content, buffers))
    header = {"type": msg.type.value, "msg_id": msg.msg_id, "node": msg.node,
              "sent_ns": msg.sent_ns or time.time_ns()}
    if msg.window is not None:
        header["window"] = msg.window
    if msg.parent_id is not None:
        header["parent_id"] = msg.parent_id
    return [SIGNATURE, _packb(header), content, *buffers]


# DATA's content is the same map of descriptors every window (names, dtypes, shapes): packed once
# per shape and reused, on both sides (a window's DATA costs a header and the buffers)
_DATA_PACKED: dict = {}
_DATA_PARSED: dict = {}
_CACHE_MAX = 256


def _data_content(msg: Message, buffers: list) -> bytes | None:
    sig = msg.content.get("signals") if len(msg.content) == 1 else None
    if type(sig) is not dict:
        return None
    parts = []
    for name, a in sig.items():
        if type(a) is not np.ndarray or a.dtype.str != "<f8" or not a.flags.c_contiguous or type(name) is not str:
            return None             # the general path converts or refuses it
        parts.append((name, a.shape))
    key = tuple(parts)
    packed = _DATA_PACKED.get(key)
    if packed is None:
        packed = _packb(_pack_value(msg.content, []))
        if len(_DATA_PACKED) >= _CACHE_MAX:
            _DATA_PACKED.clear()
        _DATA_PACKED[key] = packed
    for a in sig.values():
        buffers.append(memoryview(a).cast("B") if a.size else b"")
    return packed


_packer = msgpack.Packer()


def _packb(obj) -> bytes:
    """msgpack.packb with one reused Packer (packb makes a new one per call)."""
    try:
        return _packer.pack(obj)
    except BaseException:
        _packer.reset()         # a failed pack may leave partial output in the buffer
        raise


# ---------------------------------------------------------------- decode
def _unpack_value(v: Any, buffers: Sequence, used: set, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise MalformedMessage("content nested too deeply")
    t = type(v)
    if t is not dict and t is not list:     # msgpack gives exact dicts and lists
        return v
    if isinstance(v, dict):
        if "__nd__" in v:
            return _array(v, buffers, used)
        return {k: _unpack_value(x, buffers, used, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_unpack_value(x, buffers, used, depth + 1) for x in v]
    return v


def _array(d: dict, buffers: Sequence, used: set) -> np.ndarray:
    i, dtype, shape = d.get("__nd__"), d.get("dtype"), d.get("shape")
    if not isinstance(i, int) or not 0 <= i < len(buffers) or i in used:
        raise MalformedMessage(f"array descriptor points at buffer {i!r} of {len(buffers)}")
    if dtype not in ALLOWED_DTYPES:
        raise MalformedMessage(f"array dtype {dtype!r} not allowed")
    if (not isinstance(shape, list) or len(shape) > 4
            or not all(isinstance(s, int) and 0 <= s < 2**31 for s in shape)):
        raise MalformedMessage(f"bad array shape {shape!r}")
    used.add(i)
    buf = buffers[i]
    n = math.prod(shape)
    if len(buf) != n * _ITEMSIZE[dtype]:
        raise MalformedMessage(f"buffer {i} holds {len(buf)} bytes, shape {shape} {dtype} needs "
                               f"{n * _ITEMSIZE[dtype]}")
    # copy out of the (read-only, frame-owned) buffer so callers may keep and modify it
    return np.frombuffer(buf, dtype=dtype).reshape(shape).copy()


def _check_fields(mtype: MessageType, content: dict) -> None:
    for name, types in SCHEMAS[mtype].items():
        optional = None in types
        if name not in content or content[name] is None:
            if optional:
                continue
            raise MalformedMessage(f"{mtype.value}: missing field {name!r}")
        want = tuple(t for t in types if t is not None)
        val = content[name]
        if isinstance(val, bool) or not isinstance(val, want):
            raise MalformedMessage(f"{mtype.value}: field {name!r} has type {type(val).__name__}")
    if mtype in SIGNAL_FIELDS:
        why = signals_ok(content[SIGNAL_FIELDS[mtype]])
        if why:
            raise MalformedMessage(f"{mtype.value}: {why}")


def decode(frames: Sequence, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Validate and decode frames (identity already stripped). Raises ProtocolError."""
    frames = [f.buffer if hasattr(f, "buffer") else f for f in frames]  # zmq.Frame -> memoryview
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        raise MessageTooLarge(f"message of {size} bytes exceeds the limit of {max_bytes}")
    if len(frames) < 3:
        raise MalformedMessage(f"{len(frames)} frame(s); need signature, header, content")
    sig = bytes(frames[0])
    if sig != SIGNATURE:
        if sig.startswith(b"COSIM"):
            raise VersionMismatch(f"peer speaks {sig.decode(errors='replace')}, we speak {SIGNATURE.decode()}")
        raise MalformedMessage("missing protocol signature")
    try:
        header = msgpack.unpackb(frames[1], raw=False, strict_map_key=True)
        content = msgpack.unpackb(frames[2], raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises a zoo of types for garbage
        raise MalformedMessage(f"undecodable msgpack ({type(e).__name__})") from None
    if not isinstance(header, dict) or not isinstance(content, dict):
        raise MalformedMessage("header and content must be maps")
    try:
        mtype = _TYPES[header["type"]]
    except (KeyError, TypeError):
        raise UnknownType(f"unknown message type {str(header.get('type'))[:40]!r}") from None
    msg_id, node = header.get("msg_id"), header.get("node")
    window, parent = header.get("window"), header.get("parent_id")
    if not isinstance(msg_id, int) or not isinstance(node, str) or len(node) > 200:
        raise MalformedMessage("header needs integer msg_id and string node")
    if mtype in WINDOWED and (not isinstance(window, int) or isinstance(window, bool) or window < 0):
        raise MalformedMessage(f"{mtype.value}: header needs a window number >= 0")
    if mtype in WINDOWED_ANY and (not isinstance(window, int) or isinstance(window, bool)):
        raise MalformedMessage(f"{mtype.value}: header needs a window number")
    if window is not None and not isinstance(window, int):
        raise MalformedMessage("window must be an integer")
    if parent is not None and not isinstance(parent, int):
        raise MalformedMessage("parent_id must be an integer")
    buffers = frames[3:]
    if mtype is MessageType.DATA:
        parsed = _DATA_PARSED.get(bytes(frames[2]))
        if parsed is not None:          # a content already validated: only the buffers are new
            return _data_message(parsed, buffers, node, window, msg_id, parent, header.get("sent_ns"))
    used: set = set()
    content = _unpack_value(content, buffers, used)
    if len(used) != len(buffers):
        raise MalformedMessage(f"{len(buffers) - len(used)} extra buffer frame(s)")
    _check_fields(mtype, content)
    if mtype is MessageType.DATA and set(content) <= {"signals", "token"}:
        _remember_data(bytes(frames[2]), content["signals"], content.get("token"))
    sent = header.get("sent_ns")
    return Message(mtype, content, node=node, window=window, msg_id=msg_id, parent_id=parent,
                   sent_ns=sent if isinstance(sent, int) else 0)


def _remember_data(packed: bytes, signals: dict, token: str | None = None) -> None:
    """A DATA content that passed every check, as (name, buffer index, shape, bytes) per signal,
    and its link token (protocol 4, part of the packed content: the same on every message of a link)."""
    if len(_DATA_PARSED) >= _CACHE_MAX:
        _DATA_PARSED.clear()
    _DATA_PARSED[packed] = (tuple((name, i, a.shape, a.nbytes) for i, (name, a) in enumerate(signals.items())), token)


def _data_message(cached: tuple, buffers: Sequence, node: str, window, msg_id: int, parent, sent) -> Message:
    parsed, token = cached
    if len(buffers) != len(parsed):
        raise MalformedMessage(f"{len(buffers)} buffer frame(s) for {len(parsed)} array(s)")
    signals = {}
    for name, i, shape, nbytes in parsed:
        buf = buffers[i]
        if len(buf) != nbytes:
            raise MalformedMessage(f"buffer {i} holds {len(buf)} bytes, shape {list(shape)} <f8 needs {nbytes}")
        signals[name] = np.frombuffer(buf, dtype="<f8").reshape(shape).copy()
    content = {"signals": signals} if token is None else {"signals": signals, "token": token}
    return Message(MessageType.DATA, content, node=node, window=window, msg_id=msg_id, parent_id=parent,
                   sent_ns=sent if isinstance(sent, int) else 0)


# ---------------------------------------------------------------- broadcast (PUB, §6.1)
def encode_published(msg: Message) -> list:
    """Frames of a broadcast: [topic, *encode(msg)]; `msg` is a PROGRESS or an EVENT."""
    topic = PUB_TOPICS.get(msg.type)
    if topic is None:
        raise TypeError(f"{msg.type.value} is not a broadcast message")
    return [topic, *encode(msg)]


def decode_published(frames: Sequence, max_bytes: int = DEFAULT_MAX_BYTES) -> Message:
    """Validate and decode a broadcast received on a SUB socket. Raises ProtocolError."""
    if len(frames) < 4:
        raise MalformedMessage(f"{len(frames)} frame(s); a broadcast needs topic, signature, header, content")
    msg = decode(frames[1:], max_bytes)
    if PUB_TOPICS.get(msg.type) != bytes(frames[0]):
        raise MalformedMessage(f"{msg.type.value} under topic {bytes(frames[0])[:40]!r}")
    return msg
