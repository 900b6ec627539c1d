"""Building the default NetPyNE network: NumPy-drawn connections (O(N·k)) against NetPyNE's
probability rule (O(N²)), same sizes, same call.

Each build runs in a fresh process (so peak memory is its own): import NEURON and NetPyNE, then
time the builder (``NetpyneNetworkBuilder.build``) and the engine (``SpikingEngine``: NetPyNE
creates cells and connections, NEURON's objects, recording). Reported per build: wall and CPU
seconds, peak RSS above the process's RSS before building (MB), connections made, and per
within-region rule the in-degree mean and variance against the binomial's (n_candidates·p,
n_candidates·p·(1−p)) with their standard errors.

- ``compare``: cells per region (default 500, 1,000, 2,000, 4,000) at the default
  probabilities held fixed (``scale_keeps: probability``, the rule the old path draws), both
  wirings, interleaved; ratios old / new.
- ``large``: 2 regions of 16,000 cells each, NumPy wiring with ``scale`` keeping the in-degree (the
  default), as ``cosim run --set spiking_nodes.0.params.network.scale=100`` builds it.

Usage: python bench/netpyne_build.py [--size tiny|full] [--cells 500,1000] [--regions 1] [--out F]
Keep in mind: the old path at 4,000 cells (1 region) takes ~45 s of one core by itself.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import arg_parser, load_avg  # noqa: E402

SIZES = {"tiny": {"cells": [160, 320], "large": None},
         "full": {"cells": [500, 1000, 2000, 4000], "large": 16000}}
REGIONS = [33, 71]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def build_once(cells: int, wiring: str, regions: list[int], keeps: str) -> dict:
    """In this process: build the default network of ``cells`` per region and measure it."""
    import numpy as np
    from neuron import h  # noqa: F401
    from netpyne import sim
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    from cosim.services.netpyne_node.engine import SpikingEngine
    scale = cells / 160.0
    p = NetpyneParams.model_validate({"network": {"scale": scale, "wiring": wiring, "scale_keeps": keeps},
                                      "record": {"plot": False}})
    conn = None
    if len(regions) > 1:
        w = np.zeros((76, 76))
        w[regions[0], regions[1]] = w[regions[1], regions[0]] = 1.0
        conn = {"weights": w, "idelays": np.full((76, 76), 50)}
    rss0 = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    b = NetpyneNetworkBuilder(p, regions, conn).set_default()
    built = b.build()
    t1 = time.perf_counter()
    SpikingEngine(built, p.dt_ms)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gid_pop = {c.gid: c.tags["pop"] for c in sim.net.cells}
    size = {pop: len(v.cellGids) for pop, v in sim.net.pops.items()}
    indeg: dict[str, dict[int, int]] = {}
    n_conns = 0
    for c in sim.net.cells:
        for cn in c.conns:
            n_conns += 1
            pre = gid_pop.get(cn["preGid"])
            if pre is None or pre.startswith("in"):
                continue
            d = indeg.setdefault(f"{pre}->{c.tags['pop']}", {})
            d[c.gid] = d.get(c.gid, 0) + 1
    probs = {f"{x['source']}_{r}->{x['target']}_{r}": x["prob"] for x in b.connections for r in regions}
    probs.update({f"{x['source']}_{x['source_node']}->{x['target']}_{x['target_node']}": x["prob"]
                  for x in b.node_connections})
    rules = {}
    for rule, prob in probs.items():
        src, tgt = rule.split("->")
        n_cand = size[src] - (1 if src == tgt else 0)
        k = np.zeros(size[tgt])
        for i, gid in enumerate(sorted(g for g, pop in gid_pop.items() if pop == tgt)):
            k[i] = indeg.get(rule, {}).get(gid, 0)
        mean, var = n_cand * prob, n_cand * prob * (1 - prob)
        n = k.size
        rules[rule] = {"n_post": n, "n_candidates": n_cand, "prob": prob,
                       "mean": float(k.mean()), "expected_mean": mean, "se_mean": float(np.sqrt(var / n)),
                       "var": float(k.var(ddof=1)), "expected_var": var,
                       # standard error of a sample variance ≈ var·sqrt(2/(n−1)) (+ excess kurtosis, small here)
                       "se_var": float(var * np.sqrt(2.0 / (n - 1)))}
    return {"cells": cells, "regions": len(regions), "wiring": wiring, "scale_keeps": keeps,
            "build_s": wall, "build_cpu_s": cpu, "spec_s": t1 - t0, "rss_before_mb": rss0,
            "peak_rss_mb": peak, "build_mb": peak - rss0, "connections": n_conns, "rules": rules}


def measure(cells: int, wiring: str, regions: int, keeps: str, timeout: float = 900) -> dict:
    cmd = [sys.executable, __file__, "--one", f"{cells},{wiring},{regions},{keeps}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"cells": cells, "wiring": wiring, "regions": regions, "error": p.stderr.strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(size: str = "full", cells: list[int] | None = None, regions: int = 1, large: bool = True) -> dict:
    s = SIZES[size]
    out = {"load_start": load_avg(), "compare": [], "large": None}
    for n in cells or s["cells"]:
        pair = {"cells": n}
        for wiring in ("numpy", "netpyne"):           # interleaved: each size's two builds back to back
            pair[wiring] = measure(n, wiring, regions, "probability")
        a, b = pair["netpyne"], pair["numpy"]
        if "error" not in a and "error" not in b:
            pair["time_ratio_old_new"] = a["build_s"] / b["build_s"]
            pair["mem_ratio_old_new"] = a["build_mb"] / max(b["build_mb"], 1.0)
        out["compare"].append(pair)
        print(json.dumps({k: pair.get(k) for k in ("cells", "time_ratio_old_new", "mem_ratio_old_new")}),
              file=sys.stderr, flush=True)
    if large and s["large"]:
        out["large"] = measure(s["large"], "numpy", 2, "in_degree")
    out["load_end"] = load_avg()
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        n, wiring, regions, keeps = sys.argv[2].split(",")
        print(json.dumps(build_once(int(n), wiring, REGIONS[:int(regions)], keeps)))
        return
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--cells", help="comma-separated cells per region (default: the size's)")
    ap.add_argument("--regions", type=int, default=1, choices=(1, 2))
    ap.add_argument("--no-large", action="store_true", help="skip the 2 × 16,000-cell build")
    a = ap.parse_args()
    cells = [int(x) for x in a.cells.split(",")] if a.cells else None
    res = run(a.size, cells, a.regions, not a.no_large)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
