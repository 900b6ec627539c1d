"""Liveness (PROTOCOL.md §8): heartbeats and their timeouts, the setup clock, handshake
failures, and repeating what a reset connection lost."""
from __future__ import annotations

import logging
import time

import zmq

from cosim.errors import RunFailed
from cosim.runtime.transport import network_note, printable, zmtp_heartbeats
from cosim.proto.messages import MessageType as T
from cosim.services.coordinator.peers import Peer
from cosim.services.coordinator.state import CoordinatorState

log = logging.getLogger(__name__)

# at most this many queued monitor events are handled per timer check
_MAX_BATCH = 500
_RECONNECT_MS = 100                # echo connections: reconnect interval (a refused reconnect = process gone)
_GONE_GRACE_S = 0.15               # the messages a dying node sent before its end are read first
_ADAPTIVE_FLOOR_S = 60.0           # window_timeout_ms: null never fails a window shorter than this
_ECHO_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
                | zmq.EVENT_HANDSHAKE_SUCCEEDED)


class LivenessMixin(CoordinatorState):
    """Heartbeat expiry, the setup timeout, CURVE handshake failures, resends."""

    def check_timers(self) -> None:
        now = time.monotonic()
        timeout = self.cc.heartbeat_timeout_ms / 1000
        self.serve_echoes(now)
        running = self.state in ("RUNNING", "FINISHING")
        for p in self.peers.values():
            if (running and p.echo_refused and p.state != "finished" and p.echo_down_at is not None
                    and p.last_seen < p.echo_down_at and now - p.echo_down_at >= _GONE_GRACE_S):
                # signal 2 (§8): its echo connection closed and nothing listens there any more
                silent = p.echo_down_at - p.last_seen
                why = (f"killed, crashed, or it gave up on the coordinator: nothing came from it for {silent:.1f} s "
                       f"before (a network cut between them?)" if silent >= timeout / 2 else "killed or crashed")
                raise RunFailed(self.where(p.name, f"its process is gone (echo connection closed "
                                                   f"{now - p.echo_down_at:.2f} s ago, reconnect refused: {why})"))
            if running and now - p.last_seen > timeout and now - p.echo_seen <= timeout and not p.gil_noted:
                p.gil_noted = True      # once per node: why a silent node is still alive
                log.info("coordinator: node %r sent nothing for %.1f s, but its echo answers: alive, busy (a step "
                         "holding the GIL?)", p.name, now - p.last_seen)
            # signal 1: alive while its heartbeats, its run messages or its echo replies arrive
            if p.routing_id is not None and p.state != "finished" and now - max(p.last_seen, p.echo_seen) > timeout:
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
                # a second opinion (§8): does its machine still answer on TCP? (a frozen process's kernel does)
                # (only an echo that has answered before: one a firewall hides would always look cut)
                net = network_note(p.echo, f"node {p.name!r}") if p.echo_seen > 0 else ""
                raise RunFailed(self.where(p.name, f"no heartbeat for {now - p.last_seen:.1f} s "
                                                   f"(timeout {self.cc.heartbeat_timeout_ms} ms)"
                                                   f"{net or ': node died or hung'}{after}"))
        if running:
            self.check_progress(now)
        self.check_handshakes()
        if self.record is not None:
            with self._writing():
                self.record.tick()      # durable at least every flush_s, even while a window is slow
        if self.state == "SETUP" and now - self.t_setup > self.cc.setup_timeout_ms / 1000:
            missing = [f"{p.name} ({p.state})" for p in self.peers.values() if p.state != "ready"]
            raise RunFailed(f"setup timed out after {self.cc.setup_timeout_ms} ms; not ready: {', '.join(missing)} "
                            f"(are they started and pointed at {self.node_address()}?)")
        if self.state == "SETUP" and now >= getattr(self, "_next_waiting", float("inf")):
            # a coordinator started first says, now and then, whom it waits for and where they connect
            self._next_waiting = now + self.waiting_every_s()
            left = self.cc.setup_timeout_ms / 1000 - (now - self.t_setup)
            log.info("coordinator: waiting for nodes: %s; they connect to %s (setup timeout in %.0f s)",
                     self.waiting_for(), self.node_address(), max(left, 0.0))

    # ---------------------------------------------------------------- the three signals (§8)
    def watch_echo(self, peer: Peer, address) -> None:
        """Connect a DEALER to the node's echo socket (CONFIGURED.echo) and watch that connection."""
        self.close_echo(peer)
        if not isinstance(address, str) or not address.startswith(("tcp://", "ipc://")) or len(address) > 256:
            return
        s = zmtp_heartbeats(self.zctx.socket(zmq.DEALER))
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
        s.setsockopt(zmq.SNDHWM, 4)
        s.setsockopt(zmq.MAXMSGSIZE, 4096)      # (the CURVE handshake counts too)
        if self.curve is not None:
            key = self.curve.public_keys().get(peer.name)
            if not key:
                s.close(linger=0)
                return
            s.curve_secretkey, s.curve_publickey, s.curve_serverkey = self.curve.secret, self.curve.public, key.encode()
        mon = s.get_monitor_socket(_ECHO_EVENTS)
        try:
            s.connect(address)
        except zmq.ZMQError as e:
            log.warning("coordinator: cannot watch node %r's echo at %s: %s", peer.name, printable(address), e)
            s.disable_monitor()
            mon.close(linger=0)
            s.close(linger=0)
            return
        peer.echo, peer.echo_sock, peer.echo_mon = address, s, mon
        peer.echo_seen, peer.echo_down_at, peer.echo_refused = 0.0, None, False

    def close_echo(self, peer: Peer) -> None:
        if peer.echo_sock is not None:
            peer.echo_sock.disable_monitor()
            if peer.echo_mon is not None:
                peer.echo_mon.close(linger=0)
            peer.echo_sock.close(linger=0)
            peer.echo_sock = peer.echo_mon = None

    def serve_echoes(self, now: float) -> None:
        """Ping every node's echo once per heartbeat interval; take the replies and the connection events."""
        from zmq.utils.monitor import recv_monitor_message
        ping = now >= self._next_ping
        if ping:
            self._next_ping = now + self.cc.heartbeat_interval_ms / 1000
        for p in self.peers.values():
            s, mon = p.echo_sock, p.echo_mon
            if s is None or mon is None:
                continue
            for _ in range(64):
                if not s.poll(0, zmq.POLLIN):
                    break
                s.recv(zmq.NOBLOCK)
                p.echo_seen = now
            for _ in range(64):
                if not mon.poll(0):
                    break
                ev = recv_monitor_message(mon)["event"]
                if ev == zmq.EVENT_DISCONNECTED:
                    if p.echo_down_at is None:
                        p.echo_down_at = now
                elif ev in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                    p.echo_down_at, p.echo_refused = None, False
                elif ev == zmq.EVENT_CLOSED and p.echo_down_at is not None:
                    p.echo_refused = True          # a reconnect attempt failed: the port refuses
            if ping:
                try:
                    s.send(b"", zmq.NOBLOCK)
                except zmq.ZMQError:        # not connected (yet, or any more): nothing to answer
                    pass

    def note_progress(self, peer: Peer, hb: dict) -> None:
        """Signal 3 (§8): when the node began its current window (or checkpoint), from its heartbeats."""
        done, waiting = hb.get("done"), hb.get("waiting")
        if not isinstance(done, int) or not isinstance(waiting, bool):
            return
        if waiting:
            peer.busy_since = None
        elif peer.busy_since is None or peer.busy_done != done:
            peer.busy_since, peer.busy_done = time.monotonic(), done

    def window_timeout_s(self) -> float:
        if self.cc.window_timeout_ms is not None:
            return self.cc.window_timeout_ms / 1000
        return max(_ADAPTIVE_FLOOR_S, 10 * self.cc.heartbeat_timeout_ms / 1000, 20 * self.longest_window_s)

    def check_progress(self, now: float) -> None:
        """Signal 3 (§8): a node alive by its echo or heartbeats whose window does not end."""
        limit = self.window_timeout_s()
        setting = ("coordinator.window_timeout_ms" if self.cc.window_timeout_ms is not None
                   else "coordinator.window_timeout_ms: adaptive")
        for p in self.peers.values():
            if p.routing_id is None or p.state == "finished":
                continue
            if p.busy_since is not None and now - p.busy_since > limit:
                k = p.busy_done + 1
                what = (f"the checkpoint of window {p.busy_done}" if self.ckpt is not None and p.name in self.ckpt["pending"]
                        else f"window {k}")
                raise RunFailed(self.where(p.name, f"{what} did not complete within {limit * 1000:.0f} ms ({setting}) "
                                                   f"although the node is alive (its heartbeats go on): its step hangs",
                                           window=k))
            if p.echo_sock is not None and now - p.last_seen > limit and now - p.echo_seen < self.cc.heartbeat_timeout_ms / 1000:
                raise RunFailed(self.where(p.name, f"its runtime has sent nothing for {now - p.last_seen:.1f} s "
                                                   f"({setting}: {limit * 1000:.0f} ms) although its process answers "
                                                   f"(echo): the node hangs"))

    def check_stall(self) -> None:
        """§8 "A stalled coordinator": if this loop itself did not run for a while (SIGSTOP, swapping,
        a debugger), its silence is no node's fault: every node gets a fresh heartbeat timeout."""
        now = time.monotonic()
        gap, self._loop_t = now - self._loop_t, now
        if gap <= max(2 * self.cc.heartbeat_interval_ms / 1000, 1.0) + 0.1:
            return
        self.stalled = (now, gap)
        log.warning("coordinator: this process did not run for %.1f s (stopped or starved: SIGSTOP, swapping, a "
                    "debugger); every node gets a fresh heartbeat timeout", gap)
        for p in self.peers.values():
            p.last_seen = max(p.last_seen, now)
            if p.busy_since is not None:
                p.busy_since += gap
        self.t_setup += gap
        self._next_ping = now

    def check_handshakes(self) -> None:
        """Connections refused during the ZMTP handshake under CURVE: plaintext clients (mechanism
        mismatch) and failed handshakes, counted and logged like rejected messages (the first of
        each kind, then at most once a minute). libzmq does not tell the peer's address here;
        refused keys are logged with their address by the ZAP handler (cosim.runtime.security)."""
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
                                        f"{zmq.Event(ev['event']).name}, code {ev['value']} (a node whose "
                                        f"coordinator.key is not this coordinator's public key?)", "?")

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

    def check_stuck(self, peer, hb: dict) -> None:
        """§8: a node whose heartbeats say it is idle while the run waits for it lost a message with
        a reset connection (ZeroMQ reconnects but does not resend). If its state stays the same for
        half a heartbeat timeout, the coordinator repeats what it lacks: END, CHECKPOINT, a RUN
        (grant) it missed, a RUN asking it to resend STEP_DONEs the coordinator missed, or a DATA it
        waits for that the coordinator holds a copy of (its producer sent it)."""
        done = hb.get("done")
        if hb.get("waiting") is not True or not isinstance(done, int) or self.state not in ("RUNNING", "FINISHING"):
            peer.stuck_since = None
            return
        missing = [x for x in (hb.get("missing") or []) if isinstance(x, str) and x in self.peers]
        until = hb.get("until") if isinstance(hb.get("until"), int) else None
        action = None
        if self.state == "FINISHING":
            action = "END" if peer.state != "finished" else None
        elif self.ckpt is not None:
            action = "CHECKPOINT" if peer.name in self.ckpt["pending"] and done == self.ckpt["window"] else None
        elif done > peer.done:
            action = "RUN (resend STEP_DONE)"
        elif until is not None and until < self.until:
            action = "RUN"
        elif missing and any(done + 1 - self.lag in self.copies.get(x, {}) for x in missing):
            action = "DATA"
        now = time.monotonic()
        key = (done, until, tuple(missing), action)
        if action is None:
            peer.stuck_since = None
            return
        if peer.stuck_since is None or peer.stuck_key != key:      # progress since: not stuck yet
            peer.stuck_since, peer.stuck_key = now, key
            return
        if now - peer.stuck_since < self.cc.heartbeat_timeout_ms / 2000:
            return
        peer.stuck_since = now
        self.resent += 1
        log.warning("coordinator: node %r idle while the run waits for it (done %d): repeating %s "
                    "(a message lost with a reset connection?)", peer.name, done, action)
        if action == "END":
            self.send(peer, T.END, {"reason": "completed"})
        elif action == "CHECKPOINT":
            from cosim.runtime import checkpoint
            assert self.ckpt is not None
            k = self.ckpt["window"]
            self.send(peer, T.CHECKPOINT, {"window": k, "dir": checkpoint.rel_folder(k)})
        elif action.startswith("RUN"):
            self.send(peer, T.RUN, {"first": peer.done + 1, "until": self.until})
        else:
            for x in missing:
                self.resend_data(peer.name, x, done + 1 - self.lag)
