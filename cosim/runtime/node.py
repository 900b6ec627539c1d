"""The node side of the protocol (PROTOCOL.md §4.1, §7), shared by every node service.

`NodeRuntime.run()` registers with the coordinator, builds the adapter from the config it is
handed, answers PREPARE with READY, then runs every window the coordinator grants (RUN) as soon
as its inputs have arrived from the nodes that produce them (DATA, straight to this node's
inbox), sending its outputs to their consumers and a copy to the coordinator (STEP_DONE), until
END or ABORT. The adapter does the simulation; this module does only the dialog, the data links,
timing and failure handling.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any
from collections.abc import Callable

import numpy as np
import zmq

from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec
from cosim.errors import ConfigError, CoordinatorLost, NodeFailed, PeerTimeout, RemoteError, RunAborted  # noqa: F401
from cosim.runtime import startup, transport
from cosim.runtime.step_copies import StepCopies
from cosim.runtime.transport import (Channel, DataPlane, Echo, HandshakeWatch, Heartbeat, default_data_bind, echo_bind,
                                     new_token, routing_id)
from cosim.proto.messages import PROTOCOL_VERSION, Message, MessageType as T
from cosim.proto.signals import SIGNAL_BOUND, check_events, check_outputs, is_event, select_events, values_ok

log = logging.getLogger(__name__)


class NodeRuntime:
    """One node process's dialog with the coordinator.

    `make_adapter(config_dict)` builds the adapter once the run config arrives, so a spiking
    node can learn its backend from the coordinator.
    """

    def __init__(self, name: str, role: str, address: str, make_adapter: Callable[[dict], NodeAdapter],
                 backend: str = "", results_dir: str | None = None, curve=None,
                 register_timeout_ms: int = 30_000, setup_timeout_ms: int = 600_000, require_resume: bool = False,
                 data_bind: str | None = None, data_advertise: str | None = None, started_at: float | None = None):
        # where this node's start-up goes (READY.info.startup); started_at: the process's start
        self.startup = startup.StartupClock(started_at)
        self.name, self.role, self.address, self.backend = name, role, address, backend
        self.make_adapter, self.results_override = make_adapter, results_dir
        self.curve = curve
        self.register_timeout_ms, self.setup_timeout_ms = register_timeout_ms, setup_timeout_ms
        self.require_resume = require_resume     # `--resume`: refuse a coordinator that starts afresh
        self.token = new_token()
        self.zctx: zmq.Context = zmq.Context.instance()
        ident = routing_id(name, self.token)
        self.ch = Channel(self.zctx, address, ident, curve)
        self.ch.blocked = self._cannot_send     # a send that cannot leave ends with the reason why
        self._registering_until: float | None = None    # the register wait's deadline (a REGISTER that cannot leave)
        self.handshake = HandshakeWatch(self.ch.sock, address, curve)    # wrong keys, said as such
        self.hb = Heartbeat(self.zctx, address, ident, name, curve)
        # the data inbox is bound before REGISTER, so its address travels in CONFIGURED (§4.1)
        bind = data_bind or default_data_bind(address, name, self.token)
        self.data = DataPlane(self.zctx, bind, data_advertise, address, name, curve)
        # the echo socket (§8): answered inside libzmq, so a GIL-holding step cannot make this node look dead
        # (left out behind --data-advertise: no one could reach it there)
        where = echo_bind(bind) if data_advertise is None else None
        self.echo = Echo(self.zctx, where, address, curve) if where else None
        self.adapter: NodeAdapter | None = None
        self.ctx: RunContext | None = None
        self.window = -1
        self.inbox: Inbox | None = None
        self.held: collections.deque[Message] = collections.deque()   # dialog messages read during a send
        self.copies = StepCopies(name)      # STEP_DONE copies not sent yet (batched, §4.1)
        # the heartbeat thread sends a due batch while the main thread is busy in a window (§4.1):
        # a window that hangs must not hold back the record of the windows before it
        self._copies_lock = threading.Lock()
        self.hb.late_copies = self._late_copies
        self.sent: collections.deque[Message] = collections.deque()   # STEP_DONEs not acknowledged (§8)

    # ------------------------------------------------------------------ dialog helpers
    def _send(self, type_: T, content: dict, window: int | None = None) -> None:
        self.ch.send(Message(type_, content, node=self.name, window=window))

    def _cannot_send(self) -> None:
        """Asked while a message to the coordinator cannot leave (Channel.SEND_SLICE_MS): raises
        the reason once there is one (a failed handshake, a lost coordinator, the register wait over)."""
        self._check_link()
        if self._registering_until is not None and time.monotonic() > self._registering_until:
            raise PeerTimeout(f"no CONFIGURE from the coordinator at {self.address} within "
                              f"{self.register_timeout_ms} ms: REGISTER could not even leave" + self.handshake.hint())

    def _check_link(self) -> None:
        if self.hb.lost.is_set():
            raise CoordinatorLost(f"coordinator at {self.address} stopped answering heartbeats{self.hb.why}")
        bad = self.handshake.problem()
        if bad:
            raise ConfigError(bad)

    def _send_best_effort(self, msg: Message, timeout_ms: int | None = None) -> None:
        """A message sent on the way out (an ERROR that the coordinator also notices by itself when
        it cannot arrive): waits at most ``timeout_ms`` (one heartbeat interval) for the link to take it."""
        try:
            if not self.ch.send(msg, timeout_ms=timeout_ms or self.hb.interval_ms):
                log.debug("%s: %s could not leave (no connection takes it)", self.name, msg.type.value)
        except zmq.ZMQError:
            pass

    def _wait(self, wanted: set[T], timeout_ms: int, what: str) -> Message:
        """Next message of a wanted type; ABORT/ERROR raise; heartbeat loss raises."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self._check_link()
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout(f"no {what} from the coordinator at {self.address} within {timeout_ms} ms"
                                  + self.handshake.hint())
            msg = self.ch.recv(int(min(left, 0.2) * 1000))
            if msg is None:
                continue
            self.hb.heard()
            if msg.type in wanted:
                return msg
            _raise_if_ended(msg)
            if msg.type == T.DATA and self.inbox is not None:     # the coordinator's copy (resume, resend)
                self.inbox.put(msg, trusted=True)
                continue
            log.warning("%s: ignoring unexpected %s while waiting for %s", self.name, msg.type.value, what)

    def _finish(self, summary: dict) -> None:
        """FINISHED until the coordinator acknowledges it (PROTOCOL.md §8: a reset connection can
        lose it), for at most one heartbeat timeout."""
        deadline = time.monotonic() + self.hb.timeout_ms / 1000
        while True:
            self._send(T.FINISHED, {"summary": summary})
            resend = time.monotonic() + self.hb.interval_ms / 1000
            while (now := time.monotonic()) < min(resend, deadline):
                msg = self.ch.recv(int(max(1, (min(resend, deadline) - now) * 1000)))
                if msg is not None and msg.type == T.FINISHED:
                    return
            if time.monotonic() >= deadline or self.hb.lost.is_set():
                log.warning("%s: the coordinator did not acknowledge FINISHED within %d ms (it may have "
                            "completed and gone)", self.name, self.hb.timeout_ms)
                return

    # ------------------------------------------------------------------ phases
    def register(self) -> Message:
        with self.startup.phase("registration"):     # waiting for the coordinator and the other nodes
            return self._register()

    def _register(self) -> Message:
        self._registering_until = time.monotonic() + self.register_timeout_ms / 1000
        try:
            self._send(T.REGISTER, {"name": self.name, "role": self.role, "backend": self.backend,
                                    "protocol": PROTOCOL_VERSION, "pid": _pid(), "host": _host(),
                                    "token": self.token})
            self.hb.start()
            log.info("%s: registering with %s", self.name, self.address)
            return self._wait({T.CONFIGURE}, self.register_timeout_ms, "CONFIGURE (is the coordinator running?)")
        except PeerTimeout as e:
            ended = self._ended_run()
            if ended:
                e = type(e)(f"{e}; {ended}")
            e.nothing_written = True        # type: ignore[attr-defined]  # no results of this node: none to keep
            raise e from None
        finally:
            self._registering_until = None

    def _ended_run(self) -> str:
        """Why no coordinator answers, when this node's results folder (--out / --resume) says: the
        run there has ended (a node restarted after the end of its run); else ""."""
        from pathlib import Path
        import json
        if not self.results_override:
            return ""
        d = Path(self.results_override)
        try:
            st = json.loads((d / "status_coordinator.json").read_text())
        except (OSError, ValueError):
            st = None
        if isinstance(st, dict) and st.get("running") is not True and "completed" in st:
            how = ("completed" if st.get("completed") is True
                   else f"failed: {transport.printable(st.get('reason'), 300)}")
            return (f"the run in {d} has already ended ({how}; status_coordinator.json): this node was started "
                    f"after its end; a new run needs a new coordinator (and another results folder)")
        try:
            import h5py
            with h5py.File(d / f"{self.name}.h5", "r") as f:
                mark = f.attrs.get("status")
        except (OSError, ImportError):
            return ""
        if isinstance(mark, bytes):
            mark = mark.decode(errors="replace")
        if mark == "completed":
            return (f"{d / (self.name + '.h5')} holds the results of a run that completed: this node was started "
                    f"after the end of its run; a new run needs a new coordinator (and another results folder)")
        return ""

    def configure(self, msg: Message) -> None:
        with self.startup.phase("configure"):
            self._configure(msg)
        warm_up = getattr(self.adapter, "warm_up", None)
        if warm_up is not None:      # overlaps e.g. importing NEURON with the other nodes' setup
            t0 = time.perf_counter()
            try:
                with self.startup.phase("warm-up"):
                    warm_up()
            except Exception as e:
                log.warning("%s: warm-up failed (configure will retry): %s", self.name, e)
            log.info("%s: warmed up in %.2f s", self.name, time.perf_counter() - t0)

    def _configure(self, msg: Message) -> None:
        c = msg.content
        self.hb.set_timing(c["heartbeat_interval_ms"], c["heartbeat_timeout_ms"])
        # longer than the heartbeat timeout: a consumer that died is the coordinator's to report
        self.data.send_timeout_ms = 2 * c["heartbeat_timeout_ms"] + 1000
        if self.curve is not None:          # the inbox admits the run's other nodes (§9)
            self.curve.allow(c.get("keys") or {})
        self.ctx = RunContext(config=c["config"], node_name=self.name, regions=tuple(c["regions"]),
                              tvb_dt_ms=float(c["tvb_dt_ms"]), tick_ms=float(c["tick_ms"]),
                              results_dir=self.results_override or c.get("results_dir"),
                              resume=c.get("resume"))
        try:
            if self.require_resume and not self.ctx.resume:
                raise ValueError("started with --resume, but the coordinator starts a new run")
            with startup.phase("imports"):      # the backend's module
                self.adapter = self.make_adapter(c["config"])
            # an adapter MAY keep a `setup_status` dict it updates during setup (e.g. {"setup": "compiling"}):
            # the heartbeat thread sends it, so the coordinator pauses the setup clock (§8)
            self.hb.status = getattr(self.adapter, "setup_status", {})
            if self.ctx.resume and not self.adapter.can_checkpoint:
                raise ValueError(f"{type(self.adapter).__name__} cannot restore a checkpoint")
            requires = self.adapter.requires(self.ctx)
            content: dict[str, Any] = {"requires": [s.as_wire() for s in requires], "data": self.data.address}
            if self.echo is not None:
                content["echo"] = self.echo.address
            if self.role == "tvb":
                content["connectome"] = self.adapter.connectome()
            estimate = getattr(self.adapter, "estimate_step_s", None)
            with startup.phase("cost estimate"):   # e.g. TVB's first step (numba compiles it)
                step_s = estimate() if estimate is not None else None
            if step_s:           # an adapter MAY say what a TVB step costs it (run.lookahead: auto)
                content["cost"] = {"step_s": float(step_s)}
        except Exception as e:
            self._fail(msg, e, "configuring")
        self._send(T.CONFIGURED, content)

    def prepare(self, msg: Message) -> None:
        with self.startup.phase("build"):
            self._prepare(msg)
        rep = self.startup.report()
        log.info("%s: start-up %.2f s: %s", self.name, rep["total_s"],
                 ", ".join(f"{k} {v:.2f} s" for k, v in rep["phases"].items()))
        self._send(T.READY, {"initial": self._initial, "info": {"build_s": self._build_s,
                                                                 "startup": rep}})

    def _prepare(self, msg: Message) -> None:
        c = msg.content
        ctx = self.ctx
        assert ctx is not None and self.adapter is not None    # CONFIGURE came first (§2)
        ctx.outputs = [SignalSpec.from_wire(s) for s in c["outputs"]]
        ctx.inputs = [SignalSpec.from_wire(s) for s in c["inputs"]]
        ctx.steps_per_window, ctx.n_windows = c["steps_per_window"], c["n_windows"]
        ctx.connectome = c["connectome"]
        ctx.lag_windows = m = int(c["lag"])
        t0 = time.perf_counter()
        try:
            # direct data (§4.1): whom this node sends which columns, and from whom it receives
            n_out = {s.name: len(s.regions) for s in ctx.outputs}
            # per consumer: (output, the columns it gets, or None for all of them: no copy to make)
            self.links = [(e["to"], [(s["name"], _cols_or_all(s["cols"], n_out.get(s["name"]))) for s in e["signals"]])
                          for e in c["send"]]
            for e in c["send"]:
                self.data.connect(e["to"], e["address"], e.get("key"), e.get("token") or "")
            self.inbox = Inbox(ctx, c["receive"], m, self.data.rejects)
            # the inbox binds now, admitting messages no larger than this run's DATA (§4.1 "Bounded inbox")
            limit = transport.inbox_limit(c["receive"], ctx.steps_per_window,
                                          int((ctx.config.get("coordinator") or {}).get("max_message_bytes")
                                              or self.data.max_bytes))
            self.data.open(limit)
            log.info("%s: data inbox %s open (messages up to %d bytes)", self.name, self.data.address, limit)
            if ctx.resume:
                ckdir = self._resume_files(ctx)
                self.adapter.configure(ctx)
                self.adapter.restore(ckdir, ctx.resume["info"])
                initial: dict = {}    # the coordinator sends the checkpoint's data in flight (§10.1)
                log.info("%s: resumed from the checkpoint of window %d", self.name, ctx.resume["window"])
            else:
                self.adapter.configure(ctx)
                initial = self.adapter.initial_outputs()
            if (ctx.config.get("run") or {}).get("checkpoint") and not self.adapter.can_checkpoint:
                why = getattr(self.adapter, "cannot_checkpoint", lambda: None)()
                raise ValueError(f"run.checkpoint is set, but this node cannot checkpoint"
                                 f"{f': {why}' if why else ''}")
        except Exception as e:
            self._fail(msg, e, "resuming from a checkpoint" if ctx.resume else "building the simulator")
        W = ctx.steps_per_window
        why = check_outputs(ctx.outputs, initial, m * W, allow_missing=True)
        if why:
            self._fail(msg, ValueError(f"bad initial outputs: {why}"), "building the simulator")
        if not ctx.resume:              # (resumed: the coordinator sends the data in flight at the cut)
            for j in range(-m, 0):      # windows -m..-1 (§3): row block j + m of the initial outputs
                rows = slice((j + m) * W, (j + m + 1) * W)
                self._send_data(j, {n: a[rows] for n, a in initial.items()})
        log.info("%s: ready (%d windows of %d steps, lag %d; built in %.2f s)", self.name, ctx.n_windows,
                 ctx.steps_per_window, m, time.perf_counter() - t0)
        self._initial, self._build_s = initial, time.perf_counter() - t0

    def _send_data(self, window: int, outputs: dict) -> None:
        """DATA of `window` to every consumer: the columns each needs (§4.1). Sent even when
        empty (an initial window without state), so the consumer knows the window is complete."""
        for consumer, sigs in self.links:
            self.data.send(consumer, window, {n: outputs[n] if cols is None else
                                              select_events(outputs[n], cols) if is_event(n) else
                                              np.ascontiguousarray(outputs[n][:, cols])
                                              for n, cols in sigs if n in outputs}, while_blocked=self._check_dialog)

    def _check_dialog(self) -> None:
        """While a send waits for a consumer's connection: an ABORT (the consumer died, and the
        coordinator says so) or a lost coordinator ends the wait; anything else is kept for later."""
        if self.hb.lost.is_set():
            raise CoordinatorLost(f"coordinator at {self.address} stopped answering heartbeats{self.hb.why}")
        while self.ch.sock.poll(0):
            msg = self.ch.recv(0)
            if msg is None:
                continue
            self.hb.heard()
            _raise_if_ended(msg)
            self.held.append(msg)

    def _resume_files(self, ctx: RunContext):
        """Verify this node's checkpoint files and cut its results files back to the checkpoint."""
        from pathlib import Path
        from cosim.runtime import checkpoint as ck
        assert ctx.resume is not None
        if not ctx.results_dir:
            raise ValueError("a resumed node needs its results folder (--out)")
        base = Path(ctx.results_dir)
        info = ctx.resume["info"]
        ckdir = base / ctx.resume["dir"]
        for name in info["files"]:
            if ck.sha256_file(ckdir / name) != info["sha256"].get(name):
                raise ValueError(f"checkpoint file {ckdir / name} does not match its checksum")
        for rel, rows in (info.get("rows") or {}).items():
            ck.truncate_h5(base / rel, rows)
        return ckdir

    def checkpoint(self, msg: Message) -> None:
        """CHECKPOINT (§10.1): between windows; the adapter writes its state, we answer with the
        files' checksums and the rows of its results files."""
        assert self.ctx is not None and self.adapter is not None
        from pathlib import Path
        from cosim.runtime import checkpoint as ck
        k = msg.content["window"]
        try:
            if not self.adapter.can_checkpoint:
                raise ValueError(f"{type(self.adapter).__name__} cannot checkpoint")
            if k != self.window:
                raise ValueError(f"CHECKPOINT of window {k}, but the last window computed is {self.window}")
            ckdir = Path(self.ctx.results_dir or ".") / msg.content["dir"]
            ckdir.mkdir(parents=True, exist_ok=True)
            info = self.adapter.checkpoint(ckdir)
            files = [str(f) for f in info["files"]]
            content = {"window": k, "files": files, "sha256": {f: ck.sha256_file(ckdir / f) for f in files},
                       "rows": info.get("rows") or {}, "info": {x: v for x, v in info.items() if x not in ("files", "rows")}}
        except Exception as e:
            self._fail(msg, e, f"checkpoint of window {k}")
        self.ch.send(Message(T.CHECKPOINTED, content, node=self.name, parent_id=msg.msg_id))

    def windows(self) -> dict:
        """Windows as granted (RUN) and as their data arrives (§7): window k starts as soon as RUN
        covers it and DATA of window k - m came from every producer."""
        ctx, inbox, adapter = self.ctx, self.inbox, self.adapter
        assert ctx is not None and inbox is not None and adapter is not None    # after PREPARE
        K, W = ctx.n_windows, ctx.steps_per_window
        assert K is not None
        k = int(ctx.resume["window"]) + 1 if ctx.resume else 0
        until = -1
        sent = self.sent                # STEP_DONEs the coordinator has not acknowledged (resent if asked, §8)
        poller = zmq.Poller()
        poller.register(self.ch.sock, zmq.POLLIN)
        poller.register(self.data.inbox, zmq.POLLIN)
        t_wait = time.perf_counter()
        t_end = None                    # when the previous window ended here (its cycle_s)
        while True:
            # ---- wait: for the grant and the inputs of window k, or END/CHECKPOINT when not granted
            while not (k < K and k <= until and inbox.complete(k)):
                if self.hb.lost.is_set():
                    raise CoordinatorLost(f"coordinator at {self.address} stopped answering heartbeats{self.hb.why}")
                if self.copies and (k >= K or k > until or self.copies.due()):
                    self._send_copies()         # the coordinator needs them to grant, checkpoint or end
                if (self.data.drain(inbox.put) and k <= until and inbox.complete(k) and not self.held
                        and not self.ch.sock.get(zmq.EVENTS) & zmq.POLLIN):
                    break             # the common case: the inputs came while this node computed, nothing else did
                self.hb.status = {"done": k - 1, "waiting": True, "until": until,
                                  "missing": inbox.missing(k) if k < K else []}
                timeout_ms = 0 if self.held else min(200, int(self.copies.seconds_left() * 1000) + 1)
                ready = dict(poller.poll(timeout_ms))
                if self.data.inbox in ready:
                    self.data.drain(inbox.put)
                if self.held:                   # read while a send waited (_check_dialog)
                    msg = self.held.popleft()
                elif self.ch.sock in ready:
                    got = self.ch.recv(0)
                    if got is None:
                        continue
                    msg = got
                    self.hb.heard()
                else:
                    continue
                if msg.type == T.RUN:
                    until = max(until, int(msg.content["until"]))
                    for old in list(sent):      # the coordinator missed STEP_DONEs (§8): send them again
                        if old.window >= msg.content["first"]:
                            log.warning("%s: resending STEP_DONE of window %d", self.name, old.window)
                            self.ch.send(old)
                elif msg.type == T.DATA:          # on the dialog: the coordinator's copy (§8)
                    inbox.put(msg, trusted=True)
                elif msg.type == T.END:
                    return adapter.finish(None)
                elif msg.type == T.CHECKPOINT:
                    self.hb.status = {"done": k - 1, "waiting": False}
                    self.checkpoint(msg)
                    t_wait = time.perf_counter()
                else:
                    _raise_if_ended(msg)
                    log.warning("%s: ignoring unexpected %s while running", self.name, msg.type.value)
            # ---- compute window k
            self.hb.status = {"done": k - 1, "waiting": False}
            inputs, bad = inbox.take(k)
            if bad:
                producer, why = bad
                self._send_copies()
                self._send_best_effort(Message(T.ERROR, {"error": "BadInput", "message": why, "producer": producer},
                                               node=self.name, window=k), self.hb.timeout_ms)
                raise NodeFailed(f"node {self.name!r}: bad input from {producer!r} for window {k}: {why}")
            # before window 0 the node waits for the slowest node's setup: that is not lockstep waiting
            wait_s = time.perf_counter() - t_wait if k > 0 else 0.0
            self.window = k
            if transport.trace is not None:
                transport.trace(self.name, "begin", "step", k)
            t0 = time.perf_counter()
            try:
                outputs = adapter.step(k, inputs)
                bad_out = check_outputs(ctx.outputs, outputs, W) or self._check_events(outputs)
                if bad_out:
                    raise ValueError(f"bad outputs: {bad_out}")
            except Exception as e:
                self._fail(Message(T.RUN, {}, window=k), e, f"window {k}")
            compute_s = time.perf_counter() - t0
            if transport.trace is not None:
                transport.trace(self.name, "end", "step", k)
            self.data.last_encode_s = 0.0
            self._send_data(k, outputs)            # consumers first: they are waiting for it
            if transport.trace is not None:
                transport.trace(self.name, "end", "window", k)
            timing = {"compute_s": compute_s, "wait_s": wait_s, "decode_s": self.data.decode_s,
                      "encode_s": self.data.last_encode_s}
            self.data.decode_s = 0.0
            part = getattr(self.adapter, "window_timing", None)
            if part is not None:
                timing.update(part())
            try:
                adapter.after_window()     # e.g. recording: off the critical path (§4.1)
            except Exception as e:
                self._fail(Message(T.RUN, {}, window=k), e, f"window {k} (after it)")
            t_wait = time.perf_counter()
            # this node's cycle: end of its window k-1 to end of window k (the coordinator's
            # window wall time, now that copies arrive in batches)
            timing["cycle_s"] = t_wait - (t_end if t_end is not None else t0)
            t_end = t_wait
            with self._copies_lock:
                self.copies.add(k, outputs, timing)
            k += 1
            if self.copies.due() or k >= K or k > until:
                self._send_copies()
                while sent and (j := sent[0].window) is not None and j <= self.hb.acked:   # acknowledged: never asked for again
                    sent.popleft()

    def _check_events(self, outputs: dict) -> str | None:
        """Event outputs (``spikes/*``, §4.2): each present, a valid (n, 3) block of its regions."""
        assert self.ctx is not None
        span = self.ctx.steps_per_window * self.ctx.tvb_dt_ms
        for spec in self.ctx.outputs:
            if is_event(spec.name):
                if spec.name not in outputs:
                    return f"missing output {spec.name!r}"
                why = check_events(outputs[spec.name], len(spec.regions), span)
                if why:
                    return f"output {spec.name!r} {why}"
        return None

    def _send_copies(self) -> None:
        """The STEP_DONE copies of the windows completed since the last batch (§4.1)."""
        with self._copies_lock:
            done = self.copies.take()
            if done is not None:
                self.ch.send(done)
                self.sent.append(done)

    def _late_copies(self, ch: Channel) -> None:
        """Called by the heartbeat thread on its own connection: while the main thread computes a
        window, a batch that is due leaves from here (§4.1), so a window that hangs (or takes long)
        does not hold back the coordinator's record of the windows before it."""
        if self.hb.status.get("waiting") is not False or not self.copies.due():
            return
        if not self._copies_lock.acquire(blocking=False):
            return
        try:
            done = self.copies.take()
            if done is not None:
                try:
                    ch.send(done)
                finally:        # sent or not: kept until acknowledged, and resent when asked (§8)
                    self.sent.append(done)
        finally:
            self._copies_lock.release()

    def _fail(self, parent: Message, exc: Exception, doing: str):
        from cosim.runtime.store import os_reason
        try:            # the windows completed before the failure are recorded (results up to it)
            self._send_copies()
        except Exception:  # noqa: BLE001  (the failure itself is what must be told)
            log.debug("%s: could not send the last copies", self.name, exc_info=True)
        reason = f"{type(exc).__name__}: {os_reason(exc)}"   # e.g. "No space left on device", not HDF5's driver text
        log.debug("%s: failure while %s", self.name, doing, exc_info=True)
        # adapters raise ValueError for a configuration they cannot run (regions out of range, a
        # missing file, a dt they cannot use): during setup that is the config's fault, not the node's
        kind = "ConfigRejected" if self.window < 0 and isinstance(exc, ValueError) else "NodeFailure"
        if kind == "NodeFailure":    # unexpected: the whole traceback goes to the log, the line says where
            log.error("%s: failure while %s", self.name, doing, exc_info=exc)
            reason += f" ({traceback_note()})"
        else:
            log.debug("%s: failure while %s", self.name, doing, exc_info=True)
        self._send_best_effort(Message(T.ERROR, {"error": kind, "message": f"{doing}: {reason}"},
                                       node=self.name, window=parent.window, parent_id=parent.msg_id), self.hb.timeout_ms)
        raise NodeFailed(f"node {self.name!r} failed while {doing}: {reason}") from exc

    # ------------------------------------------------------------------ whole run
    def run(self) -> dict:
        """Run the node to the end. Returns the adapter's summary; raises on failure."""
        aborted: str | None = None
        try:
            with self.startup.active():
                self.configure(self.register())
                with self.startup.phase("setup wait"):       # the other nodes' configure, the plan
                    prep = self._wait({T.PREPARE}, self.setup_timeout_ms, "PREPARE")
                self.prepare(prep)
            summary = self.windows()
            if self.data.rejects.total():     # DATA dropped (forged, strangers'): reported (§4.1)
                summary = {**(summary or {}), "rejected_data": dict(self.data.rejects.counts)}
            self._finish(_plain(summary))
            where = (summary or {}).get("results") if isinstance(summary, dict) else None
            log.info("%s: finished %d windows; results in %s", self.name, self.window + 1,
                     where or (self.ctx.results_dir if self.ctx is not None else None) or "(none written)")
            return summary
        except CoordinatorLost as e:
            aborted = f"{type(e).__name__}: {e}".splitlines()[0]
            if self.ctx is not None:
                # best effort (§7): a coordinator that was only stalled reads this when it runs again, and
                # then knows this node left because of the stall, not by a fault of its own
                self._send_best_effort(Message(T.ERROR, {"error": "CoordinatorLost", "message": str(e)[:2000]},
                                               node=self.name, window=self.window))
            raise
        except RemoteError as e:
            aborted = f"{type(e).__name__}: {e}".splitlines()[0]
            if self.ctx is not None:
                # registered: the coordinator refused one of our messages and we stop here; say so at
                # once, with the reason, rather than leaving it to notice a silent node seconds later
                self._send_best_effort(Message(T.ERROR, {"error": "NodeFailure", "message": f"the coordinator refused "
                                               f"this node's message ({e.kind}: {e.remote_message})"[:2000]},
                                               node=self.name, window=self.window), self.hb.timeout_ms)
            raise
        except RunAborted as e:
            aborted = f"{type(e).__name__}: {e}".splitlines()[0]
            try:            # §7: the copies of completed windows not sent yet (batches), for the record
                self._send_copies()
            except Exception:  # noqa: BLE001  (best effort: the run has ended)
                log.debug("%s: could not send the last copies after ABORT", self.name, exc_info=True)
            raise
        except BaseException as e:
            aborted = f"{type(e).__name__}: {e}".splitlines()[0]
            raise
        finally:
            if aborted is not None and self.adapter is not None:
                try:
                    self.adapter.finish(aborted)
                except Exception:  # keep the original error; results are flushed per window anyway
                    log.exception("%s: could not finish results after: %s", self.name, aborted)
            self.hb.stop()
            if self.hb.is_alive():     # let it leave its poll before the sockets go (no traceback at exit)
                self.hb.join(timeout=2)
            self.handshake.close()
            self.ch.close()
            self.data.close()
            if self.echo is not None:
                self.echo.close()


