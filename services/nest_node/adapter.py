"""``NestAdapter``: NEST spiking regions behind the cosim node interface (backend "nest").

Role "spiking". Consumes ``coupling/R_e`` of its regions (and ``state/R_e`` of other spiking
services' regions in mixed runs, :mod:`cosim.sdk.spiking_input`); produces the proxy state
``state/{R_e,S_e,R_i,S_i}`` of the window just simulated. Per window::

    coupling --(rate = scale*c + offset)--> inhomogeneous_poisson_generator (rates per TVB step)
        --> one independent Poisson train per target cell (NEST's generators, seeded kernel RNG)
    nest.Run(window)                      (nest.Prepare() once at configure, nest.Cleanup() at finish)
    spike_recorder (ASCII, read from where the last window stopped) --count per TVB step / (N dt)-->
        r --dR/dt=(r-R)/tau_r, RWW S eq.--> R, S            (cosim.sdk.transformers, as NetPyNE)

Spikes between services (``run.inter_service``, PROTOCOL.md §4.2): the node also sends the E
spikes of its regions (``spikes/E``, one event block per window) and replays other services' E
spikes on ``spike_generator`` stand-ins wired as one service would wire those cells
(network.build_default); ``input.generator: numpy`` draws TVB's trains per region from the run
seed (NetPyNE's transformer), so nothing random depends on how regions are grouped.

Timing. A generator's rate change must lie strictly in the future, so rates are set one NEST
step late (rate i of the window holds on ``[t0 + i*dt + h, t0 + (i+1)*dt + h)``) and the input
synapses are ``h`` shorter than ``input.delay_ms``: trains arrive exactly as NetPyNE's relays'
(rate i on arrival times ``[t0 + i*dt + delay, ...)``).

Reading spikes. A memory spike recorder returns every event so far on each read (the cost grows
with the run; DOMAIN.md) and recorder settings cannot change inside ``Prepare/Run``; the ASCII
backend is flushed at the end of each ``Run``, so each window reads only its new lines.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cosim.proto.signals import is_event
from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals
from cosim.sdk.spiking_node import check_outputs, exc_inh_counts, proxy_outputs, sim_steps_per_tvb, step_of
from cosim.sdk.spiking_input import CouplingInput, PerSourceInput
from cosim.sdk.transformers import RateProxy, rates_from_signal

from .config import NestParams

if TYPE_CHECKING:
    from cosim.sdk.spiking_file import ResultsWriter
from .network import (ModelError, Population, build_default, drive_receptor, drive_targets, drive_weight,
                      load_user_model)

log = logging.getLogger(__name__)

#: NEST holds the GIL while it runs, so the node's heartbeat thread is silent during a window:
#: a window longer than this share of the heartbeat timeout gets one warning (docs/backends.md)
SLOW_WINDOW_SHARE = 0.4
TIMERS = ("input_s", "integrate_s", "integrate_cpu_s", "read_s", "rates_s", "write_s")
CLOCK = time.perf_counter


def import_nest():
    """NEST, quietly (no banner, errors only)."""
    os.environ.setdefault("PYNEST_QUIET", "1")
    import nest
    if hasattr(nest, "VerbosityLevel"):          # NEST >= 3.10
        nest.verbosity = nest.VerbosityLevel.ERROR
    else:
        nest.set_verbosity("M_ERROR")
    return nest



class SpikeFileReader:
    """New lines of a NEST ASCII spike file since the last read (sender, time_ms)."""

    def __init__(self, path: str):
        self.f = open(path)
        self.rest = ""
        self.in_header = True      # NEST's header lines ("# NEST version…", "sender\ttime_ms") come first

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.rest + self.f.read()
        cut = data.rfind("\n") + 1            # keep a partial last line for the next read
        data, self.rest = data[:cut], data[cut:]
        while self.in_header and data:
            if data[0] == "#" or data.startswith("sender"):
                data = data[data.find("\n") + 1:]
            else:
                self.in_header = False
        if not data:
            return np.empty(0, dtype=np.int64), np.empty(0)
        arr = np.fromstring(data, dtype=np.float64, sep=" ").reshape(-1, 2)   # any whitespace separates
        return arr[:, 0].astype(np.int64), arr[:, 1]

    def close(self) -> None:
        self.f.close()


class SpikeFilesReader:
    """New lines of every file of one NEST ASCII spike recorder: NEST writes one file per
    virtual process (thread), each holding the spikes of the neurons that thread updates, so a
    recorder's spikes are the union of its files (reading only the first kept thread 0's share)."""

    def __init__(self, paths: list[str]):
        if not paths:
            raise ModelError("the spike recorder has no files (NEST did not open them at Prepare)")
        self.readers = [SpikeFileReader(p) for p in paths]

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        parts = [r.read() for r in self.readers]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([g for g, _ in parts]), np.concatenate([t for _, t in parts])

    def close(self) -> None:
        for r in self.readers:
            r.close()


def stimulus_lead_steps(p: NestParams) -> int:
    """Delay of the current generators' connections, in NEST steps: the input synapses' (module doc)."""
    return max(1, round(p.input.delay_ms / p.dt_ms) - 1)


def current_generator(nest, g, n_end: int, lead: int, targets: list):
    """A ``step_current_generator`` that gives every neuron of ``targets`` (NodeCollections) the
    current ``g.samples`` (a cosim.sdk.stimulus.GridStimulus on NEST's resolution) over steps
    ``[0, n_end)``: each edge scheduled ``lead`` steps early, connections ``lead`` steps long."""
    h = g.dt_ms
    steps, values = g.edges(n_end)
    gen = nest.Create("step_current_generator", params={"amplitude_times": (steps - lead) * h,
                                                        "amplitude_values": values})
    for nodes in targets:
        nest.Connect(gen, nodes, "all_to_all", {"synapse_model": "static_synapse", "weight": 1.0, "delay": lead * h})
    return gen


class NestAdapter(NodeAdapter):
    role = "spiking"

    def __init__(self, params: NestParams | dict | None = None):
        self._params_override = params
        self.nest: Any = None                          # the nest module, once configured
        self.writer: ResultsWriter | None = None
        self.reader: SpikeFilesReader | None = None
        self.in_reader: SpikeFilesReader | None = None
        self.in_recorder: Any = None
        self.drive: CouplingInput | PerSourceInput
        self.src_gens: Any = None
        self.np_drive: dict | None = None       # input.generator numpy: region -> (generator ids, PoissonInput)
        self.prepared = False
        self.stims: list = []
        self.stim_gens: list = []
        self.timing = dict.fromkeys(TIMERS, 0.0)
        self.windows_done = 0

    # ---- configuration -------------------------------------------------------------------
    def params_for(self, ctx: RunContext) -> NestParams:
        if isinstance(self._params_override, NestParams):
            return self._params_override
        if self._params_override is not None:
            return NestParams.model_validate(self._params_override)
        return ctx.node_params(NestParams)

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        # TVB's coupling (and other services' rates, mixed runs); spikes between services
        # (run.inter_service): the E spikes of other services' regions (PROTOCOL.md §4.2)
        if self.params_for(ctx).input.mode == "per_source":
            return PerSourceInput(ctx, list(ctx.regions)).requires()
        from cosim.config.inter_service import spike_sources
        remote = spike_sources(ctx.config, ctx.node_name)
        return CouplingInput(ctx, list(ctx.regions)).requires() + \
            ([SignalSpec("spikes/E", tuple(remote))] if remote else [])

    def warm_up(self) -> None:
        import_nest()

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
        self.spike_out = next((s for s in ctx.outputs if is_event(s.name)), None)
        self.value_outputs = [s for s in ctx.outputs if not is_event(s.name)]
        self.spike_in = next((s for s in ctx.inputs if is_event(s.name)), None)
        try:
            self.h_per_tvb = sim_steps_per_tvb(p.dt_ms, ctx)
            check_outputs(self.value_outputs, self.regions)
            for spec in (self.spike_out, self.spike_in):
                if spec is not None and spec.name != "spikes/E":
                    raise ValueError(f"cannot exchange {spec.name!r}; this node exchanges 'spikes/E'")
            if (self.spike_out or self.spike_in) is not None and p.model_file is not None:
                raise ValueError("spikes/E between services come from the default network, not a model_file")
        except ValueError as e:
            raise ModelError(str(e)) from None
        self.h = p.dt_ms
        self.tvb_dt = ctx.tvb_dt_ms
        results_dir = Path(ctx.results_dir).resolve() if ctx.results_dir else None
        work = (results_dir or Path.cwd()) / f".{ctx.node_name}_nest"
        work.mkdir(parents=True, exist_ok=True)

        nest = self.nest = import_nest()
        nest.ResetKernel()
        nest.SetKernelStatus({"resolution": p.dt_ms, "local_num_threads": p.local_num_threads,
                              "rng_seed": 1 + (self.seed * 7919 + sum(self.regions)) % (2**31 - 2),
                              "overwrite_files": True, "print_time": False,
                              "use_wfr": False})
        G = float((tvb.get("model") or {}).get("G", 2.0))
        self.stand_ins: dict[int, Any] = {}     # other services' E cells: spike_generators (PROTOCOL.md §4.2)
        if p.model_file is not None:
            pops = load_user_model(nest, p, self.regions, self.seed)
        else:
            pops = build_default(nest, p, self.regions, ctx.connectome, G, ctx.tvb_dt_ms, self.seed,
                                 remote=self._remote_sizes(ctx),
                                 remote_shift_ms=ctx.lag_windows * ctx.steps_per_window * ctx.tvb_dt_ms,
                                 stand_ins=self.stand_ins)
        self.stand_in_ids = {q: np.asarray(g.tolist(), dtype=np.int64) for q, g in self.stand_ins.items()}
        self.pops: list[Population] = pops
        if self.spike_out is not None:      # per population: its column in spikes/E (-1: not sent), first id
            where = {r: j for j, r in enumerate(self.spike_out.regions)}
            self._spk_col = np.array([where.get(q.region, -1) if q.label == f"E_{q.region}" else -1
                                      for q in pops], dtype=np.int64)
            self._spk_first = np.array([int(q.nodes.tolist()[0]) for q in pops], dtype=np.int64)
        self.rec_prefix = self._place_files(nest, work)
        # the kernel's own count: a user model may set local_num_threads itself (params.local_num_threads
        # is only what cosim set before the model file ran)
        self.n_threads = int(nest.GetKernelStatus("local_num_threads"))
        self.per_source = p.input.mode == "per_source"
        if self.per_source:
            self.drive = PerSourceInput(ctx, self.regions)
            self.drive.configure(ctx)
            self._wire_per_source(nest, p, pops)
        else:
            self._wire_inputs(nest, p, pops)
        self._wire_recorder(nest, pops)
        self._wire_stimuli(nest, p, pops, ctx)

        if not self.per_source:
            self.drive = CouplingInput(ctx, self.regions)
            self.drive.configure(ctx)
        if isinstance(p.input.scale, str) and ctx.connectome is None:
            raise ModelError("input.scale 'row_mean' needs the connectome (give a number instead)")
        self.in_scale = self.drive.scale(p.input.scale)
        self.n_exc = np.array([sum(q.size for q in pops if q.region == r and q.role == "exc") for r in self.regions])
        self.n_inh = np.array([sum(q.size for q in pops if q.region == r and q.role == "inh") for r in self.regions])
        o = p.output
        self.proxy = RateProxy(len(self.regions), self.tvb_dt, o.tau_r_ms, tvb.get("model"), o.R_e0_hz, o.R_i0_hz,
                               integrator=o.integrator)
        self.results_path = None if results_dir is None else results_dir / f"{ctx.node_name}.h5"
        if results_dir is not None:
            from cosim.sdk.spiking_file import ResultsWriter
            attrs = {"node": ctx.node_name, "backend": "nest", "regions": np.array(self.regions),
                     "tvb_dt_ms": self.tvb_dt, "sim_dt_ms": p.dt_ms, "steps_per_window": self.W, "seed": self.seed,
                     "nest_version": nest.__version__, "nest_threads": self.n_threads,
                     "input_weight": self.in_w, "input_weight_unit": {"conductance": "nS", "current": "pA",
                                                                      "delta": "mV"}[self.in_kind],
                     "input_receptor_json": json.dumps(self.in_receptor), "params_json": p.model_dump_json()}
            if self.per_source:
                d = self.drive
                assert isinstance(d, PerSourceInput)
                attrs.update({"input_mode": "per_source",
                              "input_links": np.stack([d.target, d.source, d.dly], axis=1).astype(np.int64)
                              if d.n_links else np.zeros((0, 3), np.int64),
                              # in input_weight_unit; µS too when the targets are conductance-based (as NetPyNE)
                              "input_link_weight": self.link_w,
                              **({"input_link_weight_uS": self.link_w / 1000.0} if self.in_kind == "conductance" else {})})
            if self.stims:
                from cosim.sdk.stimulus import describe
                sizes = {q.label: (q.region, q.size) for q in pops}
                attrs["stimulus_json"] = json.dumps([describe(name, dev, g, [(lab, *sizes[lab]) for lab in labs])
                                                     for name, dev, g, labs in self.stims])
            rows = [(q.label, q.region, q.role, q.size) for q in pops]
            self.writer = ResultsWriter(results_dir / f"{ctx.node_name}.h5", attrs, rows, len(self.regions),
                                        p.record.flush_every)
        nest.Prepare()
        self.prepared = True
        self.reader = SpikeFilesReader(self._spike_files())
        self._warned_slow = False
        self.hb_timeout_s = float((ctx.config.get("coordinator") or {}).get("heartbeat_timeout_ms", 5000)) / 1000
        self.in_reader = SpikeFilesReader(self._spike_files(self.in_recorder)) if self.in_recorder is not None else None
        self.windows_done = 0
        log.info("%s: NEST %s configured %d region(s) %s, E=%s I=%s cells, W=%d steps, h=%g ms, %d thread(s)",
                 ctx.node_name, nest.__version__, len(self.regions), self.regions, self.n_exc.tolist(),
                 self.n_inh.tolist(), self.W, p.dt_ms, self.n_threads)
        if self.spike_in is not None or self.spike_out is not None:
            log.info("%s: spikes between services (PROTOCOL.md §4.2): E spikes of region(s) %s in on stand-ins, "
                     "of region(s) %s out", ctx.node_name, sorted(self.stand_ins),
                     list(self.spike_out.regions) if self.spike_out is not None else [])
        if self.n_threads != p.local_num_threads:
            log.info("%s: the model file set local_num_threads to %d (params.local_num_threads: %d)",
                     ctx.node_name, self.n_threads, p.local_num_threads)

    def _remote_sizes(self, ctx: RunContext) -> dict[int, int]:
        """Source region on another service -> the size of its E population (that node's params, of
        whichever backend: the same network as if it were here; PROTOCOL.md §4.2)."""
        if self.spike_in is None:
            return {}
        from cosim.config.inter_service import e_size
        wanted, size = set(self.spike_in.regions), {}
        for n in ctx.config.get("spiking_nodes") or []:
            if n.get("name") != ctx.node_name and wanted & {int(r) for r in n.get("regions") or []}:
                size.update({int(r): e_size(n) for r in n.get("regions") or []})
        missing = [q for q in self.spike_in.regions if q not in size]
        if missing:
            raise ModelError(f"spikes/E of region(s) {missing}: no spiking node of the config simulates them")
        return {int(q): size[int(q)] for q in self.spike_in.regions}

    def _deliver_remote(self, spikes_in: np.ndarray, t0: float) -> None:
        """Other services' E spikes of window k - m (times from that window's start) on their
        stand-ins, m windows late: at ``t0 + t``, never before the window's first step (a spike
        stamped at the window's start belongs to the step before; a NetPyNE source's times off NEST's
        grid are rounded up to it: allow_offgrid_times)."""
        assert self.spike_in is not None
        src = np.asarray(self.spike_in.regions)[spikes_in[:, 0].astype(np.int64)]
        cells = spikes_in[:, 1].astype(np.int64)
        times = np.maximum(t0 + spikes_in[:, 2], t0 + self.h)
        ids, when = [], []
        for q in np.unique(src):
            sel = src == q
            gids = self.stand_in_ids.get(int(q))
            if gids is None:
                continue                   # (no synapse of ours from it: nothing to replay)
            c = cells[sel]
            if c.size and c.max() >= gids.size:
                raise ValueError(f"spikes/E of region {int(q)} name cell {int(c.max())}, but its E population "
                                 f"has {gids.size} cells here")
            ids.append(gids[c])
            when.append(times[sel])
        if ids:
            self._set_spike_times(np.concatenate(ids), np.concatenate(when))

    def _spike_table(self, gid: np.ndarray, t: np.ndarray, pop: np.ndarray, t0: float) -> np.ndarray:
        """This window's E spikes of the regions in ``spikes/E`` as events (col, cell, t_ms from the
        window's start), sorted by time, column, cell (PROTOCOL.md §4.2)."""
        assert self.spike_out is not None
        col = self._spk_col[pop] if pop.size else np.zeros(0, dtype=np.int64)
        keep = col >= 0
        if not keep.any():
            return np.zeros((0, 3))
        out = np.stack([col[keep].astype(np.float64), (gid[keep] - self._spk_first[pop[keep]]).astype(np.float64),
                        t[keep] - t0], axis=1)
        out = out[np.lexsort((out[:, 1], out[:, 0], out[:, 2]))]
        return np.clip(out, 0.0, None)

    def _plan_drive(self, nest, p: NestParams, pops: list[Population]) -> None:
        """Targets per region, one weight in the unit their synapses take, a receptor per population
        (network.drive_weight, drive_receptor): a model that cannot take the drive is one line here."""
        self.in_targets = {r: drive_targets(p, pops, r) for r in self.regions}
        every = [q for r in self.regions for q in self.in_targets[r]]
        self.in_w, self.in_w_key, self.in_kind = drive_weight(nest, p, every)
        self.in_receptor = {q.label: drive_receptor(nest, p, q) for q in every}

    def _connect_drive(self, nest, gen, r: int, weight: float, delay: float) -> None:
        for q in self.in_targets[r]:
            nest.Connect(gen, q.nodes, "all_to_all", {"synapse_model": "static_synapse", "weight": weight,
                                                      "delay": delay, "receptor_type": self.in_receptor[q.label]})

    def _wire_inputs(self, nest, p: NestParams, pops: list[Population]) -> None:
        """One inhomogeneous Poisson generator per region; it sends an independent train to each
        target: the region's ``input`` population if the model has one, else its E (and I) cells."""
        self._plan_drive(nest, p, pops)
        self.np_drive = None
        if p.input.generator == "numpy":
            self._wire_numpy_drive(nest, p)
            return
        delay = p.input.delay_ms - p.dt_ms                 # the rate schedule is one step late (module doc)
        # all at once: one NodeCollection gets every region's rates in one set() per window
        self.gen_nc = nest.Create("inhomogeneous_poisson_generator", len(self.regions))
        self.gens = [self.gen_nc[j] for j in range(len(self.regions))]
        for r, g in zip(self.regions, self.gens):
            self._connect_drive(nest, g, r, self.in_w, delay)

    def _wire_numpy_drive(self, nest, p: NestParams) -> None:
        """input.generator numpy: per region, one spike_generator per target cell, one-to-one, delay
        input.delay_ms, fed each window with the trains of a PoissonInput seeded by (run seed, region)
        as NetPyNE's relays are (a train's time off NEST's grid is rounded up to it)."""
        from cosim.sdk.transformers import PoissonInput
        self.np_drive = {}
        for r in self.regions:
            cells = [q for q in self.in_targets[r]]
            n = sum(q.size for q in cells)
            gens = nest.Create("spike_generator", n, params={"allow_offgrid_times": True})
            k = 0
            for q in cells:
                nest.Connect(gens[k:k + q.size], q.nodes, "one_to_one",
                             {"synapse_model": "static_synapse", "weight": self.in_w, "delay": p.input.delay_ms,
                              "receptor_type": self.in_receptor[q.label]})
                k += q.size
            self.np_drive[r] = (np.asarray(gens.tolist(), dtype=np.int64), PoissonInput(n, self.tvb_dt, self.seed, r))

    def _feed_numpy_drive(self, rates: np.ndarray, t0: float) -> None:
        assert self.np_drive is not None
        ids, when = [], []
        for j, r in enumerate(self.regions):
            gids, train = self.np_drive[r]
            times, idx = train.window(rates[:, j], t0)
            ids.append(gids[idx])
            when.append(times)
        self._set_spike_times(np.concatenate(ids), np.maximum(np.concatenate(when), t0 + self.h))

    def _set_spike_times(self, gid: np.ndarray, t: np.ndarray) -> None:
        """Give each spike_generator ``gid[i]`` its spikes ``t`` of this window (sorted per generator)."""
        if gid.size == 0:
            return
        order = np.lexsort((t, gid))
        gid, t = gid[order], t[order]
        cut = np.flatnonzero(np.diff(gid)) + 1
        firsts = gid[np.r_[0, cut]]
        self.nest.NodeCollection(firsts.tolist()).set([{"spike_times": x.tolist()} for x in np.split(np.round(t, 9), cut)])

    def _wire_per_source(self, nest, p: NestParams, pops: list[Population]) -> None:
        """One inhomogeneous Poisson generator per (target region, source region) link, sending an
        independent train to each target cell at weight ``weight_uS * scale_p * w[p, j]``; one more
        per region at ``offset_hz`` if set. ``record.input_spikes``: each generator also drives one
        parrot neuron (same delay), recorded: its spikes are the train one target cell receives."""
        d = self.drive
        assert isinstance(d, PerSourceInput)
        scale = d.scale(p.input.scale)
        self._plan_drive(nest, p, pops)
        delay = p.input.delay_ms - p.dt_ms                 # the rate schedule is one step late (module doc)
        self.link_w = self.in_w * scale[d.t_idx] * d.weight if d.n_links else np.zeros(0)
        self.src_gens = nest.Create("inhomogeneous_poisson_generator", d.n_links) if d.n_links else None
        for l in range(d.n_links):
            self._connect_drive(nest, self.src_gens[l], int(d.target[l]), float(self.link_w[l]), delay)
        self.offset_gens = []
        if p.input.offset_hz > 0:
            for r in self.regions:
                g = nest.Create("inhomogeneous_poisson_generator")
                self._connect_drive(nest, g, r, self.in_w, delay)
                self.offset_gens.append(g)
        self.in_recorder = None
        if p.record.input_spikes and d.n_links:
            self.parrots = nest.Create("parrot_neuron", d.n_links)
            nest.Connect(self.src_gens, self.parrots, "one_to_one", {"synapse_model": "static_synapse", "delay": delay})
            label = f"{self.rec_prefix}{self.ctx.node_name}_input_spikes"
            self.in_recorder = nest.Create("spike_recorder", params={"record_to": "ascii", "precision": 6, "label": label})
            nest.Connect(self.parrots, self.in_recorder)
            self.parrot0 = int(self.parrots.tolist()[0])

    def _wire_stimuli(self, nest, p: NestParams, pops: list[Population], ctx: RunContext) -> None:
        """One ``step_current_generator`` per current device (cosim/sdk/stimulus.py), its schedule the
        device's edges over the whole run, connected to every neuron of its populations with the input
        synapses' delay D (a shorter one would lower NEST's min_delay, which changes how its update
        slices interleave the Poisson generators' draws: every spike would change, before onset too).
        A generator's amplitude set at step s reaches the neurons during step s + D/dt, so each edge is
        scheduled D early: the neurons get exactly ``GridStimulus.samples`` (NestParams checks onset >= D)."""
        from cosim.sdk.stimulus import labels, on_grid, targets
        self.stims, self.stim_gens = [], []
        if not p.stimulus:
            return
        n_end = int(ctx.n_windows) * self.W * self.h_per_tvb
        lead = stimulus_lead_steps(p)
        by_label = {q.label: q for q in pops}
        popmap = {q.label: (q.region, q.role) for q in pops}
        for i, (name, dev) in enumerate(zip(labels(p.stimulus), p.stimulus)):
            where = f"params.stimulus[{i}]"
            try:
                g = on_grid(dev, p.dt_ms, where)
                labs = targets(dev, popmap, self.regions, where)
            except ValueError as e:
                raise ModelError(str(e)) from None
            gen = current_generator(nest, g, n_end, lead, [by_label[lab].nodes for lab in labs])
            self.stims.append((name, dev, g, labs))
            self.stim_gens.append(gen)

    @staticmethod
    def _place_files(nest, work: Path) -> str:
        """Where recorders write: the kernel's ``data_path`` becomes cosim's work folder (a model's
        relative recorder files land there, never in its own folder), unless a recorder of the model
        has an absolute label (NEST's Potjans-Diesmann microcircuit: ``os.path.join(data_path,
        "spike_recorder")``), which NEST would put under data_path and fail to open (``IOError``):
        then data_path is "/" (NEST refuses an empty one) and cosim's own recorders get absolute labels.
        Returns the prefix of cosim's labels."""
        labels = []
        for node in nest.GetNodes({"element_type": "recorder"}):
            try:
                labels.append(node.get("label"))
            except Exception:  # noqa: BLE001  (a detector without a label, e.g. correlospinmatrix_detector)
                continue
        absolute = [x for x in labels if isinstance(x, str) and x and os.path.isabs(x)]
        if not absolute:
            nest.SetKernelStatus({"data_path": str(work)})
            return ""
        # NEST joins data_path and label with "/" and refuses an empty data_path: "/" keeps absolute labels whole
        nest.SetKernelStatus({"data_path": "/"})
        log.info("a recorder of the model has an absolute label (%s): the kernel's data_path is '/'", absolute[0])
        return str(work) + os.sep

    def _wire_recorder(self, nest, pops: list[Population]) -> None:
        label = f"{self.rec_prefix}{self.ctx.node_name}_spikes"
        self.recorder = nest.Create("spike_recorder", params={"record_to": "ascii", "label": label, "precision": 6})
        # every population, the model's ``input`` ones too (TVB's trains as they arrive: they looked silent in the
        # results); only exc/inh count towards the rates (self._pop_kind)
        for q in pops:
            nest.Connect(q.nodes, self.recorder)
        top = max(max(q.nodes.tolist()) for q in pops) + 1
        self.pop_of_gid = np.full(top, -1, dtype=np.int64)
        for i, q in enumerate(pops):
            self.pop_of_gid[np.asarray(q.nodes.tolist())] = i
        self._pop_kind = np.array([{"exc": 0, "inh": 1}.get(q.role, -1) for q in pops], dtype=np.int64)
        self._pop_col = np.array([self.col.get(q.region, -1) for q in pops], dtype=np.int64)
        self._pop_region = np.array([q.region for q in pops], dtype=np.int32)

    def _spike_files(self, recorder=None) -> list[str]:
        """Every file of the recorder. NEST replicates a recorder on every virtual process (thread),
        each copy writing the spikes of that thread's neurons to ``<label>-<node id>-<vp>.dat``;
        ``get("filenames")`` shows one copy's file only, so the others are found beside it."""
        names = (recorder or self.recorder).get("filenames")
        names = list(names) if isinstance(names, (list, tuple)) else [names]
        n_vp = int(self.nest.GetKernelStatus("total_num_virtual_procs"))
        if n_vp == 1 or not names:
            return names
        stem = Path(names[0])
        base, _, vp = stem.stem.rpartition("-")
        if not vp.isdigit():
            raise ModelError(f"unexpected NEST spike file name {stem.name!r} (expected <label>-<id>-<vp>.dat)")
        files = {}
        for f in stem.parent.glob(f"{base}-*{stem.suffix}"):
            tail = f.stem[len(base) + 1:]
            if tail.isdigit() and int(tail) < n_vp:         # stale files of a run with more threads are left out
                files[int(tail)] = str(f)
        if sorted(files) != list(range(n_vp)):
            raise ModelError(f"NEST runs {n_vp} threads but wrote spike files for {sorted(files)} only ({base}-*)")
        return [files[v] for v in range(n_vp)]

    def initial_outputs(self) -> Signals:
        return {}

    # ---- stepping ------------------------------------------------------------------------
    def step(self, window: int, inputs: Signals) -> Signals:
        if window != self.windows_done:
            raise RuntimeError(f"window {window} out of order: expected window {self.windows_done}")
        W, T = self.W, self.timing
        t_a = CLOCK()
        start = window * W * self.h_per_tvb                       # in NEST steps
        times = (start + 1 + np.arange(W) * self.h_per_tvb) * self.h
        src_rates = None
        if self.per_source:
            assert isinstance(self.drive, PerSourceInput)
            src_rates = np.maximum(self.drive.rates(window, inputs, self.ctx.inputs), 0.0)
            if not np.isfinite(src_rates).all():
                raise ValueError("input rates are not finite (NaN/Inf in the state/R_e received)")
            if self.src_gens is not None:
                self.src_gens.set([{"rate_times": times, "rate_values": src_rates[:, l]}
                                   for l in range(src_rates.shape[1])])
            for g in self.offset_gens:
                g.set(rate_times=times, rate_values=np.full(W, self.p.input.offset_hz))
            assert isinstance(self.drive, PerSourceInput)
            coupling = self.drive.coupling(src_rates)           # the summed equivalent, for records
            rates = rates_from_signal(coupling, self.in_scale, self.p.input.offset_hz)
        else:
            assert isinstance(self.drive, CouplingInput)
            coupling = self.drive.signal(window, inputs, self.ctx.inputs)
            rates = rates_from_signal(coupling, self.in_scale, self.p.input.offset_hz)
            if not np.isfinite(rates).all():
                raise ValueError("input rates are not finite (NaN/Inf in the coupling received)")
            if self.np_drive is not None:
                self._feed_numpy_drive(rates, start * self.h)
            else:
                self.gen_nc.set([{"rate_times": times, "rate_values": rates[:, j]} for j in range(len(self.gens))])
        spikes_in = inputs.get("spikes/E") if self.spike_in is not None else None
        if spikes_in is not None and spikes_in.shape[0]:
            self._deliver_remote(spikes_in, start * self.h)
        t_b, cpu_b = CLOCK(), time.process_time()
        self._run_steps(W)
        t_c = CLOCK()
        T["integrate_cpu_s"] += time.process_time() - cpu_b     # benchmarks on a shared machine
        assert self.reader is not None
        gid, t = self.reader.read()
        t0 = start * self.h
        pop = self.pop_of_gid[gid]
        counts = exc_inh_counts(step_of(t, t0, self.tvb_dt, self.h, W), self._pop_kind[pop], self._pop_col[pop],
                                W, len(self.regions))
        t_d = CLOCK()
        r_e = counts[0] / (np.maximum(self.n_exc, 1) * self.tvb_dt * 1e-3)
        r_i = counts[1] / (np.maximum(self.n_inh, 1) * self.tvb_dt * 1e-3)
        prox = self.proxy.advance(r_e, r_i)
        out = proxy_outputs(prox, self.value_outputs, self.col)
        if self.spike_out is not None:
            out[self.spike_out.name] = self._spike_table(gid, t, pop, t0)
        t_e = CLOCK()
        if self.writer is not None:
            blocks = {"rates/exc": r_e, "rates/inh": r_i, "input/coupling": coupling, "input/rate_hz": rates,
                      **{f"output/{v}": prox[v] for v in ("R_e", "S_e", "R_i", "S_i")}}
            if src_rates is not None:
                blocks["input/source_rate_hz"] = src_rates
            spikes = None
            if self.p.record.spikes:
                order = np.lexsort((gid, t))
                spikes = {"t_ms": t[order], "gid": gid[order], "pop": pop[order].astype(np.int32),
                          "region": self._pop_region[pop[order]]}
            in_spikes = None
            if self.in_reader is not None:
                assert self.in_reader is not None
                pg, pt = self.in_reader.read()
                link = pg - self.parrot0
                assert isinstance(self.drive, PerSourceInput)   # input spikes are recorded per link
                order = np.lexsort((link, pt))
                in_spikes = {"t_ms": pt[order], "region": self.drive.target[link[order]].astype(np.int32),
                             "index": link[order].astype(np.int64)}
            cols = None
            if self.stims:                               # the pulses this window delivered (NEST steps)
                from cosim.sdk.stimulus import window_pulses
                cols = {f"stimulus/{c}": v for c, v in window_pulses(
                    [g for _, _, g, _ in self.stims], start, start + W * self.h_per_tvb).items()}
            self.writer.window(np.arange(window * W + 1, window * W + W + 1), blocks, spikes, in_spikes, cols)
        T["input_s"] += t_b - t_a
        T["integrate_s"] += t_c - t_b
        T["read_s"] += t_d - t_c
        T["rates_s"] += t_e - t_d
        T["write_s"] += CLOCK() - t_e
        self.windows_done += 1
        return out

    def _run_steps(self, n_steps: int) -> None:
        """One ``nest.Run`` over the window. Not sliced: with several random sources NEST's draws
        interleave by update slice, so slicing a window changes the spikes (measured), and slices
        sized from the wall clock would make runs irreproducible. NEST holds the GIL meanwhile, so
        no Python heartbeat leaves; the node's echo socket, answered inside libzmq, keeps it alive
        (PROTOCOL.md §8): say so once, with the one limit left (the window timeout)."""
        t = time.perf_counter()
        self.nest.Run(n_steps * self.h_per_tvb * self.h)
        took = time.perf_counter() - t
        limit = SLOW_WINDOW_SHARE * self.hb_timeout_s
        if took > limit and not self._warned_slow:
            self._warned_slow = True
            log.info("%s: one window took %.1f s in nest.Run, which holds the GIL: no Python heartbeat leaves "
                     "meanwhile, the node's echo answers for it (PROTOCOL.md §8); coordinator.window_timeout_ms "
                     "must stay above the longest window (adaptive by default)", self.ctx.node_name, took)

    # ---- end -----------------------------------------------------------------------------
    def finish(self, aborted: str | None = None) -> dict:
        summary = {"windows": self.windows_done, "timing": {k: round(v, 6) for k, v in self.timing.items()}}
        if self.nest is not None and self.prepared:
            try:
                self.nest.Cleanup()
            except Exception as e:     # cleanup must not hide the run's own outcome
                log.warning("nest.Cleanup failed: %s", e)
            self.prepared = False
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        if getattr(self, "in_reader", None) is not None:
            self.in_reader.close()  # type: ignore[union-attr]
            self.in_reader = None
        if self.writer is not None:
            self.writer.f.attrs["timing_json"] = json.dumps(summary["timing"])
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
        return summary
