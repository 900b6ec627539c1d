"""The backend conformance kit (PROTOCOL.md §11): what every spiking backend must do.

A backend's test module subclasses `BackendConformance`, sets `backend` and, if needed,
`params`/`regions`, and pytest runs every check against it in-process (no sockets: the
dialog itself is tested by the system tests). Checks follow the node interface in
cosim/adapter.py message by message: requires → configure → initial_outputs → step × K → finish.
"""
from __future__ import annotations

import numpy as np
import pytest

from cosim import backends
from cosim.adapter import NodeAdapter, RunContext, SignalSpec
from cosim.config import parse_config

KNOWN_KINDS = ("state/", "coupling/")


class BackendConformance:
    backend: str = ""
    params: dict = {}
    regions: tuple[int, ...] = (33, 71)
    duration_ms: float = 20.0
    windows: int = 3

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict:
        return parse_config({"run": {"duration_ms": self.duration_ms, "seed": 7},
                             "spiking_nodes": [{"name": "spiking", "backend": self.backend,
                                                "regions": list(self.regions), "params": self.params}]}
                            ).model_dump(mode="json")

    def connectome(self, cfg: dict) -> dict:
        if self.backend == "noop":
            from services.noop_node.adapter import NullParams, null_connectome
            return null_connectome(NullParams())
        from services.tvb_node.adapter import TVBAdapter
        tvb = TVBAdapter()
        tvb.requires(RunContext(config=cfg, node_name="tvb", regions=tuple(self.regions), tvb_dt_ms=0.1,
                                tick_ms=0.1))
        return tvb.connectome()

    def make(self, tmp_path, tag: str = "a") -> tuple[NodeAdapter, RunContext]:
        from cosim.timing import crossing_min_delay_steps
        cfg = self.config()
        adapter = backends.adapter_class(self.backend)()
        params = backends.validate_params(self.backend, self.params)
        dt = getattr(params, "dt_ms", None) or 0.1
        ctx = RunContext(config=cfg, node_name="spiking", regions=tuple(self.regions), tvb_dt_ms=0.1,
                         tick_ms=min(dt, 0.1), results_dir=str(tmp_path / tag))
        requires = adapter.requires(ctx)
        con = self.connectome(cfg)
        d = crossing_min_delay_steps(con["weights"], con["idelays"], [set(self.regions)])
        ctx.steps_per_window, ctx.n_windows = max(int(d or 1), 1), self.windows
        ctx.inputs = requires
        ctx.outputs = [SignalSpec("state/S_e", tuple(self.regions)), SignalSpec("state/R_e", tuple(self.regions))]
        ctx.connectome = con
        return adapter, ctx

    def inputs(self, ctx: RunContext, k: int) -> dict:
        W = ctx.steps_per_window
        out = {}
        for s in ctx.inputs:
            base = 0.2 if s.name.startswith("state/S") else 150.0
            out[s.name] = np.full((W, len(s.regions)), base) + 0.01 * k
        return out

    def run(self, tmp_path, tag: str) -> list[dict]:
        adapter, ctx = self.make(tmp_path, tag)
        adapter.configure(ctx)
        adapter.initial_outputs()
        outs = [adapter.step(k, self.inputs(ctx, k)) for k in range(ctx.n_windows)]
        adapter.finish(None)
        return outs

    # ------------------------------------------------------------------ checks
    def test_requires_known_signals_over_existing_regions(self, tmp_path):
        adapter, ctx = self.make(tmp_path)
        n = ctx.connectome["weights"].shape[0]
        for s in adapter.requires(ctx):
            assert isinstance(s, SignalSpec) and s.name.startswith(KNOWN_KINDS)
            assert all(0 <= r < n for r in s.regions) and len(set(s.regions)) == len(s.regions)
            assert not (s.name.startswith("state/") and set(s.regions) & set(self.regions)), \
                "a node must not require its own state"

    def test_initial_outputs_are_a_subset_of_outputs(self, tmp_path):
        adapter, ctx = self.make(tmp_path)
        adapter.configure(ctx)
        init = adapter.initial_outputs()
        want = {s.name: s for s in ctx.outputs}
        for name, arr in init.items():
            assert name in want
            assert arr.shape == (ctx.steps_per_window, len(want[name].regions)) and arr.dtype == np.float64
        adapter.finish(None)

    def test_each_window_returns_exactly_the_outputs_asked_for(self, tmp_path):
        adapter, ctx = self.make(tmp_path)
        adapter.configure(ctx)
        adapter.initial_outputs()
        for k in range(ctx.n_windows):
            out = adapter.step(k, self.inputs(ctx, k))
            assert set(out) == {s.name for s in ctx.outputs}
            for s in ctx.outputs:
                a = out[s.name]
                assert a.shape == (ctx.steps_per_window, len(s.regions)) and a.dtype == np.float64
                assert np.isfinite(a).all()
        assert isinstance(adapter.finish(None), dict)

    def test_same_seed_same_outputs(self, tmp_path):
        a, b = self.run(tmp_path, "a"), self.run(tmp_path, "b")
        for wa, wb in zip(a, b):
            for name in wa:
                assert np.array_equal(wa[name], wb[name]), name

    def test_finish_after_abort_is_clean(self, tmp_path):
        adapter, ctx = self.make(tmp_path)
        adapter.configure(ctx)
        adapter.initial_outputs()
        adapter.step(0, self.inputs(ctx, 0))
        adapter.finish("aborted by test")


@pytest.fixture(autouse=True)
def _chdir_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)    # NEURON/RxD compile into the working directory
