"""What every spiking-network adapter works out the same way (NetPyNE, NEST, outside plugins):
the simulator's steps per TVB step, the outputs it can produce, spike counts per TVB step, and
the proxy state as the requested output blocks. Pure NumPy; raises ValueError with one line."""
from __future__ import annotations

import numpy as np

from cosim.config.timing import whole_ticks
from cosim.runtime.adapter import RunContext, SignalSpec

#: output signal -> proxy variable (cosim.sdk.transformers.RateProxy)
PRODUCIBLE = {"state/R_e": "R_e", "state/S_e": "S_e", "state/R_i": "R_i", "state/S_i": "S_i"}


def _ticks(ms: float, tick_ms: float, what: str) -> int:
    n = whole_ticks(ms, tick_ms)
    if n is None:
        raise ValueError(f"{what} = {ms} ms is not a whole number of ticks of {tick_ms} ms")
    return n


def sim_steps_per_tvb(sim_dt_ms: float, ctx: RunContext, what: str = "params.dt_ms") -> int:
    """Simulator steps per TVB step, counted in the run's integer ticks (never by float division)."""
    sim = _ticks(sim_dt_ms, ctx.tick_ms, what)
    tvb = _ticks(ctx.tvb_dt_ms, ctx.tick_ms, "tvb dt")
    if tvb % sim:
        raise ValueError(f"{what} = {sim_dt_ms} does not divide the TVB dt {ctx.tvb_dt_ms}")
    return tvb // sim


def check_outputs(outputs: list[SignalSpec], regions: list[int]) -> None:
    """Every output PREPARE asks for is a proxy variable of a region simulated here."""
    own = set(regions)
    for spec in outputs:
        if spec.name not in PRODUCIBLE:
            raise ValueError(f"cannot produce {spec.name!r}; this node produces {sorted(PRODUCIBLE)}")
        bad = [r for r in spec.regions if r not in own]
        if bad:
            raise ValueError(f"output {spec.name} asks for regions {bad} not simulated here ({list(regions)})")


def exc_inh_counts(step: np.ndarray, kind: np.ndarray, col: np.ndarray, W: int, n_regions: int) -> np.ndarray:
    """Spike counts (2, W, n_regions): [0] excitatory, [1] inhibitory, per TVB step of the window.
    ``step`` is each spike's TVB step in the window, ``kind`` 0 exc / 1 inh / -1 other, ``col`` its
    region's column (-1: not a region of this node); spikes with kind or col < 0 are left out."""
    ok = (kind >= 0) & (col >= 0)
    flat = (kind[ok] * W + step[ok]) * n_regions + col[ok]
    return np.bincount(flat, minlength=2 * W * n_regions).astype(np.float64).reshape(2, W, n_regions)


def step_of(t_ms: np.ndarray, t0_ms: float, tvb_dt_ms: float, sim_dt_ms: float, W: int) -> np.ndarray:
    """TVB step of the window for spike times on the simulator's grid: step i covers
    ``(t0 + i*dt, t0 + (i+1)*dt]``; half a simulator step absorbs float drift of the times."""
    step = np.ceil((t_ms - t0_ms - 0.5 * sim_dt_ms) / tvb_dt_ms).astype(np.int64) - 1
    return np.clip(step, 0, W - 1, out=step)


def proxy_outputs(prox: dict[str, np.ndarray], outputs: list[SignalSpec], col: dict[int, int]) -> dict:
    """The requested output blocks (W, len(spec.regions)) from the proxy state of this node's regions."""
    return {s.name: np.ascontiguousarray(prox[PRODUCIBLE[s.name]][:, [col[r] for r in s.regions]]) for s in outputs}
