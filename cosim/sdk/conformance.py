"""The backend conformance kit (PROTOCOL.md §11), a pytest plugin: what every spiking backend must do.

Any backend package runs it against itself: its test module subclasses `BackendConformance`,
sets `backend` (the plugin name) and, if needed, `params`/`regions`, and pytest runs every check
against it in-process (no sockets: the dialog itself is tested by the system tests)::

    from cosim.sdk.conformance import BackendConformance

    class TestMySim(BackendConformance):
        backend = "mysim"
        params = {"network": {"n_exc": 20}}

Checks follow the node interface in cosim/runtime/adapter.py message by message: requires → configure
→ initial_outputs → step × K → finish; plus: same seed, same outputs; the outputs respond to
the input (``responds_to_input``); and, for backends that take part in mixed runs
(``mixed_runs``), the rates of another spiking service's regions are consumed; with a lag of
m = 3 windows (``RunContext.lag_windows``) initial outputs are ``3*W`` rows and windows W rows.

As a pytest plugin it is opt-in (importing cosim is never forced on other pytest runs in the
same environment): ``pytest -p cosim.sdk.conformance`` or ``pytest_plugins = ["cosim.sdk.conformance"]``
in a conftest; it then prints the installed backends in pytest's header.
"""
from __future__ import annotations

import numpy as np
import pytest

from cosim import plugins
from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec
from cosim.config import parse_config

KNOWN_KINDS = ("state/", "coupling/")


def pytest_report_header(config) -> str:
    try:
        return f"cosim backends: {', '.join(plugins.installed())}"
    except Exception as e:  # noqa: BLE001  (a header must never break a test session)
        return f"cosim backends: unavailable ({e})"


