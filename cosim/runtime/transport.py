"""Sockets, framing and heartbeats shared by every service (PROTOCOL.md §2, §5, §8).

- `Channel`: a node's DEALER to the coordinator's ROUTER, sending/receiving `proto.Message`.
- `Heartbeat`: a thread with its own DEALER (`<identity>/hb`) that keeps the node visibly
  alive while the main thread is busy simulating, and notices a vanished coordinator.
- `RejectCounter`: counts rejected messages and logs each kind once (then at most once a minute).
"""
from __future__ import annotations

import json
from collections.abc import Callable
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from typing import TypeVar

import zmq

from cosim.proto import codec
from cosim.proto.messages import Message, MessageType

log = logging.getLogger(__name__)


from cosim.errors import CoordinatorLost, PeerTimeout, RemoteError  # noqa: E402,F401  (re-exported)


def printable(value, limit: int = 80) -> str:
    """`value` as text safe for one log line: control characters (newlines that would forge a log
    line, terminal escapes) escaped as \\n, \\x1b …, and at most `limit` characters (then
    "…(+N chars)"). For anything a peer sent that reaches a log or a reason line."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out + (f"…(+{cut} chars)" if cut > 0 else "")


class RejectCounter:
    """Counts rejections per kind; logs the first of each kind, then at most one line per kind
    every `every_s` seconds (a flood of hostile input must not flood the log)."""

    def __init__(self, where: str, every_s: float = 60.0):
        self.where, self.every_s = where, every_s
        self.counts: Counter[str] = Counter()
        self._logged: dict[str, float] = {}

    def reject(self, kind: str, detail: str, peer: str = "?") -> None:
        self.counts[kind] += 1
        n = self.counts[kind]
        now = time.monotonic()
        if n == 1 or now - self._logged.get(kind, now) >= self.every_s:
            self._logged[kind] = now
            log.warning("%s: rejected %s message from %s (%d so far): %s", self.where, printable(kind, 64),
                        printable(peer, 80), n, printable(detail, 400))

    def total(self) -> int:
        return sum(self.counts.values())


class _Trace:
    """Optional per-message trace (off unless COSIM_TRACE=FILE is set): every process appends one
    line per message sent or received, and per window computed, to FILE:
    `<monotonic ns> <pid> <who> <send|recv|begin|end> <TYPE|step> <window> <peer> <bytes>`
    (CLOCK_MONOTONIC is shared by the processes of one machine). Lines are buffered and appended
    in whole-line chunks (O_APPEND), at the latest at exit. When off, `trace` is None and each
    call site costs one global lookup."""

    def __init__(self, path: str):
        import atexit
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.buf: list[str] = []
        self.lock = threading.Lock()
        self.pid = os.getpid()
        atexit.register(self.flush)

    def __call__(self, who: str, what: str, type_, window, peer: str = "-", nbytes: int = 0) -> None:
        t = time.monotonic_ns()
        name = getattr(type_, "value", type_)
        with self.lock:
            self.buf.append(f"{t} {self.pid} {who} {what} {name} {window} {peer} {nbytes}\n")
            if len(self.buf) >= 512:
                self._write()

    def _write(self) -> None:
        if self.buf:
            data, self.buf = "".join(self.buf).encode(), []
            os.write(self.fd, data)

    def flush(self) -> None:
        with self.lock:
            self._write()


trace = _Trace(os.environ["COSIM_TRACE"]) if os.environ.get("COSIM_TRACE") else None


def identity_label(identity: bytes) -> str:
    """A routing id as a trace names it: the node's name, plus "/hb" for its heartbeat socket."""
    return identity.decode(errors="replace").split("#", 1)[0] + ("/hb" if identity.endswith(b"/hb") else "")


def new_token() -> str:
    return uuid.uuid4().hex