def _raise_if_ended(msg: Message) -> None:
    """ABORT and ERROR from the coordinator end this node, whatever it was waiting for."""
    if msg.type == T.ABORT:
        raise RunAborted(msg.content["reason"])
    if msg.type == T.ERROR:
        raise RemoteError(msg.content["error"], msg.content["message"])


class Inbox:
    """DATA received, by window and producer, until the window that consumes it starts (§4.1).

    Window k consumes the DATA of window k - m (m = the lag) from every producer in
    PREPARE.receive; each producer's blocks fill their columns of this node's inputs."""

    def __init__(self, ctx: RunContext, receive: list[dict], lag: int, rejects=None):
        import hmac
        self._same = hmac.compare_digest
        self.lag, self.W, self.K = lag, ctx.steps_per_window, ctx.n_windows
        self.span_ms = ctx.steps_per_window * ctx.tvb_dt_ms        # a window's length: event times lie in it
        self.rejects = rejects if rejects is not None else transport.RejectCounter(f"{ctx.node_name} data")
        self.tokens = {e["from"]: str(e.get("token") or "") for e in receive}
        self.specs = {s.name: s for s in ctx.inputs}
        # per producer: (input, its columns, whether they are the whole input in order: no copy)
        self.parts = {e["from"]: [(s["name"], np.asarray(s["cols"], dtype=np.int64),
                                   _cols_or_all(s["cols"], len(self.specs[s["name"]].regions)) is None)
                                  for s in e["signals"]]
                      for e in receive}
        self.got: dict[int, dict[str, dict]] = {}
        self.taken = -10**9             # DATA of windows below this was consumed: a late copy is a duplicate
        self.resent: set[tuple[int, str]] = set()     # (window, producer) DATA that came from the coordinator

    def put(self, msg: Message, key: str | None = None, trusted: bool = False) -> None:
        """Keep a DATA for its window (§4.1). From the inbox it must name a producer, carry that
        link's token, be of a window of the run and (CURVE: `key`) come from that producer's key;
        else it is dropped and counted, never blamed on the producer it names. `trusted`: the
        coordinator's copy, on the dialog."""
        j = msg.window
        if msg.node not in self.parts:
            self.rejects.reject("DataNotAProducer", f"DATA for window {j} names {msg.node!r}, not a producer "
                                f"of this node", "a data connection")
            return
        if not trusted:
            token = msg.content.get("token")
            if not isinstance(token, str) or not self._same(token.encode(), self.tokens[msg.node].encode()):
                self.rejects.reject("DataBadToken", f"DATA for window {j} under the name {msg.node!r} without "
                                    f"that link's token (forged, or a stale process)", "a data connection")
                return
            if key is not None and key != msg.node:
                self.rejects.reject("DataWrongKey", f"DATA under the name {msg.node!r} from the CURVE key of "
                                    f"{key!r}", key)
                return
        if not isinstance(j, int) or not -self.lag <= j < self.K:
            self.rejects.reject("DataWindowOutOfRange", f"DATA from {msg.node!r} for window {j}: the run has "
                                f"windows {-self.lag}..{self.K - 1}", msg.node)
            return
        if j < self.taken or msg.node in self.got.get(j, {}):
            return                        # a copy the coordinator resent, or a repeat: keep the first
        self.got.setdefault(j, {})[msg.node] = msg.content["signals"]
        if trusted:
            self.resent.add((j, msg.node))

    def complete(self, k: int) -> bool:
        have = self.got.get(k - self.lag, {})
        return all(p in have for p in self.parts)

    def missing(self, k: int) -> list[str]:
        have = self.got.get(k - self.lag, {})
        return [p for p in self.parts if p not in have]

    def take(self, k: int) -> tuple[dict, tuple[str, str] | None]:
        """Inputs of window k, or (partial, (producer, reason)) when a producer sent a bad block."""
        j = k - self.lag
        have = self.got.pop(j, {})
        resent = {p for i, p in self.resent if i == j}
        self.resent = {x for x in self.resent if x[0] > j}
        self.taken = k + 1 - self.lag
        W = self.W
        out: dict[str, np.ndarray] = {}
        for producer, sigs in self.parts.items():
            blocks = have.get(producer, {})
            for name, cols, whole in sigs:
                b = blocks.get(name)
                if b is None:
                    if j >= 0:            # only initial windows may leave a signal out (keep your own)
                        if is_event(name) and producer in resent:
                            return out, (producer, f"the DATA of window {j} was lost and the coordinator's resend "
                                                   f"lacks {name!r} (its copy had none: PROTOCOL.md §4.2)")
                        return out, (producer, f"DATA of window {j} lacks {name!r}")
                    continue
                if is_event(name):                         # (n, 3) events of this producer's columns (§4.2)
                    why = check_events(b, len(cols), self.span_ms)
                    if why:
                        return out, (producer, f"{name!r} of window {j} {why}")
                    if not whole:
                        b = b.copy()
                        b[:, 0] = cols[b[:, 0].astype(np.int64)]
                    out[name] = b if name not in out else np.concatenate([out[name], b])
                    continue
                if getattr(b, "dtype", None) != np.float64:      # the same rule as STEP_DONE's (§4.1, §7)
                    return out, (producer, f"{name!r} of window {j} is {getattr(b, 'dtype', type(b).__name__)}, "
                                           f"not float64")
                if b.shape != (W, len(cols)):
                    return out, (producer, f"{name!r} of window {j} has shape {b.shape}, expected {(W, len(cols))}")
                if not values_ok(b):
                    return out, (producer, f"{name!r} of window {j} holds NaN, Inf or a value beyond ±{SIGNAL_BOUND:g}")
                if whole:
                    out[name] = b                          # the whole input from one producer: no copy
                else:
                    arr = out.get(name)
                    if arr is None:
                        arr = out[name] = np.zeros((W, len(self.specs[name].regions)))
                    arr[:, cols] = b
        return out, None


def _cols_or_all(cols: list, n: int | None) -> np.ndarray | None:
    """The columns of an output a consumer gets, or None when it gets them all, in order."""
    a = np.asarray(cols, dtype=np.int64)
    return None if n is not None and len(a) == n and np.array_equal(a, np.arange(n)) else a


def traceback_note() -> str:
    """Where this process's log (and so a traceback) is: `cosim run` sets COSIM_LOG_FILE."""
    import os
    where = os.environ.get("COSIM_LOG_FILE")
    return f"full traceback in {where}" if where else "full traceback in this node's log (its stderr)"


def _plain(d: dict) -> dict:
    """Summaries travel as plain msgpack data."""
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[str(k)] = v
        elif hasattr(v, "item") and getattr(v, "size", 2) == 1:
            out[str(k)] = v.item()
        elif isinstance(v, dict):
            out[str(k)] = _plain(v)
        else:
            out[str(k)] = str(v)
    return out


def _pid() -> int:
    import os
    return os.getpid()


def _host() -> str:
    import socket
    return socket.gethostname()
