"""What TVB-multiscale's TVB⇄NetPyNE example *computes*, where it differs from what it intends.

``params.toolbox`` (:class:`~.config.ToolboxCompat`) switches each difference on; the preset
``tvb.conventions: tvb-multiscale-compat`` turns on all but (g) (docs/science.md §2, "What the toolbox
computes", gives the toolbox's file and line of each, what each moves, and why (g) stays off). Paths
below are in ``the-virtual-brain/tvb-multiscale`` at commit ``550cb032``.

- (a) ``weight_sd_as_variance``: ``netpyne_templates.py:46-49`` writes
  ``max(0.0, normal(w, w*0.1))``, but NEURON's ``normal(mean, variance)`` takes a variance: the
  standard deviation is ``sqrt(0.1*w)``, and after clipping at 0 the mean weight is 1.48× (w 0.02)
  or 1.82× (w 0.01) the intended one (:func:`weight_expr`).
- (b) ``input_skips_last_step``: ``tvb_netpyne/netpyne/utils.py:15`` loops over
  ``range(1, len(times))``: the rate of the window's step i drives slot i−1, step 0's rate is never
  used and the last slot of each window gets no input spikes (15 of 16 steps; :func:`gap_rates`).
- (d) ``rate_kernel_per_window``: ``transformers/models/elephant.py:550-556, 578-617``: elephant's
  ``instantaneous_rate`` with a Gaussian kernel of σ = one TVB step, sampled at the TVB step and cut
  at 5σ, over each synchronisation window alone and without border correction: spikes near a
  window's borders lose the kernel mass that falls outside it (0.954 of the mass is kept for 16
  steps; :func:`window_kernel_rates`). Only the rate sent to TVB (the proxy's R) sees this;
  ``rates/exc`` keeps the plain count.
- (f) ``input_random_divergence``: ``tvb_netpyne/netpyne/module.py:178-204`` connects each source's
  N_E trains with NetPyNE's ``divergence: 1``: each train goes to one E cell drawn at random, so a
  cell receives a binomial number (mean 1) of trains per source instead of exactly one.
- (g) ``fixed_wiring``: the toolbox never sets NetPyNE's seeds (``SimConfig.seeds`` defaults, 1)
  and creates each region's E then I cells region by region, so its within-region wiring and
  weights (drawn by NetPyNE from the gids and the seed) are the same in every run, whatever the
  TVB seed: :data:`NETPYNE_DEFAULT_SEEDS` and region-major cell order reproduce that very network.

(c) (NEURON dt 0.05 ms) is ``params.dt_ms``; (e) (the noise seed that tvb-library ignores) is
``tvb.integrator.noise_seed``.
"""
from __future__ import annotations

import numpy as np

#: NetPyNE's own ``SimConfig.seeds`` (what the toolbox runs with, never changed)
NETPYNE_DEFAULT_SEEDS = {"conn": 1, "stim": 1, "loc": 1, "cell": 1}
#: elephant's default kernel cut-off, in kernel sigmas
KERNEL_CUTOFF = 5


def weight_expr(w: float, sd_frac: float, as_variance: bool) -> float | str:
    """NetPyNE weight of a within-region rule: ``max(0, N(w, sd_frac*w))`` drawn by NEURON. NEURON's
    ``normal(mean, variance)`` takes a variance; ``as_variance`` gives it ``w*sd_frac`` as the toolbox
    does (a), so the spread is ``sqrt(sd_frac*w)``."""
    if sd_frac <= 0 or w == 0:
        return float(w)
    second = w * sd_frac if as_variance else (sd_frac * w) ** 2
    return f"max(0, normal({w!r}, {second!r}))"


def mean_clipped_normal(mean: float, sd: float) -> float:
    """E[max(0, X)] for X ~ N(mean, sd): what a weight rule gives on average (docs, tests)."""
    from math import erf, exp, pi, sqrt
    if sd <= 0:
        return max(mean, 0.0)
    z = mean / sd
    return mean * 0.5 * (1 + erf(z / sqrt(2))) + sd * exp(-z * z / 2) / sqrt(2 * pi)


def gap_rates(rates: np.ndarray) -> np.ndarray:
    """(b): the rates a window's trains are drawn from, (W, ...) -> (W, ...): row i+1 on slot i, the
    last slot silent (step 0's rate is dropped)."""
    out = np.zeros_like(rates)
    out[:-1] = rates[1:]
    return out


def kernel_weights(cutoff: int = KERNEL_CUTOFF) -> np.ndarray:
    """elephant's GaussianKernel with σ = the sampling period, sampled at whole periods -cutoff..cutoff
    (its ``t_arr_kernel``), times the period: the weight of a count on its neighbouring steps."""
    k = np.arange(-cutoff, cutoff + 1, dtype=np.float64)
    return np.exp(-0.5 * k * k) / np.sqrt(2 * np.pi)


def window_kernel_rates(rates: np.ndarray, cutoff: int = KERNEL_CUTOFF) -> np.ndarray:
    """(d): per-step rates of one window, (W, n_regions), smoothed as elephant's ``instantaneous_rate``
    smooths the window's spikes: a centred convolution with :func:`kernel_weights` over this window
    alone (no border correction), so mass near the borders is lost."""
    k = kernel_weights(cutoff)
    out = np.empty_like(rates, dtype=np.float64)
    for j in range(rates.shape[1]):
        full = np.convolve(rates[:, j], k, mode="full")      # 'same' = the centred W rows of 'full'
        out[:, j] = full[cutoff:cutoff + rates.shape[0]]
    return np.maximum(out, 0.0)


def kept_mass(W: int, cutoff: int = KERNEL_CUTOFF) -> float:
    """Share of a window's spikes that (d) keeps, spikes spread evenly over its W steps (16: 0.954)."""
    return float(window_kernel_rates(np.ones((W, 1)), cutoff).mean())
