"""Time on the run's integer clock, and causal-window arithmetic on a connectome (no TVB import:
the coordinator uses it). Every conversion of milliseconds to whole ticks goes through
:func:`whole_ticks` (DOMAIN.md: count time in integer ticks, never by accumulating floats).

PROTOCOL.md §3: the synchronization window W (in TVB steps) must not exceed the smallest
integer delay over connections with non-zero weight that cross between regions owned by
different nodes. Self-connections never cross (a region's coupling to itself stays inside the
node that simulates it).

Measured with tvb-library 2.10 (see tests/test_exactness_inprocess.py): the coupling for step
n reads the history at ``n - 1 - idelay``, so a window of ``D + 1`` steps is still causal;
the protocol keeps the safer ``W <= D``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from cosim.errors import ConfigError


def whole_ticks(ms: float, tick_ms: float) -> int | None:
    """``ms`` as a whole number (>= 1) of ``tick_ms`` ticks, or None if it is not one (relative
    tolerance 1e-9: decimal step sizes such as 0.1 and 0.025 are not exact in binary)."""
    n = round(ms / tick_ms)
    if n < 1 or not math.isclose(n * tick_ms, ms, rel_tol=1e-9, abs_tol=1e-12):
        return None
    return n


def ticks_of(ms: float, tick_ms: float, what: str) -> int:
    """``ms`` as a whole number of ticks, or ConfigError naming ``what``."""
    n = whole_ticks(ms, tick_ms)
    if n is None:
        raise ConfigError(f"{what}: {ms} ms is not a whole multiple of {tick_ms} ms")
    return n


def window_limit_text(window_ms: float, d: int, dt_ms: float) -> str:
    """Why a window is too long, with the smallest delay as it is (0 steps is possible) and the
    largest window allowed (W <= D, but at least 1 step: the coupling reads step n - 1 - D)."""
    max_w = max(d, 1)
    return (f"{window_ms:g} ms is longer than the smallest delay between differently simulated regions allows "
            f"(smallest delay {d} step{'s' if d != 1 else ''} = {d * dt_ms:g} ms; largest window "
            f"{max_w} step{'s' if max_w != 1 else ''} = {max_w * dt_ms:g} ms); use at most {max_w * dt_ms:g} ms")


def _validated_groups(n: int, groups: Sequence[Iterable[int]]) -> np.ndarray:
    """Group label per region; regions in no group form one extra group (the TVB node)."""
    label = np.full(n, -1, dtype=np.int64)
    for g, regions in enumerate(groups):
        for r in regions:
            r = int(r)
            if not 0 <= r < n:
                raise ValueError(f"group {g}: region {r} out of range 0..{n - 1}")
            if label[r] != -1:
                raise ValueError(f"region {r} is in group {int(label[r])} and group {g}")
            label[r] = g
    return label


def crossing_mask(weights: np.ndarray, groups: Sequence[Iterable[int]]) -> np.ndarray:
    """Boolean (N, N): non-zero-weight connections ``[target, source]`` between different groups."""
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {w.shape}")
    label = _validated_groups(w.shape[0], groups)
    return (w != 0) & (label[:, None] != label[None, :])


def crossing_min_delay_steps(weights: np.ndarray, idelays: np.ndarray,
                             groups: Sequence[Iterable[int]]) -> int | None:
    """Smallest ``idelays[i, j]`` over non-zero-weight connections crossing between groups.

    ``groups`` is one region set per node; regions in no set are treated as one more group
    (the TVB node's own regions), so passing only the spiking nodes' regions is enough.
    Self-connections (the diagonal) are never crossing; zero weights are ignored.
    Returns None when nothing crosses (any window is causal).
    """
    d = np.asarray(idelays)
    if d.shape != np.shape(weights):
        raise ValueError(f"idelays shape {d.shape} differs from weights shape {np.shape(weights)}")
    cross = crossing_mask(weights, groups)
    if not cross.any():
        return None
    dmin = int(d[cross].min())
    if dmin < 0:
        raise ValueError(f"negative delay {dmin} on a crossing connection")
    return dmin


def lag_window_problem(window_ms: float | None, lag: int, d: int, dt_ms: float) -> tuple[str, str] | None:
    """``(field, why)`` when ``lag`` windows (run.lookahead m) of ``window_ms`` (None: the largest
    that fits) do not fit in the smallest crossing delay of ``d`` steps (PROTOCOL.md §3: m·W <= D,
    W >= 1 step), else None. One text for `cosim validate`, `cosim run` and the coordinator."""
    max_w = max(int(d), 1)          # a delay of 0 steps still allows a window of 1 (D + 1)
    if lag > max_w:
        return ("run.lookahead", f"{lag} windows of at least one step do not fit in the smallest delay between "
                f"differently simulated regions ({d} steps = {d * dt_ms:g} ms); use at most {max_w} windows")
    if window_ms is None:
        return None
    w = round(window_ms / dt_ms)
    if w * lag <= max_w:
        return None
    if lag == 1:
        return "run.window_ms", window_limit_text(window_ms, int(d), dt_ms)
    return ("run.window_ms", f"{window_ms:g} ms windows with run.lookahead {lag} need {w * lag} steps of delay, but "
            f"the smallest delay between differently simulated regions is {d} steps; use at most "
            f"{max_w // lag * dt_ms:g} ms")
