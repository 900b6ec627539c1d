"""TVBAdapter: the whole-brain TVB node behind the NodeAdapter interface (role "tvb").

``ctx.regions`` are the spiking regions, which TVB keeps as proxies. With a lag of m windows
(``ctx.lag_windows``, cosim/runtime/adapter.py), window k's inputs are the spiking side's
``state/S_e`` (+ ``S_i``) of window k-m: before window k the proxies' history of steps
``(k-m)*W+1 .. (k-m+1)*W`` is overwritten with them (for m = 1 the block ends at the current
step, so the current state is overwritten too), then the window is integrated with
``WindowedTVB``. Under ``m*W <= D + 1`` every proxy value TVB's own regions read in window k
has been overwritten by then. Outputs are any of ``state/{S_e,S_i,R_e,R_i}`` (own regions'
values of the window just simulated) and ``coupling/{S_e,R_e}`` for window k+m (§4).
``initial_outputs`` are ``m*W`` rows: the last ``m*W`` steps of the initial history (no state
when that is longer than the history) and the coupling of windows 0 .. m-1.

Recording happens m windows late: window k-m is recorded (raw, TemporalAverage, Bold, the
latter two tvb-library's own monitor classes) when window k's inputs bring the proxies' true
values, so proxy columns hold the spiking side's values, not TVB's stand-in integration; up
to m simulated windows wait in a queue. The last m windows never get their proxy values;
``finish`` writes them to ``raw`` with ``proxy_from_spiking = 0`` and does not feed them to the
monitors.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals, lag_of
from cosim.config import RunSection, TVBSection
from cosim.services.tvb_node.tvb_file import H5Appender
from cosim.config.timing import crossing_min_delay_steps
from cosim.services.tvb_node.windowed import WindowedTVB, WindowRecord

log = logging.getLogger(__name__)

STATE_VARS = ("S_e", "S_i", "R_e", "R_i")
COUPLING_VARS = ("S_e", "R_e")
UNITS = {"S_e": "1", "S_i": "1", "R_e": "Hz", "R_i": "Hz"}
_RECORD_FIELDS = ("S_e", "S_i", "R_e", "R_i", "coupling")   # WindowRecord's arrays, in order (RWW)
#: backends whose nodes send a mean-field region's full state (every state variable), not spike rates
FULL_STATE_BACKENDS = ("reference",)


def units_of(names: Sequence[str]) -> dict[str, str]:
    """Units of recorded variables: RWW's as before; R_e is always Hz; other state variables '1'
    (the model's own units, docs/models.md)."""
    return {v: UNITS.get(v, "Hz" if v.startswith("R_") else "1") for v in names}


def parse_sections(config: dict) -> tuple[RunSection, TVBSection]:
    """The ``run`` and ``tvb`` sections only (no backend imports)."""
    config = config or {}
    try:
        return (RunSection.model_validate(config.get("run") or {}),
                TVBSection.model_validate(config.get("tvb") or {}))
    except Exception as e:
        raise ValueError(f"invalid run/tvb config section: {e}") from e


def check_dt(tvb: TVBSection, tvb_dt_ms: float, who: str) -> None:
    if tvb_dt_ms and not math.isclose(float(tvb_dt_ms), tvb.dt_ms, rel_tol=1e-12):
        raise ValueError(f"{who}: tvb_dt_ms {tvb_dt_ms} differs from tvb.dt_ms {tvb.dt_ms}")


def validate_regions(regions: Sequence[int], n: int, what: str) -> np.ndarray:
    r = np.asarray(list(regions), dtype=np.int64)
    if r.size and (r.min() < 0 or r.max() >= n):
        raise ValueError(f"{what}: region index out of range 0..{n - 1}: {r.tolist()}")
    if len(set(r.tolist())) != r.size:
        raise ValueError(f"{what}: duplicate regions {r.tolist()}")
    return r


class CouplingPlan:
    """``sum_j w[p, j] * X_j(n - 1 - idelay[p, j])`` for targets p over allowed sources j.

    Sources are accumulated one at a time in ascending j (a defined summation order), so an
    independent loop over j reproduces the result bit for bit.
    """

    def __init__(self, targets: np.ndarray, source_ok: np.ndarray, weights: np.ndarray,
                 idelays: np.ndarray, window: int, what: str, lag: int = 1):
        """``window`` W and ``lag`` m: each output is for the window m windows ahead, so every
        source's delay must be at least ``m*W - 1``."""
        ahead = lag * window
        self.targets = targets
        cols = []
        for p in targets:
            ok = source_ok & (weights[p] != 0)
            ok[p] = False
            cols.append(np.flatnonzero(ok))
        m = max([len(c) for c in cols] + [1])
        self.J = np.zeros((len(targets), m), dtype=np.int64)
        self.W = np.zeros((len(targets), m))
        self.D = np.zeros((len(targets), m), dtype=np.int64)
        for i, (p, c) in enumerate(zip(targets, cols)):
            self.J[i, :len(c)], self.W[i, :len(c)], self.D[i, :len(c)] = c, weights[p, c], idelays[p, c]
            if len(c) and idelays[p, c].min() < ahead - 1:
                j = c[np.argmin(idelays[p, c])]
                ahead_s = f"one window ({window} steps)" if lag == 1 else f"{lag} windows of {window} steps"
                raise ValueError(f"{what}: connection {j} -> {p} has delay {idelays[p, j]} steps, too short "
                                 f"to be known {ahead_s} ahead")
        self.valid = np.zeros(self.J.shape, dtype=bool)
        for i, c in enumerate(cols):
            self.valid[i, :len(c)] = True

    def compute(self, first_step: int, n_steps: int, values) -> np.ndarray:
        """(n_steps, n_targets); ``values(src_steps, src_regions)`` gathers X at broadcast (T, n_terms) indices."""
        n = np.arange(first_step, first_step + n_steps)
        x = np.zeros((n_steps,) + self.J.shape)       # padding entries: weight 0, value 0
        if self.valid.any():
            src = n[:, None] - 1 - self.D[self.valid][None]
            x[:, self.valid] = values(src, self.J[self.valid][None])
        acc = np.zeros((n_steps, len(self.targets)))
        for m in range(self.J.shape[1]):
            acc += self.W[:, m] * x[:, :, m]
        return acc


def target_dependent(coup, n_cvar: int) -> bool:
    """Whether a tvb-library coupling's ``pre`` reads the target's own state ``x_i`` (Difference,
    Kuramoto, a user's coupling of that kind), so that it cannot be pre-summed per target: its
    ``pre`` is probed with two different ``x_i`` and the same ``x_j`` (TVB's sparse shapes)."""
    from cosim.config.interfaces import TARGET_DEPENDENT_COUPLINGS
    if type(coup).__name__ in TARGET_DEPENDENT_COUPLINGS and type(coup).__module__.startswith("tvb."):
        return True
    rng = np.random.default_rng(0)
    x_j = rng.uniform(-1, 1, (n_cvar, 7, 1)).astype(np.float32)
    try:
        a = np.asarray(coup.pre(rng.uniform(-1, 1, (n_cvar, 7, 1)).astype(np.float32), x_j))
        b = np.asarray(coup.pre(rng.uniform(-1, 1, (n_cvar, 7, 1)).astype(np.float32), x_j))
    except Exception:            # a pre that needs other shapes (SigmoidalJansenRit: 2 cvars) reads x_j only
        return False
    return a.shape != b.shape or not np.array_equal(a, b)


class TargetCoupling:
    """TVB's own coupling of targets p over the TVB node's regions, for couplings that depend on
    the target's state: ``post(sum_j w[p, j] * pre(x_p, x_j(n - 1 - idelay[p, j])))``.

    It repeats ``SparseCoupling.__call__`` on the terms of a :class:`CouplingPlan` (TVB's own
    regions j, self-connections and spiking regions excluded): the delayed ``x_j`` are the float32
    history, weights are cast to float32 as ``SparseHistory.nnz_weights``, ``pre`` and ``post`` are
    the configured coupling's methods, terms are summed per target with ``np.add.reduceat`` in
    ascending j, ``post`` gets (n_cvar, n_targets, 1) as TVB passes it. So it equals TVB's own
    coupling on a history whose weights keep only those sources, bit for bit.

    ``x_p`` is not TVB's state at ``n - 1`` (a spiking region's state of the coming window is not
    known yet) but ``x_target``: what the history holds for p at the last step whose values came
    from the spiking side (set by the TVB node, PROTOCOL.md §4), the same for every step of the window.
    """

    def __init__(self, tvb: WindowedTVB, plan: CouplingPlan):
        self.tvb, self.coup = tvb, tvb.sim.coupling
        rows = [np.flatnonzero(v) for v in plan.valid]
        self.row = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)] + [np.zeros(0, int)]).astype(np.int64)
        self.J = np.concatenate([plan.J[i, r] for i, r in enumerate(rows)] + [np.zeros(0, int)]).astype(np.int64)
        self.D = np.concatenate([plan.D[i, r] for i, r in enumerate(rows)] + [np.zeros(0, int)]).astype(np.int64)
        w = np.concatenate([plan.W[i, r] for i, r in enumerate(rows)] + [np.zeros(0)])
        self.w_col = w.astype(np.float32).reshape((-1, 1))           # SparseHistory.nnz_weights is 'f'
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        self.nzr = np.flatnonzero(counts)                               # targets with any source
        self.lri = np.r_[0, np.cumsum(counts)[:-1]][self.nzr] if len(counts) else np.zeros(0, np.int64)
        self.n_targets = len(plan.targets)
        c = type(self.coup)
        self.elementwise = c.__name__ in ("Difference", "Kuramoto") and c.__module__ == "tvb.simulator.coupling"

    def compute(self, first_step: int, n_steps: int, x_target: np.ndarray) -> np.ndarray:
        """(n_steps, n_targets) coupling of the first coupled variable; ``x_target`` (n_cvar, n_targets) float32."""
        w = self.tvb
        assert w is not None
        buf = w.sim.history.buffer
        ncv = buf.shape[1]
        out = np.zeros((n_steps, self.n_targets))
        if not self.J.size:
            zero = np.zeros((ncv, self.n_targets, 1), dtype=buf.dtype)
            out[:] = np.asarray(self.coup.post(zero))[0, :, 0]
            return out
        src = np.arange(first_step, first_step + n_steps)[:, None] - 1 - self.D[None, :]
        w.check_in_history(int(src.min()), int(src.max()))
        slots = w.slot(src)
        x_i = np.asarray(x_target, dtype=buf.dtype)[:, self.row]                # (ncv, nnz)
        if not self.elementwise:        # a user's pre/post: one TVB-shaped call per step
            for t in range(n_steps):
                x_j = buf[slots[t], :, self.J, 0].T[:, :, None]                 # (ncv, nnz, 1)
                pre = self.coup.pre(x_i[:, :, None], x_j)
                acc = np.zeros((ncv, self.n_targets, 1), dtype=buf.dtype)
                acc[:, self.nzr] = np.add.reduceat(self.w_col * pre, self.lri, axis=1)
                out[t] = np.asarray(self.coup.post(acc))[0, :, 0]
            return out
        # tvb-library's Difference / Kuramoto: elementwise pre and post, so every step of the window
        # in one call; each target's terms stay one contiguous reduceat segment, as in TVB's call
        nnz, nt = self.J.size, self.n_targets
        x_j = np.ascontiguousarray(buf[slots, :, self.J[None, :], 0].transpose(2, 0, 1)).reshape((ncv, n_steps * nnz, 1))
        x_ii = np.broadcast_to(x_i[:, None, :], (ncv, n_steps, nnz)).reshape((ncv, n_steps * nnz, 1))
        terms = np.tile(self.w_col, (n_steps, 1)) * self.coup.pre(x_ii, x_j)
        lri = (self.lri[None, :] + nnz * np.arange(n_steps)[:, None]).ravel()
        acc = np.zeros((ncv, n_steps * nt, 1), dtype=buf.dtype)
        acc[:, (self.nzr[None, :] + nt * np.arange(n_steps)[:, None]).ravel()] = np.add.reduceat(terms, lri, axis=1)
        out[:] = np.asarray(self.coup.post(acc))[0, :, 0].reshape((n_steps, nt))
        return out


