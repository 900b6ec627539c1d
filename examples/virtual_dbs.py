"""Virtual deep brain stimulation (Meier et al. 2022) as co-simulations: TVB + the spiking basal ganglia.

    python examples/virtual_dbs.py [--small] [--out OUT] [--backends netpyne,brian2] [--seeds 5]
                                   [--n 100] [--duration 1000] [--dbs stn] [--amp 160] [--fibres SETS]
                                   [--whole-brain excio|excinh] [--tvb KEY=VALUE ...]

Three states -- healthy, parkinson, parkinson_dbs -- over several seeds, each one co-simulation:
TVB (the study's one-population Reduced Wong-Wang, "ExcIO", with its parameters; --whole-brain excinh:
main's default Reduced Wong-Wang ExcInh) on the AAL + basal-ganglia
connectome of the study (examples/data/basal_ganglia, with the study's edits: AAL thalami removed,
GPe/GPi/striatum -> cortex and cortex -> GPe/GPi removed, 4 mm/ms), whose left basal ganglia and
thalamus (GPe_Left, GPi_Left, STN_Left, Striatum_Left, Thal_Left) are proxies of the spiking network
of Maith et al. 2021, on NetPyNE (examples/virtual_dbs/, our Izhikevich-Hamker mechanism) and on
Brian2 (the same equations, through this repository's cosim-brian2 plugin and its model files). DBS is
cosim's stimulation device (params.stimulus) on STN, as the study's (examples/virtual_dbs/dbs_params.py),
plus, with --fibres, DBS-evoked axon spikes on chosen projections (the parkinson_dbs model files).
``--tvb KEY=VALUE`` is passed as ``--set tvb.KEY=VALUE``.

Writes OUT/dbs_results.json ({BACKEND: {STATE: {NUCLEUS: {rate_hz: [per seed], beta_power: [per
seed]}}}}, plus "cortex_dbs_change" per region and "meta") and OUT/dbs_results.png; each run's
results stay in OUT/runs/BACKEND/ (a cosim sweep per backend: OUT/runs/BACKEND/sweep.nc lists them).
--small: 2 seeds, 20 cells per nucleus, 400 ms (a CI check of the chain); --seeds, --n and --duration
given explicitly win over it (tests/test_virtual_dbs.py: --small --duration 200).
--standalone netpyne,brian2 adds the spiking network alone on those backends (same seeds and sizes).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DBS_DIR = HERE / "virtual_dbs"
sys.path.insert(0, str(DBS_DIR))

from analysis import beta_power, rate_hz  # noqa: E402
from dbs_params import (DEFAULT_AMPLITUDE_NA, DEFAULT_VARIANT, FIBRES, FIBRES_ENV, VARIANTS,  # noqa: E402
                        dbs_devices, fibre_projections)

CONN = HERE / "data" / "basal_ganglia" / "conn"
STATES = ["healthy", "parkinson", "parkinson_dbs"]
#: population -> TVB region it stands for (indices are the same before and after removing the AAL thalami)
POPULATIONS = {"GPe": 0, "GPi": 2, "STN": 4, "dSN": 6, "iSN": 6, "Thal": 8}
BG_REGIONS = list(range(10))
FRONTAL = ("Precentral", "Frontal", "Rolandic_Oper", "Supp_Motor_Area", "Olfactory", "Rectus", "OFC")
#: AAL regions that are not cortex (left out of the cortical change)
SUBCORTICAL = ("Caudate", "Putamen", "Pallidum", "Thalamus", "Hippocampus", "ParaHippocampal", "Amygdala",
               "Cerebelum", "Vermis")


def connectome(out: Path) -> tuple[Path, list[str]]:
    """The study's connectome as a TVB connectivity zip (weights, tract lengths, centres), edited as
    tvb-multiscale's examples/models/basal_ganglia_izhiikevich.py does."""
    w = np.loadtxt(CONN / "conn_denis_weights.txt")
    tl = np.loadtxt(CONN / "BGplusAAL_tract_lengths.txt")
    labels = np.loadtxt(CONN / "aal_plus_BG_centers.txt", dtype=str, usecols=(0,))
    centres = np.loadtxt(CONN / "aal_plus_BG_centers.txt", usecols=(1, 2, 3))
    drop = [list(labels).index("Thalamus_L"), list(labels).index("Thalamus_R")]
    w, tl = (np.delete(np.delete(m, drop, 0), drop, 1) for m in (w, tl))
    labels, centres = np.delete(labels, drop), np.delete(centres, drop, 0)
    cortex = slice(10, len(labels))
    min_tl = 4.0 * 0.1                      # one TVB step at 4 mm/ms
    for src, trg in (([0, 1, 2, 3, 6, 7], cortex), (cortex, [0, 1, 2, 3])):
        # TVB's weights[i, j] is j -> i; the study's edit removes BG(GPe, GPi, Str) -> cortex
        # (rows cortex, columns BG in TVB's convention) and cortex -> GPe/GPi
        w[trg, src] = 0.0
        tl[trg, src] = min_tl
    out.mkdir(parents=True, exist_ok=True)
    path = out / "conn_aal_bg.zip"
    with zipfile.ZipFile(path, "w") as z:
        for name, arr, fmt in (("weights.txt", w, "%.8g"), ("tract_lengths.txt", tl, "%.6g")):
            b = io.StringIO()
            np.savetxt(b, arr, fmt=fmt)
            z.writestr(name, b.getvalue())
        z.writestr("centres.txt", "".join(f"{lab} {x:.4f} {y:.4f} {zz:.4f}\n" for lab, (x, y, zz) in zip(labels, centres)))
    return path, [str(x) for x in labels]


