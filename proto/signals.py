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
    finite values of magnitude <= SIGNAL_BOUND, else the reason (naming step and region)."""
    if not isinstance(produced, dict):
        return f"outputs are not a map of signals ({type(produced).__name__})"
    for s in specs:
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
