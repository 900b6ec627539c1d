"""``Brian2Adapter``: Brian2 spiking regions behind the cosim node interface (backend "brian2").

Role "spiking". Consumes ``coupling/R_e`` of its regions (and ``state/R_e`` of other spiking
services' regions in mixed runs, :mod:`cosim.sdk.spiking_input`); produces the proxy state
``state/{R_e,S_e,R_i,S_i}`` of the window just simulated. Per window::

    coupling --(rate = scale*c + offset)--> cosim.sdk.transformers.PoissonInput (one train per input
        neuron, seeded by (run seed, region)) --> SpikeGeneratorGroup.set_spikes (on Brian2's grid)
    net.run(window)                       (one Network built at configure, run window after window)
    SpikeMonitor (only the spikes of this window) --count per TVB step / (N dt)-->
        r --dR/dt=(r-R)/tau_r, RWW S eq.--> R, S            (cosim.sdk.transformers, as NEST and NetPyNE)

Why the core's PoissonInput through a SpikeGeneratorGroup, and not Brian2's PoissonGroup or
PoissonInput with a TimedArray: (1) for the same seed the trains are the very ones the NetPyNE
backend delivers (same generator, same draws), so backends can be compared on identical input;
(2) Brian2 draws no random number at all, so a run is reproducible without seeding Brian2's
global RNG; (3) a PoissonGroup draws one random number per input neuron per time step (two per
TVB step at dt 0.05 ms, spike or not), a spike generator costs per spike; (4) rates change exactly at TVB step
boundaries, as the transformer defines, with no TimedArray to rebuild each window (a
TimedArray's values are fixed when it is created). The trains' continuous times are floored onto Brian2's
grid: an input spike arrives up to one Brian2 step (``dt_ms``) earlier than in NetPyNE. Two
spikes of one input neuron in the same step (probability ~ (rate*dt)^2/2, 1.3e-7 at 10 Hz and
0.05 ms) are merged into one, because a SpikeGeneratorGroup cannot emit both.

Counting. Brian2 stamps a spike with the start of the step in which the threshold was crossed
(t = n*dt, reached by t + dt), so Brian2 step n of the window belongs to TVB step
floor(n / dt_per_tvb): exact integer binning, no float tolerance.
"""
from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import numpy as np

from cosim.sdk import NodeAdapter, RunContext, SignalSpec, Signals
from cosim.sdk.spiking_node import check_outputs, exc_inh_counts, proxy_outputs, sim_steps_per_tvb
from cosim.sdk.spiking_input import CouplingInput
from cosim.sdk.transformers import PoissonInput, RateProxy, rates_from_signal

from ._compat import import_brian2
from .config import Brian2Params
from .network import ModelError, build

log = logging.getLogger(__name__)

TIMERS = ("input_s", "integrate_s", "read_s", "rates_s", "write_s")
CLOCK = time.perf_counter



