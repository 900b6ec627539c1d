# The TVB node simulator module as it stood before issue 20 (main before the tvbgen branch), kept as
# the oracle of tests/test_tvb_generic.py (same-run comparison, not a recorded fingerprint).
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
from dataclasses import dataclass
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


@dataclass
class WindowRecord:
    """Per-step values of every region for steps ``first_step .. first_step + len - 1``."""
    first_step: int
    S_e: np.ndarray      # (T, N) float64, state at the end of each step
    S_i: np.ndarray
    R_e: np.ndarray      # (T, N) float64, Hz
    R_i: np.ndarray
    coupling: np.ndarray  # (T, N) float64: TVB's node coupling computed after the step (a*sum + b)

    @property
    def steps(self) -> np.ndarray:
        return np.arange(self.first_step, self.first_step + self.S_e.shape[0])

    def stacked(self) -> np.ndarray:
        """(4, T, N): S_e, S_i, R_e, R_i."""
        return np.stack([self.S_e, self.S_i, self.R_e, self.R_i])

    def tail(self, n: int) -> WindowRecord:
        t = self.S_e.shape[0]
        if not 0 < n <= t:
            raise ValueError(f"cannot take the last {n} of {t} recorded steps")
        return WindowRecord(self.first_step + t - n, self.S_e[-n:], self.S_i[-n:], self.R_e[-n:],
                            self.R_i[-n:], self.coupling[-n:])


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


def build_simulator(tvb: TVBSection, seed: int, region_params: dict[str, dict[int, float]] | None = None):
    """An unconfigured tvb-library Simulator for the ``tvb:`` config section.

    ``region_params`` maps a model parameter name to ``{region: value}`` overriding the
    homogeneous value for those regions only (the reference node uses it so that its own
    regions differ from TVB's stand-in).

    numpy's global RNG is seeded with ``seed`` right before ``configure()``: the deterministic
    integrator draws the random initial history from it, so every process building the same
    config gets the same history. The stochastic one draws it (and the noise) from its own
    stream seeded with ``seed``.
    """
    from tvb.simulator import coupling, integrators, models, monitors, noise, simulator
    silence_tvb_random_state_warning()
    conn = build_connectivity(tvb)
    params = {k: np.array([float(v)]) for k, v in tvb.model.items()}
    n = int(conn.number_of_regions)
    for k, per_region in (region_params or {}).items():
        if not hasattr(models.ReducedWongWangExcInh, k):
            raise ValueError(f"unknown ReducedWongWangExcInh parameter {k!r}")
        default = np.asarray(getattr(models.ReducedWongWangExcInh(), k), dtype=np.float64).ravel()[0]
        arr = np.full(n, float(tvb.model.get(k, default)))
        for r, v in per_region.items():
            if not 0 <= int(r) < n:
                raise ValueError(f"region parameter {k!r}: region {r} out of range 0..{n - 1}")
            arr[int(r)] = float(v)
        params[k] = arr
    try:
        model = models.ReducedWongWangExcInh(**params)
    except Exception as e:
        raise ValueError(f"ReducedWongWangExcInh parameters {sorted(params)}: {e}") from e
    dt = float(tvb.dt_ms)
    if tvb.integrator.kind == "heun_deterministic":
        integ = integrators.HeunDeterministic(dt=dt)
    else:
        sig = float(tvb.integrator.noise_sigma)
        nseed = seed if tvb.integrator.noise_seed is None else tvb.integrator.noise_seed
        integ = integrators.HeunStochastic(dt=dt, noise=noise.Additive(nsig=np.array([sig, sig]),
                                                                       noise_seed=int(nseed)))
    sim = simulator.Simulator(model=model, connectivity=conn,
                              coupling=coupling.Linear(a=np.array([float(tvb.coupling_a)])),
                              integrator=integ, conduction_speed=float(tvb.conduction_speed_mm_per_ms),
                              monitors=[monitors.Raw()])
    return sim


