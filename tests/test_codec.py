"""The reference codec: round trips and every kind of rejection (PROTOCOL.md §5)."""
import re
from pathlib import Path

import msgpack
import numpy as np
import pytest

from cosim.proto import PROTOCOL_VERSION, SIGNATURE, Message, MessageType as T, decode, encode
from cosim.proto.codec import MalformedMessage, MessageTooLarge, UnknownType, VersionMismatch

pytestmark = [pytest.mark.unit]


def step_done(arr=None):
    arr = np.arange(32.0).reshape(16, 2) if arr is None else arr
    return Message(T.STEP_DONE, {"outputs": {"state/S_e": arr}, "timing": {"compute_s": 0.5}},
                   node="spiking", window=3, msg_id=9)


def test_round_trip_keeps_arrays_bit_for_bit():
    a = np.random.default_rng(0).random((16, 3))
    m = decode(encode(step_done(a)))
    assert m.type == T.STEP_DONE and m.window == 3 and m.node == "spiking" and m.msg_id == 9
    out = m.content["outputs"]["state/S_e"]
    assert out.dtype == np.float64 and np.array_equal(out, a)
    out[0, 0] = -1  # decoded arrays are writable copies
    assert m.content["timing"]["compute_s"] == 0.5


def test_arrays_travel_as_raw_buffers_not_lists():
    frames = encode(step_done())
    assert len(frames) == 4 and len(bytes(frames[3])) == 16 * 2 * 8
    content = msgpack.unpackb(frames[2])
    assert content["outputs"]["state/S_e"]["__nd__"] == 0


def test_protocol_version_matches_document():
    doc = (Path(__file__).parents[1] / "proto" / "PROTOCOL.md").read_text()
    assert re.search(r"\*\*Protocol version: (\d+)\*\*", doc).group(1) == str(PROTOCOL_VERSION)
    # frame 0 names the framing (§5), unchanged since protocol 1; the dialog version is REGISTER.protocol
    assert SIGNATURE == b"COSIM1"
    assert re.search(r"frame 0 +b\"(COSIM\d+)\"", doc).group(1) == SIGNATURE.decode()


@pytest.mark.parametrize("mutate, error", [
    (lambda f: f[:2], MalformedMessage),                                   # truncated
    (lambda f: [b"HELLO"] + f[1:], MalformedMessage),                       # no signature
    (lambda f: [b"COSIM99"] + f[1:], VersionMismatch),                      # other version
    (lambda f: f + [b"extra"], MalformedMessage),                           # extra buffer frame
    (lambda f: f[:3], MalformedMessage),                                    # missing buffer frame
    (lambda f: f[:3] + [bytes(f[3])[:-8]], MalformedMessage),               # short buffer
    (lambda f: [f[0], b"\xc1\xc1", f[2], f[3]], MalformedMessage),          # garbage header
    (lambda f: [f[0], msgpack.packb([1, 2]), f[2], f[3]], MalformedMessage),  # header not a map
    (lambda f: [f[0], msgpack.packb({"type": "NOPE", "msg_id": 1, "node": "x"}), f[2], f[3]], UnknownType),
    (lambda f: [f[0], msgpack.packb({"type": "STEP_DONE", "msg_id": 1, "node": "x"}), f[2], f[3]], MalformedMessage),
    (lambda f: [f[0], msgpack.packb({"type": "STEP_DONE", "msg_id": "1", "node": "x", "window": 1}), f[2], f[3]],
     MalformedMessage),
    (lambda f: [f[0], f[1], msgpack.packb({"outputs": 5}), f[3]], MalformedMessage),   # wrong field type
    (lambda f: [f[0], f[1], msgpack.packb({"outputs": {"x": {"__nd__": 0, "dtype": "O", "shape": [4]}}}), f[3]],
     MalformedMessage),                                                               # object dtype refused
    (lambda f: [f[0], f[1], msgpack.packb({"outputs": {"x": {"__nd__": 0, "dtype": "<f8", "shape": [-1]}}}), f[3]],
     MalformedMessage),
    (lambda f: [f[0], f[1], msgpack.packb({"outputs": {"x": {"__nd__": 0, "dtype": "<i8", "shape": [16, 2]}}}), f[3]],
     MalformedMessage),                                                               # signals must be float64
])
def test_malformed_messages_are_refused_with_a_reason(mutate, error):
    frames = [bytes(f) for f in encode(step_done())]
    with pytest.raises(error) as e:
        decode(mutate(frames))
    assert str(e.value)


def test_size_limit_is_enforced():
    frames = encode(step_done(np.zeros((1000, 100))))
    with pytest.raises(MessageTooLarge):
        decode(frames, max_bytes=100_000)


def test_unknown_fields_are_tolerated():
    frames = [bytes(f) for f in encode(step_done())]
    content = msgpack.unpackb(frames[2])
    content["future_field"] = {"anything": [1, 2]}
    m = decode([frames[0], frames[1], msgpack.packb(content), frames[3]])
    assert m.content["future_field"] == {"anything": [1, 2]}


def test_random_bytes_never_crash_the_decoder():
    rng = np.random.default_rng(1)
    base = [bytes(f) for f in encode(step_done())]
    for _i in range(3000):
        frames = [bytes(f) for f in base]
        j = int(rng.integers(len(frames)))
        b = bytearray(frames[j])
        for _ in range(int(rng.integers(1, 6))):
            if b:
                b[int(rng.integers(len(b)))] = int(rng.integers(256))
        frames[j] = bytes(b)
        try:
            decode(frames)
        except (MalformedMessage, UnknownType, VersionMismatch):
            pass


def test_data_decoded_from_the_content_cache_is_checked_like_any_other():
    """DATA's content (the descriptors) is parsed once per shape and reused (proto/codec.py);
    a later DATA with the same content must still have its buffers checked, and arrays of
    another shape must not be read with the cached layout."""
    from cosim.proto.messages import Message, MessageType as T
    a = np.arange(32, dtype=float).reshape(16, 2)
    frames = encode(Message(T.DATA, {"signals": {"state/S_e": a}}, node="spiking", window=-1, msg_id=1))
    for _ in range(2):                          # the first fills the cache, the second uses it
        got = decode(frames)
        np.testing.assert_array_equal(got.content["signals"]["state/S_e"], a)
        assert got.window == -1 and got.node == "spiking"
    arr = got.content["signals"]["state/S_e"]
    arr[0, 0] = 99.0                            # a copy the consumer may modify
    for bad in (frames[:3], frames + [b"extra"], frames[:3] + [bytes(frames[3])[:-8]]):
        with pytest.raises(MalformedMessage):
            decode(bad)
    other = encode(Message(T.DATA, {"signals": {"state/S_e": np.ones((4, 3))}}, node="spiking", window=0, msg_id=2))
    assert decode(other).content["signals"]["state/S_e"].shape == (4, 3)
    # a big-endian or non-contiguous array takes the general path, and arrives the same
    b = np.asfortranarray(a).astype(">f8")
    via = decode(encode(Message(T.DATA, {"signals": {"state/S_e": b}}, node="spiking", window=1, msg_id=3)))
    np.testing.assert_array_equal(via.content["signals"]["state/S_e"], a)
