"""Transformers between TVB signals and spikes (pure numpy, no NEURON).

Three pieces, each stepping on the TVB dt (DOMAIN.md, "Transformers"):

- :class:`PoissonInput` -- rates -> spikes. Each input neuron of a region fires its own Poisson
  train at ``rate_hz = scale * signal + offset`` (clipped at 0), piecewise constant per TVB
  step. Trains are generated window by window from seeded ``numpy.random.Generator`` streams per
  region (seed = (run seed, region)), each read in model-time order, so the trains depend on the
  seed and the rates only, never on how the run is cut into windows (lookahead, window_ms).
- :func:`bin_rates` -- spikes -> rates: spikes of a population of N cells counted per TVB step
  and divided by ``N * dt`` -> Hz per neuron.
- :class:`RateProxy` -- the proxy state sent to TVB: ``dR/dt = (r - R) / tau_r`` (exact
  exponential update for r constant over a step) and ``S_e`` from the reduced Wong-Wang
  equation ``dS/dt = -S/tau_e + (1 - S) * gamma_e * R`` (Heun, clipped to [0, 1] like TVB).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: reduced Wong-Wang defaults used by the proxy (DOMAIN.md); cfg.tvb.model overrides them
RWW_DEFAULTS = {"gamma_e": 0.641e-3, "tau_e": 100.0, "gamma_i": 1e-3, "tau_i": 10.0}


def rates_from_signal(signal: np.ndarray, scale: float | np.ndarray, offset: float) -> np.ndarray:
    """The input transformer's linear map, clipped at 0 Hz."""
    return np.maximum(scale * np.asarray(signal, dtype=np.float64) + offset, 0.0)


class PoissonInput:
    """Independent Poisson trains for ``n`` input neurons of one region.

    ``window(rates_hz, t0_ms)`` takes the per-step rates (W,) of the coming window and returns
    ``(times_ms, idx)`` sorted by time: spike times in ``[t0, t0 + W*dt)`` and the input
    neuron index of each. A step's spikes are a Poisson count with mean ``rate*dt`` placed
    uniformly in the step (exactly a Poisson process with a piecewise-constant rate). Drawn as one
    population count per step with each spike assigned to a uniformly chosen neuron, which is the
    same distribution (splitting a Poisson process) at a fraction of the cost.
    """

    def __init__(self, n: int, dt_ms: float, seed: int, region: int):
        if n < 1:
            raise ValueError(f"PoissonInput needs n >= 1 input neurons, got {n}")
        if dt_ms <= 0:
            raise ValueError(f"dt_ms must be > 0, got {dt_ms}")
        self.n = int(n)
        self.dt_ms = float(dt_ms)
        # three streams, one per kind of draw (counts per step, times within the step, neuron), each
        # consumed element by element in model-time order: the trains of steps 0..K-1 are the same
        # whether they are drawn in one window or in many (one stream interleaving the three kinds
        # window by window made them depend on the window length: lookahead changed the spikes,
        # docs/performance.md "Windows and the Poisson drive")
        seq = np.random.SeedSequence([int(seed), int(region), 0x5EED])
        self.streams = [np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(3)]

    @property
    def state(self) -> list[dict[str, Any]]:
        """The streams' states (checkpoints)."""
        return [dict(g.bit_generator.state) for g in self.streams]

    @state.setter
    def state(self, states: list[dict[str, Any]]) -> None:
        if not isinstance(states, list) or len(states) != len(self.streams):
            raise ValueError("a Poisson input state is a list of 3 generator states (a checkpoint of an "
                             "older cosim, whose trains depended on the window length, cannot be resumed)")
        for g, st in zip(self.streams, states):
            g.bit_generator.state = st

    def window(self, rates_hz: np.ndarray, t0_ms: float) -> tuple[np.ndarray, np.ndarray]:
        rates_hz = np.asarray(rates_hz, dtype=np.float64)
        if rates_hz.ndim != 1:
            raise ValueError(f"rates must be 1-D (one per TVB step), got shape {rates_hz.shape}")
        if rates_hz.size and not rates_hz.min() >= 0 or not np.isfinite(rates_hz).all():
            raise ValueError("input rates must be finite and >= 0 Hz")
        # n independent Poisson trains at the same rate == one Poisson count per step for the
        # whole population, each spike given to a uniformly drawn neuron (superposition)
        g_count, g_time, g_cell = self.streams
        counts = g_count.poisson(rates_hz * (self.dt_ms * 1e-3 * self.n))   # element by element, in order
        total = int(counts.sum())
        if total == 0:
            return np.empty(0), np.empty(0, dtype=np.int64)
        # times from the absolute step (t0 is on the step grid), so they are the same floats whatever the window
        step = round(t0_ms / self.dt_ms) + np.repeat(np.arange(rates_hz.size), counts)
        times = (step + g_time.random(total)) * self.dt_ms
        # a uniform double per spike (Generator.integers buffers 32-bit halves per call: not window-free)
        idx = np.minimum((g_cell.random(total) * self.n).astype(np.int64), self.n - 1)
        order = np.argsort(times, kind="stable")
        return times[order], idx[order]