class WindowedTVB:
    """A TVB simulator advanced window by window, with proxy overwrite and per-step records."""

    def __init__(self, tvb: TVBSection | dict, seed: int,
                 region_params: dict[str, dict[int, float]] | None = None):
        if isinstance(tvb, dict):
            tvb = TVBSection.model_validate(tvb)
        self.cfg = tvb
        self.seed = int(seed)
        sim = build_simulator(tvb, self.seed, region_params)
        captured: dict[str, np.ndarray] = {}
        orig_initial = sim.model.initial_for_simulator

        zero = tvb.initial_history == "zero"

        def capture(integrator, shape):   # keep the full random history (TVB keeps only S_e)
            h = np.zeros(shape) if zero else orig_initial(integrator, shape)
            captured["history"] = h
            return h

        sim.model.initial_for_simulator = capture
        with _GLOBAL_RNG:            # TVB draws its random initial history from numpy's global RNG
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
        self._params = [np.ascontiguousarray(np.broadcast_to(np.asarray(getattr(model, k), np.float64).ravel(), (n,)))
                        for k in _RATE_PARAMS]
        self.initial = self._initial_record(captured["history"])
        log.info("WindowedTVB: %d regions, dt %g ms, history %d steps, start step %d, integrator %s",
                 n, self.dt, self.n_time, self.offset, type(sim.integrator).__name__)

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
        """R_e, R_i (Hz) for arrays (..., N) of S_e, S_i and TVB node coupling (incl. ``a``)."""
        shape = np.shape(S_e)
        if shape[-1] != self.n_regions or np.shape(S_i) != shape or np.shape(c) != shape:
            raise ValueError(f"rates: shapes {np.shape(S_e)}, {np.shape(S_i)}, {np.shape(c)} "
                             f"must agree and end with {self.n_regions}")
        se = np.ascontiguousarray(S_e, np.float64).ravel()
        si = np.ascontiguousarray(S_i, np.float64).ravel()
        cc = np.ascontiguousarray(c, np.float64).ravel()
        re, ri = np.empty_like(se), np.empty_like(se)
        _rates(se, si, cc, *self._params, re, ri)
        return re.reshape(shape), ri.reshape(shape)

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
        S_e, S_i = S[:, 0].copy(), S[:, 1].copy()
        R_e, R_i = self.rates(S_e, S_i, c)
        return WindowRecord(int(steps[0]), S_e, S_i, R_e, R_i, c)

    # ---- history access --------------------------------------------------------------------
    def slot(self, steps: np.ndarray | int) -> np.ndarray | int:
        return (np.asarray(steps) + self.offset) % self.n_time

    def check_in_history(self, first: int, last: int) -> None:
        if last > self.step or first <= self.step - self.n_time:
            raise ValueError(f"steps {first}..{last} are not in TVB's history buffer, which holds "
                             f"steps {self.step - self.n_time + 1}..{self.step}")

    def history_S_e(self, steps: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """S_e as TVB couples through it (float32-rounded) for broadcastable steps/regions arrays."""
        steps = np.asarray(steps)
        if steps.size:
            self.check_in_history(int(steps.min()), int(steps.max()))
        return self.sim.history.buffer[self.slot(steps), 0, np.asarray(regions), 0].astype(np.float64)

    # ---- stepping --------------------------------------------------------------------------
    def run_window(self, n_steps: int) -> WindowRecord:
        """Integrate steps ``step+1 .. step+n_steps`` exactly as ``Simulator.__call__`` does."""
        if n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, got {n_steps}")
        sim = self.sim
        n = self.n_regions
        S = np.empty((n_steps, 2, n))
        C = np.empty((n_steps, n))
        state, nc = self._state, self._node_coupling
        integrate, model = sim.integrate_next_step, sim.model
        update_history, compute_coupling = sim._loop_update_history, sim._loop_compute_node_coupling
        tvb_step = self.offset + self.step
        first = self.step + 1
        for i in range(n_steps):
            tvb_step += 1
            state = integrate(state, model, nc, 0.0, 0.0)   # no local coupling, no stimulus
            update_history(tvb_step, state)
            nc = compute_coupling(tvb_step + 1)
            S[i] = state[:, :, 0]
            C[i] = nc[0, :, 0]
        self._state, self._node_coupling = state, nc
        self.step += n_steps
        sim.current_state, sim.current_step = state, tvb_step
        S_e, S_i = S[:, 0].copy(), S[:, 1].copy()
        R_e, R_i = self.rates(S_e, S_i, C)
        return WindowRecord(first, S_e, S_i, R_e, R_i, C)

    def estimate_step_s(self, n: int = 20) -> float:
        """Seconds per TVB step, timed on scratch copies: no state, history or noise-stream change
        (run.lookahead: auto weighs it against the measured latency)."""
        sim = self.sim
        rs = getattr(getattr(sim.integrator, "noise", None), "random_stream", None)
        saved = rs.get_state() if rs is not None else None
        state, nc = self._state.copy(), self._node_coupling.copy()
        try:
            state = sim.integrate_next_step(state, sim.model, nc, 0.0, 0.0)      # JIT warm-up, untimed
            t0 = time.perf_counter()
            for _ in range(n):
                state = sim.integrate_next_step(state, sim.model, nc, 0.0, 0.0)
                sim._loop_compute_node_coupling(self.offset + self.step + 1)     # reads the history only
            return (time.perf_counter() - t0) / n
        finally:
            if saved is not None:
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
        """Write S_e (and S_i) of ``region_idx`` for steps ``first_step ..`` (one row per step).

        History gets S_e (float32, TVB's cast); if the block ends at the current step, the
        current state gets S_e and S_i too. Rows older than the history buffer are dropped (no
        coupling can read them any more). The coupling for the next step is recomputed, since
        zero-delay (self) connections read the current step's history.
        """
        regions = np.asarray(region_idx, dtype=np.int64).ravel()
        se = np.asarray(S_e_block, dtype=np.float64)
        if se.ndim != 2 or se.shape[1] != regions.size:
            raise ValueError(f"S_e block shape {se.shape} does not match {regions.size} regions")
        if regions.size and (regions.min() < 0 or regions.max() >= self.n_regions):
            raise ValueError(f"region index out of range 0..{self.n_regions - 1}: {regions.tolist()}")
        if S_i_block is not None and np.shape(S_i_block) != se.shape:
            raise ValueError(f"S_i block shape {np.shape(S_i_block)} differs from S_e block {se.shape}")
        if se.shape[0] == 0 or regions.size == 0:
            return
        last = first_step + se.shape[0] - 1
        oldest = self.step - self.n_time + 1
        if first_step < oldest <= last:
            se = se[oldest - first_step:]
            if S_i_block is not None:
                S_i_block = np.asarray(S_i_block)[oldest - first_step:]
            first_step = oldest
        self.check_in_history(first_step, last)
        slots = self.slot(np.arange(first_step, last + 1))
        self.sim.history.buffer[slots[:, None], 0, regions[None, :], 0] = se
        if last == self.step:
            self._state[0, regions, 0] = se[-1]
            if S_i_block is not None:
                self._state[1, regions, 0] = np.asarray(S_i_block, dtype=np.float64)[-1]
        self._node_coupling = self.sim._loop_compute_node_coupling(self.offset + self.step + 1)
