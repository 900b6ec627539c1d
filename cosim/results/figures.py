"""Plots of a finished (or stopped) run, written next to its results.

Each service's module draws its own part (TVB whole-brain activity, spiking rasters); this
module draws the exchange and the timing breakdown from coordinator.h5 and calls the others
for whatever files exist.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

# (results file pattern, "module:function(results_dir) -> list[Path]"); spiking nodes draw
# their own plots when they finish (they know their file layout and run where their data is)
_PARTS = [("tvb.h5", "cosim.services.tvb_node.figure:plot_results")]


def plot_run(out: str | Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    out = Path(out)
    written = []
    if (out / "coordinator.h5").exists():
        written.append(plot_exchange(out))
    for pattern, ref in _PARTS:
        if not list(out.glob(pattern)):
            continue
        mod, fn = ref.split(":")
        try:
            f = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError):
            continue
        try:
            written += list(f(out) or [])
        except Exception as e:
            log.warning("plot %s failed: %s", ref, e)
    return written


def plot_exchange(out: Path) -> Path:
    import matplotlib.pyplot as plt
    with h5py.File(out / "coordinator.h5", "r", swmr=True) as f:
        t = f["time_ms"][:, 0]
        sigs = []
        for producer in f["signals"]:
            for kind in f["signals"][producer]:
                for var in f["signals"][producer][kind]:
                    d = f["signals"][producer][kind][var]
                    sigs.append((f"{producer}: {kind}/{var}", d[:], list(d.attrs["regions"])))
        timing = {n: f["timing"][n][:] for n in f["timing"] if n != "window_wall_s"}
        wall = f["timing"]["window_wall_s"][:, 0]
    shown = [s for s in sigs if s[1].shape[1] <= 12]
    fig, axes = plt.subplots(len(shown) + 1, 1, figsize=(10, 2.2 * (len(shown) + 1)), squeeze=False)
    for ax, (label, data, regions) in zip(axes[:, 0], shown):
        for j, r in enumerate(regions):
            ax.plot(t[: len(data)], data[:, j], lw=0.8, label=f"region {r}")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    ax = axes[-1, 0]
    for n, v in timing.items():
        ax.plot(v[:, 0] * 1e3, lw=0.7, label=f"{n} compute")
    ax.plot(wall * 1e3, "k", lw=0.7, label="window wall (coordinator)")
    ax.set_xlabel("window")
    ax.set_ylabel("ms")
    ax.set_title("per-window timing", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "exchange.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return p
