"""Hostile input for the coordinator's ROUTER (tests/test_fuzz.py, bench/fuzz_soak.py).

- `hostile(rng)`: one hostile multipart message (category, frames) as an unregistered peer
  would send it: random bytes, truncated or extra frames, valid msgpack with wrong types or
  missing fields, unknown types, another protocol version, REGISTERs the coordinator must
  refuse, STEP_DONEs with arbitrary window numbers, deep nesting.
- `Fuzzer`: sends such messages from several DEALERs (random identities, a bare node name, a
  well-formed routing id with a wrong token, `/hb` identities), drains replies as it goes, and
  ends with a barrier: a probe per socket whose ERROR reply proves every earlier message on
  that connection was handled. Plus oversized messages and raw TCP garbage.
- `FakeNode`: a noop spiking node written against the wire protocol that, on its own
  registered identity, sends out-of-order and repeated window numbers, malformed content,
  unexpected types between its legitimate messages; its outputs equal the noop backend's.
Every loop is bounded in count and time.
"""
from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid

import msgpack
import numpy as np
import zmq

from cosim.proto import codec
from cosim.proto.messages import PROTOCOL_VERSION, Message, MessageType as T

PROBE_ID = 999_999_999


def _valid(rng: random.Random, type_: T | None = None, node: str = "spiking", window: int | None = None) -> Message:
    t = type_ or rng.choice([T.STEP_DONE, T.READY, T.CONFIGURED, T.FINISHED, T.ERROR, T.ABORT])
    content = {T.STEP_DONE: {"outputs": {"state/S_e": np.zeros((4, 2))}, "timing": {"compute_s": 0.1}},
               T.READY: {"initial": {}, "info": {}},
               T.CONFIGURED: {"requires": [{"name": "coupling/R_e", "regions": [3, 5]}]},
               T.FINISHED: {"summary": {}},
               T.ERROR: {"error": "NodeFailure", "message": "fuzz"},
               T.ABORT: {"reason": "fuzz"},
               T.REGISTER: {"name": node, "role": "spiking", "backend": "noop", "protocol": PROTOCOL_VERSION,
                            "token": uuid.uuid4().hex}}[t]
    if t == T.STEP_DONE and window is None:
        window = rng.choice([0, 1, 2, 7, 10**6, 2**31, rng.randrange(0, 10**9)])
    return Message(t, content, node=node, window=window, msg_id=rng.randrange(1, 2**31))


def _rand_bytes(rng: random.Random, lo: int = 0, hi: int = 200) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


def _weird_value(rng: random.Random):
    return rng.choice([None, True, -1, 2**63 - 1, 1.5, "x" * rng.randint(0, 300), b"\x00\xff", [1, "a"], {"k": []},
                       {1: 2}, [[[]]], float("nan")])


