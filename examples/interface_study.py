"""Interface sensitivity study: how much each interface choice moves the result (issue 14).

The default example (examples/default.yaml: regions 33 and 71 as NetPyNE E/I networks in tvb-data's
76-region brain) is run once per *choice*, changing one convention at a time from the default,
each over several seeds (``run.seed``: TVB's random history and noise, the networks' wiring, every
input train). For each run: the mean E and I rate of each spiking region and the mean R_e of the
TVB-simulated regions, after a transient. Reported as mean ± sd over seeds, in a markdown table
(``study.md``), a JSON file (``study.json``, every run's numbers) and a figure (``study.png``).

    python examples/interface_study.py                      # full study (~45 runs of 500 ms)
    python examples/interface_study.py --small --out DIR    # CI: tiny runs, 2 seeds, 3 choices
    python examples/interface_study.py --workers 2           # two runs at a time

Each run is a real co-simulation (TVB and NetPyNE as separate processes): each choice is a
``cosim.sweep`` over the seeds, every choice on the same Dask LocalCluster (``--workers N`` runs at
a time), whose workers import TVB and NetPyNE once and fork every run's services from there.
Run folders are named by their config's hash: running the study again skips the runs it has.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

#: one change from the default example per choice (deep-merged into the config)
CHOICES: dict[str, dict] = {
    "default (summed, raw weights, deterministic, random history, tau_r 10 ms, Poisson)": {},
    "per-source input": {"spiking": {"input": {"mode": "per_source"}}},
    "per-source input at the toolbox's weight a*G*w": {"spiking": {"input": {"mode": "per_source", "scale": 1.0,
                                                                               "weight_uS": 0.0078125}}},
    "weights / p99 (max 1)": {"tvb": {"weights_scaling": "p99"}},
    "stochastic Heun (nsig 1e-3)": {"tvb": {"integrator": {"kind": "heun_stochastic", "noise_sigma": 1e-3}}},
    "zero initial history": {"tvb": {"initial_history": "zero"}},
    "tau_r 2 ms": {"spiking": {"output": {"tau_r_ms": 2.0}}},
    "tau_r 50 ms": {"spiking": {"output": {"tau_r_ms": 50.0}}},
    "regular input (rate-matched)": {"spiking": {"input": {"process": "regular"}}},
    "tvb-multiscale preset (all of its conventions)": {"tvb": {"conventions": "tvb-multiscale"}},
}
#: the preset with one of its settings reverted (``--preset-decomposition``): (tvb changes, spiking changes)
PRESET_REVERTED: dict[str, tuple[dict, dict]] = {
    "tvb-multiscale preset": ({}, {}),
    "… but deterministic Heun": ({"integrator": {"kind": "heun_deterministic"}}, {}),
    "… but random initial history": ({"initial_history": "random"}, {}),
    "… but raw weights": ({"weights_scaling": "none"}, {}),
    "… but self-connections kept": ({"remove_self_connections": False}, {}),
    "… but input delay 1 ms": ({}, {"input": {"delay_ms": 1.0}}),
    "… but inter-region weight 0.01 G w": ({}, {"inter_region": {"weight_factor_uS": 0.01}}),
    "… but exact proxy integration": ({}, {"output": {"integrator": "exact"}}),
}
SMALL_CHOICES = ["default (summed, raw weights, deterministic, random history, tau_r 10 ms, Poisson)",
                 "per-source input", "zero initial history"]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config(choice: dict, seed: int, duration_ms: float, small: bool) -> dict:
    cfg = yaml.safe_load((REPO / "examples" / "default.yaml").read_text())
    cfg["run"].update({"duration_ms": duration_ms, "seed": seed, "progress": False})
    cfg.pop("coordinator", None)                 # free loopback ports (runs may overlap other work)
    node = cfg["spiking_nodes"][0]
    node["params"] = {"record": {"plot": False, "spikes": False}}
    if small:
        node["params"]["network"] = {"n_exc": 30, "n_inh": 10}
    cfg["tvb"]["monitors"]["temporal_average_ms"] = None
    cfg["tvb"] = _merge(cfg["tvb"], choice.get("tvb", {}))
    if cfg["tvb"].get("conventions") == "tvb-multiscale":     # the preset fills what default.yaml leaves unset
        for k in ("remove_self_connections", "weights_scaling", "initial_history", "integrator"):
            cfg["tvb"].pop(k, None)
    node["params"] = _merge(node["params"], choice.get("spiking", {}))
    return cfg


def summarize(out: Path, transient_ms: float) -> dict:
    """Mean rates after the transient: E and I of each spiking region, R_e over TVB's own regions."""
    import h5py
    res = {}
    with h5py.File(out / "spiking.h5") as f:
        regions = [int(r) for r in f.attrs["regions"]]
        dt = float(f.attrs["tvb_dt_ms"])
        keep = f["steps"][...] * dt > transient_ms
        for kind in ("exc", "inh"):
            rates = f[f"rates/{kind}"][...][keep]
            for j, r in enumerate(regions):
                res[f"{'E' if kind == 'exc' else 'I'} {r} (Hz)"] = float(rates[:, j].mean())
    with h5py.File(out / "tvb.h5") as f:
        spiking = set(int(r) for r in f.attrs["spiking_regions"])
        t = f["raw/time_ms"][...]
        R = f["raw/R_e"][...][t > transient_ms]
        tvb_cols = [i for i in range(R.shape[1]) if i not in spiking]
        res["TVB R_e (Hz)"] = float(R[:, tvb_cols].mean())
    return res


