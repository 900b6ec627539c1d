"""WindowedTVB: a real tvb-library Simulator advanced a window of W steps at a time.

Pure simulator code (no sockets). It repeats the body of ``Simulator.__call__``'s loop
(``integrate_next_step``, ``_loop_update_history``, ``_loop_compute_node_coupling``) instead
of calling ``sim()`` per window, keeps absolute step numbers, lets a caller overwrite the
history (and the current state) of chosen regions with values computed elsewhere (proxies),
and records per step S_e, S_i and the rates R_e, R_i of every region.

Step numbering follows PROTOCOL.md §3: step 0 is the initial state, window k covers steps
``k*W+1 .. k*W+W``. Internally TVB's absolute step is ``offset + n``; ``offset`` is the
simulator's ``current_step`` after ``configure()``, which is **0** here (random initial
history; ``horizon - 1`` only with full-length user initial conditions). The history slot of
step n is ``(offset + n) % n_time``.

Rates: R(n) = H(I(n)) with I formed exactly as ReducedWongWangExcInh's numba dfun forms it, from
the state at the end of step n and the coupling TVB computes right after step n (the one it
uses for step n + 1, reading the history at ``n - idelay``; it already contains the coupling's
``a``). A numba kernel with the dfun's operation order makes R bit-identical to the ``h`` the
dfun computes internally.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from cosim.config import TVBSection

log = logging.getLogger(__name__)

# two simulators built at once in one process (cosim.launch.inprocess: nodes are threads) must not
# interleave seeding and drawing from numpy's global RNG
_GLOBAL_RNG = threading.Lock()

_RATE_PARAMS = ("a_e", "b_e", "d_e", "w_p", "W_e", "J_N", "a_i", "b_i", "d_i", "W_i", "J_i",
                "G", "lamda", "I_o", "I_ext")


class _DropRandomStateWarning(logging.Filter):
    """TVB warns 'random_state supplied for non-stochastic integration' on every sim() call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "random_state supplied for non-stochastic" not in record.getMessage()


def silence_tvb_random_state_warning() -> None:
    lg = logging.getLogger("tvb.simulator.integrators")
    if not any(isinstance(f, _DropRandomStateWarning) for f in lg.filters):
        lg.addFilter(_DropRandomStateWarning())


@njit(cache=True)
def _rates(S_e, S_i, c, ae, be, de, wp, we, jn, ai, bi, di, wi, ji, g, lam, io, ie, R_e, R_i):
    """R_e, R_i from flat S_e, S_i, coupling c; per-region params (nreg,); the dfun's operation order."""
    nreg = ae.shape[0]
    for idx in range(S_e.shape[0]):
        r = idx % nreg
        cc = g[r] * jn[r] * c[idx]
        jnSe = jn[r] * S_e[idx]
        x = wp[r] * jnSe - ji[r] * S_i[idx] + we[r] * io[r] + cc + ie[r]
        x = ae[r] * x - be[r]
        R_e[idx] = x / (1 - np.exp(-de[r] * x))
        x = jnSe - S_i[idx] + wi[r] * io[r] + lam[r] * cc
        x = ai[r] * x - bi[r]
        R_i[idx] = x / (1 - np.exp(-di[r] * x))


class WindowRecord:
    """Per-step values of every region for steps ``first_step .. first_step + len - 1``.

    ``vars`` maps a recorded variable to a (T, N) float64 array: for ReducedWongWangExcInh
    S_e, S_i, R_e, R_i (as before); for any other model its state variables and, when it has a
    spiking interface, ``R_e`` (the interface's rate in Hz). ``coupling`` (T, N) is TVB's node
    coupling of the first coupled variable computed after each step (a*sum + b). Variables read
    as attributes (``rec.S_e``)."""

    __slots__ = ("first_step", "vars", "coupling")

    def __init__(self, first_step: int, vars: dict[str, np.ndarray], coupling: np.ndarray):
        self.first_step = int(first_step)
        self.vars = vars
        self.coupling = coupling

    def __getattr__(self, name):
        try:
            return self.__getattribute__("vars")[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.vars)

    @property
    def steps(self) -> np.ndarray:
        n = next(iter(self.vars.values())).shape[0]
        return np.arange(self.first_step, self.first_step + n)

    def stacked(self) -> np.ndarray:
        """(V, T, N) in ``names`` order (RWW: S_e, S_i, R_e, R_i)."""
        return np.stack(list(self.vars.values()))

    def tail(self, n: int) -> WindowRecord:
        t = self.coupling.shape[0]
        if not 0 < n <= t:
            raise ValueError(f"cannot take the last {n} of {t} recorded steps")
        return WindowRecord(self.first_step + t - n, {k: v[-n:] for k, v in self.vars.items()}, self.coupling[-n:])


