"""Summary figure of a spiking node's results file (matplotlib, Agg backend).

One row per spiking region: a raster of the spikes of every population (exc, inh, other), and its measured E rate next to the
R_e sent to TVB and the Poisson input rate received. With current devices (``params.stimulus``) the
time each is on is shaded in its regions' rasters, and one more row shows what they delivered: every
pulse's start over the run, and the waveform of the first pulses (cosim.sdk.stimulus). Written to
``<results_dir>/<node_name>_spiking.png``.
"""
from __future__ import annotations

import json
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
        stims = json.loads(f.attrs["stimulus_json"]) if "stimulus_json" in f.attrs else []
        pulses = ({k: f[f"stimulus/{k}"][:] for k in ("pulse_t_ms", "pulse_device")}
                  if "stimulus/pulse_t_ms" in f else {"pulse_t_ms": np.empty(0), "pulse_device": np.empty(0, int)})
    rows = len(regions) + (1 if stims else 0)
    fig, axes = plt.subplots(rows, 2, figsize=(12, 3.2 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1]})
    t_end = float(t_steps[-1]) if len(t_steps) else 0.0
    for j, r in enumerate(regions):
        ax = axes[j, 0]
        if sp is not None:
            sel = sp["region"] == r
            colors = np.array([{"inh": "tab:blue", "exc": "tab:red"}.get(roles[p], "0.4") for p in sp["pop"][sel]])
            ax.scatter(sp["t_ms"][sel], sp["gid"][sel], s=8, c=colors, marker="|", linewidths=0.8)
        ax.set_title(f"region {r}: raster (exc red, inh blue, other grey)")
        ax.set_ylabel("gid")
        if t_end > 0:
            ax.set_xlim(0, t_end)
        for i, st in enumerate(stims):
            if any(tg["region"] == r for tg in st["targets"]):
                on, off = _span(st, t_end)
                ax.axvspan(on, off, color=f"C{2 + i}", alpha=0.12, lw=0,
                           label=f"{st['label']} on ({', '.join(tg['population'] for tg in st['targets'] if tg['region'] == r)})")
                ax.legend(loc="upper right", fontsize=7)
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
    if stims:
        _plot_stimulus(axes[-1], stims, pulses, t_end)
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"{h5_path.stem}: {status}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    log.info("plot written to %s", out)
    return out


def _span(st: dict, t_end: float) -> tuple[float, float]:
    g = st["grid"]
    off = t_end if g["n_off"] is None else min(g["n_off"] * g["dt_ms"], t_end)
    return g["n_on"] * g["dt_ms"], off


def _plot_stimulus(axes, stims: list[dict], pulses: dict, t_end: float) -> None:
    """What the devices delivered: each pulse's start over the run (left), the first pulses' waveform
    on the simulator's grid (right; the same samples the simulator was given)."""
    from cosim.sdk.stimulus import grid_of
    left, right = axes
    for i, st in enumerate(stims):
        t = pulses["pulse_t_ms"][pulses["pulse_device"] == i]
        name = f"{st['label']} ({st['declared']['kind']}, {len(t)} pulses)" if st["declared"]["kind"] == "pulse_train" \
            else f"{st['label']} (constant)"
        if t.size:
            left.vlines(t, i - 0.4, i + 0.4, color=f"C{2 + i}", lw=0.6)
        on, off = _span(st, t_end)
        left.plot([on, off], [i, i], color=f"C{2 + i}", lw=0.8, alpha=0.5)
        left.text(on, i + 0.45, name, fontsize=7, va="bottom")
        g = grid_of(st)
        n0 = g.n_on
        n1 = n0 + (int(np.ceil(3 * g.period_steps)) if g.period_steps > 0 else int(round(5 / g.dt_ms))) + 2
        x = np.arange(max(0, n0 - 2), n1)
        right.step(x * g.dt_ms, g.samples(int(x[0]), int(x[-1]) + 1), where="post", color=f"C{2 + i}",
                   label=f"{st['label']} ({g.unit})")
    left.set_yticks(range(len(stims)))
    left.set_yticklabels([st["label"] for st in stims], fontsize=7)
    left.set_ylim(-0.6, len(stims) - 0.1 + 0.5)
    left.set_xlim(0, max(t_end, 1e-9))
    left.set_title("stimulus: pulses delivered (start of each)")
    right.set_title("stimulus: first pulses, per simulator step")
    right.set_ylabel("current")
    right.legend(loc="upper right", fontsize=7)
