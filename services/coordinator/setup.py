"""Registration and setup (PROTOCOL.md §7): REGISTER → CONFIGURE, CONFIGURED → the plan of who
sends what to whom, PREPARE (with the direct data links, §4.1), READY → the run starts."""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from cosim.runtime import checkpoint
from cosim.runtime.adapter import SignalSpec
from cosim.config.timing import lag_window_problem, ticks_of
from cosim.errors import RunFailed
from cosim.runtime.transport import printable
from cosim.proto.messages import PROTOCOL_VERSION, Message, MessageType as T, error
from cosim.services.coordinator import routing
from cosim.services.coordinator.peers import WATCH, Peer
from cosim.services.coordinator.state import CoordinatorState

log = logging.getLogger(__name__)

# the window when no connection crosses between nodes (any window is causal then)
NO_CROSSING_WINDOW_MS = 10.0


class SetupMixin(CoordinatorState):
    """Registration, configuration, the routing plan and PREPARE."""

    def _spiking_dts(self) -> list[float | None]:
        from cosim import plugins
        out: list[float | None] = []
        for i, n in enumerate(self.cfg.spiking_nodes):
            spec = plugins.get(n.backend)
            dt = spec.dt_ms(spec.params_model().model_validate(n.params or {}))
            if dt:
                ticks_of(self.cfg.tvb.dt_ms, dt, f"spiking_nodes[{i}].params.{spec.dt_param} (must divide tvb.dt_ms)")
            out.append(dt)
        return out

    def on_register(self, rid: bytes, msg: Message) -> None:
        c = msg.content
        def reply(kind: str, text: str) -> None:   # a refused registration is a rejected message too
            self.rejects.reject(f"Register{kind}", text, repr(rid[:40]))
            self._send_to(rid, error(msg, kind, text))
        if c["protocol"] != PROTOCOL_VERSION:
            return reply("VersionMismatch",
                         f"coordinator speaks protocol {PROTOCOL_VERSION}, node {printable(c['protocol'], 20)}")
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
        if "registration" not in self.startup.phases and all(p.routing_id is not None for p in self.peers.values()):
            self.startup.mark("registration")      # every node registered
        regions = self.cfg.spiking_regions() if peer.role == "tvb" else self.cfg.node(name).regions
        self.send(peer, T.CONFIGURE, {
            "config": self.cfg.model_dump(mode="json"), "regions": list(regions), "tvb_dt_ms": self.tvb_dt_ms,
            "tick_ms": self.tick_ms, "results_dir": str(self.results_dir),
            "heartbeat_interval_ms": self.cc.heartbeat_interval_ms,
            "heartbeat_timeout_ms": self.cc.heartbeat_timeout_ms,
            **({"resume": self.resume_for(name)} if self.resume else {}),
            # CURVE: the run's node keys, so the node's data inbox admits its producers before any
            # of them can connect (they connect after PREPARE, which follows every CONFIGURED; §9)
            **({"keys": {n: k for n, k in self.curve.public_keys().items() if n in self.peers and n != name}}
               if self.curve is not None else {})}, parent=msg)

    def resume_for(self, name: str) -> dict:
        """CONFIGURE.resume (§10.1): the checkpoint's window and folder and this node's CHECKPOINTED."""
        assert self.resume is not None
        k = self.resume["window"]
        return {"window": k, "dir": checkpoint.rel_folder(k), "info": self.resume["nodes"][name]}

    def on_configured(self, peer: Peer, msg: Message) -> None:
        if peer.state != "registered":
            return self.unexpected(peer, msg)
        try:
            peer.requires = [SignalSpec.from_wire(s) for s in msg.content["requires"]]
        except (KeyError, TypeError, ValueError) as e:
            raise RunFailed(self.where(peer.name, f"malformed requires ({e})")) from None
        if peer.role == "tvb":
            if not isinstance(msg.content.get("connectome"), dict):
                raise RunFailed(self.where(peer.name, "CONFIGURED without a connectome"))
            if getattr(self, "plan", None) is not None and not _same_connectome(self.connectome, msg.content["connectome"]):
                raise RunFailed(self.where(peer.name, "restarted with a different connectome"))
            self.connectome = msg.content["connectome"]
        peer.data = msg.content.get("data")
        self.watch_echo(peer, msg.content.get("echo"))     # §8: liveness that no GIL can starve
        cost = msg.content.get("cost") or {}
        if isinstance(cost.get("step_s"), (int, float)) and 0 < cost["step_s"] < 1e3:
            peer.step_s = float(cost["step_s"])
        peer.state = "configured"
        if getattr(self, "plan", None) is not None:     # a restarted node joins a setup already prepared
            if self._prepared_requires.get(peer.name) != peer.requires:
                raise RunFailed(self.where(peer.name, "restarted with different signal requirements"))
            self.send_prepare(peer)
        elif all(p.state == "configured" for p in self.peers.values()):
            self.startup.mark("configuration")     # every node configured
            self.prepare_all()

    def prepare_all(self) -> None:
        con = self.connectome
        n = con["weights"].shape[0]
        from cosim.config.regions import region_problem
        plain = self.cfg.model_dump(mode="json")
        bad_region = region_problem(plain, n)
        if bad_region:
            raise RunFailed(f"{bad_region[0]}: {bad_region[1]}", 2)
        from cosim.config.inter_service import window_limit_steps
        d, slack = window_limit_steps(plain, con["weights"], con["idelays"])
        if slack:
            log.info("coordinator: windows fit in %d steps%s", d, slack)
        steps = max(1, round(self.cfg.run.duration_ms / self.tvb_dt_ms))
        if d is None:
            # nothing crosses: any window is causal; ordinary windows keep progress, recording and
            # the monitors working (one window for the whole run did not)
            max_w = None
            self.W = min(steps, max(1, round(NO_CROSSING_WINDOW_MS / self.tvb_dt_ms)))
        else:
            max_w = max(int(d), 1)          # a delay of 0 steps still allows a window of 1 (D + 1)
            if self.cfg.run.lookahead == "auto":
                self.choose_lag(max_w)
            lag_bad = lag_window_problem(None, self.lag, int(d), self.tvb_dt_ms)
            if lag_bad:
                raise RunFailed(f"{lag_bad[0]}: {lag_bad[1]}", 2)
            self.W = max_w // self.lag      # m windows fit in the smallest delay (§3)
        if self.cfg.run.window_ms is not None:
            self.W = ticks_of(self.cfg.run.window_ms, self.tvb_dt_ms, "run.window_ms (whole TVB steps)")
            lag_bad = lag_window_problem(self.cfg.run.window_ms, self.lag, int(d), self.tvb_dt_ms) if d is not None else None
            if lag_bad:
                raise RunFailed(f"{lag_bad[0]}: {lag_bad[1]}{slack}", 2)
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
        watch = tuple(r for r in self.cc.watch_regions if owner.get(r) == "tvb")   # spiking ones are published anyway
        if watch:   # the coordinator itself consumes these (PUB telemetry, §6.1); recorded like any signal
            requires[WATCH] = [SignalSpec("state/R_e", watch)]
        try:
            self.plan = routing.plan(requires, owner, weights=con["weights"])
        except routing.PlanError as e:
            raise RunFailed(f"cannot route signals: {e}", 2) from None
        log.info("coordinator: window %d steps (%.3g ms; %s), %d windows", self.W, self.W * self.tvb_dt_ms,
                 f"min crossing delay {d} step{'s' if d != 1 else ''}" if d is not None
                 else "nothing crosses between nodes: any window is causal", self.K)
        if self.resume and (self.resume["steps_per_window"], self.resume["n_windows"]) != (self.W, self.K):
            raise RunFailed(f"cannot resume: the checkpoint has {self.resume['n_windows']} windows of "
                            f"{self.resume['steps_per_window']} steps, this run {self.K} of {self.W}", 2)
        self._prepared_requires = {p.name: p.requires for p in self.peers.values()}
        for p in self.peers.values():
            self.send_prepare(p)

    def choose_lag(self, max_w: int) -> None:
        """run.lookahead: auto (§3): the lag that minimises the time of D steps under the pipeline
        model of :func:`lag_cost`, from the measured latency (heartbeat round trips) and compute
        time (CONFIGURED.cost)."""
        rtts = [p.rtt_ms for p in self.peers.values() if p.rtt_ms is not None]
        steps = [p.step_s for p in self.peers.values() if p.step_s is not None]
        # one way between two nodes: at most half of each one's round trip to the coordinator
        # (exact when the coordinator sits next to one of them, the usual deployment)
        rtts = sorted(rtts)
        one_way = (rtts[-1] + (rtts[-2] if len(rtts) > 1 else 0.0)) / 2e3 if rtts else 0.0
        step_s = max(steps) if steps else 0.0
        self.lag = choose_lag(one_way, step_s * max_w, max_w)
        self.lag_reason = (f"auto: one-way latency ~{one_way * 1e3:.2f} ms, compute ~{step_s * max_w * 1e3:.2f} ms "
                           f"per {max_w} steps (slowest estimate)")
        log.info("coordinator: run.lookahead auto → %d (%s)", self.lag, self.lag_reason)

    def link_token(self, producer: str, consumer: str) -> str:
        """The secret of a data link (§4.1, protocol 4): 128 random bits, one per (producer, consumer)
        and run, known to those two nodes and the coordinator only (a restarted node gets the same)."""
        import secrets
        tokens = self.__dict__.setdefault("link_tokens", {})
        return tokens.setdefault((producer, consumer), secrets.token_hex(16))

    def send_prepare(self, p: Peer) -> None:
        send, receive = routing.links(self.plan, p.name)
        keys = self.curve.public_keys() if self.curve is not None else {}
        for e in send:
            consumer = self.peers[e["to"]]
            if not consumer.data:
                raise RunFailed(self.where(consumer.name, "its CONFIGURED has no data address, but it consumes data"))
            e["address"] = consumer.data
            e["token"] = self.link_token(p.name, e["to"])
            if keys:
                e["key"] = keys.get(consumer.name, "")
        for e in receive:
            e["token"] = self.link_token(e["from"], p.name)
        self.send(p, T.PREPARE, {"outputs": [s.as_wire() for s in self.plan.outputs[p.name]],
                                 "inputs": [s.as_wire() for s in self.plan.inputs[p.name]],
                                 "steps_per_window": self.W, "n_windows": self.K, "connectome": self.connectome,
                                 "lag": self.lag, "send": send, "receive": receive})
        p.state = "preparing"

    def on_ready(self, peer: Peer, msg: Message) -> None:
        if peer.state != "preparing":
            return self.unexpected(peer, msg)
        initial = msg.content["initial"]
        m, W = self.lag, self.W
        why = routing.check_outputs(self.plan.outputs[peer.name], initial, m * W, allow_missing=True)
        if why:
            raise RunFailed(self.where(peer.name, f"bad initial outputs: {why}"))
        # windows -m..-1 (§3): kept to resend a lost initial DATA (§8)
        self.copies[peer.name] = {j: {n: a[(j + m) * W:(j + m + 1) * W] for n, a in initial.items()}
                                  for j in range(-m, 0)}
        peer.info = msg.content.get("info") or {}
        peer.state = "ready"
        if all(p.state == "ready" for p in self.peers.values()):
            self.startup.mark("preparation")       # every node built and ready
            self.start_run()