#: The study's whole-brain model (tvb-multiscale docs/notebooks/TVB-ANNarchy_DBS_BasalGanglia.ipynb, commit
#: 79a06c22, cell 14): ReducedWongWangExcIO with w = 0.9, I_o = 0.3 (its class defaults, tvb-multiscale
#: tvb_multiscale/core/tvb/cosimulator/models/reduced_wong_wang_exc_io.py), G = 15 / scaleBGoptTOtvb on weights
#: multiplied by scaleBGoptTOtvb (cells 12-13): 15 on the p99-normalised weights, times TVB's default Linear
#: coupling a = 1/256 (the notebook keeps the simulator's default coupling); HeunStochastic, dt 0.1, nsig 1e-4.
#: tvb-library's ReducedWongWang is the same model (x = w J_N S + I_o + J_N c) with c = a * sum(w S).
EXCIO = {"model": {"class": "ReducedWongWang", "params": {"w": 0.9, "I_o": 0.3}},
         "coupling": {"class": "Linear", "params": {"a": 15.0 / 256}},
         "integrator": {"class": "HeunStochastic", "dt": 0.1, "noise": {"class": "Additive", "nsig": 1e-4}}}


def config(state: str, seed: int, conn: Path, duration: float, dbs: list[dict], backend: str = "netpyne",
           whole_brain: str = "excio") -> dict:
    pops = {p: {"region": r, "role": "exc"} for p, r in POPULATIONS.items()}
    # parkinson_dbs: the parkinson network plus the fibres DBS activates (env BG_DBS_FIBRES, set by main)
    file_state = {"healthy": "healthy", "parkinson": "parkinson", "parkinson_dbs": "parkinson_dbs"}[state]
    if backend == "netpyne":
        params = {"dt_ms": 0.1,
                  "model_file": {"path": str(DBS_DIR / f"bg_{file_state}.py"), "populations": pops,
                                 # TVB's drive: one Poisson source per cell at the weighted mean rate of
                                 # the region's TVB sources, onto Hamker's AMPA conductance
                                 "drive": {"roles": ["exc"], "synapse": "AMPA", "weight_uS": 0.005,
                                           "sources_per_cell": 1}}}
        if state == "parkinson_dbs" and dbs:
            params["stimulus"] = dbs
    elif backend == "brian2":
        # the same network in Brian2 (examples/virtual_dbs/bg_brian2.py), TVB's drive the same: one
        # train per cell of the mapped populations, Hamker's AMPA conductance += 0.005
        params = {"dt_ms": 0.1, "model_file": {"path": str(DBS_DIR / f"bg_brian2_{file_state}.py"), "populations": pops},
                  "input": {"weight_uS": 0.005, "delay_ms": 1.0}, "record": {"plot": False}}
        if state == "parkinson_dbs" and dbs:   # the devices in pA (1 nA in NEURON = 1000 pA: the same mV/ms here)
            params["stimulus"] = [{k.replace("_nA", "_pA"): (1000 * v if k.endswith("_nA") else v) for k, v in d.items()}
                                  for d in dbs]
    else:
        raise ValueError(f"backend {backend!r}: netpyne or brian2")
    return {"run": {"name": f"dbs_{state}_s{seed}", "duration_ms": duration, "seed": seed},
            # a 2-core machine shared with other work can starve a node for seconds
            "coordinator": {"heartbeat_timeout_ms": 60_000},
            # the streamline counts (up to 6058) divided by their 99th percentile, as tvb-multiscale does:
            # raw, they drive Reduced Wong-Wang regions to thousands of Hz
            "tvb": {"connectivity": str(conn), "conduction_speed_mm_per_ms": 4.0, "weights_scaling": "p99",
                    **(EXCIO if whole_brain == "excio" else {})},
            "spiking_nodes": [{"name": "bg", "backend": backend, "regions": sorted(set(POPULATIONS.values())),
                               "params": params}]}


