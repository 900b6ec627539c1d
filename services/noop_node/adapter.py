"""Nodes that do no simulation: they speak the protocol and return well-formed zeros/echoes.

Used to measure the protocol's own cost (bench/) and to test the coordinator and runtime
without simulators. `NullTVB` serves a synthetic all-to-all connectome whose every delay is
`delay_steps` TVB steps (so the window is `delay_steps`).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals


class NullParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_regions: int = Field(76, ge=2)
    delay_steps: int = Field(16, ge=1)
    connected: bool = Field(True, description="False: no connection between different regions (nothing crosses)")
    step_sleep_ms: float = Field(0.0, ge=0, description="pretend to compute this long per window")
    fail_at_window: int | None = Field(None, description="raise in this window (failure tests)")
    bad_output: Literal["nan", "inf", "huge", "float32"] | None = Field(
        None, description="send this kind of bad value in window bad_output_at_window (blame tests)")
    bad_output_at_window: int = 0
    hang_at_window: int | None = Field(None, description="hang in this window with the GIL released (liveness tests)")
    gil_hold_ms: float = Field(0.0, ge=0, description="hold Python's GIL this long per window, in one C call "
                               "(as NEST's Run does; liveness tests)")


class _Null(NodeAdapter):
    def __init__(self):
        self.ctx: RunContext | None = None

    def configure(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.params = NullParams.model_validate(self._params(ctx))

    def _params(self, ctx: RunContext) -> dict:
        return {}

    def initial_outputs(self) -> Signals:
        return {}

    def step(self, window: int, inputs: Signals) -> Signals:
        p = self.params
        if p.fail_at_window is not None and window == p.fail_at_window:
            raise RuntimeError(f"null node told to fail at window {window}")
        if p.hang_at_window is not None and window == p.hang_at_window:
            import time
            while True:             # like an MPI wait on a dead rank: the GIL is released, nothing ends it
                time.sleep(3600)
        if p.gil_hold_ms:
            import ctypes
            # a PyDLL call keeps the GIL for its whole duration: every other Python thread stands still
            ctypes.PyDLL(None).usleep(ctypes.c_uint(int(p.gil_hold_ms * 1000)))
        if p.step_sleep_ms:
            import time
            time.sleep(p.step_sleep_ms / 1000)
        assert self.ctx is not None
        W = self.ctx.steps_per_window
        out = {s.name: np.full((W, len(s.regions)), float(window)) for s in self.ctx.outputs}
        if p.bad_output is not None and window == p.bad_output_at_window:
            for name, a in out.items():
                if p.bad_output == "float32":
                    out[name] = a.astype(np.float32)
                else:
                    a[W // 2, -1] = {"nan": np.nan, "inf": np.inf, "huge": 1e308}[p.bad_output]
        return out


class NullTVB(_Null):
    role = "tvb"

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        self._shape = NullParams.model_validate(self._params(ctx))   # connectome() comes before configure()
        return [SignalSpec("state/S_e", tuple(ctx.regions))]

    def _params(self, ctx: RunContext) -> dict:
        nodes = ctx.config["spiking_nodes"]
        return {k: v for k, v in nodes[0]["params"].items() if k in ("n_regions", "delay_steps", "connected")} if nodes else {}

    def connectome(self) -> dict:
        return null_connectome(getattr(self, "_shape", None) or NullParams())

    def requires_params(self, ctx):  # pragma: no cover - not used
        return None


class NullSpiking(_Null):
    role = "spiking"

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        return [SignalSpec("coupling/R_e", tuple(ctx.regions))]

    def _params(self, ctx: RunContext) -> dict:
        return ctx.node_entry().get("params") or {}


def null_connectome(p: NullParams) -> dict:
    n = p.n_regions
    w = np.ones((n, n)) - np.eye(n) if p.connected else np.eye(n)
    d = np.full((n, n), p.delay_steps, dtype=np.int64)
    np.fill_diagonal(d, 0)
    return {"weights": w, "idelays": d, "tract_lengths": d * 0.3, "region_labels": [f"r{i}" for i in range(n)],
            "speed_mm_per_ms": 3.0}


def connectome_of_config(cfg) -> dict:
    """The synthetic connectome a NullTVB serves for run config ``cfg`` (before any service starts)."""
    tvb = NullTVB()
    tvb.requires(RunContext(config=cfg.model_dump(mode="json"), node_name="tvb", regions=tuple(cfg.spiking_regions()),
                            tvb_dt_ms=cfg.tvb.dt_ms, tick_ms=cfg.tvb.dt_ms))
    return tvb.connectome()