def make_monitors(tvb: TVBSection, n_regions: int, names: Sequence[str] = STATE_VARS, connectivity=None):
    """tvb-library TemporalAverage / Bold configured for the recorded variables ``names`` (RWW: the
    4-variable state S_e, S_i, R_e, R_i; Bold on S_e and R_e). Other models: TemporalAverage of
    every variable, Bold of the first state variable and R_e if recorded."""
    from tvb.simulator import monitors
    names = tuple(names)
    shim = SimpleNamespace(integrator=SimpleNamespace(dt=tvb.dt_ms), number_of_nodes=n_regions,
                           model=SimpleNamespace(variables_of_interest=names, number_of_modes=1))
    out = {}
    bold_voi = [0, 2] if names == STATE_VARS else [0] + ([names.index("R_e")] if "R_e" in names else [])
    for name, period, voi, cls in (("tavg", tvb.monitors.temporal_average_ms, list(range(len(names))), monitors.TemporalAverage),
                                   ("bold", tvb.monitors.bold_period_ms, bold_voi, monitors.Bold)):
        if period is None:
            continue
        k = period / tvb.dt_ms
        if round(k) < 1 or not math.isclose(round(k), k, rel_tol=1e-9):
            raise ValueError(f"tvb.monitors: period {period} ms is not a whole multiple of dt {tvb.dt_ms} ms")
        mon = cls(period=float(period), variables_of_interest=np.array(voi))
        mon.configure()
        mon.config_for_sim(shim)
        out[name] = (mon, [names[v] for v in voi])
    for sm in tvb.monitors.sensors:      # EEG / MEG / iEEG: tvb-data's sensors, projection, region mapping
        var = sm.variable or names[0]
        if var not in names:
            raise ValueError(f"tvb.monitors {sm.class_}: variable {var!r} is not recorded; recorded: {list(names)}")
        _require_period(sm.period_ms, tvb.dt_ms)
        cls = getattr(monitors, sm.class_)
        sensor_voi = np.array([names.index(var)])
        analytic = False
        try:
            mon = cls.from_file(period=float(sm.period_ms), variables_of_interest=sensor_voi)
        except Exception as e:
            if sm.class_ != "iEEG":
                raise ValueError(f"tvb.monitors {sm.class_}: cannot load tvb-data's default sensors and projection: "
                                 f"{e}") from e
            # some tvb-data releases ship the 588 SEEG contacts but not their projection matrix:
            # TVB's own analytic lead field (iEEG.analytic, a point dipole per region) instead
            from tvb.datatypes.region_mapping import RegionMapping
            from tvb.datatypes.sensors import SensorsInternal
            mon = cls(period=float(sm.period_ms), variables_of_interest=sensor_voi)
            mon.sensors = SensorsInternal.from_file("seeg_588.txt")
            mon.region_mapping = RegionMapping.from_file("regionMapping_16k_76.txt")
            if connectivity is not None:
                mon.sensors.configure()
                mon.gain = mon.analytic(np.asarray(connectivity.centres), np.asarray(connectivity.orientations))
            analytic = True
        if connectivity is None or int(connectivity.number_of_regions) != int(mon.region_mapping.array_data.max()) + 1:
            raise ValueError(f"tvb.monitors {sm.class_}: tvb-data's default sensors map onto its 76-region connectome; "
                             f"this connectivity has {n_regions} regions")
        sim_shim = SimpleNamespace(integrator=shim.integrator, number_of_nodes=n_regions, model=shim.model,
                                   surface=None, connectivity=connectivity)
        mon.config_for_sim(sim_shim)
        key = sm.class_.lower()
        i = 2
        while key in out:
            key, i = f"{sm.class_.lower()}{i}", i + 1
        mon.cosim_gain = "analytic (iEEG.analytic per region; tvb-data has no SEEG projection)" if analytic \
            else "tvb-data projection"
        out[key] = (mon, [var])
    return out