def run_backend(backend: str, seeds: list[int], conn: Path, a, runs: Path) -> dict:
    """Every state x seed of one backend as one warm sweep (cosim.sweep: the services of every run
    after the first are forked from a process that imported TVB and the simulator once, instead of
    paying those imports in each of the 3 x seeds runs); {(state, seed): measures of that run}.
    The states differ only in the spiking node's params (model file, DBS devices): zipped keys."""
    import itertools

    import yaml

    import cosim
    dbs = dbs_devices(a.dbs, a.amp)
    cfgs = {s: config(s, seeds[0], conn, a.duration, dbs, backend, a.whole_brain) for s in STATES}
    base = cfgs["healthy"]
    base["run"]["name"] = f"dbs_{backend}"
    cpath = runs / f"{backend}.yaml"
    cpath.write_text(yaml.safe_dump(base, sort_keys=False))
    ds = cosim.sweep(cpath, out=runs / backend, seeds=seeds, workers=1, progress=False, log_level="WARNING",
                     zipped={"spiking_nodes.0.params": [cfgs[s]["spiking_nodes"][0]["params"] for s in STATES]},
                     set={f"tvb.{k}": v for k, v in (s.split("=", 1) for s in a.tvb)})
    per = {}
    for i, (state, seed) in enumerate(itertools.product(STATES, seeds)):   # the sweep's order: seed fastest
        assert int(ds["seed"].values[i]) == seed
        per[(state, seed)] = measure(cosim.load(str(ds["folder"].values[i])), a)
        per[(state, seed)]["wall_s"] = float(ds["wall_s"].values[i])
    return per


