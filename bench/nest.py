"""NEST backend: its cost outside ``nest.Run``, a 10,000-neuron region in the loop against NEST
alone, and the NEST and NetPyNE default examples side by side.

1. **window cost** (aim < 5 % of the window): the default example with ``backend: nest``; per
   window, the NEST node's step time minus its ``nest.Run`` time (input rates set, spikes read,
   rates and proxy computed, results buffered), as a share of the window's wall time.
2. **10,000 neurons** (aim ≤ 1.2): one region of 8,000 E + 2,000 I cells in the co-simulation
   loop (first STEP → last STEP_DONE) against NEST alone on the same network and input: the
   same adapter builds the network in a fresh process, the whole input rate schedule the loop
   used (``input/rate_hz`` of the loop's results) is set at once, and ONE ``nest.Run`` covers the
   run. Same seed and same generator steps, so the spike counts should agree too.
3. **NEST vs NetPyNE**: both default examples (same config, only the backend differs): mean E/I
   rates of the spiking regions and R_e of every TVB region; figure ``docs/backends_compare.png``.

Usage: python bench/nest.py [--size tiny|full] [--out results.json] [--docs DIR]
(`--docs` rewrites the NEST section of docs/performance.md and the figure.)
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import arg_parser, cosim_run, load_avg, loop_s, timing  # noqa: E402

SIZES = {"tiny": {"duration_ms": 30.0, "big": (400, 100), "big_ms": 20.0, "compare_ms": 60.0},
         "full": {"duration_ms": 500.0, "big": (8000, 2000), "big_ms": 200.0, "compare_ms": 1000.0}}
TRANSIENT_MS = 100.0


def window_cost(sz: dict, out: Path) -> dict:
    cfg = {"run": {"name": "bench-nest", "duration_ms": sz["duration_ms"]},
           "spiking_nodes": [{"name": "spiking", "backend": "nest", "regions": [33, 71]}]}
    r = cosim_run(cfg, out / "window_cost")
    t = timing(out / "window_cost")
    f = t["spiking:fields"]
    sp = t["spiking"][1:]                                  # window 0 includes first-touch costs
    compute, simulate = sp[:, f.index("compute_s")], sp[:, f.index("simulate_s")]
    wall = t["window_wall_s"][1:, 0]
    outside = compute - simulate
    return {"windows": int(len(wall) + 1), "window_ms": r["summary"]["window_ms"],
            "window_wall_ms": float(np.mean(wall) * 1e3), "nest_run_ms": float(np.mean(simulate) * 1e3),
            "outside_run_ms": float(np.mean(outside) * 1e3),
            "outside_fraction_of_window": float(np.mean(outside) / np.mean(wall)),
            "outside_fraction_of_step": float(np.mean(outside) / np.mean(compute)), "loop_s": loop_s(r)}


ALONE = r'''
import json, sys, time
import numpy as np
from cosim.runtime.adapter import RunContext, SignalSpec
from cosim.services.nest_node.adapter import NestAdapter
a = json.loads(sys.argv[1]); rates = np.load(sys.argv[2])
ctx = RunContext(config=a["config"], node_name="spiking", regions=tuple(a["regions"]), tvb_dt_ms=a["dt"],
                 tick_ms=a["tick"], steps_per_window=a["W"], n_windows=a["K"],
                 outputs=[SignalSpec("state/R_e", tuple(a["regions"]))], connectome=a["connectome"])
ad = NestAdapter(); ctx.inputs = ad.requires(ctx)
t0 = time.perf_counter(); ad.configure(ctx); build = time.perf_counter() - t0
n = rates.shape[0]; h = ad.h
times = (1 + np.arange(n) * ad.h_per_tvb) * h
for j, g in enumerate(ad.gens):
    g.set(rate_times=times, rate_values=rates[:, j])
t0, c0 = time.perf_counter(), time.process_time()
ad.nest.Run(n * ad.h_per_tvb * h)
run, cpu = time.perf_counter() - t0, time.process_time() - c0
gid, t = ad.reader.read()
ad.finish(None)
print(json.dumps({"build_s": build, "run_s": run, "run_cpu_s": cpu, "spikes": int(gid.size)}))
'''


def ten_thousand(sz: dict, out: Path) -> dict:
    n_e, n_i = sz["big"]
    cfg = {"run": {"name": "bench-nest-10k", "duration_ms": sz["big_ms"]},
           # a 4.9 ms window of 10,000 HH neurons takes seconds, all of it inside nest.Run, which
           # holds the GIL: the node cannot send heartbeats meanwhile (docs/backends.md, NEST)
           "coordinator": {"heartbeat_timeout_ms": 60000},
           "spiking_nodes": [{"name": "spiking", "backend": "nest", "regions": [33],
                              "params": {"network": {"n_exc": n_e, "n_inh": n_i}, "record": {"plot": False}}}]}
    r = cosim_run(cfg, out / "ten_k", timeout=3600)
    import h5py
    with h5py.File(out / "ten_k" / "spiking.h5") as f:
        rates = f["input/rate_hz"][...]
        spikes_loop = int(f["spikes/t_ms"].shape[0])
        loop_cpu = json.loads(f.attrs["timing_json"])["integrate_cpu_s"]
        W, _seed = int(f.attrs["steps_per_window"]), int(f.attrs["seed"])
    with h5py.File(out / "ten_k" / "coordinator.h5") as f:
        config = json.loads(f.attrs["config"]) if isinstance(f.attrs["config"], str) else None
    from cosim.config import parse_config
    full = parse_config(config or cfg).model_dump(mode="json")
    from tvb.datatypes.connectivity import Connectivity
    con = Connectivity.from_file()
    con.speed = np.array([3.0])
    con.configure()
    dt = full["tvb"]["dt_ms"]
    arg = {"config": full, "regions": [33], "dt": dt, "tick": 0.05, "W": W, "K": r["summary"]["windows"],
           "connectome": None}
    np.save(out / "ten_k_rates.npy", rates)
    # the adapter needs weights/idelays only for the input scale and inter-region links: pass them
    arg["connectome"] = {"weights": con.weights.tolist(), "idelays": np.rint(con.tract_lengths / 3.0 / dt).astype(int).tolist()}
    p = subprocess.run([sys.executable, "-c", ALONE, json.dumps(arg), str(out / "ten_k_rates.npy")],
                       capture_output=True, text=True, cwd=out, timeout=3600)
    if p.returncode != 0:
        raise RuntimeError(f"NEST alone failed: {p.stderr[-2000:]}")
    alone = json.loads(p.stdout.strip().splitlines()[-1])
    b = r["summary"]["breakdown"]["nodes"]
    return {"cells": n_e + n_i, "duration_ms": sz["big_ms"], "windows": r["summary"]["windows"],
            "loop_s": loop_s(r), "alone_run_s": alone["run_s"], "alone_build_s": alone["build_s"],
            "ratio": loop_s(r) / alone["run_s"], "spikes_loop": spikes_loop, "spikes_alone": alone["spikes"],
            "loop_nest_cpu_s": loop_cpu, "alone_nest_cpu_s": alone["run_cpu_s"],
            "cpu_ratio": loop_cpu / alone["run_cpu_s"],
            "breakdown_ms": {k: v for k, v in b.get("spiking", {}).items()} if isinstance(b, dict) else {}}


def compare(sz: dict, out: Path, docs: Path | None) -> dict:
    import h5py
    res = {}
    for backend in ("netpyne", "nest"):
        cfg = {"run": {"name": f"bench-compare-{backend}", "duration_ms": sz["compare_ms"]},
               "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71]}]}
        run = out / f"compare_{backend}"
        cosim_run(cfg, run, timeout=3600)
        with h5py.File(run / "spiking.h5") as f:
            steps = f["steps"][...]
            keep = steps * 0.1 > min(TRANSIENT_MS, sz["compare_ms"] / 2)
            e, i = f["rates/exc"][...][keep], f["rates/inh"][...][keep]
        with h5py.File(run / "tvb.h5") as f:
            t = f["raw/time_ms"][...]
            Re = f["raw/R_e"][...][t > min(TRANSIENT_MS, sz["compare_ms"] / 2)]
        tvb_cols = [j for j in range(Re.shape[1]) if j not in (33, 71)]
        res[backend] = {"E_hz": e.mean(0).tolist(), "I_hz": i.mean(0).tolist(),
                        "tvb_Re_hz": Re[:, tvb_cols].mean(0).tolist(), "tvb_Re_mean_hz": float(Re[:, tvb_cols].mean())}
    a, b = np.array(res["netpyne"]["tvb_Re_hz"]), np.array(res["nest"]["tvb_Re_hz"])
    res["tvb_Re_max_abs_diff_hz"] = float(np.max(np.abs(a - b)))
    res["tvb_Re_max_rel_diff"] = float(np.max(np.abs(a - b) / np.maximum(a, 1e-9)))
    if docs is not None:
        _plot_compare(res, docs / "backends_compare.png")
    return res


def _plot_compare(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(2) * 5.0                                   # regions 33, 71
    for k, (backend, c) in enumerate((("netpyne", "tab:blue"), ("nest", "tab:orange"))):
        r = res[backend]
        ax[0].bar(x + 2 * k, r["E_hz"], color=c, label=f"{backend} E")
        ax[0].bar(x + 2 * k + 1, r["I_hz"], color=c, alpha=0.4, label=f"{backend} I")
    ax[0].set_xticks(x + 1.5, ["region 33", "region 71"])
    ax[0].set_ylabel("Hz")
    ax[0].set_title("spiking regions: mean E and I rates")
    ax[0].legend(fontsize=7)
    a, b = np.array(res["netpyne"]["tvb_Re_hz"]), np.array(res["nest"]["tvb_Re_hz"])
    ax[1].scatter(a, b, s=10)
    lim = [min(a.min(), b.min()), max(a.max(), b.max())]
    ax[1].plot(lim, lim, color="0.6", lw=0.8)
    ax[1].set_xlabel("R_e with NetPyNE regions (Hz)")
    ax[1].set_ylabel("R_e with NEST regions (Hz)")
    ax[1].set_title("74 TVB regions: mean R_e")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


PARTS = ("window_cost", "ten_thousand", "compare")


def run(size: str = "full", out: Path | None = None, docs: Path | None = None, parts=PARTS,
        previous: dict | None = None) -> dict:
    """``parts`` to measure now; the others are taken from ``previous`` (an earlier result JSON)."""
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-nest-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = {**(previous or {}), "size": size, "load_avg_start": load_avg()}
    if "window_cost" in parts:
        res["window_cost"] = window_cost(sz, out)
    if "ten_thousand" in parts:
        res["ten_thousand"] = ten_thousand(sz, out)
    if "compare" in parts:
        res["compare"] = compare(sz, out, docs)
    res["load_avg_end"] = load_avg()
    res["elapsed_s"] = time.time() - t0
    return res


def section(R: dict) -> list[str]:
    """docs/performance.md's NEST section (also used by bench/report.py)."""
    w, t, c = R["window_cost"], R["ten_thousand"], R["compare"]
    f = lambda x, d=2: f"{x:.{d}f}"  # noqa: E731
    L = ["## 8. NEST backend", "",
         f"`python bench/nest.py` (size `{R['size']}`, load average {f(R['load_avg_start'])} → {f(R['load_avg_end'])}).", "",
         f"- **Cost outside `nest.Run`** (default example on NEST, {w['windows']} windows of {w['window_ms']:g} ms): "
         f"{f(w['outside_run_ms'], 3)} ms per window = **{f(100 * w['outside_fraction_of_window'], 1)} %** of the "
         f"window's wall time {f(w['window_wall_ms'])} ms (aim < 5 %); {f(100 * w['outside_fraction_of_step'], 1)} % "
         f"of the NEST node's step ({f(w['nest_run_ms'])} ms in `nest.Run`).",
         f"- **{t['cells']:,} neurons in one region** ({t['duration_ms']:g} ms, {t['windows']} windows): loop "
         f"{f(t['loop_s'])} s against NEST alone {f(t['alone_run_s'])} s on the same network and input (one "
         f"`nest.Run`, same process layout, built in {f(t['alone_build_s'], 1)} s): ratio **{f(t['ratio'])}** "
         f"(aim ≤ 1.2). CPU time in `nest.Run` (insensitive to the shared machine's load): "
         f"{f(t['loop_nest_cpu_s'], 1)} s in the loop, {f(t['alone_nest_cpu_s'], 1)} s alone: **{f(t['cpu_ratio'])}**. "
         f"Spikes: {t['spikes_loop']:,} in the loop, {t['spikes_alone']:,} alone.",
         "", "NEST and NetPyNE default examples side by side (same config, only `backend` differs; "
         f"means after {TRANSIENT_MS:g} ms):", "",
         "| backend | E 33 | I 33 | E 71 | I 71 | TVB regions' R_e (mean) |", "|---|---|---|---|---|---|"]
    for b in ("netpyne", "nest"):
        r = c[b]
        L.append(f"| {b} | {f(r['E_hz'][0], 1)} | {f(r['I_hz'][0], 1)} | {f(r['E_hz'][1], 1)} | {f(r['I_hz'][1], 1)} | "
                 f"{f(r['tvb_Re_mean_hz'])} Hz |")
    L += ["", f"TVB regions' R_e differ by at most {f(c['tvb_Re_max_abs_diff_hz'], 3)} Hz "
          f"({f(100 * c['tvb_Re_max_rel_diff'], 1)} %) between the two. Reading: docs/backends.md.", "",
          "![NEST vs NetPyNE](backends_compare.png)", ""]
    return L


