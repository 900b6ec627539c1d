"""Where the time of a run goes, per service, from coordinator.h5 `timing/*` (record.py).

Per window k the coordinator records its wall time (window k-1 complete → window k complete,
i.e. every STEP_DONE of it in; protocol 3) and, before protocol 3, its own work before the
window; each node reports how long its adapter's step took (`compute_s`, of which `simulate_s`
is the simulator's integration), how long it was idle before the window (`wait_s`: waiting for
its inputs or the grant), and its codec time (`decode_s`, `encode_s`).
This module splits every window into:

  node rows      simulate   the simulator's own integration (TVB, NEURON)
                 transform  the rest of the adapter's step: input/output transformers, proxy
                            overwrite, coupling for the other side, recording results
                 serialize  decoding the window's DATA + encoding its DATA and STEP_DONE (codec time)
                 wait       idle, waiting for the other side's data / the network
  coordinator    network    window wall minus the slowest node's busy time (decode + compute +
                            encode): transit between the nodes plus the wake-ups (protocol 3: the
                            data goes node to node; before, both hops through the coordinator)
                 record     the coordinator's own work between windows (recording, progress)

A node's simulate + transform + serialize + wait ≈ the loop time per window (= coordinator's
record + window wall). Window 0 is left out of the means (it includes waiting for the slower
node to finish building). `python -m cosim.results.breakdown RUN_DIR` (or `cosim report RUN_DIR`)
prints the table and writes RUN_DIR/breakdown.png.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NODE_PARTS = ("simulate", "transform", "serialize", "wait")
COORD_PARTS = ("network", "record")


def _read(out: Path) -> dict:
    from cosim.runtime.store import open_h5
    with open_h5(Path(out) / "coordinator.h5") as f:
        g = f["timing"]
        res = {"window_wall_s": g["window_wall_s"][:, 0],
               "coordinator_s": g["coordinator_s"][:, 0] if "coordinator_s" in g else None,
               "nodes": {}}
        for name, d in g.items():
            if name in ("window_wall_s", "coordinator_s"):
                continue
            fields = [str(x) for x in d.attrs.get("fields", ["compute_s", "wait_s"])]
            arr = d[:]
            res["nodes"][name] = {fld: arr[:, i] for i, fld in enumerate(fields)}
        res["window_ms"] = float(f.attrs.get("steps_per_window", 0)) * float(f.attrs.get("tvb_dt_ms", 0))
    return res


def _col(t: dict, key: str, n: int) -> np.ndarray:
    v = t.get(key)
    return np.full(n, np.nan) if v is None else np.asarray(v, dtype=float)


def per_window(out: str | Path) -> dict:
    """Arrays (K,) in seconds: per node simulate/transform/serialize/wait, coordinator network/record."""
    r = _read(Path(out))
    wall = r["window_wall_s"]
    K = len(wall)
    coord = r["coordinator_s"] if r["coordinator_s"] is not None else np.full(K, np.nan)
    nodes, busy = {}, []
    for name, t in r["nodes"].items():
        compute = _col(t, "compute_s", K)
        sim = _col(t, "simulate_s", K)
        sim = np.where(np.isnan(sim), compute, sim)
        dec = np.nan_to_num(_col(t, "decode_s", K))
        enc = np.nan_to_num(_col(t, "encode_s", K))
        enc_own = np.append(enc[1:], enc[-1:]) if K else enc     # encode_s of window k arrives with k+1
        nodes[name] = {"simulate": sim, "transform": np.maximum(compute - sim, 0.0), "serialize": dec + enc_own,
                       "wait": np.maximum(_col(t, "wait_s", K) - dec, 0.0)}
        busy.append(dec + compute + enc_own)
    crit = np.max(np.vstack(busy), axis=0) if busy else np.zeros(K)
    return {"nodes": nodes, "coordinator": {"network": np.maximum(wall - crit, 0.0), "record": coord},
            "window_wall": wall, "loop": wall + np.nan_to_num(coord), "window_ms": r["window_ms"]}


def breakdown(out: str | Path) -> dict:
    """Mean ms per window of every part (window 0 left out), plus totals; plain data (JSON-able)."""
    pw = per_window(out)
    sl = slice(1, None) if len(pw["window_wall"]) > 1 else slice(None)

    def ms(a):
        a = np.asarray(a)[sl]
        a = a[~np.isnan(a)]
        return float(a.mean() * 1e3) if a.size else None

    res = {"windows": int(len(pw["window_wall"])), "window_ms": pw["window_ms"],
           "loop_ms_per_window": ms(pw["loop"]), "window_wall_ms": ms(pw["window_wall"]),
           "nodes": {n: {p: ms(v[p]) for p in NODE_PARTS} for n, v in pw["nodes"].items()},
           "coordinator": {p: ms(pw["coordinator"][p]) for p in COORD_PARTS}}
    loop = res["loop_ms_per_window"] or 0.0
    sims = [v["simulate"] or 0.0 for v in res["nodes"].values()]
    res["slowest_simulate_ms"] = max(sims) if sims else 0.0
    # The window wall is the TVB node's own cycle; with lag 1 a node may still be on window k
    # when TVB ends it (TVB needs only window k-1 of it), so over few long windows the slowest
    # simulator's mean can exceed the mean wall (issue 25: -49 to -186 ms "beyond" with windows of
    # seconds). The pace of the run is the longest cycle of any node (its four parts add up to it):
    cycles = [sum(v[q] or 0.0 for q in NODE_PARTS) for v in res["nodes"].values()]
    res["cycle_ms_per_window"] = max([loop, *cycles])
    # what the co-simulation adds beyond the slowest simulator, per window (>= 0 by construction)
    res["overhead_ms_per_window"] = res["cycle_ms_per_window"] - res["slowest_simulate_ms"]
    cyc = res["cycle_ms_per_window"]
    res["overhead_fraction"] = res["overhead_ms_per_window"] / cyc if cyc else None
    return res


def format_breakdown(b: dict) -> str:
    def f(x):
        return "    -" if x is None else f"{x:8.3f}"
    lines = [f"  where the time goes (ms per window, mean of windows 1..{b['windows'] - 1}; "
             f"loop {f(b['loop_ms_per_window']).strip()} ms per {b['window_ms']:g} ms window):",
             f"  {'':>12} " + " ".join(f"{p:>9}" for p in NODE_PARTS)]
    for n, v in b["nodes"].items():
        lines.append(f"  {n:>12} " + " ".join(f"{f(v[p]):>9}" for p in NODE_PARTS))
    c = b["coordinator"]
    lines.append(f"  {'coordinator':>12}   network {f(c['network']).strip()}, recording {f(c['record']).strip()}")
    if b.get("overhead_fraction") is not None:
        lines.append(f"  beyond the slowest simulator: {b['overhead_ms_per_window']:.3f} ms per window "
                     f"({100 * b['overhead_fraction']:.0f} % of the slowest node's cycle, "
                     f"{b.get('cycle_ms_per_window', 0.0):.3f} ms)")
    return "\n".join(lines)


def plot_breakdown(out: str | Path, path: str | Path | None = None, title: str | None = None) -> Path:
    """Stacked bars per service (mean ms per window) and the per-window loop time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = Path(out)
    b, pw = breakdown(out), per_window(out)
    colors = {"simulate": "#4c72b0", "transform": "#55a868", "serialize": "#c44e52", "wait": "#cccccc",
              "network": "#8172b2", "record": "#ccb974"}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1.2, 1]})
    rows = [(n, [(p, v[p]) for p in NODE_PARTS]) for n, v in b["nodes"].items()]
    rows.append(("coordinator", [(p, b["coordinator"][p]) for p in COORD_PARTS]))
    seen = set()
    for i, (_name, parts) in enumerate(rows):
        left = 0.0
        for p, v in parts:
            v = v or 0.0
            ax.barh(i, v, left=left, color=colors[p], label=p if p not in seen else None)
            seen.add(p)
            left += v
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms per window (mean)")
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    ax.set_title(title or f"where the time goes ({b['window_ms']:g} ms windows)", fontsize=9)
    k = np.arange(len(pw["loop"]))
    ax2.plot(k, pw["loop"] * 1e3, "k", lw=0.6, label="loop (coordinator)")
    for n, v in pw["nodes"].items():
        ax2.plot(k, v["simulate"] * 1e3, lw=0.6, label=f"{n} simulate")
    ax2.set_yscale("log")
    ax2.set_xlabel("window")
    ax2.set_ylabel("ms")
    ax2.legend(fontsize=7)
    ax2.set_title("per window", fontsize=9)
    fig.tight_layout()
    png = Path(path) if path else out / "breakdown.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