def _require_period(period: float, dt: float) -> None:
    k = period / dt
    if round(k) < 1 or not math.isclose(round(k), k, rel_tol=1e-9):
        raise ValueError(f"tvb.monitors: period {period} ms is not a whole multiple of dt {dt} ms")


def channel_labels(mon) -> list[str] | None:
    sensors = getattr(mon, "sensors", None)
    return None if sensors is None else [str(x) for x in sensors.labels]


def state_input_blocks(inputs: Signals, in_cols: dict, W: int, k: int, k_expected: int,
                       whose: str, lag: int = 1, required: str | None = "S_e") -> dict[str, np.ndarray]:
    """Validated ``state/<var>`` inputs of window k as {var: (W, n) float64}; shared by the
    TVB node and the reference node, which both take other nodes' state ``lag`` windows late
    (window k-lag's rows; for k < lag they come from initial outputs and may be missing)."""
    if k != k_expected:
        raise ValueError(f"step({k}) out of order; expected window {k_expected}")
    unknown = sorted(set(inputs) - {f"state/{v}" for v in in_cols})
    if unknown:
        raise ValueError(f"window {k}: unexpected input(s) {unknown}")
    blocks = {}
    for name, arr in inputs.items():
        var = name.partition("/")[2]
        a = np.asarray(arr, dtype=np.float64)
        want = (W, len(in_cols[var]))
        if a.shape != want:
            raise ValueError(f"window {k}: input {name} has shape {a.shape}, expected {want}")
        if not np.isfinite(a).all():
            raise ValueError(f"window {k}: input {name} contains non-finite values")
        blocks[var] = a
    if k >= lag and required is not None and required not in blocks:
        raise ValueError(f"window {k}: missing state/{required} of {whose} (window {k - lag})")
    return blocks


