"""The coordinator: registers nodes, hands out the configuration, clocks the lockstep windows,
routes and records what nodes exchange, and ends the run for everyone (PROTOCOL.md §2–§8).

One poll loop handles messages and timers (heartbeat expiry, setup timeout) together; each
message type has one handler in `self.handlers`. State: SETUP → RUNNING → FINISHING → DONE.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from cosim import checkpoint
from cosim.adapter import SignalSpec
from cosim.config import ConfigError, RunConfig, ticks_of
from cosim.results import ResultsWriteError, os_reason
from cosim.transport import RejectCounter, printable
from proto import codec
from proto.messages import PROTOCOL_VERSION, Message, MessageType as T, error
from services.coordinator import routing
from services.coordinator.record import RunRecord

log = logging.getLogger(__name__)


# messages the run cannot go on without: failing to deliver one fails the run instead of hanging it
_RUN_MESSAGES = {T.CONFIGURE, T.PREPARE, T.STEP, T.END}
# the pseudo-consumer of `coordinator.watch_regions` (never a node name: names are [A-Za-z0-9_.-])
_WATCH = "<watch>"
# at most this many queued messages are handled before timers are checked again (a flood of
# messages must not delay the detection of a dead node)
_MAX_BATCH = 500
# the window when no connection crosses between nodes (any window is causal then)
NO_CROSSING_WINDOW_MS = 10.0
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class RunFailed(RuntimeError):
    """The run ended early; the message is the one-line reason (names node, window, time)."""

    def __init__(self, reason: str, exit_code: int = 1):
        super().__init__(reason)
        self.exit_code = exit_code


@dataclass
class Peer:
    name: str
    role: str
    routing_id: bytes | None = None
    token: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    state: str = "expected"         # expected → registered → configured → ready → finished
    requires: list[SignalSpec] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    silent_warned: bool = False
    stuck_since: float | None = None    # idle (per its heartbeats) although the run waits for it
    stuck_done: int | None = None
    refused: str | None = None          # the last of its messages the coordinator answered with ERROR


class Coordinator:
    def __init__(self, cfg: RunConfig, results_dir: str | Path, curve=None, progress=None, resume: bool = False):
        self.cfg = cfg
        self.cc = cfg.coordinator
        self.results_dir = Path(results_dir)
        self.curve, self.progress = curve, progress
        self.peers: dict[str, Peer] = {"tvb": Peer("tvb", "tvb")}
        for n in cfg.spiking_nodes:
            self.peers[n.name] = Peer(n.name, "spiking")
        self.by_rid: dict[bytes, str] = {}
        self.rejects = RejectCounter("coordinator")
        self.last_step: dict[str, dict] = {}   # the STEP content each node got this window (for a resend)
        self.resent = 0
        self.state = "SETUP"
        self.compiling: set[str] = set()       # nodes whose heartbeats say they compile (§8)
        self.paused_at: float | None = None
        self.window = -1
        self.produced: dict[str, dict[str, np.ndarray]] = {}
        self.pending: set[str] = set()
        self.timing: dict[str, dict] = {}
        self.record: RunRecord | None = None
        self.failure: RunFailed | None = None
        self.tvb_dt_ms = cfg.tvb.dt_ms
        self.tick_ms = min([cfg.tvb.dt_ms] + [d for d in self._spiking_dts() if d])
        self.dt_ticks = ticks_of(cfg.tvb.dt_ms, self.tick_ms, "tvb.dt_ms")
        self.handlers = {T.REGISTER: self.on_register, T.CONFIGURED: self.on_configured,
                         T.READY: self.on_ready, T.STEP_DONE: self.on_step_done,
                         T.FINISHED: self.on_finished, T.ERROR: self.on_error, T.ABORT: self.on_error,
                         T.CHECKPOINTED: self.on_checkpointed}
        self._next_id = 0
        self.ckpt: dict | None = None            # the checkpoint being written (§10.1)
        self.ckpt_costs: list[float] = []        # seconds per checkpoint (the run waits for it)
        self.config_sha256 = checkpoint.config_hash(cfg.model_dump(mode="json"))
        self.resume: dict | None = None          # the manifest of the checkpoint this run resumes from
        if resume:
            try:
                self.resume = checkpoint.select(self.results_dir, self.config_sha256)
            except checkpoint.CheckpointError as e:
                raise ConfigError(str(e)) from None
            log.info("coordinator: resuming %s from the checkpoint of window %d", self.results_dir,
                     self.resume["window"])

    def _spiking_dts(self) -> list[float]:
        from cosim import backends
        out = []
        for i, n in enumerate(self.cfg.spiking_nodes):
            spec = backends.get(n.backend)
            dt = spec.dt_ms(spec.params_model().model_validate(n.params or {}))
            if dt:
                ticks_of(self.cfg.tvb.dt_ms, dt, f"spiking_nodes[{i}].params.{spec.dt_param} (must divide tvb.dt_ms)")
            out.append(dt)
        return out

    # ------------------------------------------------------------------ sockets
    def bind(self) -> None:
        self.zctx = zmq.Context.instance()
        self.router = self.zctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a node reconnecting after a reset connection takes its routing id over at once, even
        # before the coordinator has noticed the old connection is dead (ids carry a per-process token)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.MAXMSGSIZE, self.cc.max_message_bytes)
        self.pub = self.zctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.monitors: list[tuple[zmq.Socket, zmq.Socket, str]] = []
        if self.curve is not None:
            self.curve.apply_server(self.zctx, self.router)
            self.curve.apply_server(self.zctx, self.pub)
            # a plaintext (or otherwise broken) handshake never reaches the application: watch for it
            for sock, what in ((self.router, "ROUTER"), (self.pub, "PUB")):
                self.monitors.append((sock, sock.get_monitor_socket(_HANDSHAKE_FAILED), what))
        for sock, addr, what in ((self.router, self.cc.router, "coordinator.router"), (self.pub, self.cc.pub, "coordinator.pub")):
            try:
                sock.bind(addr)
            except zmq.ZMQError as e:
                raise ConfigError(f"{what}: cannot bind {addr}: {e}") from None
        self.router_addr = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        log.info("coordinator: ROUTER on %s, PUB on %s", self.router_addr,
                 self.pub.getsockopt(zmq.LAST_ENDPOINT).decode())

    def send(self, peer: Peer, type_: T, content: dict | None = None, window: int | None = None,
             parent: Message | None = None) -> None:
        self._next_id += 1
        msg = Message(type_, content or {}, node="coordinator", window=window, msg_id=self._next_id,
                      parent_id=parent.msg_id if parent else None)
        if self._send_to(peer.routing_id, msg) == "full" and type_ in _RUN_MESSAGES:
            # the node has ~1000 unread messages: it is not a well-behaved node; waiting would hang the run
            raise RunFailed(self.where(peer.name, f"cannot send {type_.value}: the node does not read its messages"))

    def _send_to(self, rid: bytes | None, msg: Message) -> str:
        """Never blocks (a peer that does not read must not stall the run): 'sent', 'full' or 'gone'."""
        if rid is None:
            return "gone"
        try:
            self.router.send_multipart([rid, *codec.encode(msg)], flags=zmq.NOBLOCK)  # copying beats zero-copy for small frames
            return "sent"
        except zmq.Again:  # the peer's queue is at its high-water mark
            self.rejects.reject("ReplyDropped", f"{msg!r} to {rid[:40]!r}: the peer does not read", repr(rid[:40]))
            return "full"
        except zmq.ZMQError as e:  # ROUTER_MANDATORY: the peer is gone
            log.debug("coordinator: cannot reach %r: %s", rid, e)
            return "gone"

    def publish(self, topic: str, data: dict, window: int | None = None) -> None:
        """A broadcast on PUB (§6.1): topic "progress" → PROGRESS, "event" → EVENT; never blocks."""
        self._next_id += 1
        msg = Message(T.PROGRESS if topic == "progress" else T.EVENT, data, node="coordinator", window=window,
                      msg_id=self._next_id)
        try:
            self.pub.send_multipart(codec.encode_published(msg), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    def progress_content(self, k: int, sim_ms: float, elapsed: float, produced: dict, timing: dict) -> dict:
        """PROGRESS (§6.1) after window k: times, the window's timing per node, and the mean over
        the window of every rate signal (`state/R_*`) exchanged, per region."""
        nodes = {n: {f: float(v) for f, v in (t or {}).items() if f in ("compute_s", "wait_s") and isinstance(v, (int, float))}
                 for n, t in timing.items()}
        rates = []
        for producer, specs in self.plan.outputs.items():
            for s in specs:
                if s.name.startswith("state/R_") and s.name in produced.get(producer, {}):
                    rates.append({"node": producer, "name": s.name, "regions": list(s.regions),
                                  "hz": produced[producer][s.name].mean(axis=0)})
        return {"windows_done": k + 1, "windows": self.K, "window_ms": self.W * self.tvb_dt_ms, "t_ms": sim_ms,
                "wall_s": elapsed, "timing": {"window_wall_s": self._last_wall_s, "nodes": nodes}, "rates": rates}

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict:
        """Run to the end; returns the summary or raises RunFailed."""
        self.bind()
        self.t_setup = time.monotonic()
        self.t_start = None
        try:
            while self.state != "DONE":
                if self.router.poll(min(100, self.cc.heartbeat_interval_ms)):
                    self.handle(self.router.recv_multipart(copy=self._copy))
                    for _ in range(_MAX_BATCH):
                        if not self.router.poll(0):
                            break
                        self.handle(self.router.recv_multipart(copy=self._copy))
                self.check_timers()
        except RunFailed as e:
            self.failure = e
            self.abort_all(str(e))
            raise
        except KeyboardInterrupt:
            self.failure = RunFailed(f"coordinator interrupted in window {self.window}", 130)
            self.abort_all(str(self.failure))
            raise self.failure from None
        finally:
            self.close_record()
            for sock, mon, _ in self.monitors:
                sock.disable_monitor()
                mon.close(linger=0)
            self.router.close(linger=500)
            self.pub.close(linger=200)      # the last broadcasts (completed/aborted) get a chance to leave
        if self.failure is not None:     # found only while closing (the last flush failed)
            raise self.failure
        return self.summary()

    @property
    def _copy(self) -> bool:
        # with CURVE we need zmq.Frame objects to read the authenticated key name ("User-Id")
        return self.curve is None

    def handle(self, frames) -> None:
        key_name = None
        if not self._copy:
            key_name = frames[-1].get("User-Id") if hasattr(frames[-1], "get") else None
            frames = [f.bytes for f in frames]
        rid = bytes(frames[0])
        is_hb = rid.endswith(b"/hb")
        name = self.by_rid.get(rid[:-3] if is_hb else rid)
        try:
            msg = codec.decode(frames[1:], self.cc.max_message_bytes)
        except codec.ProtocolError as e:
            self.rejects.reject(type(e).__name__, str(e), name or repr(rid[:40]))
            if name is not None and not is_hb:
                self._send_to(rid, error(None, e.kind, str(e)))
            return
        if is_hb:
            if name is not None:
                self.peers[name].last_seen = time.monotonic()
                self.peers[name].silent_warned = False
                if msg.type == T.HEARTBEAT:
                    self.check_stuck(self.peers[name], msg.content)
                    self.note_setup_work(self.peers[name], msg.content)
            if msg.type == T.HEARTBEAT:   # answer even unknown peers: they may be registering
                self._send_to(rid, Message(T.HEARTBEAT, {}, node="coordinator", parent_id=msg.msg_id))
            else:
                self.rejects.reject("UnexpectedMessage", f"{msg!r} on a heartbeat connection", name or repr(rid[:40]))
            return
        if msg.type == T.REGISTER:
            try:
                if self.curve is not None and key_name != msg.content.get("name"):
                    # any authorized key may not claim any name: the key's name must be the node's
                    self.rejects.reject("RegisterNotAuthorized", f"key {key_name!r} may not register as "
                                        f"{str(msg.content.get('name'))[:64]!r}", repr(rid[:40]))
                    self._send_to(rid, error(msg, "NotAuthorized", f"this CURVE key ({key_name!r}) is not the key of "
                                                                  f"node {str(msg.content.get('name'))[:64]!r}"))
                    return
                self.on_register(rid, msg)
            except Exception as e:
                self.rejects.reject("BadRegister", f"{type(e).__name__}: {e}", repr(rid[:40]))
            return
        if name is None or msg.node != name:
            self.rejects.reject("UnknownNode", f"{msg!r} from an unregistered identity", repr(rid[:40]))
            if msg.type not in (T.ERROR, T.ABORT):   # e.g. a process whose registration a restart replaced
                self._send_to(rid, error(msg, "UnknownNode", "this connection is not registered with the coordinator"))
            return
        peer = self.peers[name]
        peer.last_seen = time.monotonic()
        handler = self.handlers.get(msg.type)
        if handler is None or msg.type == T.REGISTER:
            self.rejects.reject("UnexpectedMessage", f"{msg!r} is not sent by nodes", name)
            peer.refused = f"its {msg.type.value} was refused: not sent by nodes"
            self.send(peer, T.ERROR, {"error": "UnexpectedMessage", "message": f"{msg.type.value} is not accepted"}, parent=msg)
            return
        try:
            handler(peer, msg)
        except RunFailed:
            raise
        except ConfigError as e:   # found only now that the nodes described themselves (e.g. the window)
            raise RunFailed(str(e), 2) from None
        except Exception as e:  # a well-formed but nonsensical message must not kill the run
            self.rejects.reject("BadContent", f"{msg!r}: {type(e).__name__}: {e}", name)
            peer.refused = f"its {msg.type.value} for window {msg.window} was refused: {type(e).__name__}: {e}"
            self.send(peer, T.ERROR, {"error": "MalformedMessage", "message": f"{type(e).__name__}: {e}"}, parent=msg)

    def check_timers(self) -> None:
        now = time.monotonic()
        timeout = self.cc.heartbeat_timeout_ms / 1000
        for p in self.peers.values():
            if p.routing_id is not None and p.state != "finished" and now - p.last_seen > timeout:
                if self.state == "SETUP":
                    # a node building its simulator may starve its heartbeat thread (GIL-bound imports and
                    # JIT), or it died and is being restarted (§7: a restart replaces a stale registration):
                    # neither fails the run before the setup timeout, which names whoever is missing
                    if not p.silent_warned:
                        log.warning("coordinator: node %r silent for %.1f s during setup; waiting for it or for "
                                    "a restarted %r (setup timeout %d ms)", p.name, now - p.last_seen, p.name,
                                    self.cc.setup_timeout_ms)
                        p.silent_warned = True
                    continue
                after = f" (after {p.refused})" if p.refused else ""
                raise RunFailed(self.where(p.name, f"no heartbeat for {now - p.last_seen:.1f} s "
                                                   f"(timeout {self.cc.heartbeat_timeout_ms} ms): node died or hung{after}"))
        self.check_handshakes()
        if self.record is not None:
            with self._writing():
                self.record.tick()      # durable at least every flush_s, even while a window is slow
        if self.state == "SETUP" and now - self.t_setup > self.cc.setup_timeout_ms / 1000:
            missing = [f"{p.name} ({p.state})" for p in self.peers.values() if p.state != "ready"]
            raise RunFailed(f"setup timed out after {self.cc.setup_timeout_ms} ms; not ready: {', '.join(missing)} "
                            f"(are they started and pointed at {self.router_addr}?)")

    def check_handshakes(self) -> None:
        """Connections refused during the ZMTP handshake under CURVE: plaintext clients (mechanism
        mismatch) and failed handshakes, counted and logged like rejected messages (the first of
        each kind, then at most once a minute). libzmq does not tell the peer's address here;
        refused keys are logged with their address by the ZAP handler (cosim.security)."""
        from zmq.utils.monitor import recv_monitor_message
        for _sock, mon, what in self.monitors:
            for _ in range(_MAX_BATCH):
                if not mon.poll(0):
                    break
                ev = recv_monitor_message(mon)
                if ev["value"] == getattr(zmq, "PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH", -1):
                    self.rejects.reject("PlaintextConnection", f"a client without CURVE tried {what} "
                                        f"{ev['endpoint'].decode(errors='replace')}: refused in the handshake", "?")
                else:
                    self.rejects.reject("HandshakeFailed", f"{what} handshake failed: event "
                                        f"{zmq.Event(ev['event']).name}, code {ev['value']}", "?")

    def note_setup_work(self, peer: Peer, hb: dict) -> None:
        """§8: while any node's heartbeats say ``setup: "compiling"``, the setup clock stands still
        (the deadline moves by that time); compiling takes as long as it takes, once."""
        if self.state != "SETUP":
            return
        now = time.monotonic()
        if hb.get("setup") == "compiling":
            if peer.name not in self.compiling:
                log.info("coordinator: node %r is compiling; setup timeout paused while it does", peer.name)
            self.compiling.add(peer.name)
        else:
            self.compiling.discard(peer.name)
        if self.paused_at is not None:
            self.t_setup += now - self.paused_at
        self.paused_at = now if self.compiling else None

    def check_stuck(self, peer: Peer, hb: dict) -> None:
        """§8: a node whose heartbeats say it waits for a STEP (or END) that the coordinator sent,
        or that answered a STEP whose STEP_DONE never arrived, lost a message with a reset
        connection (ZeroMQ reconnects but does not resend). After half a heartbeat timeout the
        coordinator repeats the message; the node answers a repeated STEP with its STEP_DONE again."""
        done = hb.get("done")
        stuck = hb.get("waiting") is True and isinstance(done, int) and (
            (self.state == "RUNNING" and peer.name in self.pending and done >= self.window - 1)
            or (self.state == "FINISHING" and peer.state != "finished"))
        now = time.monotonic()
        if not stuck:
            peer.stuck_since = None
            return
        if peer.stuck_since is None or peer.stuck_done != done:   # progress since: not stuck
            peer.stuck_since, peer.stuck_done = now, done
            return
        if now - peer.stuck_since < self.cc.heartbeat_timeout_ms / 2000:
            return
        peer.stuck_since = now
        self.resent += 1
        log.warning("coordinator: node %r idle while the run waits for it in window %d: repeating %s "
                    "(a message lost with a reset connection?)", peer.name, self.window,
                    "STEP" if self.state == "RUNNING" else "END")
        if self.state == "RUNNING":
            self.send(peer, T.STEP, self.last_step[peer.name], window=self.window)
        else:
            self.send(peer, T.END, {"reason": "completed"})

    def where(self, name: str, why: str) -> str:
        if self.state == "SETUP":
            return f"node '{name}' failed during setup: {why}"
        done = self.window - 1 if self.state == "RUNNING" and self.ckpt is None else self.window
        t = (done + 1) * self.W * self.tvb_dt_ms
        during = f"during the checkpoint of window {self.window}" if self.ckpt is not None else f"in window {self.window}"
        return (f"node '{name}' failed {during} (last completed window {done}, "
                f"t = {t:.1f} ms): {why}")

    # ------------------------------------------------------------------ setup handlers
    def on_register(self, rid: bytes, msg: Message) -> None:
        c = msg.content
        def reply(kind: str, text: str) -> None:   # a refused registration is a rejected message too
            self.rejects.reject(f"Register{kind}", text, repr(rid[:40]))
            self._send_to(rid, error(msg, kind, text))
        if c["protocol"] != PROTOCOL_VERSION:
            return reply("VersionMismatch", f"coordinator speaks protocol {PROTOCOL_VERSION}, node {printable(c['protocol'], 20)}")
        name = c["name"]
        # REGISTER comes from anyone who can connect: every field that reaches a log line or a reply
        # is escaped (a newline would forge a log line) and bounded (100 kB would land as one line)
        shown = printable(repr(name), 80)
        peer = self.peers.get(name)
        if peer is None:     # refusals are logged by the reject counter: once per kind, not once per message
            return reply("UnknownNode", f"no node named {shown} in this run; expected {sorted(self.peers)}")
        if peer.role != c["role"]:
            return reply("ConfigRejected", f"node {shown} must have role {peer.role!r}, not {printable(repr(c['role']), 40)}")
        if peer.role == "spiking" and c["backend"] and c["backend"] != self.cfg.node(name).backend:
            return reply("ConfigRejected", f"node {shown} runs backend {printable(repr(c['backend']), 80)}, "
                                           f"the config asks for {self.cfg.node(name).backend!r}")
        if peer.routing_id is not None:
            if peer.token == c["token"]:
                return  # duplicate
            stale = time.monotonic() - peer.last_seen > 2 * self.cc.heartbeat_interval_ms / 1000
            if self.state != "SETUP" or not stale:
                return reply("NameInUse", f"node name {shown} is already in use by a live process "
                                          f"(refused pid {printable(c.get('pid'), 20)} on {printable(c.get('host'), 80)})")
            log.warning("coordinator: node %r re-registered (restarted); replacing its registration", name)
            self._send_to(peer.routing_id, error(None, "NameInUse", "replaced by a restarted process with this name"))
            self.by_rid.pop(peer.routing_id, None)
        peer.routing_id, peer.token, peer.last_seen, peer.state = rid, c["token"], time.monotonic(), "registered"
        self.by_rid[rid] = name
        log.info("coordinator: registered %s (%s, pid %s on %s)", name, c["role"], printable(c.get("pid"), 20),
                 printable(c.get("host"), 80))
        self.publish("event", {"event": "registered", "node": name})
        regions = self.cfg.spiking_regions() if peer.role == "tvb" else self.cfg.node(name).regions
        self.send(peer, T.CONFIGURE, {
            "config": self.cfg.model_dump(mode="json"), "regions": list(regions), "tvb_dt_ms": self.tvb_dt_ms,
            "tick_ms": self.tick_ms, "results_dir": str(self.results_dir),
            "heartbeat_interval_ms": self.cc.heartbeat_interval_ms,
            "heartbeat_timeout_ms": self.cc.heartbeat_timeout_ms,
            **({"resume": self.resume_for(name)} if self.resume else {})}, parent=msg)

    def resume_for(self, name: str) -> dict:
        """CONFIGURE.resume (§10.1): the checkpoint's window and folder and this node's CHECKPOINTED."""
        k = self.resume["window"]
        return {"window": k, "dir": checkpoint.rel_folder(k), "info": self.resume["nodes"][name]}

    def on_configured(self, peer: Peer, msg: Message) -> None:
        if peer.state != "registered":
            return self.unexpected(peer, msg)
        try:
            peer.requires = [SignalSpec.from_wire(s) for s in msg.content["requires"]]
        except (KeyError, TypeError, ValueError) as e:
            raise RunFailed(self.where(peer.name, f"malformed requires ({e})"))
        if peer.role == "tvb":
            if not isinstance(msg.content.get("connectome"), dict):
                raise RunFailed(self.where(peer.name, "CONFIGURED without a connectome"))
            if getattr(self, "plan", None) is not None and not _same_connectome(self.connectome, msg.content["connectome"]):
                raise RunFailed(self.where(peer.name, "restarted with a different connectome"))
            self.connectome = msg.content["connectome"]
        peer.state = "configured"
        if getattr(self, "plan", None) is not None:     # a restarted node joins a setup already prepared
            if self._prepared_requires.get(peer.name) != peer.requires:
                raise RunFailed(self.where(peer.name, "restarted with different signal requirements"))
            self.send_prepare(peer)
        elif all(p.state == "configured" for p in self.peers.values()):
            self.prepare_all()

    def prepare_all(self) -> None:
        from cosim.timing import crossing_min_delay_steps
        con = self.connectome
        n = con["weights"].shape[0]
        for i, node in enumerate(self.cfg.spiking_nodes):
            bad = [r for r in node.regions if r >= n]
            if bad:
                raise RunFailed(f"spiking_nodes[{i}].regions: region(s) {bad} do not exist "
                                f"(the connectivity has {n} regions, 0..{n - 1})", 2)
        groups = [set(nd.regions) for nd in self.cfg.spiking_nodes]
        groups.insert(0, set(range(n)) - set().union(*groups))
        d = crossing_min_delay_steps(con["weights"], con["idelays"], groups)
        steps = max(1, round(self.cfg.run.duration_ms / self.tvb_dt_ms))
        if d is None:
            # nothing crosses: any window is causal; ordinary windows keep progress, recording and
            # the monitors working (one window for the whole run did not)
            max_w = None
            self.W = min(steps, max(1, round(NO_CROSSING_WINDOW_MS / self.tvb_dt_ms)))
        else:
            max_w = max(int(d), 1)          # a delay of 0 steps still allows a window of 1 (D + 1)
            self.W = max_w
        if self.cfg.run.window_ms is not None:
            self.W = ticks_of(self.cfg.run.window_ms, self.tvb_dt_ms, "run.window_ms (whole TVB steps)")
            if max_w is not None and self.W > max_w:
                raise RunFailed(f"run.window_ms: {window_limit_text(self.cfg.run.window_ms, int(d), self.tvb_dt_ms)}", 2)
        self.K = max(1, math.ceil(steps / self.W))
        if self.K * self.W != steps:
            # windows are whole (every node steps W at a time, exactly): the run ends at the end of
            # the last window, up to one window past run.duration_ms; the summary says so
            log.warning("coordinator: run.duration_ms %g ms is not a whole number of %g ms windows: "
                        "simulating %g ms (%d windows)", self.cfg.run.duration_ms, self.W * self.tvb_dt_ms,
                        self.K * self.W * self.tvb_dt_ms, self.K)
        owner = {r: "tvb" for r in range(n)}
        for nd in self.cfg.spiking_nodes:
            owner.update({r: nd.name for r in nd.regions})
        requires = {p.name: p.requires for p in self.peers.values()}
        bad = [r for r in self.cc.watch_regions if r not in owner]
        if bad:
            raise RunFailed(f"coordinator.watch_regions: region(s) {bad} do not exist "
                            f"(the connectivity has {n} regions, 0..{n - 1})", 2)
        watch = tuple(r for r in self.cc.watch_regions if owner.get(r) == "tvb")   # spiking ones are published anyway
        if watch:   # the coordinator itself consumes these (PUB telemetry, §6.1); recorded like any signal
            requires[_WATCH] = [SignalSpec("state/R_e", watch)]
        try:
            self.plan = routing.plan(requires, owner, weights=con["weights"])
        except routing.PlanError as e:
            raise RunFailed(f"cannot route signals: {e}", 2)
        log.info("coordinator: window %d steps (%.3g ms; %s), %d windows", self.W, self.W * self.tvb_dt_ms,
                 f"min crossing delay {d} step{'s' if d != 1 else ''}" if d is not None
                 else "nothing crosses between nodes: any window is causal", self.K)
        if self.resume and (self.resume["steps_per_window"], self.resume["n_windows"]) != (self.W, self.K):
            raise RunFailed(f"cannot resume: the checkpoint has {self.resume['n_windows']} windows of "
                            f"{self.resume['steps_per_window']} steps, this run {self.K} of {self.W}", 2)
        self._prepared_requires = {p.name: p.requires for p in self.peers.values()}
        for p in self.peers.values():
            self.send_prepare(p)

    def send_prepare(self, p: Peer) -> None:
        self.send(p, T.PREPARE, {"outputs": [s.as_wire() for s in self.plan.outputs[p.name]],
                                 "inputs": [s.as_wire() for s in self.plan.inputs[p.name]],
                                 "steps_per_window": self.W, "n_windows": self.K, "connectome": self.connectome})
        p.state = "preparing"

    def on_ready(self, peer: Peer, msg: Message) -> None:
        if peer.state != "preparing":
            return self.unexpected(peer, msg)
        initial = msg.content["initial"]
        why = routing.check_outputs(self.plan.outputs[peer.name], initial, self.W, allow_missing=True)
        if why:
            raise RunFailed(self.where(peer.name, f"bad initial outputs: {why}"))
        self.produced[peer.name] = initial
        peer.info = msg.content.get("info") or {}
        peer.state = "ready"
        if all(p.state == "ready" for p in self.peers.values()):
            self.start_run()

    # ------------------------------------------------------------------ windows
    @contextlib.contextmanager
    def _writing(self):
        """A results write that fails (disk full, I/O error) ends the run with the cause; the file
        was rolled back to its last durable window (cosim.results.WindowRecorder.flush)."""
        try:
            yield
        except ResultsWriteError as e:
            raise RunFailed(f"cannot write results: {e}") from None
        except OSError as e:
            raise RunFailed(f"cannot write results in {self.results_dir}: {os_reason(e)}") from None

    def start_run(self) -> None:
        first = 0
        with self._writing():
            if self.resume:
                first = self._resume_record()
            else:
                self.record = RunRecord(self.results_dir / "coordinator.h5", self.plan, self.W, self.K,
                                        self.tvb_dt_ms, self.cfg, list(self.peers), on_flush=self._flushed)
        self._flushed(first)
        self.state, self.t_start = "RUNNING", time.monotonic()
        self._last_progress = -1.0
        self._last_ckpt_t = time.monotonic()
        self.t_last_done = float("nan")
        self.publish("event", {"event": "started", "windows": self.K, "steps_per_window": self.W})
        log.info("coordinator: all %d nodes ready; running %d windows%s", len(self.peers), self.K,
                 f" from window {first} (resumed)" if first else "")
        self.start_window(first)

    def _resume_record(self) -> int:
        """Resume (§10.1): coordinator.h5 cut back to window k, the routed outputs of window k
        restored; returns k + 1, the first window to run."""
        m = self.resume
        k = m["window"]
        checkpoint.drop_newer(self.results_dir, k)
        c = m["coordinator"]
        checkpoint.truncate_h5(self.results_dir / "coordinator.h5", c["rows"], libver="latest")
        self.record = RunRecord(self.results_dir / "coordinator.h5", self.plan, self.W, self.K, self.tvb_dt_ms,
                                self.cfg, list(self.peers), on_flush=self._flushed, resume_windows=k + 1)
        self.record.sums.update({n: list(v) for n, v in c["timing_sums"].items() if n in self.record.sums})
        self.record.wall_sum, self.record.k = float(c["wall_sum"]), k + 1
        self.rejects.counts.update(c.get("rejected") or {})
        produced: dict[str, dict[str, np.ndarray]] = {}
        for key, arr in checkpoint.load_arrays(checkpoint.folder(self.results_dir, k) / "coordinator.npz").items():
            node, _, name = key.partition("|")
            produced.setdefault(node, {})[name] = arr
        self.produced = produced
        return k + 1

    def start_window(self, k: int) -> None:
        self.window, self.pending = k, set(self.peers)
        self.t_window = time.perf_counter()
        # own work since the previous window's last STEP_DONE that delays this window (recording
        # and progress happen after the STEPs are out, while the nodes compute)
        self.coordinator_s = self.t_window - self.t_last_done if k else float("nan")
        n_ticks = self.W * self.dt_ticks
        for p in self.peers.values():
            inputs = routing.route(self.plan, p.name, self.produced, self.W)
            self.last_step[p.name] = {"start_tick": k * n_ticks, "n_ticks": n_ticks, "inputs": inputs}
            self.send(p, T.STEP, self.last_step[p.name], window=k)

    def on_step_done(self, peer: Peer, msg: Message) -> None:
        if self.state in ("RUNNING", "FINISHING") and (msg.window < self.window or (
                msg.window == self.window and peer.name not in self.pending)):
            # already received: a STEP_DONE sent again after a repeated STEP (§8); no ERROR, which
            # would end the node
            self.rejects.reject("DuplicateStepDone", f"{msg!r} during window {self.window}", peer.name)
            return
        if self.state != "RUNNING" or msg.window != self.window or peer.name not in self.pending:
            return self.unexpected(peer, msg)
        outputs = msg.content["outputs"]
        why = routing.check_outputs(self.plan.outputs[peer.name], outputs, self.W)
        if why:
            raise RunFailed(self.where(peer.name, f"bad outputs: {why}"))
        self.produced[peer.name] = outputs
        self.timing[peer.name] = msg.content.get("timing") or {}
        self.pending.discard(peer.name)
        if not self.pending:
            self.finish_window()

    def finish_window(self) -> None:
        k = self.window
        self.t_last_done = time.perf_counter()
        wall = self.t_last_done - self.t_window
        produced, timing, coordinator_s = dict(self.produced), dict(self.timing), self.coordinator_s
        self._last_wall_s = wall
        ckpt = self._checkpoint_due(k)
        try:
            # the nodes start window k+1 first; window k is recorded while they compute
            if ckpt:
                pass                # after the checkpoint (a consistent cut: no window in flight)
            elif k + 1 < self.K:
                self.start_window(k + 1)
            else:
                self.window = k
                self.state = "FINISHING"
                self.t_end = time.monotonic()
                for p in self.peers.values():
                    self.send(p, T.END, {"reason": "completed"})
        finally:
            with self._writing():
                self.record.append(k, produced, timing, wall, coordinator_s)
        if ckpt:
            self.begin_checkpoint(k)
        elapsed = time.monotonic() - self.t_start
        sim_ms = (k + 1) * self.W * self.tvb_dt_ms
        if elapsed - self._last_progress >= 0.1 or k + 1 == self.K:   # observers need ~10 updates/s, not one per window
            self._last_progress = elapsed
            if self.progress:
                self.progress(k + 1, self.K, sim_ms, elapsed)
            self.publish("progress", self.progress_content(k, sim_ms, elapsed, produced, timing), window=k)

    # ------------------------------------------------------------------ checkpoints (§10.1)
    def _checkpoint_due(self, k: int) -> bool:
        c = self.cfg.run.checkpoint
        if c is None or k + 1 >= self.K:
            return False
        return bool((c.every_windows and (k + 1) % c.every_windows == 0)
                    or (c.every_s and time.monotonic() - self._last_ckpt_t >= c.every_s))

    def begin_checkpoint(self, k: int) -> None:
        """After window k's last STEP_DONE, before STEP k+1: the routed outputs of window k are the
        only data in flight and the coordinator holds them; every node writes its state."""
        t0 = time.perf_counter()
        with self._writing():
            self.record.rec.flush()         # coordinator.h5 holds windows 0..k
        try:
            checkpoint.begin(self.results_dir, k)
        except OSError as e:
            raise RunFailed(f"cannot write the checkpoint of window {k}: {os_reason(e)}") from None
        self.ckpt = {"window": k, "pending": set(self.peers), "nodes": {}, "t0": t0}
        for p in self.peers.values():
            self.send(p, T.CHECKPOINT, {"window": k, "dir": checkpoint.rel_folder(k)})

    def on_checkpointed(self, peer: Peer, msg: Message) -> None:
        c = msg.content
        if self.ckpt is None or c["window"] != self.ckpt["window"] or peer.name not in self.ckpt["pending"]:
            return self.unexpected(peer, msg)
        self.ckpt["nodes"][peer.name] = {"files": [str(f) for f in c["files"]], "sha256": dict(c["sha256"]),
                                         "rows": c["rows"], **(c.get("info") or {})}
        self.ckpt["pending"].discard(peer.name)
        if not self.ckpt["pending"]:
            self.finish_checkpoint()

    def finish_checkpoint(self) -> None:
        ck, k = self.ckpt, self.ckpt["window"]
        rel = checkpoint.rel_folder(k)
        try:
            files = {f"{rel}/coordinator.npz": checkpoint.save_arrays(
                checkpoint.folder(self.results_dir, k) / "coordinator.npz",
                {f"{node}|{name}": arr for node, sigs in self.produced.items() for name, arr in sigs.items()})}
            for node in ck["nodes"].values():
                files.update({f"{rel}/{f}": node["sha256"][f] for f in node["files"]})
            rec = self.record
            cost = time.perf_counter() - ck["t0"]
            checkpoint.write_manifest(self.results_dir, k, {
                "format": checkpoint.FORMAT, "window": k, "config_sha256": self.config_sha256,
                "steps_per_window": self.W, "n_windows": self.K, "files": files, "nodes": ck["nodes"],
                "coordinator": {"rows": {n: int(d.shape[0]) for n, d in rec.rec.ds.items()},
                                "timing_sums": rec.sums, "wall_sum": rec.wall_sum,
                                "rejected": dict(self.rejects.counts)},
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "cost_s": cost})
            checkpoint.prune(self.results_dir, self.cfg.run.checkpoint.keep, k)
        except OSError as e:
            raise RunFailed(f"cannot write the checkpoint of window {k}: {os_reason(e)}") from None
        cost = time.perf_counter() - ck["t0"]
        self.ckpt_costs.append(cost)
        log.info("coordinator: checkpoint of window %d written in %.1f ms", k, cost * 1e3)
        self.ckpt = None
        self._last_ckpt_t = time.monotonic()
        self.start_window(k + 1)

    def on_finished(self, peer: Peer, msg: Message) -> None:
        if self.state != "FINISHING":
            return self.unexpected(peer, msg)
        peer.state = "finished"
        peer.info["summary"] = msg.content.get("summary") or {}
        if all(p.state == "finished" for p in self.peers.values()):
            self.state = "DONE"
            self.publish("event", {"event": "completed", "windows": self.K})

    def on_error(self, peer: Peer, msg: Message) -> None:
        c = msg.content
        text = printable(c.get("reason") or f"{c.get('error')}: {c.get('message')}", 2000)   # stays one line
        # a node that cannot run this configuration: exit code 2 like any configuration error
        raise RunFailed(self.where(peer.name, text), 2 if c.get("error") == "ConfigRejected" else 1)

    def unexpected(self, peer: Peer, msg: Message) -> None:
        self.rejects.reject("UnexpectedMessage", f"{msg!r} in state {self.state}, window {self.window}", peer.name)
        text = (f"{msg.type.value} for window {msg.window} is not expected now "
                f"(state {self.state}, window {self.window})")
        peer.refused = f"its {text}"
        self.send(peer, T.ERROR, {"error": "UnexpectedMessage", "message": text}, parent=msg)

    # ------------------------------------------------------------------ ending
    def abort_all(self, reason: str) -> None:
        log.error("coordinator: aborting run: %s", reason)
        self.publish("event", {"event": "aborted", "reason": reason})
        for p in self.peers.values():
            if p.routing_id is not None and p.state != "finished":
                self.send(p, T.ABORT, {"reason": reason})

    def _flushed(self, windows: int) -> None:
        """Status marker after every flush of coordinator.h5: it says how many windows the file holds."""
        from cosim.results import write_status
        try:
            write_status(self.results_dir, "coordinator", completed=False, running=True, windows_completed=windows,
                         windows_planned=self.K, simulated_ms=windows * self.W * self.tvb_dt_ms,
                         reason="running (windows_completed = windows durable in coordinator.h5)",
                         rejected_messages=dict(self.rejects.counts))
        except OSError as e:   # the marker lags the file (it never claims more than the file holds)
            log.warning("coordinator: cannot update the status marker: %s", os_reason(e))

    def close_record(self) -> None:
        if self.rejects.total():
            log.warning("coordinator: rejected %d message(s) in this run: %s", self.rejects.total(),
                        dict(self.rejects.counts))
        done = self.window if self.state in ("FINISHING", "DONE") or self.ckpt is not None else self.window - 1
        status = {"completed": self.state == "DONE",
                  "windows_completed": max(done + 1, 0),
                  "windows_planned": getattr(self, "K", None),
                  "simulated_ms": max(done + 1, 0) * getattr(self, "W", 0) * self.tvb_dt_ms,
                  "reason": str(self.failure) if self.failure else "completed",
                  "rejected_messages": dict(self.rejects.counts), "messages_repeated": self.resent,
                  **({"resumed_from_window": self.resume["window"]} if self.resume else {})}
        from cosim.results import write_status
        if self.record is not None:
            try:
                self.record.rec.close()
            except ResultsWriteError as e:     # the last flush failed: the file holds fewer windows
                if self.failure is None:
                    self.failure = RunFailed(f"cannot write results: {e}")
                    status["reason"] = str(self.failure)
                    status["completed"] = False
            rec = self.record.rec
            if rec.failed:
                status["windows_completed"] = min(status["windows_completed"], rec.flushed)
                status["simulated_ms"] = status["windows_completed"] * self.W * self.tvb_dt_ms
                status["write_error"] = rec.failed
        try:
            write_status(self.results_dir, "coordinator", **status)
        except OSError as e:
            log.error("coordinator: cannot write the status marker: %s", os_reason(e))

    def summary(self) -> dict:
        wall = self.t_end - self.t_start
        sim_ms = self.K * self.W * self.tvb_dt_ms
        s = {"windows": self.K, "steps_per_window": self.W, "window_ms": self.W * self.tvb_dt_ms,
             "simulated_ms": sim_ms, "duration_ms": self.cfg.run.duration_ms, "wall_s": wall, "windows_per_s": self.K / wall if wall else 0.0,
             "real_time_factor": wall / (sim_ms / 1000), "results_dir": str(self.results_dir),
             "nodes": {n: p.info for n, p in self.peers.items()},
             "timing": self.record.timing_summary() if self.record else {}}
        if self.resume:
            s["resumed_from_window"] = self.resume["window"]
        if self.ckpt_costs:
            c = np.array(self.ckpt_costs)
            s["checkpoints"] = {"count": int(c.size), "mean_ms": float(c.mean() * 1e3), "max_ms": float(c.max() * 1e3),
                                "total_s": float(c.sum())}
        return s


def window_limit_text(window_ms: float, d: int, dt_ms: float) -> str:
    """Why a window is too long, with the smallest delay as it is (0 steps is possible) and the
    largest window allowed (W <= D, but at least 1 step: the coupling reads step n - 1 - D)."""
    max_w = max(d, 1)
    return (f"{window_ms:g} ms is longer than the smallest delay between differently simulated regions allows "
            f"(smallest delay {d} step{'s' if d != 1 else ''} = {d * dt_ms:g} ms; largest window "
            f"{max_w} step{'s' if max_w != 1 else ''} = {max_w * dt_ms:g} ms); use at most {max_w * dt_ms:g}")


def _same_connectome(a: dict, b: dict) -> bool:
    try:
        return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in ("weights", "idelays"))
    except (KeyError, TypeError, ValueError):
        return False
