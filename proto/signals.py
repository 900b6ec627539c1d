"""What a signal block may hold (PROTOCOL.md §4, §7): checked by the producer before sending, by
the consumer on receipt and by the coordinator on its copy; one implementation for all. Pure."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class SignalSpec(Protocol):
    """What a check needs of a signal's spec (cosim.runtime.adapter.SignalSpec has it)."""
    @property
    def name(self) -> str: ...
    @property
    def regions(self) -> Sequence[int]: ...

# The largest magnitude a signal may carry. Far above any physical value (S in [0, 1], rates
# below 1e4 Hz) and far below float32's 3.4e38: TVB keeps the coupling variable in a float32
# history and multiplies it by the weights, so a larger value would become Inf one hop later
# and be blamed on the receiver.
SIGNAL_BOUND = 1e30


def values_ok(a: np.ndarray) -> bool:
    """Every value finite and of magnitude <= SIGNAL_BOUND, in one pass (NaN fails the comparison)."""
    return a.size == 0 or bool(np.abs(a).max() <= SIGNAL_BOUND)


def check_outputs(specs: Sequence[SignalSpec], produced: dict[str, np.ndarray], steps: int,
                  allow_missing: bool = False) -> str | None:
    """None if `produced` holds every spec as a float64 array of shape (steps, n_regions) with
    finite values of magnitude <= SIGNAL_BOUND, else the reason (naming step and region). Event
    signals (``spikes/*``, :func:`is_event`) are left to :func:`check_events`."""
    if not isinstance(produced, dict):
        return f"outputs are not a map of signals ({type(produced).__name__})"
    for s in specs:
        if is_event(s.name):    # event blocks (spikes) are checked by check_events, and never copied
            continue
        a = produced.get(s.name)
        if a is None:
            if allow_missing:
                continue
            return f"missing output {s.name!r}"
        if not isinstance(a, np.ndarray):
            return f"output {s.name!r} is not an array ({type(a).__name__})"
        if a.shape != (steps, len(s.regions)):
            return f"output {s.name!r} has shape {a.shape}, expected {(steps, len(s.regions))}"
        if a.dtype != np.float64:
            return f"output {s.name!r} is {a.dtype}, expected float64"
        if values_ok(a):        # the common case: one reduction
            continue
        bad = ~np.isfinite(a)
        big = np.abs(np.where(bad, 0.0, a)) > SIGNAL_BOUND
        if bad.any() or big.any():
            i, j = np.argwhere(bad | big)[0]
            v = a[i, j]
            kind = "NaN" if np.isnan(v) else ("Inf" if np.isinf(v) else f"{v:g}, beyond ±{SIGNAL_BOUND:g}")
            n = int(bad.sum() + big.sum())
            return (f"output {s.name!r} holds {kind} at step {i} of the window, region {s.regions[j]} "
                    f"({n} bad value{'s' if n > 1 else ''})")
    return None


# ---- event signals (PROTOCOL.md §4.2): spikes/<pop> ----------------------------------------------
#: signal kinds whose window block is a variable-length table of events, not (W, n_regions) values
EVENT_KINDS = ("spikes",)
#: columns of an event block: the region's column in the holder's spec, the cell's index within the
#: region's population, the time in ms from the start of the window
EVENT_COLUMNS = ("col", "cell", "t_ms")


def is_event(name: str) -> bool:
    """Whether signal ``name`` is an event signal (``spikes/E``): its block is (n, 3), see EVENT_COLUMNS."""
    return name.split("/", 1)[0] in EVENT_KINDS


def empty_events() -> np.ndarray:
    return np.zeros((0, 3))


def check_events(a, n_cols: int, span_ms: float) -> str | None:
    """None if ``a`` is a float64 event block of shape (n, 3) whose columns are whole numbers in
    ``[0, n_cols)``, whose cells are whole numbers >= 0 (< 2**31) and whose times lie in
    ``[0, span_ms]`` (the window's length); else the reason."""
    if not isinstance(a, np.ndarray):
        return f"is not an array ({type(a).__name__})"
    if a.dtype != np.float64:
        return f"is {a.dtype}, expected float64"
    if a.ndim != 2 or a.shape[1] != 3:
        return f"has shape {a.shape}, expected (n, 3) events (col, cell, t_ms)"
    if a.size == 0:
        return None
    if not np.isfinite(a).all():
        return "holds NaN or Inf"
    col, cell, t = a[:, 0], a[:, 1], a[:, 2]
    if (col != np.floor(col)).any() or col.min() < 0 or col.max() >= n_cols:
        return f"has region columns outside 0..{n_cols - 1} (or not whole numbers)"
    if (cell != np.floor(cell)).any() or cell.min() < 0 or cell.max() >= 2**31:
        return "has cell indices that are not whole numbers in 0..2**31-1"
    if t.min() < 0 or t.max() > span_ms * (1 + 1e-9) + 1e-9:
        return f"has spike times outside the window (0..{span_ms:g} ms from its start)"
    return None


def select_events(a: np.ndarray, cols) -> np.ndarray:
    """The events of ``a`` whose region column is in ``cols``, renumbered to positions in ``cols``
    (what a producer sends a consumer that takes those columns; None for cols = all of them)."""
    if cols is None:
        return a
    cols = np.asarray(cols, dtype=np.int64)
    if a.shape[0] == 0:
        return empty_events()
    where = np.full(int(max(cols.max(), a[:, 0].max())) + 1, -1, dtype=np.int64)
    where[cols] = np.arange(cols.size)
    pos = where[a[:, 0].astype(np.int64)]
    keep = pos >= 0
    out = a[keep].copy()
    out[:, 0] = pos[keep]
    return out


def stamp_events(a: np.ndarray, offset: int) -> np.ndarray:
    """An event block as a STEP_DONE copy holds it (§4.2): (n, 4), the window's offset in the batch
    (0 for its first window) before (col, cell, t_ms)."""
    return np.concatenate([np.full((a.shape[0], 1), float(offset)), a], axis=1)


def split_events(a, n_windows: int, n_cols: int, span_ms: float) -> tuple[list[np.ndarray] | None, str | None]:
    """A copy's (n, 4) event block as one (n, 3) block per window of the batch, or (None, reason)."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim != 2 or a.shape[1] != 4:
        return None, f"is not a float64 (n, 4) block of events ({getattr(a, 'shape', type(a).__name__)})"
    w = a[:, 0]
    if a.size and (not np.isfinite(w).all() or (w != np.floor(w)).any() or w.min() < 0 or w.max() >= n_windows):
        return None, f"has window offsets outside 0..{n_windows - 1}"
    out = []
    for i in range(n_windows):
        b = np.ascontiguousarray(a[w == i, 1:])
        why = check_events(b, n_cols, span_ms)
        if why:
            return None, f"(window +{i}) {why}"
        out.append(b)
    return out, None