def measure(res, a) -> dict:
    """One run's rates and beta power per nucleus, and the mean activity of every TVB region."""
    sp = res.spikes
    pops = res.populations.set_index("population")["n_cells"].to_dict()
    t_skip = min(500.0, a.duration / 4)
    nuclei = {}
    for p in POPULATIONS:
        t = sp.loc[sp["population"].astype(str) == p, "time_ms"].to_numpy()
        nuclei[p] = {"rate_hz": rate_hz(t, pops[p], t_skip, a.duration), "beta_power": beta_power(t, t_skip, a.duration)}
    tv = res.tvb
    var = "R_e" if "R_e" in list(tv["variable"].values) else str(tv["variable"].values[0])   # ExcIO: S
    x = tv.sel(variable=var)
    cortex = x.where(x["time"] >= t_skip, drop=True).mean("time").to_numpy()
    return {"nuclei": nuclei, "cortex_mean": cortex.tolist(), "cortex_var": var}


def frontal(label: str) -> bool:
    return label.startswith(FRONTAL)


def summarise(per: dict, labels: list[str], seeds: list[int], backend: str = "netpyne") -> dict:
    out = {backend: {s: {p: {k: [per[(s, sd)]["nuclei"][p][k] for sd in seeds] for k in ("rate_hz", "beta_power")}
                           for p in POPULATIONS} for s in STATES}}
    change = {}
    for i, lab in enumerate(labels):
        if i in BG_REGIONS or lab.startswith(SUBCORTICAL):
            continue
        change[lab] = [per[("parkinson_dbs", sd)]["cortex_mean"][i] - per[("parkinson", sd)]["cortex_mean"][i] for sd in seeds]
    mean_abs = {lab: float(np.mean(np.abs(v))) for lab, v in change.items()}
    fr = [v for lab, v in mean_abs.items() if frontal(lab)]
    nf = [v for lab, v in mean_abs.items() if not frontal(lab)]
    top = sorted(mean_abs, key=mean_abs.get, reverse=True)[:10]
    crit = {}
    for p in ("GPi", "STN", "Thal"):
        m = {s: float(np.mean(out[backend][s][p]["rate_hz"])) for s in STATES}
        crit[p] = {"healthy": m["healthy"], "parkinson": m["parkinson"], "parkinson_dbs": m["parkinson_dbs"],
                   "dbs_closer_to_healthy": abs(m["parkinson_dbs"] - m["healthy"]) < abs(m["parkinson"] - m["healthy"])}
    # regions that never change on any seed: the connectome gives them no path from the spiking regions
    unreached = sorted(lab for lab, v in change.items() if not np.any(np.asarray(v) != 0))
    fr_r = [v for lab, v in mean_abs.items() if frontal(lab) and lab not in unreached]
    nf_r = [v for lab, v in mean_abs.items() if not frontal(lab) and lab not in unreached]
    out["cortex_dbs_change"] = {backend: {"variable": per[("parkinson", seeds[0])]["cortex_var"],
                                          "per_region": change,
                                          "frontal_mean_abs": float(np.mean(fr)), "other_mean_abs": float(np.mean(nf)),
                                          "largest_in_frontal": bool(np.mean(fr) > np.mean(nf)),
                                          "unreached": unreached,
                                          "frontal_mean_abs_reached": float(np.mean(fr_r)) if fr_r else 0.0,
                                          "other_mean_abs_reached": float(np.mean(nf_r)) if nf_r else 0.0,
                                          "top10": top, "top10_frontal": sum(frontal(t) for t in top)}}
    out["criteria"] = {backend: crit}
    return out