def hostile(rng: random.Random) -> tuple[str, list[bytes]]:
    """One hostile message as frames (without identity)."""
    kind = rng.choice(["random", "random_sig", "truncated", "extra", "badtypes", "missing", "unknown", "version",
                       "register_version", "register_unknown", "register_badrole", "register_hijack", "windows", "nonmap",
                       "deep", "badarray", "garbage_msgpack"])
    if kind == "random":
        return kind, [_rand_bytes(rng, 1) for _ in range(rng.randint(1, 6))]
    if kind == "random_sig":
        return kind, [codec.SIGNATURE] + [_rand_bytes(rng) for _ in range(rng.randint(0, 5))]
    frames = [bytes(f) for f in codec.encode(_valid(rng))]
    if kind == "truncated":
        return kind, frames[:rng.randint(1, 2)]
    if kind == "extra":
        return kind, frames + [_rand_bytes(rng, 0, 64) for _ in range(rng.randint(1, 3))]
    if kind == "badtypes":
        header = msgpack.unpackb(frames[1])
        content = msgpack.unpackb(frames[2])
        target = rng.choice(["header", "content"])
        d = header if target == "header" or not content else content
        key = rng.choice(list(d)) if d else "type"
        d[key] = _weird_value(rng)
        if d is header and key == "type" and isinstance(d[key], str):
            d[key] = 12
        try:
            return kind, [frames[0], msgpack.packb(header), msgpack.packb(content)] + frames[3:]
        except (TypeError, ValueError):
            return kind, [frames[0], b"\xc1", frames[2]]
    if kind == "missing":
        m = _valid(rng, rng.choice([T.STEP_DONE, T.CONFIGURED, T.ERROR, T.ABORT, T.REGISTER]))
        m.content = {k: v for k, v in m.content.items() if k not in ("outputs", "requires", "error", "reason", "token")}
        return kind, [bytes(f) for f in codec.encode(m)]
    if kind == "unknown":
        header = msgpack.unpackb(frames[1])
        header["type"] = rng.choice(["FOO", "", "step_done", "STEP_DONE ", "\u00e9" * 50])
        return kind, [frames[0], msgpack.packb(header), frames[2]] + frames[3:]
    if kind == "version":
        return kind, [rng.choice([b"COSIM0", b"COSIM2", b"COSIM99"])] + frames[1:]
    if kind == "register_version":
        m = _valid(rng, T.REGISTER)
        m.content["protocol"] = rng.choice([0, PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, 99, -1])
        return kind, [bytes(f) for f in codec.encode(m)]
    if kind == "register_unknown":
        return kind, [bytes(f) for f in codec.encode(_valid(rng, T.REGISTER, node=rng.choice(["intruder", "x" * 64])))]
    if kind == "register_badrole":
        m = _valid(rng, T.REGISTER, node="spiking")
        m.content["role"] = rng.choice(["tvb", "admin", ""])
        return kind, [bytes(f) for f in codec.encode(m)]
    if kind == "register_hijack":   # a second process claiming a live node's name: NameInUse
        name = rng.choice(["spiking", "tvb"])
        m = _valid(rng, T.REGISTER, node=name)
        m.content.update(role=name, backend="noop" if name == "spiking" else "")
        return kind, [bytes(f) for f in codec.encode(m)]
    if kind == "windows":   # out-of-order / repeated window numbers, as an unregistered peer
        m = _valid(rng, T.STEP_DONE, node=rng.choice(["spiking", "tvb"]), window=rng.randrange(0, 50))
        return kind, [bytes(f) for f in codec.encode(m)]
    if kind == "nonmap":
        return kind, [frames[0], msgpack.packb(rng.choice([[1, 2], 3, "s", None])), frames[2]]
    if kind == "deep":
        v: object = 1
        for _ in range(rng.randint(17, 60)):
            v = [v]
        header = msgpack.unpackb(frames[1])
        header["type"] = "READY"
        return kind, [frames[0], msgpack.packb(header), msgpack.packb({"initial": {}, "info": {"x": v}})]
    if kind == "badarray":
        m = _valid(rng, T.STEP_DONE, window=3)
        f = [bytes(x) for x in codec.encode(m)]
        content = msgpack.unpackb(f[2])
        content["outputs"]["state/S_e"] = rng.choice([
            {"__nd__": 5, "dtype": "<f8", "shape": [4, 2]}, {"__nd__": 0, "dtype": "|O", "shape": [4, 2]},
            {"__nd__": 0, "dtype": "<f8", "shape": [2**40, 2]}, {"__nd__": 0, "dtype": "<f8", "shape": [5, 2]},
            {"__nd__": 0, "dtype": "<f8", "shape": "4x2"}])
        return kind, [f[0], f[1], msgpack.packb(content)] + f[3:]
    # garbage_msgpack
    return kind, [frames[0], _rand_bytes(rng, 1, 50), _rand_bytes(rng, 1, 50)]


