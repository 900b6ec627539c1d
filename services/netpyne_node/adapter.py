"""``NetpyneAdapter``: NetPyNE/NEURON spiking regions behind the cosim node interface.

Role "spiking". Consumes ``coupling/R_e`` of its regions (Hz*weight, one row per TVB step of
the window); produces the proxy state ``state/R_e``, ``state/S_e`` (and ``state/R_i``,
``state/S_i`` when asked) of the window just simulated. Per window::

    coupling --(rate = scale*c + offset)--> Poisson trains --nc.event--> NetStim relays -> E cells
    psolve to the window's end (integer NEURON step clock, see engine.py)
    spikes of exc/inh pops --count per TVB step / (N dt)--> r --dR/dt=(r-R)/tau_r, RWW S eq.--> R, S

MPI (``mpiexec -n N``): rank 0 is driven by the runtime and broadcasts each call; ranks > 0
run :meth:`follow`. Every rank generates the same Poisson trains (same seeded generators) and
delivers those of its own relays; spikes (or only counts, when spikes are not recorded) are
gathered to rank 0, which computes rates, writes results and returns outputs.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from cosim.runtime import startup
from cosim.proto.signals import is_event
from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals

from .config import NetpyneParams
from .mechanisms import ModelError, ensure_mechanisms
from .parallel import world

if TYPE_CHECKING:
    from cosim.sdk.spiking_file import ResultsWriter

    from .engine import SpikingEngine
from cosim.sdk.spiking_node import check_outputs, exc_inh_counts, proxy_outputs, sim_steps_per_tvb, step_of
from cosim.sdk.spiking_input import CouplingInput, PerSourceInput
from cosim.sdk.transformers import PoissonInput, RateProxy, RegularInput, rates_from_signal

log = logging.getLogger(__name__)

TIMERS = ("input_s", "integrate_s", "read_s", "rates_s", "write_s")
#: clock of the per-window timers (bench/ swaps in time.process_time on a shared machine)
CLOCK = time.perf_counter



#: the setup clock's pause while building lasts at most this, plus what the network's size needs
BUILD_BUDGET_BASE_S = 120.0


def build_budget_s(netParams) -> float:
    """A generous bound on building ``netParams`` (10× this machine's costs, docs/performance.md
    "NetPyNE network build"): 1 ms per cell, 50 µs per connection of a ``connList`` (or expected of a
    ``probability`` rule), 3 µs per candidate pair of NetPyNE's probability rule, plus the base."""
    cells = {label: int(pop.get("numCells", 0) or 0) for label, pop in netParams.popParams.items()}
    conns = pairs = 0.0
    for rule in netParams.connParams.values():
        pre = sum(n for lab, n in cells.items() if lab == (rule.get("preConds") or {}).get("pop"))
        post = sum(n for lab, n in cells.items() if lab == (rule.get("postConds") or {}).get("pop"))
        if "connList" in rule:
            conns += len(rule["connList"])
        elif isinstance(rule.get("probability"), (int, float)):
            pairs += pre * post
            conns += pre * post * float(rule["probability"])
        else:
            conns += post * 10 if post else 0
    return BUILD_BUDGET_BASE_S + 10 * (1e-3 * sum(cells.values()) + 50e-6 * conns + 3e-6 * pairs)


