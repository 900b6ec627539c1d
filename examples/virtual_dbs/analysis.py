"""Rates and beta power per nucleus from spike times (shared by every backend of the DBS study)."""
from __future__ import annotations

import numpy as np

BETA_HZ = (13.0, 30.0)
BAND_HZ = (2.0, 100.0)


def rate_hz(spike_t_ms: np.ndarray, n_cells: int, t0_ms: float, t1_ms: float) -> float:
    """Mean firing rate per cell over ``[t0, t1)``."""
    t = np.asarray(spike_t_ms)
    k = np.count_nonzero((t >= t0_ms) & (t < t1_ms))
    return float(k / n_cells / ((t1_ms - t0_ms) / 1000.0))


def beta_power(spike_t_ms: np.ndarray, t0_ms: float, t1_ms: float) -> float:
    """Relative beta power of the population activity: the share of the power of its spike count
    (1 ms bins, mean removed, Welch's PSD with 256 ms segments) in 13-30 Hz, of the power in
    2-100 Hz. 0 for a silent population."""
    from scipy.signal import welch
    t = np.asarray(spike_t_ms)
    t = t[(t >= t0_ms) & (t < t1_ms)]
    if t.size < 2:
        return 0.0
    counts, _ = np.histogram(t, bins=np.arange(t0_ms, t1_ms + 1e-9, 1.0))
    x = counts - counts.mean()
    f, p = welch(x, fs=1000.0, nperseg=min(256, x.size))
    band = (f >= BAND_HZ[0]) & (f <= BAND_HZ[1])
    beta = (f >= BETA_HZ[0]) & (f <= BETA_HZ[1])
    tot = p[band].sum()
    return float(p[beta].sum() / tot) if tot > 0 else 0.0
