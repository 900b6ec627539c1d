"""ReferenceAdapter: the mean-field oracle standing in for a spiking node (backend "reference").

It builds its OWN full ``WindowedTVB`` from the same run config (same seed, hence the same
random initial history and noise stream), simulates its regions ``ctx.regions`` with TVB's own
numba dfun, sparse ``reduceat`` coupling and float32 history, and treats every other region as
a proxy overwritten each window from the other nodes' ``state/S_e`` (+ ``state/S_i``) of window
k-m (a lag of m = ``ctx.lag_windows`` windows; *per-source mode*, PROTOCOL.md §4): their history
of steps ``(k-m)*W+1 .. (k-m+1)*W`` before window k. Under the timing rule (``m*W <= D + 1``)
its regions then reproduce TVB alone bit for bit, and so does the TVB node that couples to them.

Outputs: ``state/{S_e,S_i,R_e,R_i}`` of its regions for the window just simulated; initial
outputs: the last ``m*W`` steps of the initial history (none if the history is shorter).
Results: ``<results_dir>/<node_name>.h5`` (raw values of its own regions only).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals, lag_of
from cosim.services.reference_node.config import ReferenceParams
from cosim.services.tvb_node.adapter import (check_dt, parse_sections, restore_tvb_copy,
                                       state_input_blocks, units_of, validate_regions)
from cosim.services.tvb_node.tvb_file import H5Appender
from cosim.config.timing import crossing_min_delay_steps
from cosim.services.tvb_node.windowed import WindowedTVB, WindowRecord

log = logging.getLogger(__name__)


class ReferenceAdapter(NodeAdapter):
    role = "spiking"
    can_checkpoint = True

    def __init__(self, params: ReferenceParams | dict | None = None, *, flush_every: int = 50):
        self.params = params if isinstance(params, ReferenceParams) or params is None \
            else ReferenceParams.model_validate(params)      # None: from the run config (requires())
        self.flush_every = flush_every
        self.tvb: WindowedTVB | None = None
        self.ctx: RunContext | None = None
        self.out: H5Appender | None = None
        self._k_next = 0
        self._compute_s = 0.0

    def _params_from(self, ctx: RunContext) -> ReferenceParams:
        if self.params is not None:
            return self.params
        return ctx.node_params(ReferenceParams)

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        self.params = self._params_from(ctx)
        run, tvb = parse_sections(ctx.config)
        check_dt(tvb, ctx.tvb_dt_ms, f"reference node {ctx.node_name!r}")
        if self.params.dt_ms is not None and not math.isclose(self.params.dt_ms, tvb.dt_ms, rel_tol=1e-12):
            raise ValueError(f"reference node {ctx.node_name!r}: params.dt_ms {self.params.dt_ms} must equal "
                             f"tvb.dt_ms {tvb.dt_ms}")
        if self.tvb is None:
            self.run_cfg, self.tvb_cfg = run, tvb
            self.tvb = WindowedTVB(tvb, run.seed, self._region_params(ctx.regions), run.duration_ms)
        n = self.tvb.n_regions
        own = validate_regions(ctx.regions, n, f"reference node {ctx.node_name!r} regions")
        if own.size == 0:
            raise ValueError(f"reference node {ctx.node_name!r} owns no region")
        self.own = own
        mask = np.ones(n, dtype=bool)
        mask[own] = False
        self.others = np.flatnonzero(mask)
        others = tuple(int(r) for r in self.others)
        if self.tvb.legacy:
            return [SignalSpec("state/S_e", others)]
        return [SignalSpec(f"state/{v}", others) for v in self.tvb.state_vars]   # TVB's own model: its full state

    def _region_params(self, regions) -> dict[str, dict[int, float]] | None:
        assert self.params is not None       # set by requires()
        if not self.params.model:
            return None
        return {k: {int(r): float(v) for r in regions} for k, v in self.params.model.items()}

    def configure(self, ctx: RunContext) -> None:
        if self.tvb is None:
            self.requires(ctx)
        self.ctx, w = ctx, self.tvb
        assert w is not None                  # requires() built it
        W = self.W = int(ctx.steps_per_window)
        if W < 1:
            raise ValueError(f"steps_per_window must be >= 1, got {W}")
        m = self.m = lag_of(ctx)
        D = crossing_min_delay_steps(w.weights, w.idelays, [set(self.own.tolist())])
        if D is not None and m * W > D + 1:
            lagged = "" if m == 1 else f" with a lag of {m} windows ({m * W} steps)"
            raise ValueError(f"window of {W} steps{lagged} is not causal for regions {self.own.tolist()}: "
                             f"shortest delay to other regions is {D} steps")
        self.in_cols: dict[str, np.ndarray] = {}
        for s in ctx.inputs:
            kind, _, var = s.name.partition("/")
            if kind != "state" or var not in (("S_e", "S_i") if w.legacy else w.state_vars):
                raise ValueError(f"reference node cannot consume {s.name!r}")
            r = validate_regions(s.regions, w.n_regions, s.name)
            if np.isin(r, self.own).any():
                raise ValueError(f"input {s.name} covers the node's own regions")
            self.in_cols[var] = r
        if w.legacy and "S_i" in self.in_cols and not np.array_equal(np.sort(self.in_cols["S_i"]), np.sort(self.in_cols["S_e"])):
            raise ValueError("state/S_i input must cover the same regions as state/S_e")
        self.out_specs = []
        for s in ctx.outputs:
            kind, _, var = s.name.partition("/")
            r = validate_regions(s.regions, w.n_regions, s.name)
            if kind != "state" or var not in w.names:
                raise ValueError(f"reference node cannot produce {s.name!r}")
            if not np.isin(r, self.own).all():
                raise ValueError(f"output {s.name} asks for regions {r[~np.isin(r, self.own)].tolist()} "
                                 f"not owned by {ctx.node_name!r}")
            self.out_specs.append((s, var, r))
        assert self.params is not None
        if ctx.results_dir and self.params.record:
            self.out = H5Appender(Path(ctx.results_dir) / f"{ctx.node_name}.h5", flush_every=self.flush_every,
                                  resume_windows=None if ctx.resume is None else ctx.resume["window"] + 1, attrs={
                "node": ctx.node_name, "backend": "reference", "regions": self.own.tolist(),
                "region_labels": [w.region_labels[r] for r in self.own], "dt_ms": w.dt,
                "steps_per_window": W, "lag_windows": m, "seed": self.run_cfg.seed,
                "units": json.dumps(units_of(w.names)), "model": type(w.sim.model).__name__})
            self.out.add_group("raw", {v: len(self.own) for v in w.names}, attrs={"units": json.dumps(units_of(w.names))})
        log.info("reference node %s: regions %s, W=%d, lag %d, inputs %s", ctx.node_name, self.own.tolist(), W,
                 m, sorted(self.in_cols))

    def _outputs(self, rec: WindowRecord) -> Signals:
        return {s.name: np.ascontiguousarray(getattr(rec, var)[:, r]) for s, var, r in self.out_specs}

    def initial_outputs(self) -> Signals:
        if self.ctx is None:
            raise RuntimeError("initial_outputs() before configure()")
        n = self.m * self.W            # windows -m .. -1: steps -n+1 .. 0
        assert self.tvb is not None
        if n > self.tvb.n_time:        # initial history is shorter than m windows: keep your own
            return {}
        return self._outputs(self.tvb.initial.tail(n))

    def step(self, window: int, inputs: Signals) -> Signals:
        k = int(window)
        if self.ctx is None:
            raise RuntimeError("step() before configure()")
        w = self.tvb
        assert w is not None
        blocks = state_input_blocks(inputs, self.in_cols, self.W, k, self._k_next, "the other regions", self.m,
                                    "S_e" if w.legacy else w.state_vars[0])
        t0 = time.perf_counter()
        if not w.legacy:
            if blocks:
                cols = self.in_cols[w.state_vars[0]]
                vals = {}
                for v, b in blocks.items():
                    if not np.array_equal(self.in_cols[v], cols):
                        pos = {int(r): i for i, r in enumerate(self.in_cols[v])}
                        b = b[:, [pos[int(r)] for r in cols]]
                    vals[v] = b
                w.overwrite_vars(cols, vals, (k - self.m) * self.W + 1)
        elif "S_e" in blocks:
            s_i = None
            if "S_i" in blocks:
                pos = {int(r): i for i, r in enumerate(self.in_cols["S_i"])}
                s_i = blocks["S_i"][:, [pos[int(r)] for r in self.in_cols["S_e"]]]
            w.overwrite(self.in_cols["S_e"], blocks["S_e"], s_i, (k - self.m) * self.W + 1)
        rec = w.run_window(self.W)
        if self.out is not None:
            self.out.append("raw", rec.steps * w.dt, {v: rec.vars[v][:, self.own] for v in w.names})
            self.out.end_window()
        self._compute_s += time.perf_counter() - t0
        self._k_next = k + 1
        return self._outputs(rec)

    def checkpoint(self, directory) -> dict[str, Any]:
        """Its TVB copy's state (history, current state, noise position) and window counter."""
        from cosim.runtime.checkpoint import save_arrays
        assert self.ctx is not None and self.tvb is not None
        name = f"{self.ctx.node_name}.npz"
        save_arrays(Path(directory) / name, {**{f"tvb_{k}": v for k, v in self.tvb.get_state().items()},
                                             "k_next": np.int64(self._k_next), "lag_windows": np.int64(self.m)})
        rows = {f"{self.ctx.node_name}.h5": self.out.rows()} if self.out is not None else {}
        return {"files": [name], "rows": rows}

    def restore(self, directory, info: dict[str, Any]) -> None:
        assert self.tvb is not None
        _, self._k_next = restore_tvb_copy(self.tvb, directory, info, self.m)

    def finish(self, aborted: str | None = None) -> dict[str, Any]:
        path = None
        if self.out is not None:
            path = str(self.out.path)
            self.out.set_attrs("", {"windows_done": self._k_next})
            self.out.close(aborted is None, aborted)
            self.out = None
        return {"windows": self._k_next, "results": path, "compute_s": round(self._compute_s, 6)}