def table(results: dict[str, list[dict]]) -> tuple[list[str], str]:
    cols = list(next(iter(results.values()))[0].keys())
    lines = ["| choice | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name, runs in results.items():
        cells = []
        for c in cols:
            v = np.array([r[c] for r in runs])
            cells.append(f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return cols, "\n".join(lines) + "\n"


def figure(results: dict[str, list[dict]], cols: list[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.0 * len(cols), 0.45 * len(names) + 1.8), sharey=True)
    axes = np.atleast_1d(axes)
    y = np.arange(len(names))
    for ax, c in zip(axes, cols):
        vals = [np.array([r[c] for r in results[n]]) for n in names]
        m = np.array([v.mean() for v in vals])
        sd = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.barh(y, m, xerr=sd, color=["0.6"] + ["C0"] * (len(names) - 1), capsize=3)
        for yi, v in zip(y, vals):
            ax.plot(v, np.full(v.size, yi), "k.", ms=3)
        ax.axvline(m[0], color="0.3", lw=0.8, ls="--")
        ax.set_title(c, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([n if len(n) < 40 else n[:38] + "…" for n in names], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/interface_study", help="folder for runs, table, figure")
    ap.add_argument("--small", action="store_true", help="CI size: 2 seeds, 3 choices, tiny runs")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per choice (default 5; --small: 2)")
    ap.add_argument("--duration-ms", type=float, default=None, help="per run (default 500; --small: 40)")
    ap.add_argument("--transient-ms", type=float, default=None, help="left out of the means (default 100; --small: 10)")
    ap.add_argument("--workers", type=int, default=1, help="runs at once (Dask LocalCluster workers)")
    ap.add_argument("--choices", nargs="*", default=None, help="subset of choices (exact names)")
    ap.add_argument("--preset-decomposition", action="store_true",
                    help="instead: the tvb-multiscale preset with one of its settings reverted at a time")
    a = ap.parse_args(argv)
    seeds = a.seeds or (2 if a.small else 5)
    duration = a.duration_ms or (40.0 if a.small else 500.0)
    transient = a.transient_ms if a.transient_ms is not None else (10.0 if a.small else 100.0)
    names = a.choices or (SMALL_CHOICES if a.small else list(CHOICES))
    if a.preset_decomposition:
        names = list(PRESET_REVERTED)
    bad = [n for n in names if n not in CHOICES and not a.preset_decomposition]
    if bad:
        print(f"interface_study: unknown choice(s) {bad}; known: {list(CHOICES)}", file=sys.stderr)
        return 2
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    t0 = time.time()
    import cosim
    from distributed import LocalCluster
    seed_list = [42 + s for s in range(seeds)]
    with LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        for i, name in enumerate(names):
            if a.preset_decomposition:
                cfg = make_config(CHOICES["tvb-multiscale preset (all of its conventions)"], 42, duration, a.small)
                tvb_over, spk_over = PRESET_REVERTED[name]
                cfg["tvb"] = _merge(cfg["tvb"], tvb_over)
                cfg["spiking_nodes"][0]["params"] = _merge(cfg["spiking_nodes"][0]["params"], spk_over)
            else:
                cfg = make_config(CHOICES[name], 42, duration, a.small)
            path = out / "configs" / f"c{i}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(_merge(cfg, {"run": {"results_dir": str(out / "runs")}})))
            ds = cosim.sweep(path, seeds=seed_list, scheduler=cluster.scheduler_address, out=out / "sweeps" / f"c{i}",
                             progress=False)
            results[name] = [summarize(Path(str(f)), transient) for f in ds["folder"].values]
            for seed, r in zip(seed_list, results[name]):
                print(f"[{time.time() - t0:6.0f} s] {name} seed {seed}: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), flush=True)
    cols, md = table(results)
    what = ("The tvb-multiscale preset, one of its settings reverted at a time" if a.preset_decomposition
            else "Default example, one choice changed at a time")
    head = (f"{what}; {seeds} seeds (run.seed 42..{41 + seeds}), "
            f"{duration:g} ms per run, means over t > {transient:g} ms; mean ± sd over seeds.\n\n")
    (out / "study.md").write_text(head + md)
    (out / "study.json").write_text(json.dumps({"seeds": list(range(42, 42 + seeds)), "duration_ms": duration,
                                                "transient_ms": transient, "columns": cols,
                                                "runs": results}, indent=1))
    figure(results, cols, out / "study.png", f"Interface choices ({seeds} seeds, {duration:g} ms)")
    print(head + md)
    print(f"wrote {out / 'study.md'}, {out / 'study.json'}, {out / 'study.png'} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