def restore_tvb_copy(tvb: WindowedTVB, directory, info: dict[str, Any], lag: int) -> tuple[dict, int]:
    """Load a checkpoint's ``.npz`` (PROTOCOL.md §10.1) into ``tvb`` (keys ``tvb_*``), refuse one
    written with another lag; returns the file's arrays and its window counter ``k_next``. Shared
    by the TVB node and the reference node, which both checkpoint a WindowedTVB this way."""
    from cosim.runtime.checkpoint import load_arrays
    d = load_arrays(Path(directory) / info["files"][0])
    tvb.set_state({k[4:]: v for k, v in d.items() if k.startswith("tvb_")})
    saved = int(d["lag_windows"]) if "lag_windows" in d else 1      # before the lag existed: 1
    if saved != lag:
        raise ValueError(f"checkpoint was written with a lag of {saved} windows; this run has {lag}")
    return d, int(d["k_next"])


class TVBAdapter(NodeAdapter):
    """The TVB node. ``record_proxy_vars`` (default R_e; e.g. ``("S_i", "R_e", "R_i")``) are also required from
    the spiking side for recording; whatever ``state/*`` of proxies arrives in inputs is used."""

    role = "tvb"
    can_checkpoint = True

    def __init__(self, config: dict | None = None, *, record_proxy_vars: Sequence[str] = ("R_e",),
                 flush_every: int = 500):
        bad = sorted(set(record_proxy_vars) - set(STATE_VARS) - {"S_e"})
        if bad:
            raise ValueError(f"record_proxy_vars: unknown variable(s) {bad}; known {STATE_VARS}")
        self.record_proxy_vars = tuple(v for v in record_proxy_vars if v != "S_e")
        # tvb.h5 is written every `flush_every` windows or every second (H5Appender.flush_s),
        # whichever comes first; every write costs the TVB node ~2.5 ms (resize, write and flush
        # about a dozen datasets) on its own cycle, so short windows flush by time: 20 windows
        # cost the 1.6 ms-window configuration ~0.13 ms per window (bench/toolbox.py, paired runs)
        self.flush_every = flush_every
        self.tvb: WindowedTVB | None = None
        self._config = config
        self.ctx: RunContext | None = None
        self.out: H5Appender | None = None
        self._pending: deque[WindowRecord] = deque()   # simulated, waiting for the proxies' values
        self._complete: list[WindowRecord] = []         # with the proxies' values, not yet written
        self._k_next = 0
        self._timing = {"integrate_s": 0.0, "outputs_s": 0.0, "record_s": 0.0}
        self._target: TargetCoupling | None = None    # coupling/R_e of a target-dependent coupling

    # ---- setup ---------------------------------------------------------------------------
    def _build(self, config: dict, tvb_dt_ms: float | None = None) -> WindowedTVB:
        if self.tvb is None:
            run, tvb = parse_sections(config)
            if tvb_dt_ms is not None:
                check_dt(tvb, tvb_dt_ms, "tvb node")
            self.run_cfg, self.tvb_cfg = run, tvb
            self.tvb = WindowedTVB(tvb, run.seed)
        return self.tvb

    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        w = self._build(ctx.config or self._config or {}, ctx.tvb_dt_ms)
        proxies = tuple(int(r) for r in validate_regions(ctx.regions, w.n_regions, "spiking regions"))
        if w.legacy:
            return [SignalSpec("state/S_e", proxies)] + [SignalSpec(f"state/{v}", proxies) for v in self.record_proxy_vars]
        full, rates = self._proxy_groups(ctx, proxies)
        out = []
        if full:
            out += [SignalSpec(f"state/{v}", full) for v in w.state_vars]
        if rates:
            iface = self._interface()
            out += [SignalSpec("state/R_e", rates)] + ([SignalSpec("state/R_i", rates)] if iface.needs_R_i else [])
        return out

    def _proxy_groups(self, ctx: RunContext, proxies) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Proxies whose owner sends the full mean-field state (reference backend) and those that send
        population rates (spiking backends), from the config's spiking_nodes."""
        full: set[int] = set()
        for n in (ctx.config or self._config or {}).get("spiking_nodes") or []:
            if isinstance(n, dict) and n.get("backend") in FULL_STATE_BACKENDS:
                full.update(int(r) for r in n.get("regions") or [])
        return tuple(r for r in proxies if r in full), tuple(r for r in proxies if r not in full)

    def _interface(self):
        """The model's spiking interface; one line saying what to declare if it has none."""
        w = self.tvb
        assert w is not None
        if w.interface is None:
            from cosim.config.interfaces import find
            find(self.tvb_cfg.model_class, self.tvb_cfg.interface)      # raises the one line
        return w.interface

    def estimate_step_s(self) -> float | None:
        """Seconds per TVB step (CONFIGURED.cost; run.lookahead: auto)."""
        return self.tvb.estimate_step_s() if self.tvb is not None else None

    def connectome(self) -> dict[str, Any]:
        if self.tvb is None:
            raise RuntimeError("connectome() before requires(): the simulator is not built yet")
        return self.tvb.connectome()

    def configure(self, ctx: RunContext) -> None:
        w = self._build(ctx.config or self._config or {}, ctx.tvb_dt_ms)
        self.ctx, n = ctx, w.n_regions
        W = self.W = int(ctx.steps_per_window)
        if W < 1:
            raise ValueError(f"steps_per_window must be >= 1, got {W}")
        m = self.m = lag_of(ctx)
        self.proxies = validate_regions(ctx.regions, n, "spiking regions")
        self.is_proxy = np.zeros(n, dtype=bool)
        self.is_proxy[self.proxies] = True
        D = crossing_min_delay_steps(w.weights, w.idelays, [set(self.proxies.tolist())])
        if D is not None and m * W > D + 1:
            lagged = "" if m == 1 else f" with a lag of {m} windows ({m * W} steps)"
            raise ValueError(f"window of {W} steps{lagged} is not causal: the shortest delay between TVB and "
                             f"spiking regions is {D} steps (lag x window must not exceed {D + 1} steps)")
        # inputs
        self.in_cols: dict[str, np.ndarray] = {}
        self.names = w.names
        consumable = STATE_VARS if w.legacy else w.state_vars + ("R_e", "R_i")
        for s in ctx.inputs:
            kind, _, var = s.name.partition("/")
            if kind != "state" or var not in consumable:
                raise ValueError(f"tvb node cannot consume {s.name!r}")
            r = validate_regions(s.regions, n, s.name)
            if not self.is_proxy[r].all():
                raise ValueError(f"input {s.name} covers non-spiking regions {r[~self.is_proxy[r]].tolist()}")
            self.in_cols[var] = r
        if not w.legacy:
            self._configure_generic(ctx)
        elif "S_e" not in self.in_cols or set(self.in_cols["S_e"].tolist()) != set(self.proxies.tolist()):
            raise ValueError("tvb node needs state/S_e of every spiking region as input")
        if "S_i" in self.in_cols and set(self.in_cols["S_i"].tolist()) != set(self.proxies.tolist()):
            raise ValueError("state/S_i input must cover the same regions as state/S_e")
        self._si_order = None      # columns of the S_i block in S_e's region order
        if "S_i" in self.in_cols:
            pos = {int(r): i for i, r in enumerate(self.in_cols["S_i"])}
            self._si_order = np.array([pos[int(r)] for r in self.in_cols["S_e"]], dtype=np.int64)
        # outputs
        self.plans: dict[str, CouplingPlan] = {}
        self.out_specs: list[tuple[SignalSpec, np.ndarray]] = []
        for s in ctx.outputs:
            kind, _, var = s.name.partition("/")
            r = validate_regions(s.regions, n, s.name)
            if kind == "state" and var in self.names:
                if self.is_proxy[r].any():
                    log.warning("output %s includes spiking regions %s: TVB's stand-in values",
                                s.name, r[self.is_proxy[r]].tolist())
            elif kind == "coupling" and var in (COUPLING_VARS if w.legacy else ("R_e",) if "R_e" in self.names else ()):
                self.plans[s.name] = CouplingPlan(r, ~self.is_proxy, w.weights, w.idelays, W, s.name, m)
            else:
                raise ValueError(f"tvb node cannot produce {s.name!r}")
            self.out_specs.append((s, r))
        self._configure_target_coupling()
        self._R_ring = None
        if "coupling/R_e" in self.plans and self._target is None:
            self._R_ring = np.empty((w.n_time, n))
            self._R_ring[w.slot(w.initial.steps)] = w.initial.R_e
        self.monitors = make_monitors(self.tvb_cfg, n, self.names, w.sim.connectivity)
        self._open_results()
        log.info("tvb node: %d regions, %d spiking %s, W=%d steps (%g ms), lag %d, %d windows, outputs %s",
                 n, len(self.proxies), self.proxies.tolist(), W, W * w.dt, m, ctx.n_windows,
                 [s.name for s, _ in self.out_specs])

    def _configure_target_coupling(self) -> None:
        """A coupling that depends on the target's own state (Difference, Kuramoto): ``coupling/R_e``
        becomes the interface's ``coupling_rate`` of TVB's own pre/post coupling of each target
        (:class:`TargetCoupling`), with the target's state ``x_target`` = the history's value at the
        last step received from the spiking side (step 0 before any arrived)."""
        w = self.tvb
        assert w is not None
        self._target = None
        plan = self.plans.get("coupling/R_e")
        if plan is None or not target_dependent(w.sim.coupling, len(w.cvar)):
            return
        from cosim.config.interfaces import RWW_EXC_INH, check_coupling
        iface = RWW_EXC_INH if w.legacy else self._interface()
        check_coupling(iface, type(w.sim.coupling).__name__, True)
        self._target = TargetCoupling(w, plan)
        assert iface.coupling_rate is not None           # check_coupling refused an interface without one
        self._target_rate = iface.coupling_rate
        self._target_params = {k: np.asarray(v)[plan.targets] for k, v in getattr(w, "_mparams", {}).items()}
        self._x_target = np.array(w.sim.history.buffer[w.slot(0), :, :, 0], copy=True)   # (n_cvar, N) float32

    def _configure_generic(self, ctx: RunContext) -> None:
        """Any model but ReducedWongWangExcInh: proxies owned by a full-state (reference) node get
        every state variable; proxies of spiking nodes get R_e (R_i) through the interface's transformer."""
        w = self.tvb
        assert w is not None
        full, rates = self._proxy_groups(ctx, tuple(int(r) for r in self.proxies))
        for v in w.state_vars:
            if full and (v not in self.in_cols or set(self.in_cols[v].tolist()) != set(full)):
                raise ValueError(f"tvb node needs state/{v} of regions {list(full)} (full-state nodes) as input")
        self._full = np.array(full, dtype=np.int64)
        self._rate_regions = np.array(rates, dtype=np.int64)
        self._transformer = None
        if rates:
            iface = self._interface()
            if iface.transformer is None:
                raise ValueError(f"the {iface.model} interface has no transformer for spiking regions")
            if "R_e" not in self.in_cols or set(self.in_cols["R_e"].tolist()) != set(rates):
                raise ValueError(f"tvb node needs state/R_e of spiking regions {list(rates)} as input")
            params = {k: np.asarray(v)[self.in_cols["R_e"]] for k, v in w._mparams.items()}
            self._transformer = iface.transformer(len(rates), w.dt, params)

    def _apply_generic(self, blocks: dict[str, np.ndarray], first: int, rec: WindowRecord | None) -> dict:
        """Overwrite the proxies of window k-m (steps ``first ..``); returns {var: (cols, block)} to record."""
        w = self.tvb
        assert w is not None
        put: dict[str, list] = {}
        if self._full.size and w.state_vars[0] in blocks:
            cols = self.in_cols[w.state_vars[0]]
            vals = {}
            for v in w.state_vars:
                b = blocks[v]
                if not np.array_equal(self.in_cols[v], cols):
                    pos = {int(r): i for i, r in enumerate(self.in_cols[v])}
                    b = b[:, [pos[int(r)] for r in cols]]
                vals[v] = b
            w.overwrite_vars(cols, vals, first)
            for v, b in vals.items():
                put.setdefault(v, []).append((cols, b))
        if self._transformer is not None and "R_e" in blocks:
            cols = self.in_cols["R_e"]
            rates = {"R_e": blocks["R_e"]}
            if "R_i" in blocks:
                pos = {int(r): i for i, r in enumerate(self.in_cols["R_i"])}
                rates["R_i"] = blocks["R_i"][:, [pos[int(r)] for r in cols]]
            stand_in = {v: rec.vars[v][:, cols] for v in w.state_vars} if rec is not None else \
                {v: np.repeat(w._state[i, cols, 0][None], blocks["R_e"].shape[0], 0) for i, v in enumerate(w.state_vars)}
            vals = self._transformer(rates, stand_in)
            w.overwrite_vars(cols, vals, first)
            for v, b in vals.items():
                put.setdefault(v, []).append((cols, b))
            put.setdefault("R_e", []).append((cols, blocks["R_e"]))
        return put

    def _open_results(self) -> None:
        ctx, w = self.ctx, self.tvb
        assert ctx is not None and w is not None
        if not ctx.results_dir:
            self.out = None
            return
        sources = {v: ("spiking" if v in self.in_cols else "tvb_standin") for v in self.names}
        units = json.dumps(units_of(self.names))
        # a resumed file holds the windows recorded by the checkpoint: all but the last m, which
        # wait for the proxies' true values (they are in the checkpoint)
        done = None if ctx.resume is None else max(0, ctx.resume["window"] + 1 - self.m)
        self.out = H5Appender(Path(ctx.results_dir) / "tvb.h5", flush_every=self.flush_every,
                              resume_windows=done, attrs={
            "node": ctx.node_name, "region_labels": w.region_labels, "spiking_regions": self.proxies.tolist(),
            "dt_ms": w.dt, "steps_per_window": self.W, "lag_windows": self.m, "n_windows": ctx.n_windows,
            "seed": self.run_cfg.seed,
            "tvb_config": json.dumps(self.tvb_cfg.model_dump(mode="json")), "units": units,
            "model": type(w.sim.model).__name__, "state_variables": list(w.state_vars),
            "proxy_sources": json.dumps(sources),
            "note": "proxy (spiking region) columns come from the spiking side (see proxy_sources); "
                    "raw/proxy_from_spiking is 0 for rows where they are TVB's stand-in values"})
        n = w.n_regions
        if self.tvb_cfg.monitors.raw:
            self.out.add_group("raw", {**{v: n for v in self.names}, "proxy_from_spiking": 0},
                               dtypes={"proxy_from_spiking": "u1"}, attrs={"units": units})
        for name, (mon, vois) in self.monitors.items():
            labels = channel_labels(mon)
            if labels is None:
                self.out.add_group(name, {v: n for v in vois}, attrs={"period_ms": mon.period, "units": units})
            else:         # sensor space: one column per channel
                self.out.add_group(name, {v: len(labels) for v in vois}, attrs={
                    "period_ms": mon.period, "units": json.dumps({v: "a.u." for v in vois}), "channel_labels": labels,
                    "sensors": type(mon.sensors).__name__, "projection_of": json.dumps(vois),
                    "gain": getattr(mon, "cosim_gain", "")})

    # ---- signals -------------------------------------------------------------------------
    def _values_S_e(self, src, J):
        return self.tvb.history_S_e(src, J)

    def _values_R_e(self, src, J):
        w = self.tvb
        assert w is not None
        if src.size:
            w.check_in_history(int(src.min()), int(src.max()))
        return self._R_ring[w.slot(src), J]

    def _outputs(self, rec: WindowRecord, coupling_first_step: int, coupling_steps: int) -> Signals:
        out: Signals = {}
        for s, r in self.out_specs:
            kind, _, var = s.name.partition("/")
            if kind == "state":
                out[s.name] = np.ascontiguousarray(getattr(rec, var)[:, r])
            elif var == "R_e" and self._target is not None:
                c = self._target.compute(coupling_first_step, coupling_steps, self._x_target[:, r])
                out[s.name] = np.asarray(self._target_rate(c, self._target_params), dtype=np.float64)
            else:
                vals = self._values_S_e if var == "S_e" else self._values_R_e
                out[s.name] = self.plans[s.name].compute(coupling_first_step, coupling_steps, vals)
        return out

    def initial_outputs(self) -> Signals:
        if self.ctx is None:
            raise RuntimeError("initial_outputs() before configure()")
        assert self.tvb is not None
        n = self.m * self.W            # windows -m .. -1: steps -n+1 .. 0; coupling of windows 0 .. m-1
        out = self._outputs(self.tvb.initial.tail(min(n, self.tvb.n_time)), 1, n)
        if n > self.tvb.n_time:        # initial history is shorter than m windows: send no state
            out = {k: v for k, v in out.items() if not k.startswith("state/")}
        return out

    def step(self, window: int, inputs: Signals) -> Signals:
        k = int(window)
        if self.ctx is None:
            raise RuntimeError("step() before configure()")
        assert self.tvb is not None
        m = self.m
        blocks = state_input_blocks(inputs, self.in_cols, self.W, k, self._k_next, "the spiking regions", m,
                                    "S_e" if self.tvb.legacy else None)
        w, W = self.tvb, self.W
        if not w.legacy:
            rec = self._pending[0] if k >= m and self._pending else None
            put = self._apply_generic(blocks, (k - m) * W + 1, rec) if blocks else {}
        elif "S_e" in blocks:            # window k-m's rows: steps (k-m)W+1 .. (k-m+1)W
            s_i = blocks["S_i"][:, self._si_order] if "S_i" in blocks else None
            w.overwrite(self.in_cols["S_e"], blocks["S_e"], s_i, (k - m) * W + 1)
        if k >= m and self._target is not None:   # the targets' state for coupling/R_e of window k+m
            self._x_target[...] = w.sim.history.buffer[w.slot((k - m + 1) * W), :, :, 0]
        if k >= m:                     # window k-m gets the proxies' true values and is recorded
            rec = self._pending.popleft()
            if rec.first_step != (k - m) * W + 1:
                raise RuntimeError(f"window {k}: the oldest window waiting to be recorded starts at step "
                                   f"{rec.first_step}, expected window {k - m}")
            if w.legacy:
                for var, b in blocks.items():
                    getattr(rec, var)[:, self.in_cols[var]] = b
            else:
                for var, parts in put.items():
                    if var in rec.vars:
                        for cols, b in parts:
                            rec.vars[var][:, cols] = b
                if "R_e" in rec.vars and self._full.size and w.interface is not None:
                    sv = {v: rec.vars[v][:, self._full] for v in w.state_vars}
                    p = {kk: vv[self._full] for kk, vv in w._mparams.items()}
                    rec.vars["R_e"][:, self._full] = w.interface.rate(sv, rec.coupling[:, self._full], p)
            self._complete.append(rec)      # recorded by after_window(), once the outputs are out
        t1 = time.perf_counter()
        rec = w.run_window(W)
        t2 = time.perf_counter()
        if self._R_ring is not None:
            tail = rec.tail(min(W, w.n_time))
            self._R_ring[w.slot(tail.steps)] = tail.R_e
        out = self._outputs(rec, rec.first_step + m * W, W)      # coupling for window k+m
        self._pending.append(rec)
        self._k_next = k + 1
        t3 = time.perf_counter()
        self._timing["integrate_s"] += t2 - t1
        self._timing["outputs_s"] += t3 - t2
        return out

    def _record(self, rec: WindowRecord, from_spiking: bool) -> None:
        if self.out is None and not from_spiking:
            return
        assert self.tvb is not None
        t_ms = rec.steps * self.tvb.dt
        X = rec.stacked()
        if self.out is not None and self.out.has_group("raw"):
            self.out.append("raw", t_ms, {**{v: X[i] for i, v in enumerate(rec.names)},
                                          "proxy_from_spiking": np.full(len(t_ms), from_spiking, np.uint8)})
        if not from_spiking:
            if self.out is not None:
                self.out.end_window()
            return
        off = self.tvb.offset
        for name, (mon, vois) in self.monitors.items():
            times, rows = [], []
            for i, n in enumerate(rec.steps):
                res = mon.record(off + int(n), X[:, i, :, None])
                if res is not None:
                    times.append(res[0] - off * self.tvb.dt)
                    rows.append(np.asarray(res[1])[:, :, 0])
            if rows and self.out is not None:
                data = np.stack(rows, axis=1)
                self.out.append(name, np.array(times), {v: data[j] for j, v in enumerate(vois)})
        if self.out is not None:
            self.out.end_window()

    # ---- checkpoint (PROTOCOL.md §10.1) -----------------------------------------------------
    def checkpoint(self, directory) -> dict[str, Any]:
        """TVB's state, the windows not yet recorded (up to m; they wait for the proxies' true
        values), the coupling/R_e ring and the monitors' accumulators; tvb.h5 made durable first.

        The waiting windows are stacked: ``pending_first_steps`` (q,), ``pending_<var>`` (q, W, N).
        ``restore`` also reads the format written before the lag existed (one waiting window:
        scalar ``pending_first_step``, ``pending_<var>`` (W, N))."""
        self.after_window()             # tvb.h5 holds every window that has its proxies' values
        from cosim.runtime.checkpoint import save_arrays
        assert self.ctx is not None and self.tvb is not None
        d: dict[str, Any] = {f"tvb_{k}": v for k, v in self.tvb.get_state().items()}
        d["k_next"] = np.int64(self._k_next)
        d["lag_windows"] = np.int64(self.m)
        if self._pending:
            q = list(self._pending)
            d["pending_first_steps"] = np.array([p.first_step for p in q], dtype=np.int64)
            for v in self.names + ("coupling",):
                d[f"pending_{v}"] = np.stack([getattr(p, v) for p in q])
        if (tf := getattr(self, "_transformer", None)) is not None:
            d.update({f"transformer_{k}": v for k, v in tf.get_state().items()})
        if self._R_ring is not None:
            d["R_ring"] = self._R_ring
        if self._target is not None:
            d["x_target"] = self._x_target
        for name, (mon, _) in self.monitors.items():
            for attr, v in vars(mon).items():
                if attr.startswith("_") and isinstance(v, np.ndarray):
                    d[f"mon_{name}_{attr}"] = v
        name = f"{self.ctx.node_name}.npz"
        save_arrays(Path(directory) / name, d)
        rows = {"tvb.h5": self.out.rows()} if self.out is not None else {}
        return {"files": [name], "rows": rows}

    def restore(self, directory, info: dict[str, Any]) -> None:
        assert self.tvb is not None
        d, self._k_next = restore_tvb_copy(self.tvb, directory, info, self.m)
        self._pending = deque()
        if "pending_first_steps" in d:
            for i, first in enumerate(d["pending_first_steps"]):
                self._pending.append(WindowRecord(int(first), {v: np.array(d[f"pending_{v}"][i]) for v in self.names},
                                                  np.array(d["pending_coupling"][i])))
        elif "pending_S_e" in d:       # written before the lag existed: one waiting window
            self._pending.append(WindowRecord(int(d["pending_first_step"]),
                                              {v: np.array(d[f"pending_{v}"]) for v in self.names},
                                              np.array(d["pending_coupling"])))
        if (tf := getattr(self, "_transformer", None)) is not None:
            tf.set_state({k[12:]: v for k, v in d.items() if k.startswith("transformer_")})
        want = min(self._k_next, self.m)
        if len(self._pending) != want:
            raise ValueError(f"checkpoint holds {len(self._pending)} window(s) waiting to be recorded, "
                             f"expected {want} after {self._k_next} window(s) with a lag of {self.m}")
        if self._R_ring is not None:
            self._R_ring[...] = d["R_ring"]
        if self._target is not None:
            if "x_target" not in d or d["x_target"].shape != self._x_target.shape:
                raise ValueError("checkpoint: the targets' coupling state (x_target) is missing or of another shape")
            self._x_target[...] = d["x_target"]
        for name, (mon, _) in self.monitors.items():
            for attr, v in vars(mon).items():
                key = f"mon_{name}_{attr}"
                if attr.startswith("_") and isinstance(v, np.ndarray):
                    if key not in d or d[key].shape != v.shape:
                        raise ValueError(f"checkpoint: monitor {name} state {attr} missing or of another shape")
                    v[...] = d[key]

    def after_window(self) -> None:
        """Write the windows that got their proxies' values (tvb.h5, monitors): called by the
        runtime once this window's outputs have left, so recording is off the critical path."""
        t0 = time.perf_counter()
        for rec in self._complete:
            self._record(rec, from_spiking=True)
        self._complete.clear()
        self._timing["record_s"] += time.perf_counter() - t0

    def finish(self, aborted: str | None = None) -> dict:
        self.after_window()
        while self._pending:           # the last m windows never get the proxies' values
            self._record(self._pending.popleft(), from_spiking=False)
        path = None
        if self.out is not None:
            path = str(self.out.path)
            self.out.set_attrs("", {"windows_done": self._k_next, "steps_done": self._k_next * getattr(self, "W", 0)})
            self.out.close(aborted is None, aborted)
            self.out = None
        return {"windows": self._k_next, "results": path, **{k: round(v, 6) for k, v in self._timing.items()}}