class NetpyneAdapter(NodeAdapter):
    role = "spiking"

    @property
    def can_checkpoint(self) -> bool:  # type: ignore[override]
        return self.cannot_checkpoint() is None

    def cannot_checkpoint(self) -> str | None:
        """Why this node cannot checkpoint (None: it can). SaveState covers one process's NEURON
        state; NetStim/Random123 positions of a user model, recorded traces (their Vectors) and
        RxD are not saved, so those configurations are refused."""
        if self.comm is not None:
            return "checkpoints under MPI are not supported"
        p = getattr(self, "p", None)
        if p is not None:
            if p.model_file is not None:
                return "a user model (model_file) may hold NetStim/Random123 streams SaveState does not save"
            if p.record.traces or (self.engine is not None and self.engine.uses_rxd):
                return "recorded traces and RxD are not saved by checkpoints"
        return None

    def __init__(self, params: NetpyneParams | dict | None = None, comm=None):
        self._params_override = params
        self.comm = comm if comm is not None else world()   # imports mpi4py before neuron
        self.rank = self.comm.Get_rank() if self.comm is not None else 0
        self.engine: SpikingEngine | None = None
        self.writer: ResultsWriter | None = None
        self._to_write: list = []       # windows stepped, not yet written (after_window)
        self.timing = dict.fromkeys(TIMERS, 0.0)
        self.windows_done = 0
        self.setup_status: dict = {}     # sent with heartbeats during setup (PROTOCOL.md §8)

    # ---- configuration -------------------------------------------------------------------
    def params_for(self, ctx: RunContext) -> NetpyneParams:
        if isinstance(self._params_override, NetpyneParams):
            return self._params_override
        if self._params_override is not None:
            return NetpyneParams.model_validate(self._params_override)
        return ctx.node_params(NetpyneParams)

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        # TVB's coupling, plus the rates of other spiking services' regions (mixed runs);
        # per-source mode: the rates of every region that projects here (cosim.sdk.spiking_input)
        # spikes between services (run.inter_service): E spikes of other services' regions (§4.2)
        if self.params_for(ctx).input.mode == "per_source":
            return PerSourceInput(ctx, list(ctx.regions)).requires()
        from cosim.config.inter_service import spike_sources
        remote = spike_sources(ctx.config, ctx.node_name)
        return CouplingInput(ctx, list(ctx.regions)).requires() + \
            ([SignalSpec("spikes/E", tuple(remote))] if remote else [])

    def configure(self, ctx: RunContext) -> None:
        if self.comm is not None:
            try:
                self._precheck(ctx)        # compile mechanisms once, validate the user model
            except Exception as e:
                self.comm.bcast(("abort", f"{type(e).__name__}: {e}"), root=0)
                raise
            self.comm.bcast(("configure", ctx, self._params_override), root=0)
        self._configure_local(ctx)

    def _precheck(self, ctx: RunContext) -> None:
        p = self.params_for(ctx)
        with self._compiling(p), startup.phase("mechanisms"):
            if p.model_file is not None:
                from .usermodel import load_user_model
                load_user_model(p, ctx.regions, 0, self._n_brain(ctx), compile_only=True)
            elif p.rxd.enabled:
                from .builder import RXD_MOD_DIR
                from .mechanisms import compile_mods
                compile_mods(RXD_MOD_DIR)
            if p.stimulus:
                from .mechanisms import compile_mods
                from .stimulus import STIM_MOD_DIR
                compile_mods(STIM_MOD_DIR, p.model_file.build_dir if p.model_file else None)

    @contextlib.contextmanager
    def _compiling(self, p: NetpyneParams):
        """Say "compiling" in heartbeats while mechanisms that are not cached yet are compiled, so the
        coordinator does not count it against the setup timeout (`cosim run` compiles ahead instead)."""
        from .checks import needs_build
        compile_now = needs_build(p)
        if compile_now:
            log.info("mechanisms not cached: compiling them now (`cosim build CONFIG` does it ahead)")
        busy = compile_now and "setup" not in self.setup_status     # (already said while building)
        if busy:
            self.setup_status["setup"] = "compiling"
        try:
            yield
        finally:
            if busy:
                self.setup_status.pop("setup", None)

    @contextlib.contextmanager
    def _setup_work(self):
        """Building the network (NetPyNE's cells and connections, NEURON's objects) takes time that
        grows with the network, once: heartbeats say so (PROTOCOL.md §8, ``setup: "compiling"``, the
        one value that pauses the coordinator's setup clock) while it runs, for at most
        ``build_budget_s`` (set from the network's size once its specs exist, :func:`build_budget_s`):
        a build that hangs (e.g. a rank lost in a collective) then meets ``setup_timeout_ms`` again
        instead of holding the clock forever."""
        had = "setup" in self.setup_status
        self.setup_status["setup"] = "compiling"
        self._build_deadline = time.monotonic() + BUILD_BUDGET_BASE_S
        done = threading.Event()

        def watch():
            while not done.wait(0.5):
                if time.monotonic() > self._build_deadline:
                    log.warning("building the network takes longer than its budget (%.0f s): the setup "
                                "timeout counts again", self._build_budget)
                    if not had:
                        self.setup_status.pop("setup", None)
                    return
        self._build_budget = BUILD_BUDGET_BASE_S
        t = threading.Thread(target=watch, name="build-budget", daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join()
            if not had:
                self.setup_status.pop("setup", None)

    def _budget_for(self, built) -> None:
        """Once the specs exist: the pause lasts at most :func:`build_budget_s` of them from now."""
        if getattr(self, "_build_deadline", None) is not None:
            self._build_budget = build_budget_s(built.netParams)
            self._build_deadline = time.monotonic() + self._build_budget

    @staticmethod
    def _n_brain(ctx: RunContext) -> int | None:
        return None if ctx.connectome is None else int(np.asarray(ctx.connectome["weights"]).shape[0])

    def _configure_local(self, ctx: RunContext) -> None:
        self.ctx, p = ctx, self.params_for(ctx)
        self.p = p
        run = ctx.config.get("run", {})
        tvb = ctx.config.get("tvb", {})
        self.seed = int(run.get("seed", 42))
        self.regions = [int(r) for r in ctx.regions]
        self.col = {r: j for j, r in enumerate(self.regions)}
        self.W = int(ctx.steps_per_window)
        if self.W < 1:
            raise ModelError("steps_per_window must be >= 1 (configure is called after PREPARE)")
        self.spike_out = next((s for s in ctx.outputs if is_event(s.name)), None)
        self.value_outputs = [s for s in ctx.outputs if not is_event(s.name)]
        self.spike_in = next((s for s in ctx.inputs if is_event(s.name)), None)
        try:
            self.nrn_per_tvb = sim_steps_per_tvb(p.dt_ms, ctx)
            check_outputs(self.value_outputs, self.regions)
            for spec in (self.spike_out, self.spike_in):
                if spec is not None and spec.name != "spikes/E":
                    raise ValueError(f"cannot exchange {spec.name!r}; this node exchanges 'spikes/E'")
            if self.spike_out is not None and p.model_file is not None:
                raise ValueError("spikes/E between services come from the default network, not a model_file")
        except ValueError as err:
            raise ModelError(str(err)) from None
        self.tvb_dt = ctx.tvb_dt_ms
        self.per_source = p.input.mode == "per_source"
        self.links = None
        if self.per_source:
            if p.model_file is not None:
                raise ModelError("input.mode: per_source works with the default network only (not with model_file)")
            self.src = PerSourceInput(ctx, self.regions)
            self.src.configure(ctx)
            d = self.src
            self.link_w_uS = p.input.weight_uS * d.scale(p.input.scale)[d.t_idx] * d.weight
            self.links = [(int(d.target[l]), int(d.source[l]), float(self.link_w_uS[l])) for l in range(d.n_links)]
        results_dir = Path(ctx.results_dir).resolve() if ctx.results_dir else None
        work = (results_dir or Path.cwd()) / f".{ctx.node_name}_rxd_build"
        with self._setup_work(), startup.phase("network build"):   # grows with the network: not on the setup clock
            built = self._build(ctx, p, tvb)
            self._budget_for(built)
            from .engine import SpikingEngine
            self.engine = e = SpikingEngine(built, p.dt_ms, work_dir=work)
        self._pop_kind = np.array([{"exc": 0, "inh": 1}.get(role, -1) for _, _, role, _, _ in e.pops], dtype=np.int64)
        self._pop_col = np.array([self.col.get(reg, -1) for _, reg, _, _, _ in e.pops], dtype=np.int64)
        self._pop_region = np.array([reg for _, reg, _, _, _ in e.pops], dtype=np.int32)
        self.n_exc = np.array([e.n_cells(r, "exc") for r in self.regions])
        self.n_inh = np.array([e.n_cells(r, "inh") for r in self.regions])
        self.gens = {}
        if self.per_source:
            self._per_source_gens(p, e)
        else:
            for r in self.regions:
                n_in = len(e.inputs.get(r, []))
                if n_in == 0:
                    raise ModelError(f"region {r} has no input population (role 'input')")
                self.gens[r] = self._train(n_in, self.tvb_dt, self.seed, r)
        self.drive = self.src if self.per_source else CouplingInput(ctx, self.regions)
        if self.rank == 0 and not self.per_source:
            self.drive.configure(ctx)
        self.in_scale = self.src.scale(p.input.scale) if self.per_source else self._input_scale(ctx, p)
        o = p.output
        self.proxy = RateProxy(len(self.regions), self.tvb_dt, o.tau_r_ms, tvb.get("model"), o.R_e0_hz, o.R_i0_hz,
                               integrator=o.integrator)
        self.want_inh = any(s.name in ("state/R_i", "state/S_i") for s in ctx.outputs) or results_dir is not None
        self.need_spikes = p.record.spikes and results_dir is not None
        if self.rank == 0 and results_dir is not None:
            from cosim.sdk.spiking_file import ResultsWriter
            pops = [(lab, reg, role, n) for lab, reg, role, _, n in e.pops]
            attrs = {"node": ctx.node_name, "regions": np.array(self.regions), "tvb_dt_ms": self.tvb_dt,
                     "neuron_dt_ms": p.dt_ms, "steps_per_window": self.W, "seed": self.seed,
                     "params_json": p.model_dump_json()}
            if self.stims:
                import json
                from cosim.sdk.stimulus import describe
                attrs["stimulus_json"] = json.dumps([describe(st.name, st.device, st.grid,
                                                              [(lab, e.popmap[lab][0], e.n_cells_of(lab)) for lab in st.pops])
                                                     for st in self.stims])
            if self.per_source:
                d = self.src
                attrs.update({"input_mode": "per_source",
                              "input_links": np.stack([d.target, d.source, d.dly], axis=1).astype(np.int64)
                              if d.n_links else np.zeros((0, 3), np.int64),
                              "input_link_weight_uS": self.link_w_uS})
            self.writer = ResultsWriter(results_dir / f"{ctx.node_name}.h5", attrs, pops, len(self.regions),
                                        p.record.flush_every,
                                        resume_windows=None if ctx.resume is None else ctx.resume["window"] + 1)
        self.results_path = None if results_dir is None else results_dir / f"{ctx.node_name}.h5"
        self.windows_done = 0
        log.info("%s: configured %d region(s) %s, E=%s I=%s cells, W=%d steps, rank %d/%d", ctx.node_name,
                 len(self.regions), self.regions, self.n_exc.tolist(), self.n_inh.tolist(), self.W,
                 self.rank, e.nhost)

    def _drawn(self, rates: np.ndarray) -> np.ndarray:
        """The rates a window's trains are drawn from: the transformer's, or the toolbox's shifted,
        one-step-short version (toolbox.input_skips_last_step; services/netpyne_node/toolbox.py (b))."""
        if not self.p.toolbox.input_skips_last_step:
            return rates
        from .toolbox import gap_rates
        return gap_rates(rates)

    def _train(self, n: int, dt_ms: float, seed: int, tag: int):
        """The input trains' generator: Poisson (default) or rate-matched regular (input.process)."""
        cls = RegularInput if self.p.input.process == "regular" else PoissonInput
        return cls(n, dt_ms, seed, tag)

    def _per_source_gens(self, p: NetpyneParams, e) -> None:
        """Per-source mode: one PoissonInput per link over its relay population (the builder put
        each region's link populations first, in link order, then the offset population)."""
        d = self.src
        self.link_gens = []                       # (region, first relay index, PoissonInput) per link
        pos: dict[int, int] = {}
        for l in range(d.n_links):
            r, j = int(d.target[l]), int(d.source[l])
            n_in = e.n_cells_of(f"in{j}_{r}")
            k = pos.get(r, 0)
            self.link_gens.append((r, k, self._train(n_in, self.tvb_dt, self.seed, 1_000_000 * (r + 1) + j)))
            pos[r] = k + n_in
        self.offset_gens = {}
        if p.input.offset_hz > 0:
            for r in self.regions:
                self.offset_gens[r] = (pos.get(r, 0), self._train(e.n_cells_of(f"in_{r}"), self.tvb_dt, self.seed, r))

    def _input_scale(self, ctx: RunContext, p: NetpyneParams) -> np.ndarray:
        """Per-region input scale (Hz per Hz*weight); 'row_mean' = 1 / incoming weight from every
        region this node does not simulate (cosim.sdk.spiking_input)."""
        if isinstance(p.input.scale, str) and ctx.connectome is None:
            raise ModelError("input.scale 'row_mean' needs the connectome (give a number instead)")
        if ctx.connectome is None:
            return np.full(len(self.regions), float(p.input.scale))
        drive = CouplingInput(ctx, self.regions)
        drive.configure(ctx)
        return drive.scale(p.input.scale)

    def _build(self, ctx: RunContext, p: NetpyneParams, tvb: dict):
        if p.model_file is not None:
            from .usermodel import load_user_model
            with self._compiling(p):
                built = load_user_model(p, self.regions, self.seed, self._n_brain(ctx))
            assert built is not None                 # None only with compile_only
        else:
            from .builder import NetpyneNetworkBuilder
            b = NetpyneNetworkBuilder(p, self.regions, ctx.connectome, G=float((tvb.get("model") or {}).get("G", 2.0)),
                                      tvb_dt_ms=ctx.tvb_dt_ms, seed=self.seed, input_links=self.links,
                                      remote=self._remote_sizes(ctx),
                                      remote_shift_ms=ctx.lag_windows * ctx.steps_per_window * ctx.tvb_dt_ms)
            built = b.set_default().build()
            if b.rxd_params is not None:
                built.simConfig.recordTraces.setdefault("cai", {"sec": "soma", "loc": 0.5, "var": "cai"})
                built.simConfig.recordCells = list(built.simConfig.recordCells) + [(f"E_{b.rxd_region}", [0, 1, 2])]
        # NetPyNE reads simConfig.duration while it creates cells (VecStim trains are cut to t <= duration,
        # spike patterns and pulses end there, so do time-varying stims): the run's real length. With
        # duration 0 a model's VecStim populations never fired (issue 22); cosim steps NEURON itself.
        built.simConfig.duration = float(ctx.n_windows * ctx.steps_per_window * ctx.tvb_dt_ms)
        from .stimulus import add_stimuli
        self.stims = add_stimuli(built, p, self.regions)      # current devices (params.stimulus)
        with self._compiling(p), startup.phase("mechanisms"):
            for d in built.mod_dirs:
                ensure_mechanisms(d, p.model_file.build_dir if p.model_file else None)
        return built

    def _remote_sizes(self, ctx: RunContext) -> dict[int, int]:
        """Source region on another service -> the size of its E population (from that node's params:
        the same network as if it were here; PROTOCOL.md §4.2)."""
        if self.spike_in is None:
            return {}
        from cosim.config.inter_service import e_size
        size = {}
        wanted = set(self.spike_in.regions)
        for n in ctx.config.get("spiking_nodes") or []:
            if n.get("name") == ctx.node_name or not wanted & {int(r) for r in n.get("regions") or []}:
                continue
            n_e = e_size(n)             # whichever backend simulates it (a NEST node's params are its own)
            size.update({int(r): n_e for r in n.get("regions") or []})
        missing = [q for q in self.spike_in.regions if q not in size]
        if missing:
            raise ModelError(f"spikes/E of region(s) {missing}: no spiking node of the config simulates them")
        return {int(q): size[int(q)] for q in self.spike_in.regions}

    def _spike_table(self, t: np.ndarray, g: np.ndarray, t0: float) -> np.ndarray:
        """This window's E spikes of the regions in ``spikes/E`` as events (col, cell, t_ms from the
        window's start), sorted by time, column, cell (PROTOCOL.md §4.2)."""
        e = self.engine
        assert e is not None and self.spike_out is not None     # spikes/E is an output (configure)
        if not hasattr(self, "_spk_col"):
            where = {r: j for j, r in enumerate(self.spike_out.regions)}
            self._spk_col = np.array([where.get(reg, -1) if lab == f"E_{reg}" else -1
                                      for lab, reg, _, _, _ in e.pops], dtype=np.int64)
            self._spk_first = np.array([first for _, _, _, first, _ in e.pops], dtype=np.int64)
        pop = e.pop_of_gid[g]
        col = self._spk_col[pop]
        keep = col >= 0
        out = np.stack([col[keep].astype(np.float64), (g[keep] - self._spk_first[pop[keep]]).astype(np.float64),
                        t[keep] - t0], axis=1) if keep.any() else np.zeros((0, 3))
        if out.shape[0] > 1:
            out = out[np.lexsort((out[:, 1], out[:, 0], out[:, 2]))]
        return np.clip(out, 0.0, None) if out.size else out

    def warm_up(self) -> None:
        """Import NEURON and NetPyNE while the TVB node builds (saves their ~3 s from PREPARE on).
        Not under MPI: there every rank must start NEURON together (collective), and the followers
        wait in ``follow()``; one 2-rank run of the scaling benchmark hung in setup with a
        broadcast warm-up (not reproduced since), so MPI keeps its original order."""
        if self.comm is not None:
            return
        self._warm_up_local()

    @staticmethod
    def _warm_up_local() -> None:
        with startup.phase("imports"):
            from neuron import h  # noqa: F401  (mpi4py is already imported: world() in __init__)
            from netpyne import sim  # noqa: F401
            from . import builder, engine  # noqa: F401

    def initial_outputs(self) -> Signals:
        return {}

    # ---- stepping ------------------------------------------------------------------------
    def step(self, window: int, inputs: Signals) -> Signals:
        if self.per_source:                      # (W, n_links): each link's delayed source rate
            c = np.maximum(self.src.rates(window, inputs, self.ctx.inputs), 0.0)
            if not np.isfinite(c).all():
                raise ValueError("input rates are not finite (NaN/Inf in the state/R_e received)")
        else:
            assert isinstance(self.drive, CouplingInput)
            c = self.drive.signal(window, inputs, self.ctx.inputs)
        if self.comm is not None:
            self.comm.bcast(("step", window, c), root=0)
        return self._step_local(window, c, inputs.get("spikes/E") if self.spike_in is not None else None)

    def _step_local(self, k: int, coupling: np.ndarray | None, spikes_in: np.ndarray | None = None) -> Signals:
        e, W, T = self.engine, self.W, self.timing
        assert e is not None                     # configured
        if k != self.windows_done:
            raise RuntimeError(f"window {k} out of order: expected window {self.windows_done}")
        t_a = CLOCK()
        start = k * W * self.nrn_per_tvb
        t0 = start * self.p.dt_ms
        in_spk = []
        src_rates = None
        if self.per_source:
            src_rates = coupling if coupling is not None else np.zeros((W, self.src.n_links))
            coupling = self.src.coupling(src_rates)            # the summed equivalent, for records
            rates = rates_from_signal(coupling, self.in_scale, self.p.input.offset_hz)
            drawn = self._drawn(src_rates)
            for l, (r, first, gen) in enumerate(self.link_gens):
                times, idx = gen.window(drawn[:, l], t0)
                e.deliver(r, times, idx + first)
                if self.p.record.input_spikes:
                    in_spk.append((times, np.full(times.size, r), idx + first))
            for r, (first, gen) in self.offset_gens.items():
                times, idx = gen.window(self._drawn(np.full(W, self.p.input.offset_hz)), t0)
                e.deliver(r, times, idx + first)
        else:
            if coupling is None:
                coupling = np.zeros((W, len(self.regions)))
            rates = rates_from_signal(coupling, self.in_scale, self.p.input.offset_hz)
            drawn = self._drawn(rates)
            for j, r in enumerate(self.regions):
                times, idx = self.gens[r].window(drawn[:, j], t0)
                e.deliver(r, times, idx)
                if self.p.record.input_spikes:
                    in_spk.append((times, np.full(times.size, r), idx))
        if spikes_in is not None and spikes_in.shape[0]:
            # other services' E spikes of window k - m (times from that window's start): each stand-in
            # fires m windows after its cell did, at t0 + t; its synapses' delays are m windows shorter
            assert self.spike_in is not None
            src = np.asarray(self.spike_in.regions)[spikes_in[:, 0].astype(np.int64)]
            for q in np.unique(src):
                sel = src == q
                cells = spikes_in[sel, 1].astype(np.int64)
                n_q = len(e.remote.get(int(q), []))
                if cells.max() >= n_q:
                    raise ValueError(f"spikes/E of region {int(q)} name cell {int(cells.max())}, but its E population "
                                     f"has {n_q} cells here (the nodes' network sizes differ)")
                e.deliver(int(q), t0 + spikes_in[sel, 2], cells, remote=True)
        t_b = CLOCK()
        e.advance_to(start + W * self.nrn_per_tvb)
        t_c = CLOCK()
        t, g = e.read_spikes()
        spike_table = self._spike_table(t, g, t0) if self.spike_out is not None and self.rank == 0 else None
        counts, spikes = self._collect(t, g, t0)
        t_d = CLOCK()
        T["input_s"] += t_b - t_a
        T["integrate_s"] += t_c - t_b
        T["read_s"] += t_d - t_c
        self.windows_done += 1
        if self.rank != 0:
            return {}
        r_e = counts[0] / (np.maximum(self.n_exc, 1) * self.tvb_dt * 1e-3)
        r_i = counts[1] / (np.maximum(self.n_inh, 1) * self.tvb_dt * 1e-3)
        if self.p.toolbox.rate_kernel_per_window:         # what TVB sees; rates/ keep the counts
            from .toolbox import window_kernel_rates
            prox = self.proxy.advance(window_kernel_rates(r_e), window_kernel_rates(r_i) if self.want_inh else None)
        else:
            prox = self.proxy.advance(r_e, r_i if self.want_inh else None)
        out = proxy_outputs(prox, self.value_outputs, self.col)
        if spike_table is not None and self.spike_out is not None:
            out[self.spike_out.name] = spike_table
        t_e = CLOCK()
        T["rates_s"] += t_e - t_d
        if self.writer is not None:
            blocks = {"rates/exc": r_e, "rates/inh": r_i, "input/coupling": coupling, "input/rate_hz": rates,
                      **{f"output/{v}": prox[v] for v in ("R_e", "S_e", "R_i", "S_i")}}
            if src_rates is not None:
                blocks["input/source_rate_hz"] = src_rates
            isp = None
            if in_spk:
                isp = {"t_ms": np.concatenate([a[0] for a in in_spk]),
                       "region": np.concatenate([a[1] for a in in_spk]).astype(np.int32),
                       "index": np.concatenate([a[2] for a in in_spk]).astype(np.int32)}
            cols = None
            if self.stims:                               # the pulses this window delivered (NEURON steps)
                from cosim.sdk.stimulus import window_pulses
                cols = {f"stimulus/{c}": v for c, v in window_pulses(
                    [st.grid for st in self.stims], start, start + W * self.nrn_per_tvb).items()}
            # written by after_window(), once the outputs have left (recording off the critical path)
            self._to_write.append((np.arange(k * W + 1, k * W + W + 1), blocks, spikes, isp, cols))
        return out

    def after_window(self) -> None:
        """Write the windows stepped since the last call (spikes, rates, exchange) to <node>.h5."""
        if not self._to_write:
            return
        t0 = CLOCK()
        assert self.writer is not None            # windows are queued only when there is a file
        for args in self._to_write:
            self.writer.window(*args)
        self._to_write.clear()
        self.timing["write_s"] += CLOCK() - t0

    def _collect(self, t: np.ndarray, g: np.ndarray, t0: float):
        """Counts (2, W, n_regions) for exc/inh on rank 0, plus the spike table when recorded."""
        e = self.engine
        assert e is not None
        if self.need_spikes and self.comm is not None:
            parts = self.comm.gather((t, g), root=0)
            if self.rank != 0:
                return None, None
            t = np.concatenate([p[0] for p in parts])
            g = np.concatenate([p[1] for p in parts])
        if self.need_spikes and t.size > 1:
            order = np.lexsort((g, t))
            t, g = t[order], g[order]
        pop = e.pop_of_gid[g]
        counts = exc_inh_counts(step_of(t, t0, self.tvb_dt, self.p.dt_ms, self.W), self._pop_kind[pop],
                                self._pop_col[pop], self.W, len(self.regions))
        if self.comm is not None and not self.need_spikes:
            total = np.zeros_like(counts)
            self.comm.Reduce(counts, total, root=0)
            counts = total
            if self.rank != 0:
                return None, None
        spikes = None
        if self.need_spikes:
            spikes = {"t_ms": t, "gid": g, "pop": pop.astype(np.int32), "region": self._pop_region[pop]}
        return counts, spikes

    # ---- checkpoint (PROTOCOL.md §10.1) ---------------------------------------------------
    def checkpoint(self, directory) -> dict:
        """NEURON's SaveState (incl. the queued relay events) + what it does not cover: every
        Poisson generator's state, the other services' rate history, the rate proxy, the step
        counters; the results file made durable first."""
        import json
        from cosim.runtime.checkpoint import save_arrays
        why = self.cannot_checkpoint()
        if why:
            raise ValueError(f"netpyne node cannot checkpoint: {why}")
        name = self.ctx.node_name
        assert self.engine is not None
        self.engine.save_state(Path(directory) / f"{name}.neuron")
        d = {"windows_done": np.int64(self.windows_done), "step_count": np.int64(self.engine.step_count),
             "poisson": np.array(json.dumps({str(r): g.state for r, g in self.gens.items()})),
             **{f"proxy_{v}": getattr(self.proxy, v) for v in ("R_e", "R_i", "S_e", "S_i")}}
        if getattr(self.drive, "hist", None) is not None:
            d["drive_hist"] = self.drive.hist
        save_arrays(Path(directory) / f"{name}.npz", d)
        self.after_window()             # every window stepped is in <node>.h5 before its rows are counted
        rows = {f"{name}.h5": self.writer.rows()} if self.writer is not None else {}
        return {"files": [f"{name}.neuron", f"{name}.npz"], "rows": rows}

    def restore(self, directory, info: dict) -> None:
        import json
        from cosim.runtime.checkpoint import load_arrays
        why = self.cannot_checkpoint()
        if why:
            raise ValueError(f"netpyne node cannot restore a checkpoint: {why}")
        d = load_arrays(Path(directory) / info["files"][1])
        assert self.engine is not None
        self.engine.restore_state(Path(directory) / info["files"][0], int(d["step_count"]))
        for r, st in json.loads(str(d["poisson"])).items():
            self.gens[int(r)].state = st
        for v in ("R_e", "R_i", "S_e", "S_i"):
            setattr(self.proxy, v, np.array(d[f"proxy_{v}"]))
        if "drive_hist" in d:
            self.drive.hist[...] = d["drive_hist"]
        self.windows_done = int(d["windows_done"])

    # ---- end -----------------------------------------------------------------------------
    def finish(self, aborted: str | None = None) -> dict:
        if self.comm is not None and self.rank == 0:
            self.comm.bcast(("finish", aborted), root=0)
        return self._finish_local(aborted)

    def _finish_local(self, aborted: str | None) -> dict:
        if self.engine is None:
            return {}
        traces = self.engine.local_traces()
        if self.comm is not None:
            parts = self.comm.gather(traces, root=0)
            if self.rank == 0:
                traces = {}
                for part in parts:
                    for var, d in part.items():
                        traces.setdefault(var, {}).update(d)
        summary = {"windows": self.windows_done, "rank_count": self.engine.nhost,
                   "timing": {k: round(v, 6) for k, v in self.timing.items()}}
        if self.writer is not None:
            self.after_window()
            if traces:
                self.writer.traces(traces, self.p.record.trace_step_ms)
            self.writer.close(aborted)
            self.writer = None
            if self.results_path is not None:     # the node's finish line names its file (docs/deployment.md)
                summary["results"] = str(self.results_path)
            if self.p.record.plot and self.results_path is not None:
                try:
                    from cosim.sdk.spiking_figure import plot_results
                    summary["plot"] = str(plot_results(self.results_path))
                except Exception as exc:   # a plot must never fail a finished run
                    log.warning("%s: plot failed: %s", self.ctx.node_name, exc)
        self.traces = traces
        self.engine.close()
        self.engine = None
        return summary

    def follow(self) -> None:
        """Ranks > 0: mirror rank 0's calls until it finishes (or aborts before configuring)."""
        if self.comm is None:
            raise RuntimeError("follow() needs MPI with more than one rank")
        while True:
            msg = self.comm.bcast(None, root=0)
            kind = msg[0]
            if kind == "configure":
                self._params_override = msg[2]
                self._configure_local(msg[1])
            elif kind == "step":
                self._step_local(msg[1], msg[2])
            elif kind == "warm_up":
                self._warm_up_local()
            elif kind == "finish":
                self._finish_local(msg[1])
                return
            elif kind == "abort":
                log.error("rank %d: rank 0 aborted: %s", self.rank, msg[1])
                return
            else:
                raise RuntimeError(f"unknown MPI command {kind!r}")