class Brian2Adapter(NodeAdapter):
    role = "spiking"

    def __init__(self, params: Brian2Params | dict | None = None):
        self._params_override = params
        self.built = None
        self.writer = None
        self._frozen = False
        self.timing = dict.fromkeys(TIMERS, 0.0)
        self.windows_done = 0

    # ---- configuration -------------------------------------------------------------------
    def params_for(self, ctx: RunContext) -> Brian2Params:
        if isinstance(self._params_override, Brian2Params):
            return self._params_override
        if self._params_override is not None:
            return Brian2Params.model_validate(self._params_override)
        return ctx.node_params(Brian2Params)

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        return CouplingInput(ctx, list(ctx.regions)).requires()

    def warm_up(self) -> None:
        import_brian2()           # ~3 s (SymPy) while the TVB node builds

    def configure(self, ctx: RunContext) -> None:
        self.ctx, p = ctx, self.params_for(ctx)
        self.p = p
        run, tvb = ctx.config.get("run", {}), ctx.config.get("tvb", {})
        self.seed = int(run.get("seed", 42))
        self.regions = [int(r) for r in ctx.regions]
        self.col = {r: j for j, r in enumerate(self.regions)}
        self.W = int(ctx.steps_per_window)
        if self.W < 1:
            raise ModelError("steps_per_window must be >= 1 (configure is called after PREPARE)")
        try:
            self.h_per_tvb = sim_steps_per_tvb(p.dt_ms, ctx)
            check_outputs(ctx.outputs, self.regions)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self.h = p.dt_ms
        self.tvb_dt = ctx.tvb_dt_ms
        if isinstance(p.input.scale, str) and ctx.connectome is None:
            raise ModelError("input.scale 'row_mean' needs the connectome (give a number instead)")

        b2 = self.b2 = import_brian2()
        G = float((tvb.get("model") or {}).get("G", 2.0))
        n_steps = int(ctx.n_windows) * self.W * self.h_per_tvb
        self.built = bt = build(b2, p, self.regions, ctx.connectome, G, ctx.tvb_dt_ms, self.seed, n_steps)
        self.pops = bt.pops
        n_cells = sum(q.size for q in bt.pops)
        self._pop_of_cell = np.empty(n_cells, dtype=np.int64)
        for i, q in enumerate(bt.pops):
            self._pop_of_cell[q.start:q.start + q.size] = i
        self._pop_kind = np.array([{"exc": 0, "inh": 1}.get(q.role, -1) for q in bt.pops], dtype=np.int64)
        self._pop_col = np.array([self.col[q.region] for q in bt.pops], dtype=np.int64)
        self._pop_region = np.array([q.region for q in bt.pops], dtype=np.int32)
        self.n_exc = np.array([sum(q.size for q in bt.pops if q.region == r and q.role == "exc") for r in self.regions])
        self.n_inh = np.array([sum(q.size for q in bt.pops if q.region == r and q.role == "inh") for r in self.regions])
        self.gens = {r: PoissonInput(bt.n_input[r], self.tvb_dt, self.seed, r) for r in self.regions}
        self.n_gen = sum(bt.n_input.values())

        self.drive = CouplingInput(ctx, self.regions)
        self.drive.configure(ctx)
        self.in_scale = self.drive.scale(p.input.scale)
        o = p.output
        self.proxy = RateProxy(len(self.regions), self.tvb_dt, o.tau_r_ms, tvb.get("model"), o.R_e0_hz, o.R_i0_hz)
        results_dir = Path(ctx.results_dir).resolve() if ctx.results_dir else None
        self.results_path = None if results_dir is None else results_dir / f"{ctx.node_name}.h5"
        if results_dir is not None:
            from cosim.sdk.spiking_file import ResultsWriter
            attrs = {"node": ctx.node_name, "backend": "brian2", "regions": np.array(self.regions),
                     "tvb_dt_ms": self.tvb_dt, "sim_dt_ms": p.dt_ms, "steps_per_window": self.W, "seed": self.seed,
                     "brian2_version": b2.__version__, "params_json": p.model_dump_json()}
            if bt.stims:
                import json
                from cosim.sdk.stimulus import describe
                sizes = {q.label: (q.region, q.size) for q in bt.pops}
                attrs["stimulus_json"] = json.dumps([describe(name, dev, g, [(lab, *sizes[lab]) for lab in labs])
                                                     for name, dev, g, labs in bt.stims])
            rows = [(q.label, q.region, q.role, q.size) for q in bt.pops]
            self.writer = ResultsWriter(self.results_path, attrs, rows, len(self.regions), p.record.flush_every)
        self._n_read = 0
        self.windows_done = 0
        # Brian2's Network.run calls gc.collect() (to warn about objects left out of a network);
        # in a process holding SymPy, TVB's connectome and this network that is ~80 ms per window.
        # Freezing what exists now takes it out of every later collection (unfrozen in finish).
        gc.collect()
        gc.freeze()
        self._frozen = True
        log.info("%s: Brian2 %s configured %d region(s) %s, %d E + %d I in the first, %d synapses, W=%d steps, "
                 "dt=%g ms", ctx.node_name, b2.__version__, len(self.regions), self.regions, int(self.n_exc[0]),
                 int(self.n_inh[0]), bt.n_synapses, self.W, p.dt_ms)

    def initial_outputs(self) -> Signals:
        return {}

    # ---- stepping ------------------------------------------------------------------------
    def _input_spikes(self, rates: np.ndarray, t0: float) -> tuple[np.ndarray, np.ndarray, list]:
        """This window's trains of every region, as (generator index, absolute Brian2 step)."""
        idx, steps, rec = [], [], []
        for j, r in enumerate(self.regions):
            times, i = self.gens[r].window(rates[:, j], t0)
            idx.append(i + self.built.gen_offset[r])
            # floor onto the grid; the tolerance keeps a time that is a whole step (up to float error) in it
            steps.append(np.floor(times / self.h + 1e-6).astype(np.int64))
            if self.p.record.input_spikes:
                rec.append((times, np.full(times.size, r, dtype=np.int32), i.astype(np.int32)))
        key = np.unique(np.concatenate(steps) * self.n_gen + np.concatenate(idx))   # sorted by step; merges doubles
        return key % self.n_gen, key // self.n_gen, rec

    def step(self, window: int, inputs: Signals) -> Signals:
        if window != self.windows_done:
            raise RuntimeError(f"window {window} out of order: expected window {self.windows_done}")
        b2, bt, W, T = self.b2, self.built, self.W, self.timing
        t_a = CLOCK()
        coupling = self.drive.signal(window, inputs, self.ctx.inputs)
        rates = rates_from_signal(coupling, self.in_scale, self.p.input.offset_hz)
        if not np.isfinite(rates).all():
            raise ValueError("input rates are not finite (NaN/Inf in the coupling received)")
        start = window * W * self.h_per_tvb                     # in Brian2 steps
        t0 = start * self.h
        if round(float(bt.net.t_) * 1e3 / self.h) != start:      # someone ran the network outside step()
            raise RuntimeError(f"Brian2 is at t = {float(bt.net.t_) * 1e3:g} ms, window {window} starts at {t0:g} ms")
        gidx, gstep, in_rec = self._input_spikes(rates, t0)
        bt.gen.set_spikes(gidx, gstep * self.h * b2.ms, sorted=True)
        t_b = CLOCK()
        bt.net.run(W * self.tvb_dt * b2.ms, namespace={})
        t_c = CLOCK()
        # the monitor keeps the run's spikes (~12 bytes each); read only those since the last window
        mon = bt.monitor
        n = int(mon.num_spikes)
        cell = np.asarray(mon.variables["i"].get_value()[self._n_read:n], dtype=np.int64)
        t_ms = np.asarray(mon.variables["t"].get_value()[self._n_read:n]) * 1e3
        self._n_read = n
        local = np.rint(t_ms / self.h).astype(np.int64) - start      # Brian2 step within the window
        step = np.clip(local // self.h_per_tvb, 0, W - 1)
        pop = self._pop_of_cell[cell]
        counts = exc_inh_counts(step, self._pop_kind[pop], self._pop_col[pop], W, len(self.regions))
        t_d = CLOCK()
        r_e = counts[0] / (np.maximum(self.n_exc, 1) * self.tvb_dt * 1e-3)
        r_i = counts[1] / (np.maximum(self.n_inh, 1) * self.tvb_dt * 1e-3)
        prox = self.proxy.advance(r_e, r_i)
        out = proxy_outputs(prox, self.ctx.outputs, self.col)
        t_e = CLOCK()
        if self.writer is not None:
            blocks = {"rates/exc": r_e, "rates/inh": r_i, "input/coupling": coupling, "input/rate_hz": rates,
                      **{f"output/{v}": prox[v] for v in ("R_e", "S_e", "R_i", "S_i")}}
            spikes = None
            if self.p.record.spikes:
                spikes = {"t_ms": t_ms, "gid": cell, "pop": pop.astype(np.int32), "region": self._pop_region[pop]}
            isp = None
            if in_rec:
                isp = {"t_ms": np.concatenate([a[0] for a in in_rec]), "region": np.concatenate([a[1] for a in in_rec]),
                       "index": np.concatenate([a[2] for a in in_rec])}
            cols = None
            if bt.stims:                                 # the pulses this window delivered (Brian2 steps)
                from cosim.sdk.stimulus import window_pulses
                cols = {f"stimulus/{c}": v for c, v in window_pulses(
                    [g for _, _, g, _ in bt.stims], start, start + W * self.h_per_tvb).items()}
            self.writer.window(np.arange(window * W + 1, window * W + W + 1), blocks, spikes, isp, cols)
        T["input_s"] += t_b - t_a
        T["integrate_s"] += t_c - t_b
        T["read_s"] += t_d - t_c
        T["rates_s"] += t_e - t_d
        T["write_s"] += CLOCK() - t_e
        self.windows_done += 1
        return out

    # ---- end -----------------------------------------------------------------------------
    def finish(self, aborted: str | None = None) -> dict:
        summary = {"windows": self.windows_done, "timing": {k: round(v, 6) for k, v in self.timing.items()}}
        if self._frozen:
            gc.unfreeze()
            self._frozen = False
        if self.writer is not None:
            self.writer.close(aborted)
            self.writer = None
            if self.p.record.plot and self.results_path is not None:
                try:
                    from cosim.sdk.spiking_figure import plot_results
                    summary["plot"] = str(plot_results(self.results_path))
                except Exception as exc:   # a plot must never fail a finished run
                    log.warning("%s: plot failed: %s", self.ctx.node_name, exc)
        self.built = None
        return summary
