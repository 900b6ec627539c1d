"""The node side of the lockstep dialog (PROTOCOL.md §7), shared by every node service.

`NodeRuntime.run()` registers with the coordinator, builds the adapter from the config it is
handed, answers PREPARE with READY, then STEP after STEP until END or ABORT. The adapter does
the simulation; this module does only the dialog, timing and failure handling.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from cosim.adapter import NodeAdapter, RunContext, SignalSpec
from cosim.transport import Channel, CoordinatorLost, Heartbeat, PeerTimeout, RemoteError, new_token, routing_id
from proto.messages import PROTOCOL_VERSION, Message, MessageType as T

log = logging.getLogger(__name__)


class NodeFailed(RuntimeError):
    """This node's own simulation failed; the coordinator was told."""


class RunAborted(RuntimeError):
    """The coordinator aborted the run (another node failed, or a config error)."""


class NodeRuntime:
    """One node process's dialog with the coordinator.

    `make_adapter(config_dict)` builds the adapter once the run config arrives, so a spiking
    node can learn its backend from the coordinator.
    """

    def __init__(self, name: str, role: str, address: str, make_adapter: Callable[[dict], NodeAdapter],
                 backend: str = "", results_dir: str | None = None, curve=None,
                 register_timeout_ms: int = 30_000, setup_timeout_ms: int = 600_000, require_resume: bool = False):
        self.name, self.role, self.address, self.backend = name, role, address, backend
        self.make_adapter, self.results_override = make_adapter, results_dir
        self.curve = curve
        self.register_timeout_ms, self.setup_timeout_ms = register_timeout_ms, setup_timeout_ms
        self.require_resume = require_resume     # `--resume`: refuse a coordinator that starts afresh
        self.token = new_token()
        self.zctx = zmq.Context.instance()
        ident = routing_id(name, self.token)
        self.ch = Channel(self.zctx, address, ident, curve)
        self.hb = Heartbeat(self.zctx, address, ident, name, curve)
        self.adapter: NodeAdapter | None = None
        self.ctx: RunContext | None = None
        self.window = -1

    # ------------------------------------------------------------------ dialog helpers
    def _send(self, type_: T, content: dict, window: int | None = None) -> None:
        self.ch.send(Message(type_, content, node=self.name, window=window))

    def _wait(self, wanted: set[T], timeout_ms: int, what: str) -> Message:
        """Next message of a wanted type; ABORT/ERROR raise; heartbeat loss raises."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.hb.lost.is_set():
                raise CoordinatorLost(f"coordinator at {self.address} stopped answering heartbeats")
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout(f"no {what} from the coordinator at {self.address} within {timeout_ms} ms")
            msg = self.ch.recv(int(min(left, 0.2) * 1000))
            if msg is None:
                continue
            self.hb.heard()
            if msg.type in wanted:
                return msg
            if msg.type == T.ABORT:
                raise RunAborted(msg.content["reason"])
            if msg.type == T.ERROR:
                raise RemoteError(msg.content["error"], msg.content["message"])
            log.warning("%s: ignoring unexpected %s while waiting for %s", self.name, msg.type.value, what)

    # ------------------------------------------------------------------ phases
    def register(self) -> Message:
        self._send(T.REGISTER, {"name": self.name, "role": self.role, "backend": self.backend,
                                "protocol": PROTOCOL_VERSION, "pid": _pid(), "host": _host(),
                                "token": self.token})
        self.hb.start()
        log.info("%s: registering with %s", self.name, self.address)
        return self._wait({T.CONFIGURE}, self.register_timeout_ms, "CONFIGURE (is the coordinator running?)")

    def configure(self, msg: Message) -> None:
        c = msg.content
        self.hb.set_timing(c["heartbeat_interval_ms"], c["heartbeat_timeout_ms"])
        self.ctx = RunContext(config=c["config"], node_name=self.name, regions=tuple(c["regions"]),
                              tvb_dt_ms=float(c["tvb_dt_ms"]), tick_ms=float(c["tick_ms"]),
                              results_dir=self.results_override or c.get("results_dir"),
                              resume=c.get("resume"))
        try:
            if self.require_resume and not self.ctx.resume:
                raise ValueError("started with --resume, but the coordinator starts a new run")
            self.adapter = self.make_adapter(c["config"])
            # an adapter MAY keep a `setup_status` dict it updates during setup (e.g. {"setup": "compiling"}):
            # the heartbeat thread sends it, so the coordinator pauses the setup clock (§8)
            self.hb.status = getattr(self.adapter, "setup_status", {})
            if self.ctx.resume and not self.adapter.can_checkpoint:
                raise ValueError(f"{type(self.adapter).__name__} cannot restore a checkpoint")
            requires = self.adapter.requires(self.ctx)
            content = {"requires": [s.as_wire() for s in requires]}
            if self.role == "tvb":
                content["connectome"] = self.adapter.connectome()
        except Exception as e:
            self._fail(msg, e, "configuring")
        self._send(T.CONFIGURED, content)
        warm_up = getattr(self.adapter, "warm_up", None)
        if warm_up is not None:      # overlaps e.g. importing NEURON with the other nodes' setup
            t0 = time.perf_counter()
            try:
                warm_up()
            except Exception as e:
                log.warning("%s: warm-up failed (configure will retry): %s", self.name, e)
            log.info("%s: warmed up in %.2f s", self.name, time.perf_counter() - t0)

    def prepare(self, msg: Message) -> None:
        c = msg.content
        ctx = self.ctx
        ctx.outputs = [SignalSpec.from_wire(s) for s in c["outputs"]]
        ctx.inputs = [SignalSpec.from_wire(s) for s in c["inputs"]]
        ctx.steps_per_window, ctx.n_windows = c["steps_per_window"], c["n_windows"]
        ctx.connectome = c["connectome"]
        t0 = time.perf_counter()
        try:
            if ctx.resume:
                ckdir = self._resume_files(ctx)
                self.adapter.configure(ctx)
                self.adapter.restore(ckdir, ctx.resume["info"])
                initial = {}          # the coordinator routes the checkpoint's outputs of window k
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
        log.info("%s: ready (%d windows of %d steps; built in %.2f s)", self.name, ctx.n_windows,
                 ctx.steps_per_window, time.perf_counter() - t0)
        self._send(T.READY, {"initial": initial, "info": {"build_s": time.perf_counter() - t0}})

    def _resume_files(self, ctx: RunContext):
        """Verify this node's checkpoint files and cut its results files back to the checkpoint."""
        from pathlib import Path
        from cosim import checkpoint as ck
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
        from pathlib import Path
        from cosim import checkpoint as ck
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
        wait_s = 0.0
        t_wait = time.perf_counter()
        done, last_done = -1, None      # last window answered, and the answer (resent if the coordinator asks)
        if self.ctx.resume:             # a resumed run starts after the checkpoint's window (§8 needs `done`)
            done = int(self.ctx.resume["window"])
        while True:
            self.hb.status = {"done": done, "waiting": True}   # lets the coordinator see a lost message (§8)
            msg = self._wait({T.STEP, T.END, T.CHECKPOINT}, 10**9, "STEP")
            if msg.type == T.END:
                return self.adapter.finish(None)
            if msg.type == T.CHECKPOINT:
                self.hb.status = {"done": done, "waiting": False}
                self.checkpoint(msg)
                t_wait = time.perf_counter()
                continue
            if msg.window <= done:      # a repeated STEP: our STEP_DONE was lost (a reconnect); never recompute
                if msg.window == done and last_done is not None:
                    log.warning("%s: STEP %d repeated by the coordinator; resending its STEP_DONE", self.name, done)
                    self.ch.send(last_done)
                continue
            self.hb.status = {"done": done, "waiting": False}
            # before window 0 the node waits for the slowest node's setup: that is not lockstep waiting
            wait_s = time.perf_counter() - t_wait if msg.window > 0 else 0.0
            self.window = msg.window
            t0 = time.perf_counter()
            try:
                outputs = self.adapter.step(msg.window, msg.content["inputs"])
            except Exception as e:
                self._fail(msg, e, f"window {msg.window}")
            compute_s = time.perf_counter() - t0
            # wait_s includes decoding this STEP (decode_s); encode_s is the previous STEP_DONE's
            timing = {"compute_s": compute_s, "wait_s": wait_s, "decode_s": self.ch.last_decode_s,
                      "encode_s": self.ch.last_encode_s}
            part = getattr(self.adapter, "window_timing", None)
            if part is not None:
                timing.update(part())
            last_done = Message(T.STEP_DONE, {"outputs": outputs, "timing": timing},
                                 node=self.name, window=msg.window, parent_id=msg.msg_id)
            self.ch.send(last_done)
            done = msg.window
            t_wait = time.perf_counter()

    def _fail(self, parent: Message, exc: Exception, doing: str):
        from cosim.results import os_reason
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
        self.ch.send(Message(T.ERROR, {"error": kind, "message": f"{doing}: {reason}"},
                             node=self.name, window=parent.window, parent_id=parent.msg_id))
        raise NodeFailed(f"node {self.name!r} failed while {doing}: {reason}") from exc

    # ------------------------------------------------------------------ whole run
    def run(self) -> dict:
        """Run the node to the end. Returns the adapter's summary; raises on failure."""
        aborted: str | None = None
        try:
            self.configure(self.register())
            self.prepare(self._wait({T.PREPARE}, self.setup_timeout_ms, "PREPARE"))
            summary = self.windows()
            self._send(T.FINISHED, {"summary": _plain(summary)})
            log.info("%s: finished", self.name)
            return summary
        except RemoteError as e:
            aborted = f"{type(e).__name__}: {e}".splitlines()[0]
            if self.ctx is not None:
                # registered: the coordinator refused one of our messages and we stop here; say so at
                # once, with the reason, rather than leaving it to notice a silent node seconds later
                self._send(T.ERROR, {"error": "NodeFailure", "message": f"the coordinator refused this node's "
                                     f"message ({e.kind}: {e.remote_message})"[:2000]}, window=self.window)
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
            self.ch.close()


def traceback_note() -> str:
    """Where this process's log (and so a traceback) is: `cosim run` sets COSIM_LOG_FILE."""
    import os
    where = os.environ.get("COSIM_LOG_FILE")
    return f"full traceback in {where}" if where else "full traceback in this node's log (its stderr)"


def _plain(d: dict) -> dict:
    """Summaries travel as plain msgpack data."""
    out = {}
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
