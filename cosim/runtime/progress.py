"""What a user sees of long work: the run's progress bar (simulated time, windows/s, real-time
factor; tqdm) and one line per compiled mechanism."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class ProgressBar:
    """The one progress bar of a run: windows done of all, simulated time, windows/s and the
    real-time factor. The coordinator draws it when run alone; `cosim run` and `cosim.run()`
    draw it from the coordinator's PROGRESS broadcasts (``bar_cls``: tqdm, or tqdm.auto's widget
    in Jupyter)."""

    def __init__(self, enabled: bool = True, bar_cls: Any = None, file: Any = None):
        self.enabled = enabled
        self.bar: Any = None     # a tqdm bar, made on the first update
        self.bar_cls, self.file = bar_cls or tqdm, file

    def update(self, done: int, total: int, sim_ms: float, wall_s: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = self.bar_cls(total=total, unit="win", file=self.file or sys.stderr, mininterval=0.5,
                                    dynamic_ncols=True,
                                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} windows [{elapsed}<{remaining}] {postfix}")
        self.bar.n = done
        rate = done / wall_s if wall_s > 0 else 0.0
        rtf = wall_s / (sim_ms / 1000) if sim_ms else 0.0
        self.bar.set_postfix_str(f"t={sim_ms:.1f} ms, {rate:.0f} win/s, {rtf:.2f}× real time", refresh=False)
        self.bar.refresh() if done == total else self.bar.update(0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def compile_progress(node: str):
    def show(done: int, total: int, name: str) -> None:
        print(f"cosim: {node}: compiling mechanisms {done}/{total} ({name})", file=sys.stderr, flush=True)
    return show