def build_connectivity(tvb: TVBSection):
    """tvb-data's default 76-region connectivity or a user zip; speed and self-connections applied."""
    from tvb.datatypes.connectivity import Connectivity
    if tvb.connectivity == "default":
        conn = Connectivity.from_file()
    else:
        p = Path(tvb.connectivity).expanduser().resolve()
        if not p.is_file():
            raise ValueError(f"tvb.connectivity: file not found: {p}")
        try:
            conn = Connectivity.from_file(str(p))
        except Exception as e:  # tvb raises many kinds on a bad zip
            raise ValueError(f"tvb.connectivity: cannot read {p} as a TVB connectivity: {e}") from e
    conn.speed = np.array([float(tvb.conduction_speed_mm_per_ms)])
    if tvb.remove_self_connections:
        w = np.array(conn.weights, dtype=np.float64, copy=True)
        np.fill_diagonal(w, 0.0)
        conn.weights = w
    if tvb.weights_scaling == "p99":       # tvb-multiscale's normalisation (docs/science.md)
        w = np.array(conn.weights, dtype=np.float64, copy=True)
        p99 = float(np.percentile(w, 99))
        if not p99 > 0:
            raise ValueError("tvb.weights_scaling: p99 needs a 99th percentile of the weights > 0")
        conn.weights = w / p99
    conn.configure()
    return conn


def build_simulator(tvb: TVBSection, seed: int, region_params: dict[str, dict[int, float]] | None = None,
                    duration_ms: float | None = None):
    """An unconfigured tvb-library Simulator for the ``tvb:`` config section: its model, coupling,
    integrator (and noise) and stimulus classes as named there (cosim.config.tvb_classes).

    ``region_params`` maps a model parameter name to ``{region: value}`` overriding the
    homogeneous value for those regions only (the reference node uses it so that its own
    regions differ from TVB's stand-in).

    numpy's global RNG is seeded with ``seed`` right before ``configure()``: the deterministic
    integrator draws the random initial history from it, so every process building the same
    config gets the same history. The stochastic one draws it (and the noise) from its own
    stream seeded with ``seed``. ``duration_ms`` sizes a stimulus' time grid as
    ``Simulator.run(simulation_length=duration_ms)`` does (WindowedTVB grows it if needed).
    """
    from cosim.runtime import startup
    with startup.phase("imports"):
        from tvb.simulator import coupling, monitors, noise, simulator
        from tvb.datatypes.connectivity import Connectivity  # noqa: F401
    from cosim.config import tvb_classes
    silence_tvb_random_state_warning()
    with startup.phase("connectome"):
        conn = build_connectivity(tvb)
    with startup.phase("model import (numba)"):      # e.g. RWW's module compiles its numba gufuncs
        cls = tvb_classes.model_class(tvb.model_class)
    name = cls.__name__
    tvb_classes.check_params(cls, tvb.model, "tvb.model.params")
    params = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)) for k, v in tvb.model.items()}
    n = int(conn.number_of_regions)
    for k, arr in params.items():
        if arr.size not in (1, n):
            raise ValueError(f"tvb.model.params.{k}: {arr.size} values; give one or one per region ({n})")
    for k, per_region in (region_params or {}).items():
        if not hasattr(cls, k) or k not in tvb_classes.params_of(cls):
            raise ValueError(f"unknown {name} parameter {k!r}")
        base = params.get(k, np.asarray(getattr(cls(), k), dtype=np.float64).ravel()[:1])
        arr = np.array(np.broadcast_to(base, (n,)), dtype=np.float64)
        for r, v in per_region.items():
            if not 0 <= int(r) < n:
                raise ValueError(f"region parameter {k!r}: region {r} out of range 0..{n - 1}")
            arr[int(r)] = float(v)
        params[k] = arr
    try:
        model = cls(**params)
    except Exception as e:
        raise ValueError(f"{name} parameters {sorted(params)}: {e}") from e
    if int(getattr(model, "number_of_modes", 1)) != 1:
        raise ValueError(f"tvb.model.class {name}: models with {model.number_of_modes} modes are not supported")
    dt = float(tvb.dt_ms)
    integ_cls = tvb_classes.integrator_class(tvb.integrator.class_name())
    if tvb.integrator.stochastic():
        nvar = len(model.state_variables)
        nz = tvb.integrator.noise
        sig = np.asarray(tvb.integrator.noise_sigma if nz is None else nz.nsig, dtype=np.float64).ravel()
        if sig.size not in (1, nvar):
            raise ValueError(f"tvb.integrator.noise.nsig: {sig.size} values for {nvar} state variables")
        nsig = np.array([float(sig[0])] * nvar) if sig.size == 1 else sig
        nseed = tvb.integrator.noise_seed if nz is None else nz.noise_seed
        nseed = seed if nseed is None else nseed
        ncls = noise.Additive if nz is None or nz.class_ == "Additive" else noise.Multiplicative
        integ = integ_cls(dt=dt, noise=ncls(nsig=nsig, noise_seed=int(nseed)))
    else:
        if tvb.integrator.noise is not None:
            raise ValueError(f"tvb.integrator.noise: {integ_cls.__name__} is deterministic; name a *Stochastic class")
        integ = integ_cls(dt=dt)
    if tvb.coupling is None:
        coup = coupling.Linear(a=np.array([float(tvb.coupling_a)]))
    else:
        try:
            coup = tvb_classes.build("coupling", tvb.coupling)
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"tvb.coupling {tvb.coupling.class_}: {e}") from e
    kw = {}
    if tvb.stimulus is not None:
        from tvb.datatypes.patterns import StimuliRegion
        w = np.zeros(n)
        for r in tvb.stimulus.regions:
            if not 0 <= r < n:
                raise ValueError(f"tvb.stimulus.regions: region {r} out of range 0..{n - 1}")
            w[r] = float(tvb.stimulus.weight)
        kw["stimulus"] = StimuliRegion(temporal=tvb_classes.build("equation", tvb.stimulus.equation),
                                       connectivity=conn, weight=w)
    sim = simulator.Simulator(model=model, connectivity=conn, coupling=coup,
                              integrator=integ, conduction_speed=float(tvb.conduction_speed_mm_per_ms),
                              monitors=[monitors.Raw()], **kw)
    if tvb.stimulus is not None:
        sim.simulation_length = float(duration_ms or 1000.0)
    return sim