#: ZMTP heartbeats (ZMTP 3.1 PING/PONG, sent and answered by libzmq's I/O thread, never by Python):
#: every TCP link of a run carries them, and a link silent this long after a PING is closed, so a
#: half-open connection (the peer's machine gone, a cut that outlasts the run's own liveness) ends
#: and reconnects instead of queueing into nothing. The run's liveness is decided above this layer
#: (heartbeats, echo, window deadline: PROTOCOL.md §8), with timeouts well below ZMTP_TIMEOUT_MS.
ZMTP_IVL_MS = 1000
ZMTP_TIMEOUT_MS = 30_000
_S = TypeVar("_S", bound=zmq.Socket)


def zmtp_heartbeats(sock: _S) -> _S:
    """Turn ZMTP heartbeats on for ``sock`` (before it binds or connects); the socket."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_TIMEOUT_MS)      # the peer closes too when this side goes silent
    return sock


def routing_id(name: str, token: str) -> bytes:
    """Unique per process, so two processes claiming one name are told apart (§7)."""
    return f"{name}#{token[:12]}".encode()


class Channel:
    """A DEALER with a fixed identity; one per thread."""

    def __init__(self, ctx: zmq.Context, address: str, identity: bytes, curve=None,
                 max_bytes: int = codec.DEFAULT_MAX_BYTES):
        self.sock = zmtp_heartbeats(ctx.socket(zmq.DEALER))
        self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        if curve is not None:
            curve.apply_client(self.sock)
        self.sock.connect(address)
        self.max_bytes = max_bytes
        self.who = identity_label(identity)
        self.rejects = RejectCounter(identity.decode(errors="replace"))
        self._next_id = 0
        self.last_encode_s = self.last_decode_s = 0.0   # codec time of the last send / recv (timing breakdown)
        # asked every SEND_SLICE_MS while a send cannot leave; raises to give up (the owner's reason)
        self.blocked: Callable[[], None] | None = None

    #: A DEALER's send blocks while no connection takes the message: after a failed ZMTP handshake
    #: (a node without keys facing a CURVE coordinator) libzmq ends the connection for good, and the
    #: send would block for ever (a node hung, or its heartbeat thread was left in libzmq at exit and
    #: aborted it). So a send waits in slices, asking ``blocked`` between them.
    SEND_SLICE_MS = 200

    def send(self, msg: Message, timeout_ms: int | None = None) -> bool:
        """Send ``msg``. With ``timeout_ms``: False if it could not leave within that time (nothing
        sent; ``blocked`` is not asked). Without: waits until it leaves, asking ``blocked`` (if set)
        every SEND_SLICE_MS while it cannot; whatever that raises ends the wait."""
        self._next_id += 1
        msg.msg_id = self._next_id
        t0 = time.perf_counter()
        frames = codec.encode(msg)
        self.last_encode_s = time.perf_counter() - t0
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            try:        # the usual case, at once (copying is faster than zero-copy for frames < ~64 kB)
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                pass
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.poll(int(min(self.SEND_SLICE_MS / 1000, left) * 1000), zmq.POLLOUT)
            elif not self.sock.poll(self.SEND_SLICE_MS, zmq.POLLOUT) and self.blocked is not None:
                self.blocked()
        if trace is not None:
            trace(self.who, "send", msg.type, msg.window, "coordinator", sum(map(len, frames)))
        return True

    def recv(self, timeout_ms: int) -> Message | None:
        """Next valid message, or None after timeout_ms. Malformed messages are counted and dropped."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = int(max(0.0, deadline - time.monotonic()) * 1000)
            if not self.sock.poll(left):
                return None
            frames = self.sock.recv_multipart()
            t0 = time.perf_counter()
            try:
                msg = codec.decode(frames, self.max_bytes)
                self.last_decode_s = time.perf_counter() - t0
                if trace is not None:
                    trace(self.who, "recv", msg.type, msg.window, "coordinator", sum(map(len, frames)))
                return msg
            except codec.ProtocolError as e:
                self.rejects.reject(type(e).__name__, str(e), "coordinator")

    def close(self) -> None:
        self.sock.close(linger=200)