def figure(res: dict, labels: list[str], path: Path, backends: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lab_all = np.loadtxt(CONN / "aal_plus_BG_centers.txt", dtype=str, usecols=(0,))
    centres = np.loadtxt(CONN / "aal_plus_BG_centers.txt", usecols=(1, 2, 3))
    centres = centres[[i for i, lab in enumerate(lab_all) if lab not in ("Thalamus_L", "Thalamus_R")]]
    fig, axes = plt.subplots(len(backends), 2, figsize=(12, 4.5 * len(backends)), squeeze=False)
    pops = list(POPULATIONS)
    for ax, backend in zip(axes, backends):
        for k, s in enumerate(STATES):
            r = np.array([res[backend][s][p]["rate_hz"] for p in pops])
            ax[0].bar(np.arange(len(pops)) + (k - 1) * 0.27, r.mean(1), 0.27, yerr=r.std(1), capsize=2, label=s)
        ax[0].set_xticks(range(len(pops)), pops)
        ax[0].set_ylabel("rate (Hz), mean ± sd over seeds")
        ax[0].set_title(f"spiking basal ganglia ({backend}) in the co-simulation")
        ax[0].legend()
        cc = res["cortex_dbs_change"][backend]
        ch = cc["per_region"]
        idx = [labels.index(lab) for lab in ch]
        v = np.array([np.mean(ch[lab]) for lab in ch])
        lim = max(1e-12, float(np.abs(v).max()))
        sc = ax[1].scatter(centres[idx, 0], centres[idx, 1], c=v, cmap="RdBu_r", vmin=-lim, vmax=lim, s=40,
                           edgecolors=["k" if frontal(lab) else "none" for lab in ch])
        fig.colorbar(sc, ax=ax[1], label=f"Δ{cc['variable']} (DBS − PD), mean over seeds")
        ax[1].set_title(f"cortical change under DBS ({backend}; frontal regions outlined)")
        ax[1].set_xlabel("x (mm)")
        ax[1].set_ylabel("y (mm)")
        ax[1].set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true",
                    help="2 seeds, 20 cells per nucleus, 400 ms (--seeds, --n, --duration given win over it)")
    ap.add_argument("--out", default="results/virtual_dbs")
    ap.add_argument("--seeds", type=int, default=None, help="seeds 1..N (default 5; --small: 2)")
    ap.add_argument("--n", type=int, default=None, help="cells per nucleus (default 100, the fits: 200; --small: 20)")
    ap.add_argument("--duration", type=float, default=None, help="ms per run (default 1000; --small: 400)")
    ap.add_argument("--backends", default="netpyne,brian2",
                    help="the spiking side of the co-simulations, comma-separated: netpyne, brian2 (this "
                         "repository's cosim-brian2 plugin)")
    ap.add_argument("--dbs", choices=sorted(VARIANTS), default=DEFAULT_VARIANT, help="where the DBS pulses go")
    ap.add_argument("--amp", type=float, default=None,
                    help=f"DBS first-phase amplitude (nA; its sign is the variant's); default: the variant's own "
                         f"({DEFAULT_AMPLITUDE_NA:g} for stn); 0: no current (fibres only)")
    ap.add_argument("--fibres", default="", metavar="SETS",
                    help=f"fibres DBS also activates, comma-separated: {', '.join(sorted(FIBRES))} (dbs_params.FIBRES)")
    ap.add_argument("--whole-brain", choices=["excio", "excinh"], default="excio",
                    help="TVB's model: the study's Reduced Wong-Wang ExcIO (default) or main's ExcInh")
    ap.add_argument("--standalone", default="", metavar="BACKENDS",
                    help="also the spiking network alone on these backends (netpyne,brian2), same seeds, "
                         "as '<backend>_standalone' in dbs_results.json")
    ap.add_argument("--tvb", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    for key, full, small in (("seeds", 5, 2), ("n", 100, 20), ("duration", 1000.0, 400.0)):
        if getattr(a, key) is None:
            setattr(a, key, small if a.small else full)
    if any("=" not in s for s in a.tvb):
        print(f"virtual_dbs: --tvb takes KEY=VALUE, not {[s for s in a.tvb if '=' not in s][0]!r}", file=sys.stderr)
        return 2
    try:
        fibre_projections(a.fibres)
    except ValueError as e:
        print(f"virtual_dbs: --fibres: {e}", file=sys.stderr)
        return 2
    os.environ[FIBRES_ENV] = a.fibres          # read by the parkinson_dbs model files in the node
    out = Path(a.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    conn, labels = connectome(out)
    os.environ["BG_N"] = str(a.n)              # read by examples/virtual_dbs/bg_network.py in the node
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"netpyne", "brian2"}:
        print(f"virtual_dbs: --backends takes netpyne and/or brian2, not {a.backends!r}", file=sys.stderr)
        return 2
    if "brian2" in backends:                   # this repository's plugin (model files), first on the path
        plugin = str(HERE / "plugins" / "cosim-brian2")
        sys.path.insert(0, plugin)
        rest = [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x]
        os.environ["PYTHONPATH"] = os.pathsep.join([plugin] + rest)
    seeds = list(range(1, a.seeds + 1))
    t0 = time.perf_counter()
    res, walls = {"cortex_dbs_change": {}, "criteria": {}}, {}
    from cosim.errors import CosimError
    for backend in backends:
        print(f"{backend}: {len(STATES) * len(seeds)} co-simulations ({len(STATES)} states x {len(seeds)} seeds) "
              f"into {runs / backend} ...", flush=True)
        try:
            per = run_backend(backend, seeds, conn, a, runs)
        except CosimError as e:
            print(f"virtual_dbs: {e}", file=sys.stderr)
            return getattr(e, "exit_code", 1)
        for (s, sd), r in per.items():
            walls[f"{backend}_{s}_s{sd}"] = r["wall_s"]
            rates = " ".join(f"{p} {v['rate_hz']:.1f}" for p, v in r["nuclei"].items())
            print(f"{backend:8s} {s:14s} seed {sd}: " + rates + f"  ({r['wall_s']:.0f} s)", flush=True)
        one = summarise(per, labels, seeds, backend)
        res[backend] = one[backend]
        res["cortex_dbs_change"][backend] = one["cortex_dbs_change"][backend]
        res["criteria"][backend] = one["criteria"][backend]
    if a.standalone:
        from standalone_sweep import sweep
        try:
            res.update(sweep([b.strip() for b in a.standalone.split(",") if b.strip()],
                             argparse.Namespace(seeds=a.seeds, n=a.n, duration=a.duration, dbs=a.dbs, amp=a.amp,
                                                fibres=a.fibres)))
        except RuntimeError as e:
            print(f"virtual_dbs: {e}", file=sys.stderr)
            return 1
    res["meta"] = {"seeds": seeds, "cells_per_nucleus": a.n, "duration_ms": a.duration, "small": a.small,
                   "tvb_sets": a.tvb, "whole_brain": a.whole_brain,
                   "dbs": dbs_devices(a.dbs, a.amp), "dbs_fibres": fibre_projections(a.fibres),
                   "wall_s_total": time.perf_counter() - t0,
                   "wall_s_per_run": walls, "backends": backends,
                   "beta_power": "share of the population spike-count PSD (Welch) in 13-30 Hz of 2-100 Hz"}
    (out / "dbs_results.json").write_text(json.dumps(res, indent=1))
    figure(res, labels, out / "dbs_results.png", backends)
    for backend in backends:
        for p, c in res["criteria"][backend].items():
            print(f"{backend:8s} {p:4s}: healthy {c['healthy']:.1f}  PD {c['parkinson']:.1f}  PD+DBS {c['parkinson_dbs']:.1f} Hz"
                  f"  -> DBS closer to healthy: {c['dbs_closer_to_healthy']}")
        cc = res["cortex_dbs_change"][backend]
        print(f"{backend:8s} cortex |change| under DBS: frontal {cc['frontal_mean_abs']:.3g}, other {cc['other_mean_abs']:.3g}"
              f" ({cc['top10_frontal']}/10 largest are frontal); over the {len(cc['per_region']) - len(cc['unreached'])}"
              f" regions that change at all: frontal {cc['frontal_mean_abs_reached']:.3g}, "
              f"other {cc['other_mean_abs_reached']:.3g}")
    print(f"wall time {res['meta']['wall_s_total']:.0f} s")
    print(f"wrote {out / 'dbs_results.json'} and {out / 'dbs_results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