class WindowedTVB:
    """A TVB simulator advanced window by window, with proxy overwrite and per-step records."""

    def __init__(self, tvb: TVBSection | dict, seed: int,
                 region_params: dict[str, dict[int, float]] | None = None, duration_ms: float | None = None,
                 interface=None):
        """``interface``: the model's spiking interface (cosim.config.interfaces); None: the
        shipped or declared one if there is one (then ``R_e`` is recorded), else none."""
        if isinstance(tvb, dict):
            tvb = TVBSection.model_validate(tvb)
        self.cfg = tvb
        self.seed = int(seed)
        sim = build_simulator(tvb, self.seed, region_params, duration_ms)
        captured: dict[str, np.ndarray] = {}
        orig_initial = sim.model.initial_for_simulator

        zero = tvb.initial_history == "zero"

        def capture(integrator, shape):   # keep the full random history (TVB keeps only the cvars)
            h = np.zeros(shape) if zero else orig_initial(integrator, shape)
            captured["history"] = h
            return h

        sim.model.initial_for_simulator = capture
        from cosim.runtime import startup
        with _GLOBAL_RNG, startup.phase("TVB configure"):   # TVB draws its random initial history from numpy's global RNG
            np.random.seed(self.seed)
            try:
                sim.configure()
            finally:
                del sim.model.initial_for_simulator
        if "history" not in captured:
            raise RuntimeError("TVB did not build its initial history through model.initial_for_simulator")
        self.sim = sim
        self.offset = int(sim.current_step)        # TVB's absolute step of protocol step 0
        self.n_time = int(sim.history.n_time)
        self.n_regions = int(sim.connectivity.number_of_regions)
        self.dt = float(sim.integrator.dt)
        self.step = 0                                # protocol step of current_state
        self._state = sim.current_state
        self._node_coupling = sim._loop_compute_node_coupling(self.offset + 1)
        n = self.n_regions
        model = sim.model
        self.state_vars = tuple(str(v) for v in model.state_variables)
        self.cvar = tuple(int(i) for i in np.asarray(model.cvar).ravel())
        self.legacy = type(model).__name__ == "ReducedWongWangExcInh" and type(model).__module__.startswith("tvb.")
        from cosim.config import interfaces, tvb_classes
        if interface is None and not self.legacy:
            try:
                interface = interfaces.find(tvb.model_class, tvb.interface)
            except ValueError:
                interface = None
        self.interface = interface
        if self.legacy:
            self._params = [np.ascontiguousarray(np.broadcast_to(np.asarray(getattr(model, k), np.float64).ravel(), (n,)))
                            for k in _RATE_PARAMS]
            self.names: tuple[str, ...] = ("S_e", "S_i", "R_e", "R_i")
        else:
            self._mparams = {k: np.broadcast_to(np.asarray(getattr(model, k), np.float64).ravel(), (n,))
                             for k in tvb_classes.params_of(type(model))
                             if isinstance(getattr(model, k, None), (np.ndarray, float, int))
                             and np.asarray(getattr(model, k)).size in (1, n)}
            self.names = self.state_vars + (("R_e",) if interface is not None and interface.rate is not None else ())
        self._stim = None
        if sim.stimulus is not None:
            self._stim = np.zeros((len(self.state_vars), n, 1))
            self._stim_len = 0
        self.initial = self._initial_record(captured["history"])
        log.info("WindowedTVB: %s, %d regions, dt %g ms, history %d steps, start step %d, integrator %s",
                 type(model).__name__, n, self.dt, self.n_time, self.offset, type(sim.integrator).__name__)

    # ---- connectome ------------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        return np.asarray(self.sim.connectivity.weights, dtype=np.float64)

    @property
    def idelays(self) -> np.ndarray:
        return np.asarray(self.sim.connectivity.idelays, dtype=np.int64)

    @property
    def region_labels(self) -> list[str]:
        return [str(x) for x in self.sim.connectivity.region_labels]

    def connectome(self) -> dict[str, Any]:
        c = self.sim.connectivity
        return {"weights": self.weights.copy(), "idelays": self.idelays.copy(),
                "tract_lengths": np.asarray(c.tract_lengths, dtype=np.float64).copy(),
                "region_labels": self.region_labels,
                "speed_mm_per_ms": float(np.asarray(c.speed).ravel()[0])}

    # ---- rates -----------------------------------------------------------------------------
    def rates(self, S_e: np.ndarray, S_i: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ReducedWongWangExcInh: R_e, R_i (Hz) for arrays (..., N) of S_e, S_i and TVB node coupling (incl. ``a``)."""
        if not self.legacy:
            raise ValueError(f"rates(S_e, S_i, c) is ReducedWongWangExcInh's; this model is {type(self.sim.model).__name__}")
        shape = np.shape(S_e)
        if shape[-1] != self.n_regions or np.shape(S_i) != shape or np.shape(c) != shape:
            raise ValueError(f"rates: shapes {np.shape(S_e)}, {np.shape(S_i)}, {np.shape(c)} "
                             f"must agree and end with {self.n_regions}")
        se = np.ascontiguousarray(S_e, np.float64).ravel()
        si = np.ascontiguousarray(S_i, np.float64).ravel()
        cc = np.ascontiguousarray(c, np.float64).ravel()
        re, ri = np.empty_like(se), np.empty_like(se)
        _rates(se, si, cc, *self._params, re, ri)  # type: ignore[call-arg]
        return re.reshape(shape), ri.reshape(shape)

    def _record_vars(self, S: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
        """Recorded variables from states S (T, nsvar, N) and the first cvar's coupling c (T, N)."""
        if self.legacy:
            S_e, S_i = S[:, 0].copy(), S[:, 1].copy()
            R_e, R_i = self.rates(S_e, S_i, c)
            return {"S_e": S_e, "S_i": S_i, "R_e": R_e, "R_i": R_i}
        out = {v: S[:, i].copy() for i, v in enumerate(self.state_vars)}
        if "R_e" in self.names:
            out["R_e"] = np.asarray(self.interface.rate(out, c, self._mparams), dtype=np.float64)
        return out

    def _initial_record(self, history: np.ndarray) -> WindowRecord:
        """All ``n_time`` initial-history steps ``-n_time+1 .. 0`` (bounded, as TVB keeps them).

        The coupling of a history step n is what TVB's coupling returns for step n + 1 on the
        initial (circular) buffer; only n = 0 is one TVB itself uses.
        """
        nt = self.n_time
        steps = np.arange(-nt + 1, 1)
        slots = (steps + self.offset) % nt
        S = history[slots, :, :, 0]                   # (nt, nsvar, N)
        c = np.stack([self.sim.coupling(self.offset + s + 1, self.sim.history)[0, :, 0] for s in steps])
        return WindowRecord(int(steps[0]), self._record_vars(S, c), c)

    # ---- history access --------------------------------------------------------------------
    def slot(self, steps: np.ndarray | int) -> np.ndarray:
        return (np.asarray(steps) + self.offset) % self.n_time

    def check_in_history(self, first: int, last: int) -> None:
        if last > self.step or first <= self.step - self.n_time:
            raise ValueError(f"steps {first}..{last} are not in TVB's history buffer, which holds "
                             f"steps {self.step - self.n_time + 1}..{self.step}")

    def history_S_e(self, steps: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """S_e as TVB couples through it (float32-rounded) for broadcastable steps/regions arrays."""
        return self.history_cvar(0, steps, regions)

    def history_cvar(self, ci: int, steps: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """The ``ci``-th coupled variable as TVB's history holds it (float32-rounded)."""
        steps = np.asarray(steps)
        if steps.size:
            self.check_in_history(int(steps.min()), int(steps.max()))
        return self.sim.history.buffer[self.slot(steps), ci, np.asarray(regions), 0].astype(np.float64)

    # ---- stepping --------------------------------------------------------------------------
    def _stimulus(self, step: int):
        """TVB's stimulus array for protocol step ``step`` (Simulator._loop_update_stimulus: index step - 1)."""
        stim = self.sim.stimulus
        i = step - 1
        if i >= self._stim_len:         # grow the time grid as Simulator.run(simulation_length) builds it
            length = max(float(self.sim.simulation_length), (i + 1) * self.dt * 2)
            stim.configure_time(np.r_[0.0:length:self.dt].reshape((1, -1)))
            self.sim.simulation_length = length
            self._stim_len = stim._temporal_pattern.shape[1]
        assert self._stim is not None
        self._stim[self.sim.model.stvar, :, :] = stim(i).reshape((1, -1, 1))
        return self._stim

    def run_window(self, n_steps: int) -> WindowRecord:
        """Integrate steps ``step+1 .. step+n_steps`` exactly as ``Simulator.__call__`` does."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        sim = self.sim
        n = self.n_regions
        S = np.empty((n_steps, len(self.state_vars), n))
        C = np.empty((n_steps, n))
        state, nc = self._state, self._node_coupling
        integrate, model = sim.integrate_next_step, sim.model
        update_history, compute_coupling = sim._loop_update_history, sim._loop_compute_node_coupling
        tvb_step = self.offset + self.step
        first = self.step + 1
        if self._stim is None:
            for i in range(n_steps):
                tvb_step += 1
                state = integrate(state, model, nc, 0.0, 0.0)   # no local coupling, no stimulus
                update_history(tvb_step, state)
                nc = compute_coupling(tvb_step + 1)
                S[i] = state[:, :, 0]
                C[i] = nc[0, :, 0]
        else:
            for i in range(n_steps):
                tvb_step += 1
                stim = self._stimulus(first + i)
                state = integrate(state, model, nc, 0.0, stim)
                update_history(tvb_step, state)
                nc = compute_coupling(tvb_step + 1)
                S[i] = state[:, :, 0]
                C[i] = nc[0, :, 0]
        self._state, self._node_coupling = state, nc
        self.step += n_steps
        sim.current_state, sim.current_step = state, tvb_step
        return WindowRecord(first, self._record_vars(S, C), C)

    def estimate_step_s(self, n: int = 20) -> float:
        """Seconds per TVB step, timed on scratch copies: no state, history or noise-stream change
        (run.lookahead: auto weighs it against the measured latency)."""
        sim = self.sim
        rs = getattr(getattr(sim.integrator, "noise", None), "random_stream", None)
        saved = rs.get_state() if rs is not None else None
        state, nc = self._state.copy(), self._node_coupling.copy()
        try:
            stim = 0.0 if self._stim is None else self._stim
            state = sim.integrate_next_step(state, sim.model, nc, 0.0, stim)     # JIT warm-up, untimed
            t0 = time.perf_counter()
            for _ in range(n):
                state = sim.integrate_next_step(state, sim.model, nc, 0.0, stim)
                sim._loop_compute_node_coupling(self.offset + self.step + 1)     # reads the history only
            return (time.perf_counter() - t0) / n
        finally:
            if rs is not None and saved is not None:
                rs.set_state(saved)

    # ---- checkpoint -------------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """Everything that evolves while stepping (PROTOCOL.md §10.1): the float32 history buffer,
        the current state and coupling, the step counters and the noise stream's position."""
        d = {"history": self.sim.history.buffer, "state": self._state, "node_coupling": self._node_coupling,
             "step": np.int64(self.step), "current_step": np.int64(self.sim.current_step)}
        rs = getattr(getattr(self.sim.integrator, "noise", None), "random_stream", None)
        if rs is not None:
            from cosim.runtime.checkpoint import rng_state
            d.update({f"noise_{k}": v for k, v in rng_state(rs).items()})
        return {k: np.array(v, copy=True) for k, v in d.items()}

    def set_state(self, d: dict[str, np.ndarray]) -> None:
        buf = self.sim.history.buffer
        if d["history"].shape != buf.shape or d["history"].dtype != buf.dtype:
            raise ValueError(f"checkpoint history {d['history'].shape} {d['history'].dtype} does not fit "
                             f"this simulator's {buf.shape} {buf.dtype}")
        buf[...] = d["history"]
        self._state = np.array(d["state"], copy=True)
        self._node_coupling = np.array(d["node_coupling"], copy=True)
        self.step = int(d["step"])
        self.sim.current_state, self.sim.current_step = self._state, int(d["current_step"])
        rs = getattr(getattr(self.sim.integrator, "noise", None), "random_stream", None)
        if rs is not None:
            from cosim.runtime.checkpoint import set_rng_state
            set_rng_state(rs, d, "noise_")

    def overwrite(self, region_idx, S_e_block: np.ndarray, S_i_block: np.ndarray | None,
                  first_step: int) -> None:
        """ReducedWongWangExcInh: write S_e (and S_i) of ``region_idx`` for steps ``first_step ..``."""
        blocks = {self.state_vars[0]: S_e_block}
        if S_i_block is not None:
            if np.shape(S_i_block) != np.shape(S_e_block):
                raise ValueError(f"S_i block shape {np.shape(S_i_block)} differs from S_e block {np.shape(S_e_block)}")
            blocks[self.state_vars[1]] = S_i_block
        self.overwrite_vars(region_idx, blocks, first_step)

    def overwrite_vars(self, region_idx, blocks: dict[str, np.ndarray], first_step: int) -> None:
        """Write state variables of ``region_idx`` for steps ``first_step ..`` (one row per step).

        History gets the coupled variables among them (float32, TVB's cast); if the blocks end at
        the current step, the current state gets every variable given. Rows older than the
        history buffer are dropped (no coupling can read them any more). The coupling for the
        next step is recomputed, since zero-delay (self) connections read the current step's
        history.
        """
        regions = np.asarray(region_idx, dtype=np.int64).ravel()
        unknown = sorted(set(blocks) - set(self.state_vars))
        if unknown:
            raise ValueError(f"overwrite: {unknown} are not state variables of {type(self.sim.model).__name__} "
                             f"{list(self.state_vars)}")
        arrs = {v: np.asarray(b, dtype=np.float64) for v, b in blocks.items()}
        if not arrs:
            return
        shape = next(iter(arrs.values())).shape
        for v, a in arrs.items():
            if a.ndim != 2 or a.shape[1] != regions.size:
                raise ValueError(f"{v} block shape {a.shape} does not match {regions.size} regions")
            if a.shape != shape:
                raise ValueError(f"{v} block shape {a.shape} differs from {shape}")
        if regions.size and (regions.min() < 0 or regions.max() >= self.n_regions):
            raise ValueError(f"region index out of range 0..{self.n_regions - 1}: {regions.tolist()}")
        if shape[0] == 0 or regions.size == 0:
            return
        last = first_step + shape[0] - 1
        oldest = self.step - self.n_time + 1
        if first_step < oldest <= last:
            arrs = {v: a[oldest - first_step:] for v, a in arrs.items()}
            first_step = oldest
        self.check_in_history(first_step, last)
        slots = self.slot(np.arange(first_step, last + 1))
        buf = self.sim.history.buffer
        for ci, sv in enumerate(self.cvar):
            block = arrs.get(self.state_vars[sv])
            if block is not None:
                buf[slots[:, None], ci, regions[None, :], 0] = block
        if last == self.step:
            for v, a in arrs.items():
                self._state[self.state_vars.index(v), regions, 0] = a[-1]
        self._node_coupling = self.sim._loop_compute_node_coupling(self.offset + self.step + 1)
