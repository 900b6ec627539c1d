"""BOLD functional connectivity of the default example, against the structural connectivity.

Runs the default example (examples/default.yaml: NetPyNE regions 33 and 71 in tvb-data's 76-region
brain) with tvb-library's BOLD monitor (``tvb.monitors.bold_period_ms: 2000``) long enough for a
functional-connectivity matrix, then plots FC (Pearson correlation of the BOLD signals after the
haemodynamic warm-up) next to the structural weights and FC against SC. TVB integrates with
stochastic Heun (nsig 1e-3) unless ``--deterministic``: without noise the TVB regions sit near a
fixed point and their only fluctuations are the two spiking regions' (Poisson-driven) activity
spreading through the connectome, so FC is ~1 within each hemisphere (each holds one spiking
region) and says little about SC (measured: 120 s runs, docs/science.md §4).

    python examples/bold_fc.py --duration-s 120 --out results/bold_fc      # one cosim run, then the figure
    python examples/bold_fc.py --plot-only --out results/bold_fc             # figure from an existing run

Raw and temporal-average monitors are off (a 120 s run would write GBs); spikes are not recorded.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def run(out: Path, duration_s: float, seed: int, stochastic: bool) -> None:
    cfg = yaml.safe_load((REPO / "examples" / "default.yaml").read_text())
    cfg.pop("coordinator", None)
    cfg["run"].update({"name": "bold_fc", "duration_ms": duration_s * 1000.0, "seed": seed, "progress": False,
                       "results_dir": str(out.parent)})
    cfg["tvb"]["monitors"] = {"raw": False, "temporal_average_ms": None, "bold_period_ms": 2000.0}
    if stochastic:      # without noise only the spiking regions fluctuate (module docstring)
        cfg["tvb"]["integrator"] = {"kind": "heun_stochastic", "noise_sigma": 1e-3}
    cfg["spiking_nodes"][0]["params"] = {"record": {"plot": False, "spikes": False}}
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    p = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(path), "--out", str(out), "--no-plots"],
                       env=env, cwd=out.parent)
    if p.returncode != 0:
        raise SystemExit(f"bold_fc: the run failed (exit {p.returncode})")


def fc_from(out: Path, warmup_s: float, var: str = "S_e"):
    import h5py
    with h5py.File(out / "tvb.h5") as f:
        t = f["bold/time_ms"][...]
        x = f[f"bold/{var}"][...]
        spiking = [int(r) for r in f.attrs["spiking_regions"]]
    keep = t > warmup_s * 1000.0
    if keep.sum() < 10:
        raise SystemExit(f"bold_fc: only {int(keep.sum())} BOLD samples after {warmup_s} s; run longer")
    x = x[keep]
    flat = x.std(axis=0) < 1e-9 * np.maximum(np.abs(x).mean(axis=0), 1e-300)
    fc = np.corrcoef(x.T)
    fc[flat, :] = fc[:, flat] = np.nan          # a region whose BOLD does not move has no FC
    return t[keep], fc, spiking, int(flat.sum())


def plot(out: Path, fig_path: Path, warmup_s: float) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tvb.datatypes.connectivity import Connectivity
    t, fc, spiking, n_flat = fc_from(out, warmup_s)
    sc = np.asarray(Connectivity.from_file().weights, dtype=float)
    iu = np.triu_indices_from(sc, 1)
    sc_u, fc_u = sc[iu], fc[iu]
    ok = np.isfinite(fc_u)
    r_all = float(np.corrcoef(sc_u[ok], fc_u[ok])[0, 1])
    nz = ok & (sc_u > 0)
    r_log = float(np.corrcoef(np.log(sc_u[nz]), fc_u[nz])[0, 1])
    fig, ax = plt.subplots(1, 3, figsize=(14, 4.4))
    im = ax[0].imshow(sc, cmap="magma")
    ax[0].set_title("structural connectivity (tvb-data 76 weights)")
    fig.colorbar(im, ax=ax[0], fraction=0.046)
    im = ax[1].imshow(fc, cmap="RdBu_r", vmin=-1, vmax=1)
    ax[1].set_title(f"BOLD FC ({t.size} samples of 2 s, t > {warmup_s:g} s)"
                    + (f"; {n_flat} flat regions blank" if n_flat else ""), fontsize=9)
    fig.colorbar(im, ax=ax[1], fraction=0.046)
    for a in ax[:2]:
        for r in spiking:
            a.axhline(r, color="lime", lw=0.5)
            a.axvline(r, color="lime", lw=0.5)
    ax[2].plot(sc_u[~(sc_u > 0)], fc_u[~(sc_u > 0)], ".", color="0.7", ms=2, label="SC = 0")
    ax[2].plot(sc_u[sc_u > 0], fc_u[sc_u > 0], ".", color="C0", ms=3, label="SC > 0")
    ax[2].set_xlabel("SC weight")
    ax[2].set_ylabel("FC (BOLD correlation)")
    ax[2].set_title(f"FC vs SC: r = {r_all:.2f} (all pairs), {r_log:.2f} (log SC, SC > 0)", fontsize=9)
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(fig_path, dpi=100)
    plt.close(fig)
    return {"samples": int(t.size), "flat_regions": n_flat, "r_sc_fc": r_all, "r_logsc_fc": r_log,
            "figure": str(fig_path)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/bold_fc")
    ap.add_argument("--duration-s", type=float, default=120.0)
    ap.add_argument("--warmup-s", type=float, default=20.0, help="left out (the haemodynamic kernel fills up)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--deterministic", action="store_true",
                    help="keep the default example's deterministic Heun (most regions' BOLD goes flat)")
    ap.add_argument("--figure", default=None, help="figure path (default OUT/bold_fc.png)")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    if not a.plot_only:
        run(out, a.duration_s, a.seed, stochastic=not a.deterministic)
    print(plot(out, Path(a.figure) if a.figure else out / "bold_fc.png", a.warmup_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