class RegularInput:
    """Rate-matched *regular* trains (``input.process: regular``), the same interface as
    :class:`PoissonInput`: each input neuron integrates its rate and fires each time the integral
    crosses a whole number (spike time interpolated within the step), from a seeded random initial
    phase. Same mean rate as the Poisson trains, no count variance: the study's control for what
    Poisson noise does."""

    def __init__(self, n: int, dt_ms: float, seed: int, region: int):
        if n < 1:
            raise ValueError(f"RegularInput needs n >= 1 input neurons, got {n}")
        self.n = int(n)
        self.dt_ms = float(dt_ms)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(region), 0x4E6])))
        self.phase = rng.random(self.n)            # in spikes; fires when it crosses an integer

    def window(self, rates_hz: np.ndarray, t0_ms: float) -> tuple[np.ndarray, np.ndarray]:
        rates_hz = np.asarray(rates_hz, dtype=np.float64)
        if rates_hz.ndim != 1 or not np.isfinite(rates_hz).all() or (rates_hz.size and rates_hz.min() < 0):
            raise ValueError("input rates must be a finite, >= 0 Hz, 1-D array (one per TVB step)")
        ts, ix = [], []
        for i, r in enumerate(rates_hz):
            inc = r * self.dt_ms * 1e-3
            new = self.phase + inc
            k0, k1 = np.floor(self.phase), np.floor(new)
            if inc > 0 and (k1 > k0).any():
                cnt = (k1 - k0).astype(np.int64)
                who = np.repeat(np.arange(self.n), cnt)
                # the m-th crossing of neuron q is at integer k0+m: time = (k0 + m - phase) / inc of the step
                m = np.concatenate([np.arange(1, c + 1) for c in cnt[cnt > 0]])
                frac = (k0[who] + m - self.phase[who]) / inc
                ts.append(t0_ms + (i + np.clip(frac, 0.0, 1.0)) * self.dt_ms)
                ix.append(who)
            self.phase = new - k1                   # keep the fractional part
        if not ts:
            return np.empty(0), np.empty(0, dtype=np.int64)
        times, idx = np.concatenate(ts), np.concatenate(ix)
        order = np.argsort(times, kind="stable")
        return times[order], idx[order]


def bin_counts(times_ms: np.ndarray, t0_ms: float, dt_ms: float, n_steps: int, tol_ms: float = 0.0) -> np.ndarray:
    """Spike counts per TVB step; step i covers ``(t0 + i*dt, t0 + (i+1)*dt]`` (TVB step n ends
    at n*dt). ``tol_ms`` (half a NEURON dt) moves the edges so that spikes on the NEURON grid are
    binned the same despite float drift of their times; out-of-window times are clipped in."""
    t = np.asarray(times_ms, dtype=np.float64)
    idx = np.ceil((t - t0_ms - tol_ms) / dt_ms).astype(np.int64) - 1
    idx = np.clip(idx, 0, n_steps - 1)
    return np.bincount(idx, minlength=n_steps)[:n_steps].astype(np.float64)


def bin_rates(times_ms: np.ndarray, t0_ms: float, dt_ms: float, n_steps: int, n_cells: int,
              tol_ms: float = 0.0) -> np.ndarray:
    """Spikes -> Hz per neuron for each of ``n_steps`` TVB steps: count / (N * dt)."""
    if n_cells < 1:
        raise ValueError(f"bin_rates needs n_cells >= 1, got {n_cells}")
    return bin_counts(times_ms, t0_ms, dt_ms, n_steps, tol_ms) / (n_cells * dt_ms * 1e-3)