class BackendConformance:
    backend: str = ""
    params: dict = {}
    regions: tuple[int, ...] = (33, 71)
    duration_ms: float = 20.0
    windows: int = 3
    #: outputs must change when the input changes (False for backends that simulate nothing)
    responds_to_input: bool = True
    #: the backend consumes rates of other spiking services' regions (mixed runs)
    mixed_runs: bool = True
    #: a region of another spiking service, connected to ``regions`` (mixed-run check)
    other_region: int = 34

    @pytest.fixture(autouse=True)
    def _chdir_tmp(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)    # simulators may compile or write into the working directory

    # ------------------------------------------------------------------ helpers
    def config(self) -> dict:
        return parse_config({"run": {"duration_ms": self.duration_ms, "seed": 7},
                             "spiking_nodes": [{"name": "spiking", "backend": self.backend,
                                                "regions": list(self.regions), "params": self.params}]}
                            ).model_dump(mode="json")

    def connectome(self, cfg: dict) -> dict:
        """TVB's connectome as the TVB node builds it (tvb-library needed)."""
        from cosim import plugins
        tvb = plugins.whole_brain("tvb").adapter_class()()
        tvb.requires(RunContext(config=cfg, node_name="tvb", regions=tuple(self.regions), tvb_dt_ms=0.1,
                                tick_ms=0.1))
        return tvb.connectome()

    def make(self, tmp_path, tag: str = "a", other: bool = False, lag: int = 1) -> tuple[NodeAdapter, RunContext]:
        """The adapter and its context after ``requires``; the window is the largest the
        coordinator would choose for ``lag``: ``floor(max(D, 1) / lag)`` steps (at least 1)."""
        from cosim.config.timing import crossing_min_delay_steps
        cfg = self.config()
        groups = [set(self.regions)]
        if other:     # a second spiking service owning `other_region` (mixed run)
            cfg["spiking_nodes"].append({"name": "other", "backend": "noop", "regions": [self.other_region], "params": {}})
            groups.append({self.other_region})
        spec = plugins.get(self.backend)
        adapter = spec.adapter_class()()
        dt = spec.dt_ms(spec.params_model().model_validate(self.params or {})) or 0.1
        ctx = RunContext(config=cfg, node_name="spiking", regions=tuple(self.regions), tvb_dt_ms=0.1,
                         tick_ms=min(dt, 0.1), results_dir=str(tmp_path / tag))
        requires = adapter.requires(ctx)
        con = self.connectome(cfg)
        d = crossing_min_delay_steps(con["weights"], con["idelays"], groups)
        ctx.steps_per_window, ctx.n_windows = max(max(int(d or 1), 1) // lag, 1), self.windows
        ctx.lag_windows = lag
        ctx.inputs = requires
        ctx.outputs = [SignalSpec("state/S_e", tuple(self.regions)), SignalSpec("state/R_e", tuple(self.regions))]
        ctx.connectome = con
        return adapter, ctx

    def inputs(self, ctx: RunContext, k: int, level: float = 1.0) -> dict:
        W = ctx.steps_per_window
        out = {}
        for s in ctx.inputs:
            base = 0.2 if s.name.startswith("state/S") else (150.0 if s.name.startswith("coupling/") else 10.0)
            out[s.name] = level * (np.full((W, len(s.regions)), base) + 0.01 * k)
        return out

    def run(self, tmp_path, tag: str, level: float = 1.0, windows: int | None = None, **make) -> list[dict]:
        adapter, ctx = self.make(tmp_path, tag, **make)
        if windows is not None:
            ctx.n_windows = windows
        adapter.configure(ctx)
        adapter.initial_outputs()
        outs = [adapter.step(k, self.inputs(ctx, k, level)) for k in range(ctx.n_windows)]
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

    def test_outputs_respond_to_the_input(self, tmp_path):
        """Outputs change with the input — or, for a backend declared not to respond (noop), never do."""
        # 50 ms: long enough for input trains to make spikes through synaptic delays
        _, ctx = self.make(tmp_path, "probe")
        windows = max(self.windows, -(-500 // ctx.steps_per_window))
        low = self.run(tmp_path, "low", level=0.0, windows=windows)
        high = self.run(tmp_path, "high", level=10.0, windows=windows)
        differ = any(not np.array_equal(a[n], b[n]) for a, b in zip(low, high) for n in a)
        assert differ == self.responds_to_input, \
            "outputs do not depend on the input" if self.responds_to_input else "declared not to respond, but does"

    def test_consumes_rates_of_other_spiking_services(self, tmp_path):
        """A mixed-run backend consumes the state of another service's region — a backend declared
        not to take part (noop) must not ask for it either (it would be routed for nothing)."""
        adapter, ctx = self.make(tmp_path, "mixed", other=True)
        wanted = {r for s in adapter.requires(ctx) if s.name.startswith("state/") for r in s.regions}
        assert (self.other_region in wanted) == self.mixed_runs, \
            f"region {self.other_region} (another spiking service's): consumed={self.other_region in wanted}, " \
            f"declared mixed_runs={self.mixed_runs}"
        adapter.finish(None)

    def test_lag_of_three_windows(self, tmp_path):
        """With a lag of m = 3 windows (inputs of window k are outputs of window k-3) initial outputs,
        if any, are blocks of 3*W rows (windows -3 .. -1) and every window returns W rows; in a
        mixed run too, for a backend that takes part in them."""
        m = 3
        adapter, ctx = self.make(tmp_path, "lag", other=self.mixed_runs, lag=m)
        W = ctx.steps_per_window
        adapter.configure(ctx)
        init = adapter.initial_outputs()
        want = {s.name: s for s in ctx.outputs}
        for name, arr in init.items():
            assert name in want
            assert arr.shape == (m * W, len(want[name].regions)) and arr.dtype == np.float64, \
                f"initial {name}: shape {arr.shape}, expected {(m * W, len(want[name].regions))} (lag {m}, W {W})"
        for k in range(ctx.n_windows):
            out = adapter.step(k, self.inputs(ctx, k))
            assert set(out) == set(want)
            for s in ctx.outputs:
                assert out[s.name].shape == (W, len(s.regions)) and np.isfinite(out[s.name]).all()
        adapter.finish(None)

    def test_finish_after_abort_is_clean(self, tmp_path):
        adapter, ctx = self.make(tmp_path)
        adapter.configure(ctx)
        adapter.initial_outputs()
        adapter.step(0, self.inputs(ctx, 0))
        adapter.finish("aborted by test")
