"""Liveness (PROTOCOL.md §8): heartbeats and their timeouts, the setup clock, handshake
failures, and repeating what a reset connection lost."""
from __future__ import annotations

import logging
import time

import zmq

from cosim.errors import RunFailed
from cosim.proto.messages import MessageType as T
from cosim.services.coordinator.peers import Peer

log = logging.getLogger(__name__)

# at most this many queued monitor events are handled per timer check
_MAX_BATCH = 500


class LivenessMixin:
    """Heartbeat expiry, the setup timeout, CURVE handshake failures, resends."""

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
            k = self.ckpt["window"]
            self.send(peer, T.CHECKPOINT, {"window": k, "dir": checkpoint.rel_folder(k)})
        elif action.startswith("RUN"):
            self.send(peer, T.RUN, {"first": peer.done + 1, "until": self.until})
        else:
            for x in missing:
                self.resend_data(peer.name, x, done + 1 - self.lag)
