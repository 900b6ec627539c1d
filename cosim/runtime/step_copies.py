"""A node's STEP_DONE copies, sent to the coordinator in batches (PROTOCOL.md §4.1).

The coordinator's copy of a window's outputs is off the critical path: consumers already have
their DATA. Sending it per window cost a message, an encode, a decode and a coordinator wake-up
each window, on the same two cores the simulators run on; a batch of consecutive windows costs
one. A batch leaves when it holds `max_windows`, when its oldest window is `max_age_s` old, or
when the node is about to wait for something only the coordinator can give (its grant is used
up, the run's last window is done, a failure): so the coordinator's record and progress lag by
at most `max_age_s`, and never hold up a grant, a checkpoint or the end.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from cosim.proto.messages import Message, MessageType as T
from cosim.proto.signals import is_event, stamp_events

# a batch leaves at 16 windows (far below the 32-window margin of time-based checkpoint grants,
# services/coordinator/clock.GRANT_CHUNK // 2) or 20 ms after its first window (progress is
# shown ~10 times a second)
MAX_WINDOWS = 16
MAX_AGE_S = 0.02


class StepCopies:
    """Completed windows whose STEP_DONE copy has not left yet."""

    def __init__(self, node: str, max_windows: int = MAX_WINDOWS, max_age_s: float = MAX_AGE_S):
        self.node, self.max_windows, self.max_age_s = node, max_windows, max_age_s
        self.windows: list[int] = []
        self.outputs: list[dict] = []
        self.timings: list[dict] = []
        self.t_first = 0.0

    def __len__(self) -> int:
        return len(self.windows)

    def add(self, k: int, outputs: dict, timing: dict) -> None:
        if not self.windows:
            self.t_first = time.monotonic()
        self.windows.append(k)
        # copied: an adapter may reuse (overwrite) its output arrays in the next window, while
        # this copy waits for its batch (a DATA is encoded at once and needs no copy)
        self.outputs.append({n: np.array(a, copy=True) for n, a in outputs.items()})
        self.timings.append(timing)

    def due(self) -> bool:
        return bool(self.windows) and (len(self.windows) >= self.max_windows
                                       or time.monotonic() - self.t_first >= self.max_age_s)

    def seconds_left(self) -> float:
        """Until the batch is due by age (0 if due; a long time if empty)."""
        if not self.windows:
            return 3600.0
        return max(0.0, self.max_age_s - (time.monotonic() - self.t_first))

    def take(self) -> Message | None:
        """The batch as one STEP_DONE (header window = its last window, `first` = its first; each
        output the windows' rows stacked in order; `timing` one map per window), and empty it."""
        if not self.windows:
            return None
        first, last = self.windows[0], self.windows[-1]
        names = self.outputs[0].keys()
        if len(self.windows) == 1:
            content: dict[str, Any] = {"outputs": {n: stamp_events(a, 0) if is_event(n) else a
                                                   for n, a in self.outputs[0].items()}, "timing": self.timings[0]}
        else:
            content = {"first": first, "timing": self.timings,
                       "outputs": {n: np.concatenate([stamp_events(o[n], i) for i, o in enumerate(self.outputs)])
                                   if is_event(n) else np.concatenate([o[n] for o in self.outputs]) for n in names}}
        self.windows, self.outputs, self.timings = [], [], []
        return Message(T.STEP_DONE, content, node=self.node, window=last)
