"""The toolbox's TVB⇄NetPyNE example, reproduced within seed spread? (issue 20, docs/science.md §2)

Runs `cosim run` (TVB, NetPyNE and the coordinator as separate processes) over several seeds for:
the toolbox's *intent* (examples/tvb_multiscale_conventions.yaml), what it *computes*
(examples/tvb_multiscale_compat.yaml), the intent with each cause (a)–(g) switched on alone
(services/netpyne_node/toolbox.py), and a few combinations. For each run, from its files (spiking.h5, tvb.h5), means over
100–1000 ms: E and I rates of regions 33 and 71, R_e of the two proxies (what TVB holds for them),
and R_e of TVB's own regions. Reported per variant as mean ± sd over seeds, against the toolbox's
means ± sd measured from outside over 10 seeds (issue 20): difference in toolbox sds and Welch's p.

Runs go `--jobs` at a time (default 2: each run is itself two busy processes; on 2 shared cores more
only queue). Every finished run is kept in `--out` (runs.json), so a second call with the same
`--out` only runs what is missing.

Usage: python bench/toolbox_compat.py [--size tiny|full] [--seeds N] [--jobs J] [--only NAME ...] [--out DIR]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RunError, cosim_run, load_avg  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INTENT = REPO / "examples" / "tvb_multiscale_conventions.yaml"
COMPAT = REPO / "examples" / "tvb_multiscale_compat.yaml"
#: the toolbox's means ± sd over 10 seeds, 100–1000 ms (issue 20, measured from outside)
TOOLBOX = {"E33": (21.0, 0.5), "I33": (10.9, 1.2), "E71": (20.2, 0.8), "I71": (11.5, 2.0),
           "R_e proxy 33": (19.9, 0.5), "R_e proxy 71": (19.3, 0.8)}
TOOLBOX_N = 10
COLUMNS = [*TOOLBOX, "TVB R_e"]
OFF = {k: False for k in ("weight_sd_as_variance", "input_skips_last_step", "rate_kernel_per_window",
                          "input_random_divergence", "fixed_wiring")}


def _node(**over) -> dict:
    return {"spiking_nodes": [{"params": over}]}


#: name -> (base config, changes deep-merged into it)
VARIANTS: dict[str, tuple[Path, dict]] = {
    "intent (tvb-multiscale)": (INTENT, {}),
    "intent + (a) weights: sd given as variance": (INTENT, _node(toolbox={"weight_sd_as_variance": True})),
    "intent + (b) trains cover 15 of 16 steps": (INTENT, _node(toolbox={"input_skips_last_step": True})),
    "intent + (c) NEURON dt 0.05 ms": (INTENT, _node(dt_ms=0.05)),
    "intent + (d) rate kernel per window": (INTENT, _node(toolbox={"rate_kernel_per_window": True})),
    "intent + (e) noise seed fixed (42)": (INTENT, {"tvb": {"integrator": {"noise_seed": 42}}}),
    "intent + (f) random divergence": (INTENT, _node(toolbox={"input_random_divergence": True})),
    "intent + (g) the toolbox's fixed wiring": (INTENT, _node(toolbox={"fixed_wiring": True})),
    "intent + (a)(b)(c)": (INTENT, _node(dt_ms=0.05, toolbox={"weight_sd_as_variance": True,
                                                              "input_skips_last_step": True})),
    "intent + (a) as mean-scaled weights (x1.48, x1.82), (b), (c)": (INTENT, _node(
        dt_ms=0.05, toolbox={"input_skips_last_step": True},
        network={"conns": {"EE": {"weight_uS": 0.02 * 1.48}, "EI": {"weight_uS": 0.01 * 1.82},
                           "IE": {"weight_uS": 0.01 * 1.82}, "II": {"weight_uS": 0.01 * 1.82}}})),
    "compat (tvb-multiscale-compat: (a)-(d), (f))": (COMPAT, {}),
    "compat + (g) the toolbox's fixed wiring": (COMPAT, _node(toolbox={"fixed_wiring": True})),
}
SIZES = {"tiny": {"seeds": 1, "duration_ms": 40.0, "transient_ms": 10.0, "variants": 2},
         "full": {"seeds": 10, "duration_ms": 1000.0, "transient_ms": 100.0, "variants": None}}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k == "spiking_nodes":            # one node: merge into it
            out[k] = [_merge(out[k][0], v[0])]
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_config(variant: str, seed: int, duration_ms: float) -> dict:
    base, over = VARIANTS[variant]
    cfg = _merge(yaml.safe_load(base.read_text()), over)
    cfg["run"].update({"seed": seed, "duration_ms": duration_ms, "name": "toolbox-compat"})
    cfg["tvb"]["monitors"] = {"temporal_average_ms": None}
    node = cfg["spiking_nodes"][0]
    node.setdefault("params", {})["record"] = {"plot": False, "spikes": False}
    return cfg


def measure(out: Path, transient_ms: float) -> dict:
    """Means after the transient, read from the run's files."""
    import h5py
    res = {}
    with h5py.File(out / "spiking.h5", "r") as f:
        regions = [int(r) for r in f.attrs["regions"]]
        keep = f["steps"][...] * float(f.attrs["tvb_dt_ms"]) > transient_ms
        for kind, short in (("exc", "E"), ("inh", "I")):
            rates = f[f"rates/{kind}"][...][keep]
            for j, r in enumerate(regions):
                res[f"{short}{r}"] = float(rates[:, j].mean())
    with h5py.File(out / "tvb.h5", "r") as f:
        t = f["raw/time_ms"][...]
        R = f["raw/R_e"][...]
        fed = f["raw/proxy_from_spiking"][...].astype(bool)
        spiking = [int(r) for r in f.attrs["spiking_regions"]]
        late = t > transient_ms
        for r in spiking:
            rows = late & fed[:, spiking.index(r)] if fed.ndim == 2 else late & fed
            res[f"R_e proxy {r}"] = float(R[rows, r].mean())
        own = [i for i in range(R.shape[1]) if i not in spiking]
        res["TVB R_e"] = float(R[late][:, own].mean())
    return res


