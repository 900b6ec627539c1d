"""Drive a ``NetpyneAdapter`` through a fake lockstep (no coordinator, no sockets).

Plays the runtime's calls (requires, configure, initial_outputs, step k = 0..K-1, finish) with a
synthetic ``coupling/R_e`` input: ``coupling = level * (1 + depth * sin(2 pi f t))`` per region.
Works under MPI (rank 0 drives, other ranks follow)::

    python -m cosim.services.netpyne_node.drive --duration 200 --out /tmp/np --regions 33 71
    mpiexec -n 2 python -m cosim.services.netpyne_node.drive --duration 200 --out /tmp/np2 --dump spikes.npz

``--params`` takes a JSON/YAML file of NetpyneParams; ``--set a.b=value`` overrides one field.
``run_fake_lockstep`` is the same loop as a function (tests, benchmarks).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from . import parallel  # noqa: F401  (imports mpi4py before neuron when available)

import numpy as np

log = logging.getLogger(__name__)


def synthetic_connectome(n: int = 76, idelay: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.3) * 3.0
    return {"weights": w, "idelays": np.full((n, n), idelay, dtype=np.int64),
            "tract_lengths": np.full((n, n), idelay * 0.3), "region_labels": [f"r{i}" for i in range(n)],
            "speed_mm_per_ms": 3.0}


def make_context(regions, params: dict, duration_ms: float, tvb_dt_ms: float = 0.1, W: int = 16,
                 seed: int = 42, results_dir: str | None = None, node_name: str = "spiking",
                 outputs=("state/S_e", "state/R_e", "state/R_i"), connectome: dict | None = None,
                 tick_ms: float | None = None):
    from cosim.runtime.adapter import RunContext, SignalSpec
    regions = tuple(int(r) for r in regions)
    K = int(round(duration_ms / (W * tvb_dt_ms)))
    config = {"run": {"seed": seed}, "tvb": {"model": {}},
              "spiking_nodes": [{"name": node_name, "backend": "netpyne", "regions": list(regions), "params": params}]}
    return RunContext(config=config, node_name=node_name, regions=regions, tvb_dt_ms=tvb_dt_ms,
                      tick_ms=tick_ms or params.get("dt_ms", 0.025), steps_per_window=W, n_windows=K,
                      outputs=[SignalSpec(n, regions) for n in outputs],
                      inputs=[SignalSpec("coupling/R_e", regions)], results_dir=results_dir,
                      connectome=connectome if connectome is not None else synthetic_connectome(76, W))


def coupling_block(k: int, W: int, n_reg: int, tvb_dt_ms: float, level: float, depth: float = 0.0,
                   freq_hz: float = 5.0) -> np.ndarray:
    t = (k * W + 1 + np.arange(W)) * tvb_dt_ms
    c = level * (1.0 + depth * np.sin(2 * np.pi * freq_hz * t * 1e-3))
    return np.repeat(c[:, None], n_reg, axis=1)


def run_fake_lockstep(adapter, ctx, level: float = 200.0, depth: float = 0.0, first_input: bool = False) -> dict:
    """Run every window; returns outputs stacked over windows plus the adapter's summary (rank 0)."""
    adapter.requires(ctx)
    adapter.configure(ctx)
    adapter.initial_outputs()
    outs: dict[str, list] = {}
    wall = time.perf_counter()
    for k in range(ctx.n_windows):
        inputs = {}
        if k > 0 or first_input:
            inputs["coupling/R_e"] = coupling_block(k, ctx.steps_per_window, len(ctx.regions), ctx.tvb_dt_ms,
                                                    level, depth)
        for name, arr in adapter.step(k, inputs).items():
            outs.setdefault(name, []).append(arr)
    wall = time.perf_counter() - wall
    summary = adapter.finish(None)
    res: dict[str, Any] = {name: np.concatenate(v) for name, v in outs.items()}
    res["summary"] = summary
    res["wall_s"] = wall
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, nargs="+", default=[33, 71])
    ap.add_argument("--duration", type=float, default=200.0, help="ms")
    ap.add_argument("--W", type=int, default=16, help="TVB steps per window")
    ap.add_argument("--tvb-dt", type=float, default=0.1)
    ap.add_argument("--level", type=float, default=200.0, help="coupling/R_e level (Hz*weight)")
    ap.add_argument("--depth", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--params", help="JSON or YAML file with NetpyneParams")
    ap.add_argument("--set", action="append", default=[], help="override: network.n_exc=20 (JSON value)")
    ap.add_argument("--out", help="results dir (HDF5 + plot)")
    ap.add_argument("--dump", help="rank 0 writes spikes (t_ms, gid) of the results file to this .npz")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params: dict = {}
    if a.params:
        import yaml
        with open(a.params) as f:
            params = yaml.safe_load(f) or {}
    for item in a.set:
        key, _, val = item.partition("=")
        d = params
        *path, last = key.split(".")
        for part in path:
            d = d.setdefault(part, {})
        d[last] = json.loads(val)
    from .adapter import NetpyneAdapter
    ad = NetpyneAdapter(params)
    ctx = make_context(a.regions, params, a.duration, a.tvb_dt, a.W, a.seed, a.out)
    if ad.rank > 0:
        ad.follow()
        return 0
    res = run_fake_lockstep(ad, ctx, a.level, a.depth)
    R = res["state/R_e"]
    print(f"windows {ctx.n_windows}  wall {res['wall_s']:.3f}s  mean R_e {np.round(R.mean(0), 2).tolist()} Hz  "
          f"timing {res['summary'].get('timing')}")
    if a.dump:
        cols = {"R_e": R, "n_ranks": res["summary"].get("rank_count", 1)}
        if a.out:
            import h5py
            with h5py.File(f"{a.out}/{ctx.node_name}.h5") as f:
                if "spikes/t_ms" in f:
                    cols.update(t_ms=f["spikes/t_ms"][:], gid=f["spikes/gid"][:])
        np.savez(a.dump, **cols)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