def _same_connectome(a: dict, b: dict) -> bool:
    try:
        return all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in ("weights", "idelays"))
    except (KeyError, TypeError, ValueError):
        return False


# per-window cost of the protocol itself (encode, send, wake-up, decode, checks), measured by
# bench/protocol.py on this project's machines; run.lookahead: auto charges it per window
WINDOW_OVERHEAD_S = 0.3e-3


def lag_cost(m: int, one_way_s: float, compute_s: float, overhead_s: float = WINDOW_OVERHEAD_S) -> float:
    """Time of the D steps that m windows cover, in steady state: window k starts once window k-1
    is done and window k-m's data has arrived, so the period P of a window satisfies
    m·P = max(compute + m·overhead, one_way + compute/m + overhead)."""
    return max(compute_s + m * overhead_s, one_way_s + compute_s / m + overhead_s)


def choose_lag(one_way_s: float, compute_s: float, max_lag: int, overhead_s: float = WINDOW_OVERHEAD_S) -> int:
    """The smallest lag among those within 2 % of the best :func:`lag_cost` (at most 16)."""
    costs = {m: lag_cost(m, one_way_s, compute_s, overhead_s) for m in range(1, min(max_lag, 16) + 1)}
    best = min(costs.values())
    return min(m for m, c in costs.items() if c <= best * 1.02)