class RateProxy:
    """Proxy state of spiking regions seen by TVB (R in Hz, S_e, optionally S_i)."""

    def __init__(self, n_regions: int, dt_ms: float, tau_r_ms: float = 10.0,
                 model: dict[str, float] | None = None, R_e0: float = 0.0, R_i0: float = 0.0,
                 S_e0: float | None = None, S_i0: float | None = None, integrator: str = "exact"):
        if tau_r_ms <= 0 or dt_ms <= 0:
            raise ValueError("tau_r_ms and dt_ms must be > 0")
        if integrator not in ("exact", "euler"):
            raise ValueError(f"integrator must be 'exact' or 'euler', got {integrator!r}")
        # "euler": forward Euler on (S, R) jointly, S driven by the R of the previous step, as
        # tvb-multiscale's RedWongWangExc transformer integrates it (docs/science.md)
        self.euler = integrator == "euler"
        p = dict(RWW_DEFAULTS)
        p.update({k: float(v) for k, v in (model or {}).items() if k in RWW_DEFAULTS})
        self.p = p
        self.dt = float(dt_ms)
        self.decay = 1.0 - self.dt / tau_r_ms if self.euler else math.exp(-self.dt / tau_r_ms)
        self.R_e = np.full(n_regions, float(R_e0))
        self.R_i = np.full(n_regions, float(R_i0))
        ge, te, gi, ti = p["gamma_e"], p["tau_e"], p["gamma_i"], p["tau_i"]
        # default S: the fixed point of the S equation for the initial R
        self.S_e = np.full(n_regions, ge * R_e0 * te / (1 + ge * R_e0 * te) if S_e0 is None else float(S_e0))
        self.S_i = np.full(n_regions, gi * R_i0 * ti if S_i0 is None else float(S_i0))

    @staticmethod
    def _affine_heun(S0: np.ndarray, a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
        """Heun steps of the linear ODE S' = a_i - b_i*S (a, b: (W, n)), all W steps at once.

        One Heun step is exactly S <- A*S + B with A = 1 - hb + (hb)^2/2, B = h*a*(1 - hb/2);
        composed with cumulative products. Clipped to [0, 1] like TVB (inactive for R >= 0)."""
        hb = h * b
        A = 1.0 - hb + 0.5 * hb * hb
        B = h * a * (1.0 - 0.5 * hb)
        P = np.cumprod(A, axis=0)                       # P[i] = A[0]..A[i]
        S = P * (S0 + np.cumsum(B / P, axis=0))
        if S.min() < 0.0 or S.max() > 1.0:
            S = np.clip(S, 0.0, 1.0)
        return S

    @staticmethod
    def _affine_euler(S0: np.ndarray, a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
        """Forward Euler steps of S' = a_i - b_i*S: S <- (1 - h b) S + h a, step by step (clipped to [0, 1])."""
        S = np.empty_like(a)
        s = np.asarray(S0, dtype=np.float64).copy()
        for i in range(a.shape[0]):
            s = np.clip((1.0 - h * b[i]) * s + h * a[i], 0.0, 1.0)
            S[i] = s
        return S

    def advance(self, r_e: np.ndarray, r_i: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Feed measured rates (W, n_regions) Hz; return per-step R_e, S_e, R_i, S_i (W, n_regions).

        R follows dR/dt = (r - R)/tau_r exactly for r constant over each step; S takes Heun steps
        with R at the end of the step."""
        r_e = np.asarray(r_e, dtype=np.float64)
        W = r_e.shape[0]
        if getattr(self, "_W", None) != W:
            i = np.arange(W)
            self._W = W
            self._pow = self.decay ** (i + 1)[:, None]
            self._M = np.tril(self.decay ** np.maximum(i[:, None] - i[None, :], 0)) * (1 - self.decay)
        p, h, n = self.p, self.dt, r_e.shape[1]
        if r_i is None:
            r_i = np.broadcast_to(self.R_i, r_e.shape)   # R_i held (not reported): stays constant
        if getattr(self, "_n", None) != n:               # e and i stacked column-wise: one pass
            self._n = n
            self._gamma = np.repeat([p["gamma_e"], p["gamma_i"]], n)
            self._inv_tau = np.repeat([1.0 / p["tau_e"], 1.0 / p["tau_i"]], n)
            self._sat = np.repeat([1.0, 0.0], n)
        R0 = np.concatenate((self.R_e, self.R_i))
        R = self._M @ np.hstack((r_e, r_i)) + self._pow * R0
        if self.euler:
            gR = self._gamma * np.vstack((R0[None, :], R[:-1]))      # S_i uses R_(i-1)
            S = self._affine_euler(np.concatenate((self.S_e, self.S_i)), gR, self._inv_tau + self._sat * gR, h)
        else:
            gR = self._gamma * R
            S = self._affine_heun(np.concatenate((self.S_e, self.S_i)), gR, self._inv_tau + self._sat * gR, h)
        self.R_e, self.R_i = R[-1, :n].copy(), R[-1, n:].copy()
        self.S_e, self.S_i = S[-1, :n].copy(), S[-1, n:].copy()
        return {"R_e": R[:, :n], "S_e": S[:, :n], "R_i": R[:, n:], "S_i": S[:, n:]}