class Fuzzer:
    """Hostile DEALERs against `address`; `run(n)` sends n messages spread over the sockets."""

    def __init__(self, address: str, seed: int = 0, max_bytes: int = 1 << 20):
        self.address, self.rng, self.max_bytes = address, random.Random(seed), max_bytes
        self.ctx = zmq.Context.instance()
        ids = [b"fz-%d" % i for i in range(4)] + [b"spiking", b"tvb#000000000000", b"spiking#deadbeefdead",
                                                  os.urandom(8), b"fz/hb"]
        self.socks = []
        for ident in ids:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.IDENTITY, ident)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDTIMEO, 10_000)     # bounded: a stuck coordinator fails the test, not hangs it
            s.connect(address)
            self.socks.append(s)
        self.sent: dict[str, int] = {}
        self.replies = 0
        self.probes_rejected = 0

    def _drain(self, s) -> None:
        for _ in range(10_000):
            try:
                s.recv_multipart(zmq.NOBLOCK)
                self.replies += 1
            except zmq.Again:
                return

    def run(self, n: int, deadline_s: float = 120) -> None:
        end = time.monotonic() + deadline_s
        for i in range(n):
            if time.monotonic() > end:
                raise TimeoutError(f"fuzzer sent only {i} of {n} messages in {deadline_s} s")
            s = self.socks[i % len(self.socks)]
            kind, frames = hostile(self.rng)
            s.send_multipart(frames)
            self.sent[kind] = self.sent.get(kind, 0) + 1
            if i % 64 == 0:
                self._drain(s)

    def barrier(self, timeout_s: float = 30) -> None:
        """Every socket's earlier messages were handled: its probe came back answered."""
        for s in self.socks:
            if s.getsockopt(zmq.IDENTITY).endswith(b"/hb"):      # answered with HEARTBEAT, not rejected
                probe = Message(T.HEARTBEAT, {}, node="probe", msg_id=PROBE_ID)
            else:                                               # answered with ERROR UnknownNode (counted)
                probe = Message(T.STEP_DONE, {"outputs": {}}, node="probe", window=0, msg_id=PROBE_ID)
                self.probes_rejected += 1
            s.send_multipart(codec.encode(probe))
            end = time.monotonic() + timeout_s
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to the probe on {s.getsockopt(zmq.IDENTITY)!r}")
                if s.poll(int(left * 1000)):
                    fr = s.recv_multipart()
                    try:
                        m = codec.decode(fr)
                    except codec.ProtocolError:
                        continue
                    if m.parent_id == PROBE_ID:
                        break

    def oversized(self, count: int = 3) -> dict:
        """Messages over ZMQ_MAXMSGSIZE: libzmq drops the connection; the DEALER reconnects by itself."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, b"fz-big")
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 10_000)
        s.connect(self.address)
        mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        big = b"\0" * (self.max_bytes + 1024)
        for _ in range(count):
            s.send_multipart([codec.SIGNATURE, big])
        self.sent["oversized"] = self.sent.get("oversized", 0) + count
        events = {"disconnected": 0, "connected": 0}
        end = time.monotonic() + 3
        while time.monotonic() < end:
            if mon.poll(100):
                from zmq.utils.monitor import recv_monitor_message
                ev = recv_monitor_message(mon)["event"]
                events["disconnected" if ev == zmq.EVENT_DISCONNECTED else "connected"] += 1
        # the same socket still works after the drop: a probe is answered
        probe = Message(T.STEP_DONE, {"outputs": {}}, node="probe", window=0, msg_id=PROBE_ID)
        s.send_multipart(codec.encode(probe))
        events["answered_after"] = bool(s.poll(10_000))
        self.probes_rejected += 1
        s.disable_monitor()
        mon.close(0)
        s.close(0)
        return events

    def raw_tcp(self, count: int = 20) -> None:
        """Connections that do not speak ZMTP at all (libzmq drops them at the handshake)."""
        host, port = self.address.rsplit("//", 1)[1].rsplit(":", 1)
        for i in range(count):
            with socket.create_connection((host, int(port)), timeout=5) as c:
                c.settimeout(1)
                greeting = b"\xff" + b"\0" * 8 + b"\x7f" if i % 2 else b""
                try:
                    c.sendall(greeting + self.rng.randbytes(self.rng.randint(1, 4096)))
                except OSError:
                    pass
        self.sent["raw_tcp_connections"] = count

    def hb_spam(self, n: int = 5000) -> None:
        """HEARTBEATs on an unregistered /hb identity that never reads its replies (the coordinator
        answers heartbeats; a peer that does not read must not block it)."""
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, b"spam/hb")
        s.setsockopt(zmq.RCVHWM, 1)
        s.setsockopt(zmq.RCVBUF, 4096)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 10_000)
        s.connect(self.address)
        hb = codec.encode(Message(T.HEARTBEAT, {}, node="spam", msg_id=1))
        for _ in range(n):
            s.send_multipart(hb)
        self.sent["heartbeat_spam"] = n
        self._spam = s

    def close(self) -> None:
        for s in self.socks + [getattr(self, "_spam", None)]:
            if s is not None:
                s.close(0)


class FakeNode(threading.Thread):
    """A noop spiking node over the raw protocol; `hostile` misbehaving messages per window."""

    def __init__(self, address: str, name: str = "spiking", hostile: int = 0, seed: int = 0,
                 step_sleep_s: float = 0.0, hold_last: threading.Event | None = None, timeout_s: float = 180):
        super().__init__(name=f"fake-{name}", daemon=True)
        self.address, self.node, self.n_hostile = address, name, hostile
        self.rng, self.step_sleep_s, self.hold_last, self.timeout_s = random.Random(seed), step_sleep_s, hold_last, timeout_s
        self.result: str | None = None
        self.errors = 0
        self.injected = 0
        self.windows_started = threading.Event()

    def run(self) -> None:
        try:
            self.result = self._run()
        except Exception as e:   # reported through self.result, asserted by the test
            self.result = f"exception: {type(e).__name__}: {e}"

    def _run(self) -> str:
        ctx = zmq.Context.instance()
        token = uuid.uuid4().hex
        rid = f"{self.node}#{token[:12]}".encode()
        sock, hb = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
        for s, ident in ((sock, rid), (hb, rid + b"/hb")):
            s.setsockopt(zmq.IDENTITY, ident)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDTIMEO, 10_000)
            s.connect(self.address)
        self._id = 0
        self._sock = sock
        try:
            return self._dialog(sock, hb, token)
        finally:
            sock.close(0)
            hb.close(0)

    def _send(self, type_: T, content: dict, window: int | None = None, parent: int | None = None) -> None:
        self._id += 1
        self._sock.send_multipart(codec.encode(Message(type_, content, node=self.node, window=window,
                                                       msg_id=self._id, parent_id=parent)))

    def _dialog(self, sock, hb, token: str) -> str:
        """Protocol 3 by hand: a data inbox, DATA to consumers, RUN grants (PROTOCOL.md §4.1, §7)."""
        ctx = zmq.Context.instance()
        inbox = ctx.socket(zmq.PULL)
        inbox.setsockopt(zmq.LINGER, 0)
        inbox.bind("tcp://127.0.0.1:*")
        pushes: dict[str, zmq.Socket] = {}
        try:
            return self._windows(sock, hb, token, inbox, pushes)
        finally:
            inbox.close(0)
            for p in pushes.values():
                p.close(0)

    def _windows(self, sock, hb, token: str, inbox, pushes) -> str:
        self._send(T.REGISTER, {"name": self.node, "role": "spiking", "backend": "noop",
                                "protocol": PROTOCOL_VERSION, "pid": os.getpid(), "host": "fuzz", "token": token})
        end = time.monotonic() + self.timeout_s
        next_hb = 0.0
        outputs, W, K, lag, send, until, k = [], 0, 0, 1, [], -1, 0
        got: set[int] = set()        # windows of DATA received from the TVB node
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_hb:
                hb.send_multipart(codec.encode(Message(T.HEARTBEAT, {}, node=self.node)))
                next_hb = now + 0.1
                while hb.poll(0):
                    hb.recv_multipart()
            while inbox.poll(0):
                got.add(codec.decode(inbox.recv_multipart()).window)
            if K and k < K and k <= until and (k - lag) in got:
                self.windows_started.set()
                self._inject(k, outputs, W)
                if self.step_sleep_s:
                    time.sleep(self.step_sleep_s)
                if k == K - 1 and self.hold_last is not None:
                    hold_end = time.monotonic() + 120
                    while not self.hold_last.is_set() and time.monotonic() < hold_end:
                        hb.send_multipart(codec.encode(Message(T.HEARTBEAT, {}, node=self.node)))
                        while hb.poll(0):
                            hb.recv_multipart()
                        self.hold_last.wait(0.1)
                out = {s["name"]: np.full((W, len(s["regions"])), float(k)) for s in outputs}
                self._data(pushes, send, k, out)
                self._send(T.STEP_DONE, {"outputs": out, "timing": {"compute_s": 0.0, "wait_s": 0.0}}, window=k)
                k += 1
                continue
            if not sock.poll(20):
                continue
            m = codec.decode(sock.recv_multipart())
            if m.type == T.CONFIGURE:
                self._send(T.CONFIGURED, {"requires": [{"name": "coupling/R_e", "regions": m.content["regions"]}],
                                          "data": inbox.getsockopt(zmq.LAST_ENDPOINT).decode()})
            elif m.type == T.PREPARE:
                outputs, W, K = m.content["outputs"], m.content["steps_per_window"], m.content["n_windows"]
                lag, send = m.content["lag"], m.content["send"]
                for e in send:
                    pushes[e["to"]] = zmq.Context.instance().socket(zmq.PUSH)
                    pushes[e["to"]].setsockopt(zmq.LINGER, 1000)
                    pushes[e["to"]].connect(e["address"])
                for j in range(-lag, 0):
                    self._data(pushes, send, j, {})
                self._send(T.READY, {"initial": {}, "info": {}})
            elif m.type == T.RUN:
                until = max(until, m.content["until"])
            elif m.type == T.DATA:
                got.add(m.window)
            elif m.type == T.END:
                self._send(T.FINISHED, {"summary": {"windows": K}})
                time.sleep(0.2)          # let FINISHED leave (LINGER 0)
                return "finished"
            elif m.type == T.ABORT:
                return f"aborted: {m.content['reason']}"
            elif m.type == T.ERROR:
                self.errors += 1
        return "timeout"

    def _data(self, pushes, send, window: int, out: dict) -> None:
        for e in send:
            sigs = {s["name"]: np.ascontiguousarray(out[s["name"]][:, s["cols"]]) for s in e["signals"] if s["name"] in out}
            self._id += 1
            pushes[e["to"]].send_multipart(codec.encode(Message(T.DATA, {"signals": sigs, "token": e.get("token", "")},
                                                                node=self.node,
                                                                window=window, msg_id=self._id)))

    def _inject(self, k: int, outputs: list, W: int) -> None:
        """Misbehave on the registered identity; none of this may fail or change the run."""
        rng = self.rng
        for _ in range(self.n_hostile):
            what = rng.choice(["future", "repeat", "malformed", "ready", "configured", "finished", "heartbeat",
                               "unknown", "garbage", "batch_repeat", "batch_backwards"])
            if what in ("batch_repeat", "batch_backwards") and k >= 2:
                # a batch of copies (§4.1) of windows already sent (a duplicate), or one whose first
                # window is after its last (refused); neither may change what is recorded
                first, last = (k - 2, k - 1) if what == "batch_repeat" else (k - 1, k - 2)
                n = max(last - first + 1, 1)
                out = {s["name"]: np.full((n * W, len(s["regions"])), -1.0) for s in outputs}
                self._send(T.STEP_DONE, {"outputs": out, "first": first, "timing": [{}] * n}, window=last)
            elif what in ("batch_repeat", "batch_backwards"):
                self._send(T.HEARTBEAT, {})
            elif what in ("future", "repeat"):
                w = k + rng.randint(1, 1000) if what == "future" or k == 0 else rng.randint(0, k - 1)
                out = {s["name"]: np.full((W, len(s["regions"])), -1.0) for s in outputs}
                self._send(T.STEP_DONE, {"outputs": out}, window=w)
            elif what == "malformed":
                self._send(T.STEP_DONE, {"outputs": "not a map", "timing": 3}, window=k)
            elif what == "ready":
                self._send(T.READY, {"initial": {}})
            elif what == "configured":
                self._send(T.CONFIGURED, {"requires": []})
            elif what == "finished":
                self._send(T.FINISHED, {"summary": {}})
            elif what == "heartbeat":
                self._send(T.HEARTBEAT, {})
            elif what == "unknown":
                self._id += 1
                self._sock.send_multipart([codec.SIGNATURE, msgpack.packb({"type": "NOPE", "msg_id": self._id,
                                                                           "node": self.node}), msgpack.packb({})])
            else:
                self._sock.send_multipart([codec.SIGNATURE, rng.randbytes(rng.randint(1, 40))])
            self.injected += 1