def welch_p(mean: float, sd: float, n: int, ref: tuple[float, float], n_ref: int = TOOLBOX_N) -> float:
    from scipy.stats import ttest_ind_from_stats
    if n < 2:
        return float("nan")
    return float(ttest_ind_from_stats(mean, sd, n, ref[0], ref[1], n_ref, equal_var=False).pvalue)


def summarize(runs: dict[str, dict[str, dict]]) -> dict:
    """Per variant and column: mean, sd over seeds, difference in toolbox sds, Welch's p."""
    table = {}
    for variant, by_seed in runs.items():
        vals = [v for v in by_seed.values() if "error" not in v]
        row = {"n": len(vals)}
        for col in COLUMNS:
            xs = np.array([v[col] for v in vals if col in v])
            if xs.size == 0:
                continue
            m, sd = float(xs.mean()), float(xs.std(ddof=1)) if xs.size > 1 else 0.0
            row[col] = {"mean": m, "sd": sd}
            if col in TOOLBOX:
                ref = TOOLBOX[col]
                row[col].update({"vs_toolbox_sd": (m - ref[0]) / ref[1], "rel": m / ref[0] - 1,
                                 "p": welch_p(m, sd, xs.size, ref)})
        table[variant] = row
    return table


def markdown(table: dict, seeds: int, duration_ms: float, transient_ms: float) -> str:
    head = "| variant | " + " | ".join(f"{c} (Hz)" for c in COLUMNS) + " |"
    lines = [f"{seeds} seeds per variant (run.seed 1..{seeds}), {duration_ms:g} ms, means over "
             f"{transient_ms:g}–{duration_ms:g} ms, mean ± sd over seeds; under each toolbox column: "
             f"difference in toolbox sds and Welch's p against the toolbox's 10 seeds.", "", head,
             "|" + "---|" * (len(COLUMNS) + 1),
             "| **toolbox** (issue 20) | " + " | ".join(f"{TOOLBOX[c][0]:.1f} ± {TOOLBOX[c][1]:.1f}" if c in TOOLBOX
                                                     else "–" for c in COLUMNS) + " |"]
    for variant, row in table.items():
        cells = []
        for c in COLUMNS:
            d = row.get(c)
            if d is None:
                cells.append("–")
                continue
            s = f"{d['mean']:.2f} ± {d['sd']:.2f}"
            if "p" in d:
                s += f" ({d['vs_toolbox_sd']:+.1f} sd, p {d['p']:.2g})"
            cells.append(s)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(size: str = "full", out: Path | None = None, seeds: int | None = None, jobs: int = 2,
        only: list[str] | None = None, timeout: float = 1800) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-toolbox-compat-"))
    out.mkdir(parents=True, exist_ok=True)
    n_seeds = seeds or sz["seeds"]
    names = list(VARIANTS)
    if only:
        names = [v for v in names if any(o in v for o in only)]
    elif sz["variants"]:
        names = [names[0], names[-2]]             # tiny: intent and compat
    store = out / "runs.json"
    runs: dict[str, dict[str, dict]] = json.loads(store.read_text()) if store.exists() else {}
    lock = threading.Lock()
    todo = [(v, s) for s in range(1, n_seeds + 1) for v in names if str(s) not in runs.get(v, {})]

    def one(variant: str, seed: int) -> tuple[str, int, dict]:
        tag = f"v{hashlib.sha1(variant.encode()).hexdigest()[:8]}_s{seed}"
        t0 = time.perf_counter()
        try:
            r = cosim_run(make_config(variant, seed, sz["duration_ms"]), out / tag, timeout=timeout)
            res = {**measure(Path(r["out"]), sz["transient_ms"]), "wall_s": time.perf_counter() - t0}
        except (RunError, OSError, KeyError) as e:
            res = {"error": str(e)}
        return variant, seed, res

    load0 = load_avg()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in as_completed([pool.submit(one, v, s) for v, s in todo]):
            variant, seed, res = fut.result()
            with lock:
                runs.setdefault(variant, {})[str(seed)] = res
                store.write_text(json.dumps(runs, indent=1))
            print(f"{variant} seed {seed}: " + (res.get("error") or
                  ", ".join(f"{k} {res[k]:.2f}" for k in COLUMNS if k in res)), file=sys.stderr, flush=True)
    chosen = {v: {s: runs[v][s] for s in map(str, range(1, n_seeds + 1)) if s in runs.get(v, {})} for v in names}
    table = summarize(chosen)
    return {"benchmark": "toolbox_compat", "size": size, "seeds": n_seeds, "duration_ms": sz["duration_ms"],
            "transient_ms": sz["transient_ms"], "jobs": jobs, "load_avg_start": load0, "load_avg_end": load_avg(),
            "toolbox": {k: list(v) for k, v in TOOLBOX.items()}, "table": table,
            "markdown": markdown(table, n_seeds, sz["duration_ms"], sz["transient_ms"]), "runs": chosen,
            "out": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="variants whose name contains one of these")
    ap.add_argument("--out", help="folder of the runs (kept; a second call resumes)")
    ap.add_argument("--json", help="also write the result here (e.g. bench/results/toolbox_compat.json)")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.seeds, a.jobs, a.only)
    print(res["markdown"], file=sys.stderr)
    text = json.dumps(res)
    if a.json:
        Path(a.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