def update_performance_md(R: dict, docs: Path) -> Path:
    path = docs / "performance.md"
    text = path.read_text() if path.exists() else "# Performance\n"
    block = "<!-- nest -->\n" + "\n".join(section(R)) + "\n<!-- /nest -->"
    if "<!-- nest -->" in text:
        text = re.sub(r"<!-- nest -->.*?<!-- /nest -->", lambda m: block, text, flags=re.S)
    else:
        marker = "\n## Reading" if "\n## Reading" in text else None
        text = text.replace(marker, "\n" + block + "\n" + marker, 1) if marker else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


if __name__ == "__main__":
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--docs", help="update <DIR>/performance.md's NEST section and write the figure there")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(PARTS)}; the rest from --previous")
    ap.add_argument("--previous", help="an earlier result JSON (--out) supplying the parts not run now")
    a = ap.parse_args()
    prev = json.loads(Path(a.previous).read_text()) if a.previous else None
    R = run(a.size, docs=Path(a.docs) if a.docs else None, parts=a.only.split(",") if a.only else PARTS, previous=prev)
    print("\n".join(section(R)))
    if a.out:
        Path(a.out).write_text(json.dumps(R, indent=1))
    if a.docs:
        print(f"bench: {update_performance_md(R, Path(a.docs))}", file=sys.stderr)
