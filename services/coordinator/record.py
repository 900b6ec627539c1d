"""The coordinator's record of a run: every signal exchanged, per-window timings, status.

`<results_dir>/coordinator.h5` (an SWMR cosim.runtime.store.Appender: readable while the run goes on):
  time_ms                       (K·W, 1)  end time of each TVB step
  signals/<producer>/<name>     (K·W, n)  what the producer sent each window; attrs: regions,
                                          window_offset (1 for coupling/*: rows belong to the
                                          window after the one that produced them)
  timing/<node>                 (K, 5)    as the node measured them (NaN if it did not say):
                                          compute_s (its adapter's step), wait_s (idle between
                                          its previous window and this one: waiting for inputs or
                                          the grant), simulate_s (the simulator's integration,
                                          part of compute_s), decode_s (this window's DATA),
                                          encode_s (this window's DATA and STEP_DONE)
  timing/window_wall_s          (K, 1)    wall time per window: the TVB node's cycle (the end of
                                          its window k-1 → the end of window k, STEP_DONE
                                          `cycle_s`; copies arrive in batches, PROTOCOL.md §4.1),
                                          else the coordinator's (window k-1 complete → window k
                                          complete: every STEP_DONE in)
  timing/coordinator_s          (K, 1)    NaN since protocol 3: the coordinator is off the data's
                                          path (it records copies while the nodes go on)
  (cosim.results.breakdown turns these into a per-service breakdown)
`<results_dir>/status_coordinator.json`: completed?, windows completed, reason; rewritten after
every flush while running, so after a kill `windows_completed` is what coordinator.h5 holds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosim.proto.signals import is_event
from cosim.runtime.store import Appender, Column, write_status

TIMING_FIELDS = ("compute_s", "wait_s", "simulate_s", "decode_s", "encode_s")
_NAN = float("nan")


class RunRecord:
    def __init__(self, path: Path, plan, W: int, K: int, dt_ms: float, cfg, nodes: list[str], on_flush=None,
                 resume_windows: int | None = None):
        self.path, self.W, self.dt_ms, self.nodes = Path(path), W, dt_ms, nodes
        layout = {"time_ms": Column(1, W, attrs={"units": "ms"})}
        self.signals = []
        for producer, specs in plan.outputs.items():
            for s in specs:
                if is_event(s.name):      # spikes go node to node only (PROTOCOL.md §4.2)
                    continue
                key = f"signals/{producer}/{s.name}"
                layout[key] = Column(len(s.regions), W, attrs={
                    "regions": list(s.regions), "window_offset": 1 if s.name.startswith("coupling/") else 0})
                self.signals.append((key, producer, s.name))
        for n in nodes:
            layout[f"timing/{n}"] = Column(len(TIMING_FIELDS), 1, attrs={"fields": list(TIMING_FIELDS), "units": "s"})
        layout["timing/window_wall_s"] = Column(1, 1, attrs={"units": "s"})
        layout["timing/coordinator_s"] = Column(1, 1, attrs={"units": "s"})
        self.rec = Appender(self.path, {"steps_per_window": W, "n_windows": K, "tvb_dt_ms": dt_ms,
                                        "config": cfg.model_dump(mode="json")},
                            swmr=True, on_flush=on_flush, resume_windows=resume_windows)
        self.rec.declare(layout)
        self.sums = {n: [0.0] * len(TIMING_FIELDS) for n in nodes}
        self.wall_sum = 0.0
        self.k = 0

    def append(self, k: int, produced: dict, timing: dict, wall_s: float, coordinator_s: float = float("nan")) -> None:
        rows = {"time_ms": ((k * self.W + 1 + np.arange(self.W)) * self.dt_ms)[:, None]}
        for key, producer, name in self.signals:
            rows[key] = produced[producer][name]
        for n in self.nodes:
            tn = timing.get(n) or {}
            vals = [float(tn.get(f, _NAN)) for f in TIMING_FIELDS]
            rows[f"timing/{n}"] = np.array([vals])
            sums = self.sums[n]
            for i, v in enumerate(vals):
                if v == v:          # not NaN
                    sums[i] += v
        rows["timing/window_wall_s"] = np.array([[wall_s]])
        rows["timing/coordinator_s"] = np.array([[coordinator_s]])
        self.wall_sum += wall_s
        self.rec.append(rows)
        self.rec.end_window()
        self.k = k + 1

    def tick(self) -> None:
        self.rec.tick()

    def timing_summary(self) -> dict:
        k = max(self.k, 1)
        out: dict[str, Any] = {n: {f: float(v) / k * 1e3 for f, v in zip(("compute_ms", "wait_ms"), s)}
                               for n, s in self.sums.items()}
        out["window_wall_ms"] = self.wall_sum / k * 1e3
        return out

    def close(self, status: dict) -> None:
        self.rec.close(bool(status.get("completed")), status.get("reason"))
        write_status(self.path.parent, "coordinator", **status)
