"""Plot of the TVB node's results: whole-brain activity with the spiking regions marked.

``plot(results_dir)`` reads ``<results_dir>/tvb.h5`` (raw record, else temporal average) and
writes ``tvb_activity.png``: a heatmap of one variable (R_e by default) over time for every
region, spiking regions marked, and below it the traces of the spiking regions.
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)


def incomplete_note(attrs) -> str:
    """The title's note for a tvb.h5 whose run did not complete ("" when its status is completed)."""
    from cosim.runtime.store import COMPLETED
    status = attrs.get("status", "")
    status = status.decode() if isinstance(status, bytes) else str(status)
    return "" if status == COMPLETED else f" — run did not complete ({status or 'no status'})"


def plot(results_dir: str | Path, var: str = "R_e", max_columns: int = 2000,
         name: str = "tvb_activity.png") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir)
    path = results_dir / "tvb.h5"
    if not path.is_file():
        raise FileNotFoundError(f"no TVB results at {path}")
    with h5py.File(path, "r") as f:
        group = next((g for g in ("raw", "tavg") if g in f and var in f[g] and f[g]["time_ms"].shape[0]), None)
        if group is None:
            raise ValueError(f"{path}: no recorded {var!r} in raw or tavg")
        t = f[group]["time_ms"][:]
        step = max(1, int(np.ceil(t.size / max_columns)))
        t = t[::step]
        x = f[group][var][::step]
        spiking = [int(r) for r in np.atleast_1d(f.attrs.get("spiking_regions", []))]
        labels = [s.decode() if isinstance(s, bytes) else str(s) for s in f.attrs.get("region_labels", [])]
        note = incomplete_note(f.attrs)
    n = x.shape[1]
    unit = "Hz" if var.startswith("R") else ""
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(11, 8), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.4]})
    im = ax0.imshow(x.T, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis",
                    extent=(t[0], t[-1], -0.5, n - 0.5))
    fig.colorbar(im, ax=ax0, label=f"{var} {unit}".strip(), pad=0.01)
    for r in spiking:
        ax0.axhline(r, color="w", lw=0.6, ls="--")
    if spiking:
        ax0.set_yticks(spiking)
        ax0.set_yticklabels([f"{r} {labels[r]}" if r < len(labels) else str(r) for r in spiking], fontsize=7)
    ax0.set_ylabel("region (spiking marked)")
    ax0.set_title(f"TVB {var} ({group}){note}", fontsize=10)
    for r in spiking:
        ax1.plot(t, x[:, r], lw=0.8, label=f"{r} {labels[r]}" if r < len(labels) else str(r))
    if not spiking:
        ax1.plot(t, x.mean(axis=1), lw=0.8, label="mean over regions")
    ax1.set_xlabel("time (ms)")
    ax1.set_ylabel(f"{var} {unit}".strip())
    ax1.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out = results_dir / name
    fig.savefig(out, dpi=100)
    plt.close(fig)
    log.info("wrote %s", out)
    return out


def plot_sensors(results_dir: str | Path, max_channels: int = 32) -> list[Path]:
    """One figure per sensor monitor (EEG, MEG, iEEG) in tvb.h5: ``tvb_<monitor>.png``, the
    channels' time series stacked with their labels (at most ``max_channels``, evenly chosen)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results_dir = Path(results_dir)
    outs = []
    with h5py.File(results_dir / "tvb.h5", "r") as f:
        groups = [(k, g) for k, g in f.items() if hasattr(g, "attrs") and "channel_labels" in g.attrs]
        for name, g in groups:
            var = next(k for k in g if k != "time_ms")
            t, x = g["time_ms"][:], g[var][:]
            if not t.size:
                continue
            labels = [s.decode() if isinstance(s, bytes) else str(s) for s in g.attrs["channel_labels"]]
            pick = np.unique(np.linspace(0, x.shape[1] - 1, min(max_channels, x.shape[1])).astype(int))
            y = x[:, pick] - x[:, pick].mean(axis=0)
            gap = float(np.percentile(np.abs(y), 99)) * 2 or 1.0
            fig, ax = plt.subplots(figsize=(11, max(4, 0.28 * len(pick))))
            for j in range(len(pick)):
                ax.plot(t, y[:, j] + j * gap, lw=0.6, color="k")
            ax.set_yticks(np.arange(len(pick)) * gap)
            ax.set_yticklabels([labels[c] if c < len(labels) else str(c) for c in pick], fontsize=6)
            ax.set_xlabel("time (ms)")
            ax.set_title(f"{name.upper()} ({len(labels)} channels, {len(pick)} shown) of {var}, "
                         f"{g.attrs.get('period_ms', '')} ms sampling", fontsize=10)
            fig.tight_layout()
            out = results_dir / f"tvb_{name}.png"
            fig.savefig(out, dpi=100)
            plt.close(fig)
            outs.append(out)
    return outs


def plot_results(results_dir: str | Path) -> list[Path]:
    """Entry point used by ``cosim.results.figures.plot_run``: the activity figure (R_e, else the
    model's first recorded variable) and one per sensor monitor."""
    var = "R_e"
    with h5py.File(Path(results_dir) / "tvb.h5", "r") as f:
        g = f["raw"] if "raw" in f else f["tavg"] if "tavg" in f else None
        if g is not None and "R_e" not in g:
            var = next((k for k in g if k not in ("time_ms", "proxy_from_spiking")), var)
    return [plot(results_dir, var=var)] + plot_sensors(results_dir)