class HandshakeWatch:
    """Watches a node's connection to the coordinator until its first ZMTP handshake succeeds:
    a TCP connection that the handshake keeps failing is a key or mechanism problem, not a missing
    coordinator, and `problem()` says which, in words (libzmq reports it only as socket events).

    What the events can tell apart (measured, libzmq 4.3): a node without keys facing a CURVE
    coordinator gets ``PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH`` (decisive); a ZAP refusal is
    decisive too. A connection closed during the handshake (``HANDSHAKE_FAILED_NO_DETAIL``) is what
    a wrong coordinator key gives, but also a proxy or port forward whose coordinator is not up yet
    (it accepts, then closes): without keys that is never a key problem, and with keys it is taken
    for one only after it has lasted KEY_SECONDS; before, the register timeout governs (start order
    is free, PROTOCOL.md §8)."""

    _EVENTS = (zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
               | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    FAILURES = 3        # consecutive failed handshakes (they repeat every reconnect interval, ~0.1 s)
    KEY_SECONDS = 5.0   # closed handshakes this long, with keys: the coordinator's key is not this one

    def __init__(self, sock: zmq.Socket, address: str, curve=None):
        self.sock, self.address, self.curve = sock, address, curve
        self.mon: zmq.Socket | None = sock.get_monitor_socket(self._EVENTS)
        self.failed: list[tuple[int, int]] = []      # (event, value) of each failure since the last success
        self.first_failure: float | None = None

    def problem(self) -> str | None:
        """None while nothing is wrong (or once a handshake succeeded); else the one-line cause."""
        from zmq.utils.monitor import recv_monitor_message
        if self.mon is None:
            return None
        while self.mon.poll(0):
            ev = recv_monitor_message(self.mon)
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.failed.clear()
                self.close()
                return None
            self.failed.append((ev["event"], ev["value"]))
            if self.first_failure is None:
                self.first_failure = time.monotonic()
        where = f"the coordinator at {self.address}"
        auth = [v for e, v in self.failed if e == zmq.EVENT_HANDSHAKE_FAILED_AUTH]
        if auth:            # the coordinator said so (ZAP): decisive at once
            return (f"{where} refused this node's CURVE key (ZAP status {auth[-1]}): its public key is not in the "
                    f"coordinator's keys folder (copy the node's .key file there, or use the keys made by `cosim keys`)")
        mismatch = getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", -1)
        if any(v == mismatch for _, v in self.failed):
            return (f"{where} uses another security mechanism: " +
                    ("this node has CURVE keys and the coordinator runs without (coordinator.curve: false)"
                     if self.curve is not None else
                     "it runs CURVE (coordinator.curve: true) and this node has no keys (--keys / COSIM_KEYS)"))
        protocol = [v for e, v in self.failed if e == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL]
        if len(protocol) >= self.FAILURES:
            return (f"the ZMTP handshake with {where} fails ({len(protocol)} times, code {protocol[-1]}): "
                    f"is it a cosim coordinator?")
        lasted = time.monotonic() - self.first_failure if self.first_failure is not None else 0.0
        if self.curve is not None and len(self.failed) >= self.FAILURES and lasted >= self.KEY_SECONDS:
            key = getattr(self.curve, "dir", None)
            return (f"the CURVE handshake with {where} fails ({len(self.failed)} times in {lasted:.0f} s): the "
                    f"coordinator's public key this node has ({key}/coordinator.key) is not the coordinator's, or "
                    f"the coordinator runs without CURVE; copy coordinator.key from the coordinator's keys folder")
        return None

    def hint(self) -> str:
        """For a register timeout: what the handshakes showed ('' if nothing failed)."""
        if not self.failed:
            return ""
        return (f"; connections to it were closed during the ZMTP handshake {len(self.failed)} times (a proxy or "
                f"port forward whose coordinator is not up, or something that is not a cosim coordinator)")

    def close(self) -> None:
        if self.mon is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.mon.close(linger=0)
            self.mon = None


class Heartbeat(threading.Thread):
    """Sends HEARTBEAT every interval on its own socket; sets `lost` when replies stop. Before the
    coordinator has answered at all, nothing is lost: the caller's register wait (a node's
    ``--register-timeout-ms``) governs how long a node waits for a coordinator that is not up yet."""

    def __init__(self, ctx: zmq.Context, address: str, identity: bytes, node: str, curve=None,
                 interval_ms: int = 500, timeout_ms: int = 5000):
        super().__init__(name=f"heartbeat-{node}", daemon=True)
        self.ctx, self.address, self.identity, self.node, self.curve = ctx, address, identity, node, curve
        self.interval_ms, self.timeout_ms = interval_ms, timeout_ms
        self.lost = threading.Event()
        self.why = ""               # set with `lost`: what a TCP probe of the coordinator's address found (network cut?)
        self._halt = threading.Event()   # not `_stop`: threading.Thread.join() calls its own _stop()
        self.last_reply = time.monotonic()
        self.answered = False       # the coordinator has been heard at least once (a reply, any message)
        # the runtime's progress, sent with every heartbeat ({"done": k, "waiting": bool} while
        # running, + until/missing): lets the coordinator repeat what a reset connection lost (§8)
        self.status: dict = {}
        self.acked = -10**9         # the last window whose STEP_DONE the coordinator has (heartbeat replies)
        import collections
        self.rtts: collections.deque = collections.deque(maxlen=9)   # seconds, the last heartbeat round trips
        # the runtime's hook (ch) -> None: sends a due STEP_DONE batch on this connection while the main
        # thread is busy in a window (§4.1)
        self.late_copies: Callable[[Channel], None] | None = None
        self._send_now = False      # set_timing: send the next heartbeat at once

    def set_timing(self, interval_ms: int, timeout_ms: int) -> None:
        self.interval_ms, self.timeout_ms = interval_ms, timeout_ms
        # the next heartbeat leaves now, not one old interval after the last: with the default 500 ms
        # before CONFIGURE and a run's timeout of 500 ms or less, the first reply under the new timeout
        # could come too late (a node gave up on a live coordinator right after CONFIGURE)
        self._send_now = True
        self.heard()      # called on CONFIGURE: the coordinator has just been heard

    def heard(self) -> None:
        """Any message from the coordinator proves it alive (not only heartbeat replies)."""
        self.last_reply = time.monotonic()
        self.answered = True

    def run(self) -> None:
        ch = Channel(self.ctx, self.address, self.identity + b"/hb", self.curve)
        ch.blocked = self._give_up_send     # a late STEP_DONE batch that cannot leave (§4.1)
        sent_at: dict[int, float] = {}
        try:
            next_send = 0.0
            last_loop = time.monotonic()
            while not self._halt.is_set():
                now = time.monotonic()
                if now >= next_send or self._send_now:
                    self._send_now = False
                    content = dict(self.status)
                    if self.rtts:       # the round trip to the coordinator (run.lookahead: auto uses it)
                        content["rtt_ms"] = min(self.rtts) * 1e3    # queueing and a busy GIL only add
                    m = Message(MessageType.HEARTBEAT, content, node=self.node)
                    if ch.send(m, timeout_ms=min(self.interval_ms, 100)):   # never stuck in libzmq
                        sent_at = {m.msg_id: time.perf_counter()}      # only the latest one is timed
                    next_send = now + self.interval_ms / 1000
                wait_ms = min(self.interval_ms, 100)
                msg = ch.recv(wait_ms)
                now = time.monotonic()
                if msg is not None and msg.type == MessageType.HEARTBEAT:
                    self.last_reply, self.answered = now, True
                    ack = msg.content.get("ack")
                    if isinstance(ack, int) and ack > self.acked:
                        self.acked = ack
                    t_sent = sent_at.pop(msg.parent_id, None) if msg.parent_id is not None else None
                    if t_sent is not None:
                        self.rtts.append(time.perf_counter() - t_sent)
                if self.late_copies is not None:
                    try:
                        self.late_copies(ch)
                    except Exception:  # noqa: BLE001  (the main thread sends them anyway once its window ends)
                        log.debug("%s: could not send late copies", self.node, exc_info=True)
                # the starvation guard, checked before the timeout (a stall usually ends inside
                # recv()): if this loop took far longer than its own wait, this thread itself did not
                # run (the main thread held the GIL: imports, JIT, a long C call; or the whole process
                # was stopped): no evidence against the coordinator; give it a fresh timeout
                if now - last_loop > wait_ms / 1000 + max(2 * self.interval_ms / 1000, 0.5):
                    self.last_reply, next_send = now, 0.0
                else:
                    # starved a little, often (a step that lets go of the GIL only now and then): the
                    # time this loop overran its own wait is not the coordinator's silence either
                    excess = now - last_loop - wait_ms / 1000 - 0.05
                    if excess > 0:
                        self.last_reply = min(now, self.last_reply + excess)
                last_loop = now
                if not self.answered:    # no coordinator yet (started later): not a loss, the register wait rules
                    self.last_reply = now
                elif now - self.last_reply > self.timeout_ms / 1000:
                    self.why = network_note(self.address, "the coordinator")
                    log.error("%s: no heartbeat from the coordinator for %d ms%s", self.node, self.timeout_ms, self.why)
                    self.lost.set()
                    return
        finally:
            ch.close()

    def _give_up_send(self) -> None:
        """This thread must not stay in a send that cannot leave: not once stopped (its socket is
        closed after), nor past the heartbeat timeout (it would not notice the loss)."""
        if self._halt.is_set() or (self.answered and time.monotonic() - self.last_reply > self.timeout_ms / 1000):
            from cosim.errors import PeerLost
            raise PeerLost(f"the heartbeat connection to the coordinator at {self.address} takes no messages")

    def stop(self) -> None:
        self._halt.set()


PROBE_S = 1.0       # how long a TCP probe of a silent peer's address waits for an answer


def tcp_probe(address: str, timeout_s: float = PROBE_S) -> str:
    """Whether the host of ``address`` (``tcp://HOST:PORT``) answers on TCP, as a liveness timeout's
    second opinion (§8): "answers" (a connection opened: the host and the network to it are up; a
    stopped process's kernel still accepts), "refused" (the host answers, nothing listens),
    "silent" (no answer within ``timeout_s``: the network to it is cut, or its machine is down),
    "unreachable" (this machine has no route to it), or "unknown" (not TCP, a wildcard)."""
    import errno
    if not address.startswith("tcp://"):
        return "unknown"
    host, _, port = address[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    if host in ("", "*", "0.0.0.0", "::"):
        return "unknown"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return "answers"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:            # (socket.timeout)
        return "silent"
    except OSError as e:
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN):
            return "unreachable"
        return "unknown"
    except ValueError:
        return "unknown"


def network_note(address: str | None, who: str, timeout_s: float = PROBE_S) -> str:
    """"" unless a TCP probe of a silent peer's ``address`` finds the network to it down; then the
    words for a reason line, naming the address: ``; the network to <who> at HOST:PORT is cut …``."""
    if not address:
        return ""
    what = tcp_probe(address, timeout_s)
    where = address[len("tcp://"):] if address.startswith("tcp://") else address
    if what == "silent":
        return (f"; the network to {who} at {where} is cut or its machine is down (a TCP connection "
                f"got no answer within {timeout_s:.0f} s): a network loss, not a failure of the process")
    if what == "unreachable":
        return f"; this machine has no route to {who} at {where}: a network loss, not a failure of the process"
    return ""


def host_name() -> str:
    return socket.gethostname()


def pid() -> int:
    return os.getpid()


def local_address_towards(address: str) -> str:
    """The IP address of this machine on the route to ``address``'s host (a UDP "connect" sends
    nothing): what peers on that network can reach this process at."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((socket.gethostbyname(host), 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


#: environment variable carrying ``{address: file descriptor}`` (JSON) of listening sockets a
#: service inherits from its launcher (`cosim run` holds the free ports it picks: cosim.launch.run.HeldPorts)
LISTEN_FDS_ENV = "COSIM_LISTEN_FDS"


def inherited_listen_fds() -> dict[str, int]:
    """``{address: descriptor}`` of the listening sockets this process inherited (read once: the
    variable is removed); binding a ZeroMQ socket to that address with ``zmq.USE_FD`` set to the
    descriptor takes the socket over, so the port was never free in between."""
    raw = os.environ.pop(LISTEN_FDS_ENV, "")
    try:
        fds = json.loads(raw) if raw else {}
        return {str(a): int(fd) for a, fd in fds.items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring malformed %s=%r", LISTEN_FDS_ENV, raw)
        return {}


def default_data_bind(coordinator: str, name: str, token: str) -> str:
    """Where a node binds its data inbox when not told (protocol 3, §4.1): in-process for an
    in-process coordinator, loopback for a loopback coordinator, else every interface."""
    if coordinator.startswith("inproc://"):
        return f"inproc://cosim-data-{name}-{token[:12]}"
    host = coordinator.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return "tcp://127.0.0.1:*"
    return "tcp://0.0.0.0:*"


class Echo:
    """A node's echo socket (PROTOCOL.md §2, §8): a ROUTER served by ``zmq_proxy_steerable`` from
    the socket to itself in a thread, as ipykernel's heartbeat is. libzmq sends every ping back
    to its sender without Python's GIL, so a simulator call that holds the GIL (NEST's ``Run``)
    cannot make the node look dead; only a stopped, frozen or vanished process stops answering.
    Under CURVE it is a CURVE server with the node's key pair (the data inbox's ZAP domain, which
    admits the run's nodes and the coordinator)."""

    def __init__(self, ctx: zmq.Context, bind: str, coordinator: str, curve=None):
        self.sock = zmtp_heartbeats(ctx.socket(zmq.ROUTER))
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 4096)       # pings are one empty frame (CURVE handshakes need more)
        self.sock.setsockopt(zmq.RCVHWM, 64)
        self.sock.setsockopt(zmq.SNDHWM, 64)
        if curve is not None:
            curve.apply_data_server(ctx, self.sock)
        self.sock.bind(bind)
        bound = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        if bound.startswith("tcp://0.0.0.0:"):
            self.address = f"tcp://{local_address_towards(coordinator)}:{bound.rsplit(':', 1)[1]}"
        else:
            self.address = bound
        ctl = f"inproc://cosim-echo-ctl-{uuid.uuid4().hex}"
        self._ctl = ctx.socket(zmq.PAIR)
        self._ctl.bind(ctl)
        self._ctl_peer = ctx.socket(zmq.PAIR)
        self._ctl_peer.connect(ctl)
        self.thread = threading.Thread(target=self._serve, name="echo", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            zmq.proxy_steerable(self.sock, self.sock, None, self._ctl_peer)    # runs in C, GIL released
        except zmq.ZMQError as e:       # the context was terminated under it: nothing to answer any more
            log.debug("echo proxy ended: %s", e)

    def close(self) -> None:
        if self.thread.is_alive():
            self._ctl.send(b"TERMINATE")
            self.thread.join(2)
        if not self.thread.is_alive():
            self.sock.close(linger=0)
            self._ctl_peer.close(linger=0)
        self._ctl.close(linger=0)


def echo_bind(data_bind: str) -> str | None:
    """Where a node binds its echo: the data inbox's interface, any port; none off TCP."""
    if not data_bind.startswith("tcp://"):
        return None
    return f"{data_bind.rsplit(':', 1)[0]}:*"


INBOX_RCVHWM = 64      # unread messages per connection to a data inbox (§4.1)


def _reserve_port(bind: str) -> tuple[socket.socket, str] | None:
    """A listening OS socket on ``bind`` (``tcp://HOST:PORT``, ``*`` for any port), holding the port
    until ZeroMQ binds on it (``zmq.USE_FD``); None when ``bind`` is not a TCP address it can parse
    (an interface name, ``ipc://``, ``inproc://``: those are bound by ZeroMQ at once)."""
    if not bind.startswith("tcp://"):
        return None
    host, _, port = bind[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    host = "0.0.0.0" if host == "*" else host
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        socket.inet_pton(family, host)                 # a literal address only (no names, no interfaces)
        s = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as libzmq's own listeners
        s.bind((host, 0 if port in ("*", "0", "") else int(port)))
        s.listen(64)
    except (OSError, ValueError) as e:
        s.close()
        from cosim.errors import ConfigError
        raise ConfigError(f"--data-bind: cannot bind {bind}: {e}") from None
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return s, f"tcp://{shown}:{s.getsockname()[1]}"


class DataPlane:
    """A node's direct data links (protocol 3, PROTOCOL.md §4.1): the inbox it binds (PULL), where
    producers push DATA, and one PUSH per consumer. Under CURVE the inbox is a CURVE server with
    the node's own key pair that accepts only the keys of its producers (``allow``), and every
    PUSH is a client that knows its consumer's public key.

    Bounded inbox (§4.1): a TCP inbox's port is held by a plain listening socket from the start (its
    address travels in CONFIGURED), and ZeroMQ binds on it (``open``) only once PREPARE told the
    node its windows, with ``MAXMSGSIZE`` from this run's largest legitimate DATA: libzmq takes
    that option at bind, and no connection is accepted before (a flood during setup waits in the
    kernel's accept queue, not in this process)."""

    def __init__(self, ctx: zmq.Context, bind: str, advertise: str | None, coordinator: str, node: str,
                 curve=None, max_bytes: int = codec.DEFAULT_MAX_BYTES):
        self.ctx, self.node, self.curve, self.max_bytes = ctx, node, curve, max_bytes
        self.inbox = zmtp_heartbeats(ctx.socket(zmq.PULL))
        self.inbox.setsockopt(zmq.LINGER, 0)
        # bounded (§4.1): at most 64 unread messages per connection; a PULL never drops, a producer that
        # far ahead keeps its DATA in its own queue (SNDHWM 0) until this node reads
        self.inbox.setsockopt(zmq.RCVHWM, INBOX_RCVHWM)
        if curve is not None:
            curve.apply_data_server(ctx, self.inbox)
        held = _reserve_port(bind)
        self._held: socket.socket | None = held[0] if held else None
        self._bind = held[1] if held else bind
        self.limit: int | None = None          # the inbox's MAXMSGSIZE once open() bound it
        if held is None:               # not a literal TCP address: ZeroMQ binds now, with the message limit
            self.open(max_bytes)
            bound = self.inbox.getsockopt(zmq.LAST_ENDPOINT).decode()
        else:
            bound = self._bind
        if advertise:
            self.address = advertise
        elif bound.startswith(("tcp://0.0.0.0:", "tcp://[::]:")):
            self.address = f"tcp://{local_address_towards(coordinator)}:{bound.rsplit(':', 1)[1]}"
        else:
            self.address = bound
        self.out: dict[str, zmq.Socket] = {}
        self.rejects = RejectCounter(f"{node} data")
        self._next_id = 0
        self.last_encode_s = self.decode_s = 0.0
        self.send_timeout_ms = 5000         # a consumer that takes nothing for this long is unreachable
        self.addresses: dict[str, str] = {}
        self.tokens: dict[str, str] = {}        # the secret of each link this node sends on (§4.1)

    def open(self, max_bytes: int) -> None:
        """Bind the inbox with ``MAXMSGSIZE`` = ``max_bytes`` (at PREPARE; once: a repeated PREPARE
        keeps the first bind). On the held port when there is one."""
        if self.limit is not None:
            return
        self.inbox.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        try:
            if self._held is not None:
                self.inbox.setsockopt(zmq.USE_FD, self._held.fileno())
            self.inbox.bind(self._bind)
        except zmq.ZMQError as e:
            from cosim.errors import ConfigError
            raise ConfigError(f"--data-bind: cannot bind {self._bind}: {e}") from None
        if self._held is not None:
            self._held.detach()             # the descriptor is libzmq's listener now (it closes it)
            self._held = None
        self.limit = max_bytes

    def connect(self, consumer: str, address: str, server_key: str | None = None, token: str = "") -> None:
        s = zmtp_heartbeats(self.ctx.socket(zmq.PUSH))
        s.setsockopt(zmq.LINGER, 2000)               # the last window's DATA must leave before exit
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.IMMEDIATE, 0)
        if self.curve is not None:
            self.curve.apply_data_client(s, server_key)
        s.connect(address)
        self.out[consumer] = s
        self.addresses[consumer] = address
        self.tokens[consumer] = token

    def send(self, consumer: str, window: int, signals: dict, while_blocked=None) -> None:
        """Queue DATA for `consumer` (never blocks while its connection is up: no high-water mark).
        With no connection to its inbox, wait for one, calling `while_blocked()` every 100 ms (the
        runtime checks there for ABORT: a dead consumer is the coordinator's to report, by its
        heartbeats); after `send_timeout_ms` without one the consumer is unreachable: PeerLost."""
        self._next_id += 1
        t0 = time.perf_counter()
        frames = codec.encode(Message(MessageType.DATA, {"signals": signals, "token": self.tokens.get(consumer, "")},
                                      node=self.node, window=window, msg_id=self._next_id))
        self.last_encode_s += time.perf_counter() - t0
        sock = self.out[consumer]
        deadline = time.monotonic() + self.send_timeout_ms / 1000
        while True:
            try:
                sock.send_multipart(frames, flags=zmq.NOBLOCK)
                break
            except zmq.Again:
                if time.monotonic() > deadline:
                    from cosim.errors import PeerLost
                    raise PeerLost(f"cannot send data to node {consumer!r} at {self.addresses[consumer]}: not "
                                   f"reachable for {self.send_timeout_ms} ms (its data inbox; PROTOCOL.md §4.1)") from None
                sock.poll(100, zmq.POLLOUT)
                if while_blocked is not None:
                    while_blocked()
        if trace is not None:
            trace(self.node, "send", MessageType.DATA, window, consumer, sum(map(len, frames)))

    def drain(self, put, most: int = 64) -> int:
        """Every DATA already waiting in the inbox (at most `most`), each valid one given to
        `put(msg, key)` (`key`: under CURVE the node name of the key that sent it, else None);
        never waits. Returns how many messages were read."""
        n, sock = 0, self.inbox
        curve = self.curve is not None
        while n < most and sock.get(zmq.EVENTS) & zmq.POLLIN:      # (cheaper than catching zmq.Again)
            key = None
            if curve:         # the authenticated key's name travels as the frames' "User-Id" (ZAP)
                raw = sock.recv_multipart(copy=False)
                key = raw[-1].get("User-Id") or "?"
                frames = [f.bytes for f in raw]
            else:
                frames = sock.recv_multipart()
            n += 1
            m = self._decode(frames)
            if m is not None:
                put(m, key)
        return n

    def _decode(self, frames: list) -> Message | None:
        t0 = time.perf_counter()
        try:
            msg = codec.decode(frames, self.max_bytes)
            self.decode_s += time.perf_counter() - t0     # the runtime reports it per window (timing decode_s)
        except codec.ProtocolError as e:
            self.rejects.reject(type(e).__name__, str(e), "a producer")
            return None
        if msg.type != MessageType.DATA:
            self.rejects.reject("UnexpectedMessage", f"{msg!r} on the data inbox", msg.node)
            return None
        if trace is not None:
            trace(self.node, "recv", msg.type, msg.window, msg.node, sum(map(len, frames)))
        return msg

    def close(self) -> None:
        for s in self.out.values():
            s.close()
        self.inbox.close(linger=0)
        if self._held is not None:         # never bound (no PREPARE came)
            self._held.close()
            self._held = None


def inbox_limit(receive: list[dict], steps_per_window: int, fallback: int) -> int:
    """The inbox's message size limit for a run (§4.1): 4 x the largest legitimate DATA (one
    window of one producer's float64 blocks) + 64 KiB; ``fallback`` (the run's message limit) when
    a producer sends event signals (``spikes/*``: their size is not known in advance)."""
    from cosim.proto.signals import is_event
    largest = 0
    for e in receive:
        if any(is_event(s["name"]) for s in e["signals"]):
            return fallback
        largest = max(largest, sum(steps_per_window * len(s["cols"]) * 8 for s in e["signals"]))
    return min(fallback, 4 * largest + 64 * 1024)
