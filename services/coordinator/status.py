"""What the run looks like from outside: PUB broadcasts (§6.1), the one-line failure reason,
the status marker next to the results and the summary."""
from __future__ import annotations

import logging

import numpy as np
import zmq

from cosim.errors import RunFailed
from cosim.runtime.store import ResultsWriteError, os_reason
from cosim.proto import codec
from cosim.proto.messages import Message, MessageType as T
from cosim.services.coordinator.state import CoordinatorState

log = logging.getLogger(__name__)


class StatusMixin(CoordinatorState):
    """Broadcasts, failure text, status marker, summary."""

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

    def where(self, name: str, why: str, window: int | None = None) -> str:
        """The one-line reason: node, the window it was in, the last window every node completed."""
        if self.state == "SETUP":
            return f"node '{name}' failed during setup: {why}"
        done = self.window - 1
        t = (done + 1) * self.W * self.tvb_dt_ms
        peer = self.peers.get(name)
        k = window if window is not None else peer.done + 1 if peer is not None else self.window
        during = f"during the checkpoint of window {self.ckpt['window']}" if self.ckpt is not None else f"in window {k}"
        return (f"node '{name}' failed {during} (last completed window {done}, "
                f"t = {t:.1f} ms): {why}")

    def stall_reason(self, name: str) -> str:
        """The one-line reason when nodes left during this coordinator's own stall (§8): it names the coordinator."""
        assert self.stalled is not None
        _, gap = self.stalled
        where = ("during setup" if self.state == "SETUP" else
                 f"in window {self.window} (last completed window {self.window - 1}, "
                 f"t = {self.window * self.W * self.tvb_dt_ms:.1f} ms)")
        return (f"the coordinator stalled for {gap:.1f} s {where} (the process was stopped or starved: SIGSTOP, "
                f"swapping, a debugger); node '{name}' gave up on it after its heartbeat timeout "
                f"({self.cc.heartbeat_timeout_ms} ms)")

    def _flushed(self, windows: int) -> None:
        """Status marker after every flush of coordinator.h5: it says how many windows the file holds."""
        from cosim.runtime.store import write_status
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
        done = self.window - 1          # every window before self.window completed and was recorded
        status = {"completed": self.state == "DONE",
                  "windows_completed": max(done + 1, 0),
                  "windows_planned": getattr(self, "K", None),
                  "simulated_ms": max(done + 1, 0) * getattr(self, "W", 0) * self.tvb_dt_ms,
                  "reason": str(self.failure) if self.failure else "completed",
                  "rejected_messages": dict(self.rejects.counts), "messages_repeated": self.resent,
                  **({"resumed_from_window": self.resume["window"]} if self.resume else {})}
        from cosim.runtime.store import write_status
        if self.record is not None:
            try:
                self.record.rec.close(bool(status["completed"]), status["reason"])
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
        assert self.t_start is not None
        wall = self.t_end - self.t_start
        sim_ms = self.K * self.W * self.tvb_dt_ms
        s = {"windows": self.K, "steps_per_window": self.W, "window_ms": self.W * self.tvb_dt_ms,
             "lookahead": self.lag, "lookahead_reason": self.lag_reason,
             "simulated_ms": sim_ms, "duration_ms": self.cfg.run.duration_ms, "wall_s": wall,
            "windows_per_s": self.K / wall if wall else 0.0,
             "real_time_factor": wall / (sim_ms / 1000), "results_dir": str(self.results_dir),
             "nodes": {n: {k: v for k, v in p.info.items() if k != "startup"} for n, p in self.peers.items()},
             "timing": self.record.timing_summary() if self.record else {}}
        rejected = {n: p.info["summary"]["rejected_data"] for n, p in self.peers.items()
                    if isinstance((p.info.get("summary") or {}).get("rejected_data"), dict)}
        if rejected:            # DATA the nodes dropped (forged, strangers'; §4.1)
            s["rejected_data"] = rejected
        if self.resume:
            s["resumed_from_window"] = self.resume["window"]
        if self.first_window_at is not None:     # where the start-up went, per service (cosim.runtime.startup)
            s["startup"] = {"first_window_at": self.first_window_at, "from": "coordinator",
                            "wall_s": self.first_window_at - self.startup.started_at,
                            "services": {"coordinator": self.startup_report,
                                         **{n: p.info["startup"] for n, p in self.peers.items()
                                            if isinstance(p.info.get("startup"), dict)}}}
        if self.ckpt_costs:
            c = np.array(self.ckpt_costs)
            s["checkpoints"] = {"count": int(c.size), "mean_ms": float(c.mean() * 1e3), "max_ms": float(c.max() * 1e3),
                                "total_s": float(c.sum())}
        return s
