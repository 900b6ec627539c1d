"""The coordinator: registers nodes, hands out the configuration and the direct data links,
clocks the windows, records what nodes produce, and ends the run for everyone (PROTOCOL.md
§2–§8). Protocol 3: the data goes node to node; the coordinator receives copies off the
critical path.

One poll loop handles messages and timers together; each message type has one handler in
`self.handlers`. State: SETUP → RUNNING → FINISHING → DONE. The work is split by
responsibility: `setup` (registration, plan, PREPARE), `clock` (grants, STEP_DONE, recording,
checkpoints, END), `liveness` (heartbeats, timeouts, resends), `status` (broadcasts, failure
text, status marker, summary); this module holds the sockets and the dispatch.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from cosim.runtime import checkpoint
from cosim.config import RunConfig, ticks_of
from cosim.errors import EXIT_INTERRUPTED, ConfigError, RunFailed  # noqa: F401  (RunFailed re-exported)
from cosim.runtime import transport
from cosim.runtime.transport import RejectCounter, printable, zmtp_heartbeats
from cosim.proto import codec
from cosim.proto.messages import Message, MessageType as T, error
from cosim.services.coordinator.clock import ClockMixin
from cosim.services.coordinator.liveness import LivenessMixin
from cosim.services.coordinator.peers import Peer
from cosim.services.coordinator.record import RunRecord
from cosim.services.coordinator.setup import SetupMixin
from cosim.services.coordinator.status import StatusMixin

log = logging.getLogger(__name__)


# messages the run cannot go on without: failing to deliver one fails the run instead of hanging it
_RUN_MESSAGES = {T.CONFIGURE, T.PREPARE, T.RUN, T.END}
# at most this many queued messages are handled before timers are checked again (a flood of
# messages must not delay the detection of a dead node)
_MAX_BATCH = 500
# after ABORT, the other nodes' last copies (§7): at most this long, until none came for _DRAIN_QUIET_S
_DRAIN_S, _DRAIN_QUIET_S = 0.5, 0.1
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class Coordinator(SetupMixin, ClockMixin, LivenessMixin, StatusMixin):
    def __init__(self, cfg: RunConfig, results_dir: str | Path, curve=None, progress=None, resume: bool = False,
                 started_at: float | None = None):
        from cosim.runtime.startup import StartupClock
        # where the start-up goes (summary.json "startup"); started_at: this process's start
        self.startup = StartupClock(started_at)
        self.startup_report: dict | None = None      # the coordinator's figures, at the first window
        self.first_window_at: float | None = None    # epoch
        self.cfg = cfg
        self.cc = cfg.coordinator
        self.results_dir = Path(results_dir)
        self.curve, self.progress = curve, progress
        self.peers: dict[str, Peer] = {"tvb": Peer("tvb", "tvb")}
        for n in cfg.spiking_nodes:
            self.peers[n.name] = Peer(n.name, "spiking")
        self.by_rid: dict[bytes, str] = {}
        self.rejects = RejectCounter("coordinator")
        self.resent = 0
        self.state = "SETUP"
        self.compiling: set[str] = set()       # nodes whose heartbeats say they compile (§8)
        self.paused_at: float | None = None
        self.window = 0                          # the next window to complete; all before it are recorded
        self.until = -1                          # the last window granted (RUN)
        self.lag = cfg.run.lookahead if cfg.run.lookahead != "auto" else 1   # m (§3); auto: chosen at PREPARE
        self.lag_reason = "run.lookahead" if cfg.run.lookahead != "auto" else ""
        self.time_cut: int | None = None         # a time-based checkpoint's window, once due
        self.copies: dict[str, dict[int, dict[str, np.ndarray]]] = {}   # node -> window -> its outputs (§4.1)
        self.timing: dict[int, dict[str, dict]] = {}                      # window -> node -> timing
        self.record: RunRecord | None = None
        self.failure: RunFailed | None = None
        self.tvb_dt_ms = cfg.tvb.dt_ms
        self.tick_ms = min([cfg.tvb.dt_ms] + [d for d in self._spiking_dts() if d])
        self.dt_ticks = ticks_of(cfg.tvb.dt_ms, self.tick_ms, "tvb.dt_ms")
        self.handlers: dict[T, Callable[..., None]] = {T.REGISTER: self.on_register, T.CONFIGURED: self.on_configured,
                         T.READY: self.on_ready, T.STEP_DONE: self.on_step_done,
                         T.FINISHED: self.on_finished, T.ERROR: self.on_error, T.ABORT: self.on_error,
                         T.CHECKPOINTED: self.on_checkpointed}
        self._next_id = 0
        self.ckpt: dict | None = None            # the checkpoint being written (§10.1)
        self.ckpt_costs: list[float] = []        # seconds per checkpoint (the run waits for it)
        dumped = cfg.model_dump(mode="json")
        self.input_hashes = checkpoint.input_hashes(dumped)   # connectome, model and mechanism files
        self.config_sha256 = checkpoint.config_hash(dumped, self.input_hashes)
        self.resume: dict | None = None          # the manifest of the checkpoint this run resumes from
        self._stop_requested = False
        self.longest_window_s = 0.0              # the longest window cycle reported (adaptive window timeout, §8)
        self.stalled: tuple[float, float] | None = None   # (when, seconds) of this process's last stall (§8)
        self._next_ping = 0.0
        self._loop_t = time.monotonic()
        if resume:
            try:
                self.resume = checkpoint.select(self.results_dir, self.config_sha256, self.input_hashes)
                checkpoint.check_resume(self.results_dir, self.resume, self.cc.watch_regions, nodes=False)
            except checkpoint.CheckpointError as e:
                raise ConfigError(str(e)) from None
            log.info("coordinator: resuming %s from the checkpoint of window %d", self.results_dir,
                     self.resume["window"])

    def _recv(self) -> list:
        """One message's frames from the ROUTER (zero-copy frames when self._copy is False)."""
        return self.router.recv_multipart(copy=self._copy)  # type: ignore[call-overload]

    def request_stop(self) -> None:
        """Abort the run as Ctrl-C would (every node is told; results are kept), from any thread."""
        self._stop_requested = True

    def bind(self) -> None:
        if getattr(self, "router", None) is not None:    # bound already (cosim.launch.inprocess binds first)
            return
        self.zctx = zmq.Context.instance()
        self.router = zmtp_heartbeats(self.zctx.socket(zmq.ROUTER))
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a node reconnecting after a reset connection takes its routing id over at once, even
        # before the coordinator has noticed the old connection is dead (ids carry a per-process token)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.MAXMSGSIZE, self.cc.max_message_bytes)
        self.pub = zmtp_heartbeats(self.zctx.socket(zmq.PUB))
        self.pub.setsockopt(zmq.LINGER, 0)
        self.monitors: list[tuple[zmq.Socket, zmq.Socket, str]] = []
        if self.curve is not None:
            self.curve.apply_server(self.zctx, self.router)
            self.curve.apply_server(self.zctx, self.pub)
            # a plaintext (or otherwise broken) handshake never reaches the application: watch for it
            for sock, what in ((self.router, "ROUTER"), (self.pub, "PUB")):
                self.monitors.append((sock, sock.get_monitor_socket(_HANDSHAKE_FAILED), what))
        from cosim.runtime.transport import inherited_listen_fds
        held = inherited_listen_fds()
        for sock, addr, what in ((self.router, self.cc.router, "coordinator.router"), (self.pub, self.cc.pub, "coordinator.pub")):
            try:
                if addr in held:          # the launcher's listening socket for this port (ZMQ_USE_FD)
                    sock.setsockopt(zmq.USE_FD, held[addr])
                sock.bind(addr)
            except zmq.ZMQError as e:
                raise ConfigError(f"{what}: cannot bind {addr}: {e}") from None
        self.router_addr = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("coordinator: ROUTER on %s, PUB on %s; nodes connect to %s", self.router_addr,
                 self.pub.getsockopt_string(zmq.LAST_ENDPOINT), self.node_address())
        self._next_waiting = time.monotonic() + self.waiting_every_s()

    def node_address(self) -> str:
        """The address nodes should use (`--coordinator`): the bound one, with a wildcard host
        (``*``, ``0.0.0.0``, ``[::]``) replaced by this machine's name (a wildcard is not an address)."""
        addr = getattr(self, "router_addr", None) or self.cc.router
        proto, _, rest = addr.partition("://")
        host, _, port = rest.rpartition(":")
        if proto == "tcp" and host in ("*", "0.0.0.0", "[::]", "::", "[*]"):
            import socket
            return f"tcp://{socket.getfqdn() or socket.gethostname()}:{port}"
        return addr

    def waiting_every_s(self) -> float:
        """How often a coordinator waiting for nodes says who it waits for: every 10 s (a quarter
        of the setup timeout when that is shorter, at least every second)."""
        return min(10.0, max(1.0, self.cc.setup_timeout_ms / 4000))

    def waiting_for(self) -> str:
        """The nodes setup still waits for, with what each still has to do."""
        todo = {"expected": "not registered", "registered": "configuring", "configured": "waiting for the plan",
                "preparing": "preparing"}
        return ", ".join(f"{p.name} ({todo.get(p.state, p.state)})" for p in self.peers.values() if p.state != "ready")

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
            frames = codec.encode(msg)
            self.router.send_multipart([rid, *frames], flags=zmq.NOBLOCK)  # copying beats zero-copy for small frames
            if transport.trace is not None:
                transport.trace("coordinator", "send", msg.type, msg.window, transport.identity_label(rid),
                                sum(map(len, frames)))
            return "sent"
        except zmq.Again:  # the peer's queue is at its high-water mark
            self.rejects.reject("ReplyDropped", f"{msg!r} to {rid[:40]!r}: the peer does not read", repr(rid[:40]))
            return "full"
        except zmq.ZMQError as e:  # ROUTER_MANDATORY: the peer is gone
            log.debug("coordinator: cannot reach %r: %s", rid, e)
            return "gone"

    def run(self) -> dict:
        """Run to the end; returns the summary or raises RunFailed."""
        self.bind()
        self.startup.mark("bind")
        self.t_setup = time.monotonic()
        self.t_start = None
        try:
            while self.state != "DONE":
                if self._stop_requested:       # request_stop(): as Ctrl-C, from another thread
                    raise KeyboardInterrupt
                ready = self.router.poll(min(100, self.cc.heartbeat_interval_ms))
                self.check_stall()          # before any message: a stall is nobody's fault (§8)
                if ready:
                    self.handle(self._recv())
                    for _ in range(_MAX_BATCH):
                        if not self.router.poll(0):
                            break
                        self.check_stall()
                        self.handle(self._recv())
                self.check_timers()
        except RunFailed as e:
            self.abort_all(str(e))
            self.failure = self.drain_copies(e)
            self.failure.no_window_ran = self.state == "SETUP" and not self.resume
            raise self.failure from None
        except KeyboardInterrupt:
            if self.state == "SETUP":
                why = (f"coordinator interrupted while waiting for nodes: {self.waiting_for()}"
                       if self.waiting_for() else "coordinator interrupted during setup")
            else:
                why = f"coordinator interrupted in window {self.window}"
            self.failure = RunFailed(why, EXIT_INTERRUPTED, no_window_ran=self.state == "SETUP" and not self.resume)
            self.abort_all(str(self.failure))
            raise self.failure from None
        finally:
            self.close_record()
            for sock, mon, _ in self.monitors:
                sock.disable_monitor()
                mon.close(linger=0)
            for p in self.peers.values():
                self.close_echo(p)
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
        if transport.trace is not None:
            transport.trace("coordinator", "recv", msg.type, msg.window, f"{name}/hb" if is_hb else str(name),
                            sum(len(f) for f in frames[1:]))
        if is_hb and not (msg.type == T.STEP_DONE and name is not None):
            # (a STEP_DONE batch MAY come on the heartbeat connection while the node's main thread is
            # busy in a window, §4.1: it is handled like one on the node's own connection)
            if name is not None:
                self.peers[name].last_seen = time.monotonic()
                self.peers[name].silent_warned = False
                if msg.type == T.HEARTBEAT:
                    rtt = msg.content.get("rtt_ms")
                    if isinstance(rtt, (int, float)) and 0 <= rtt < 1e6:
                        self.peers[name].rtt_ms = float(rtt)
                    self.check_stuck(self.peers[name], msg.content)
                    self.note_progress(self.peers[name], msg.content)
                    self.note_setup_work(self.peers[name], msg.content)
            if msg.type == T.HEARTBEAT:   # answer even unknown peers: they may be registering
                # while running: `ack`, the node's last STEP_DONE received in order (it may forget those, §8)
                ack = {"ack": self.peers[name].done} if name is not None and self.state in ("RUNNING", "FINISHING") else {}
                self._send_to(rid, Message(T.HEARTBEAT, ack, node="coordinator", parent_id=msg.msg_id))
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

    def on_error(self, peer: Peer, msg: Message) -> None:
        c = msg.content
        text = printable(c.get("reason") or f"{c.get('error')}: {c.get('message')}", 2000)   # stays one line
        if c.get("error") == "CoordinatorLost":
            if self.stalled is not None:
                # §8: the node left because this process did not run, not by a fault of its own
                raise RunFailed(self.stall_reason(peer.name))
            raise RunFailed(self.where(peer.name, f"lost the coordinator ({printable(c.get('message'), 500)}): "
                                                  f"its heartbeat replies stopped; a network cut one way?"))
        if c.get("error") == "BadInput" and c.get("producer") in self.peers:
            # a consumer refused what a producer sent it: the blame goes to the producer (§7)
            raise RunFailed(self.where(c["producer"], f"bad outputs (refused by {peer.name!r}): "
                                                       f"{printable(c.get('message'), 1000)}"))
        # a node that cannot run this configuration: exit code 2 like any configuration error
        raise RunFailed(self.where(peer.name, text), 2 if c.get("error") == "ConfigRejected" else 1)

    def unexpected(self, peer: Peer, msg: Message) -> None:
        self.rejects.reject("UnexpectedMessage", f"{msg!r} in state {self.state}, window {self.window}", peer.name)
        text = (f"{msg.type.value} for window {msg.window} is not expected now "
                f"(state {self.state}, window {self.window})")
        peer.refused = f"its {text}"
        self.send(peer, T.ERROR, {"error": "UnexpectedMessage", "message": text}, parent=msg)

    def drain_copies(self, e: RunFailed) -> RunFailed:
        """After ABORT, the copies the other nodes send of windows they completed (§7: results up
        to the last completed window, although copies travel in batches); the reason then names
        the last window recorded."""
        if self.state != "RUNNING" or self.plan is None:
            return e
        before = self.where("", "")
        deadline = quiet = time.monotonic() + _DRAIN_S     # quiet: _DRAIN_QUIET_S after each recorded window
        while (now := time.monotonic()) < min(deadline, quiet):
            if not self.router.poll(max(1, int((min(deadline, quiet) - now) * 1000))):
                break
            frames = self._recv()
            try:
                n = self.window
                self.handle(frames)             # STEP_DONE copies are recorded; the rest changes nothing now
                if self.window != n:
                    quiet = time.monotonic() + _DRAIN_QUIET_S
            except Exception as x:  # noqa: BLE001  (the run has failed already: keep its reason)
                log.debug("coordinator: a message after the abort: %s", x)
        after = self.where("", "")
        if after == before:
            return e
        # the progress part of the reason, "(last completed window k, t = … ms)", as it is now
        old, new = before[before.index("(last"):before.index(")") + 1], after[after.index("(last"):after.index(")") + 1]
        f = type(e)(str(e).replace(old, new, 1), e.exit_code, e.out)
        return f

    def abort_all(self, reason: str) -> None:
        log.error("coordinator: aborting run: %s", reason)
        self.publish("event", {"event": "aborted", "reason": reason})
        for p in self.peers.values():
            if p.routing_id is not None and p.state != "finished":
                self.send(p, T.ABORT, {"reason": reason})
