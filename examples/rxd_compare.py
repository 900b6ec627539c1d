"""Change one molecular parameter and watch the whole brain respond.

Runs examples/rxd_calcium.yaml twice through `cosim run` (real TVB, real NEURON + rxd, three
processes), with fast and slow calcium extrusion in region 33, then prints the region's rate,
its [Ca]i, and how much every TVB region's R_e moved, and writes rxd_compare.png.

    python examples/rxd_compare.py [--out results/rxd_compare] [--fast 20] [--slow 400]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent


def run(out: Path, tau: float) -> Path:
    d = out / f"tau_{tau:g}ms"
    subprocess.run([sys.executable, "-m", "cosim.cli", "--log-level", "WARNING", "run",
                    str(HERE / "rxd_calcium.yaml"), "--out", str(d), "--no-plots",
                    "--set", f"spiking_nodes.0.params.rxd.tau_ca_ms={tau}"], check=True)
    return d


def load(d: Path) -> dict:
    with h5py.File(d / "tvb.h5", "r") as f:
        R = f["raw/R_e"][:]
        t = f["raw/time_ms"][:]
        spiking = list(f.attrs["spiking_regions"])
    with h5py.File(d / "coordinator.h5", "r") as f:
        sent = f["signals/spiking/state/R_e"][:]
        regions = list(f["signals/spiking/state/R_e"].attrs["regions"])
    with h5py.File(d / "spiking.h5", "r") as f:   # [Ca]i traces of region 33's recorded cells
        ca = float(np.mean([v[:].mean() for v in f["traces/cai"].values()])) if "traces/cai" in f else None
    return {"t": t, "R": R, "sent": sent, "regions": regions, "spiking": spiking, "ca": ca}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/rxd_compare")
    ap.add_argument("--fast", type=float, default=20.0)
    ap.add_argument("--slow", type=float, default=400.0)
    a = ap.parse_args()
    out = Path(a.out)
    fast, slow = load(run(out, a.fast)), load(run(out, a.slow))
    j = fast["regions"].index(33)
    half = len(fast["sent"]) // 2      # after the initial transient
    r_fast, r_slow = fast["sent"][half:, j].mean(), slow["sent"][half:, j].mean()
    n = min(len(fast["R"]), len(slow["R"]))
    tvb_regions = [r for r in range(fast["R"].shape[1]) if r not in fast["spiking"]]
    dR = np.abs(fast["R"][n // 2:n, tvb_regions] - slow["R"][n // 2:n, tvb_regions]).mean(axis=0)
    print(f"region 33 proxy R_e: {r_fast:.2f} Hz with tau_ca={a.fast:g} ms, {r_slow:.2f} Hz with tau_ca={a.slow:g} ms "
          f"({(r_slow - r_fast) / max(r_fast, 1e-9) * 100:+.0f} %)")
    if fast["ca"] is not None:
        print(f"mean [Ca]i: {fast['ca']:.3g} mM (fast) vs {slow['ca']:.3g} mM (slow)")
    k = int(np.argmax(dR))
    print(f"TVB regions whose R_e moved: {(dR > 1e-6).sum()} of {len(tvb_regions)}; "
          f"largest mean |ΔR_e| {dR[k]:.3g} Hz in region {tvb_regions[k]}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    tt = fast["t"][: len(fast["sent"])]
    ax[0].plot(tt, fast["sent"][:, j], label=f"tau_ca {a.fast:g} ms")
    ax[0].plot(tt, slow["sent"][: len(tt), j], label=f"tau_ca {a.slow:g} ms")
    ax[0].set(title="region 33 (spiking, with calcium): R_e sent to TVB", xlabel="time (ms)", ylabel="Hz")
    ax[0].legend()
    ax[1].bar(range(len(tvb_regions)), dR)
    ax[1].set(title="whole brain: mean |ΔR_e| per TVB region (second half)", xlabel="TVB region (index among TVB regions)",
              ylabel="Hz")
    fig.tight_layout()
    p = out / "rxd_compare.png"
    fig.savefig(p, dpi=100)
    print(f"plot: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
