"""Summary figure of a spiking node's results file (matplotlib, Agg backend).

One row per spiking region: a raster of the spikes of every population (exc, inh, other), and its measured E rate next to the
R_e sent to TVB and the Poisson input rate received. Written to
``<results_dir>/<node_name>_spiking.png``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def plot_results(h5_path: str | Path, out: str | Path | None = None, max_spikes: int = 200_000) -> Path:
    import h5py
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h5_path = Path(h5_path)
    out = Path(out) if out else h5_path.with_name(h5_path.stem + "_spiking.png")
    with h5py.File(h5_path, "r") as f:
        regions = list(f.attrs["regions"])
        dt = float(f.attrs["tvb_dt_ms"])
        steps = f["steps"][:] if "steps" in f else np.empty(0)
        t_steps = steps * dt
        get = lambda name: f[name][:] if name in f else np.zeros((len(steps), len(regions)))  # noqa: E731
        r_exc, R_e, rate_in = get("rates/exc"), get("output/R_e"), get("input/rate_hz")
        sp = {k: f[f"spikes/{k}"][:max_spikes] for k in ("t_ms", "gid", "region", "pop")} if "spikes/t_ms" in f else None
        roles = [r.decode() if isinstance(r, bytes) else r for r in f["pops/role"][:]]
        status = f.attrs.get("status", "")
    fig, axes = plt.subplots(len(regions), 2, figsize=(12, 3.2 * len(regions)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    for j, r in enumerate(regions):
        ax = axes[j, 0]
        if sp is not None:
            sel = sp["region"] == r
            colors = np.array([{"inh": "tab:blue", "exc": "tab:red"}.get(roles[p], "0.4") for p in sp["pop"][sel]])
            ax.scatter(sp["t_ms"][sel], sp["gid"][sel], s=8, c=colors, marker="|", linewidths=0.8)
        ax.set_title(f"region {r}: raster (exc red, inh blue, other grey)")
        ax.set_ylabel("gid")
        ax = axes[j, 1]
        if len(t_steps):
            win = max(1, int(round(1.0 / dt)))         # 1 ms boxcar for the raw rate
            sm = np.convolve(r_exc[:, j], np.ones(win) / win, mode="same")
            ax.plot(t_steps, sm, color="0.6", lw=0.8, label="E rate (1 ms)")
            ax.plot(t_steps, R_e[:, j], color="tab:red", lw=1.5, label="R_e sent")
            ax.plot(t_steps, rate_in[:, j], color="tab:green", lw=1.0, label="input rate / neuron")
        ax.set_ylabel("Hz")
        ax.set_title(f"region {r}: rates")
        ax.legend(loc="upper right", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"{h5_path.stem}: {status}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    log.info("plot written to %s", out)
    return out
