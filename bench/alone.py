"""Baselines: each simulator alone, no co-simulation, in a fresh process, same sizes.

    python -m bench.alone tvb      CONFIG             tvb-library's own Simulator, Raw + TemporalAverage
    python -m bench.alone neuron   CONFIG [COUPLING]  the spiking node's NetPyNE network, all input
                                                      delivered up front, ONE psolve to the end
    python -m bench.alone windowed CONFIG [COUPLING]  the same network stepped window by window through
                                                      the node's adapter (transformers included, no sockets)

CONFIG is a run config (YAML); COUPLING an .npy of `coupling/R_e` (K·W, n_regions) as the TVB node
sent it in a co-simulation (coordinator.h5 signals/tvb/coupling/R_e), so the spiking network gets
the same input alone as in the co-simulation. Prints one JSON line: build_s, run_s (integration
only), whole_s (process start to end).
"""
from __future__ import annotations

import json
import math
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import yaml  # noqa: E402


def tvb_alone(cfg: dict) -> dict:
    from cosim.config import parse_config
    from cosim.services.tvb_node.windowed import build_simulator
    from tvb.simulator import monitors
    c = parse_config(cfg)
    t0 = time.perf_counter()
    sim = build_simulator(c.tvb, c.run.seed)
    mons = [monitors.Raw()]
    if c.tvb.monitors.temporal_average_ms:
        mons.append(monitors.TemporalAverage(period=float(c.tvb.monitors.temporal_average_ms)))
    sim.monitors = mons
    np.random.seed(c.run.seed)
    sim.configure()
    t1 = time.perf_counter()
    n = 0
    for _ in sim(simulation_length=float(c.run.duration_ms)):
        n += 1
    t2 = time.perf_counter()
    return {"what": "tvb", "build_s": t1 - t0, "run_s": t2 - t1, "steps": int(round(c.run.duration_ms / c.tvb.dt_ms)),
            "regions": int(sim.connectivity.number_of_regions)}


def _spiking_adapter(cfg: dict, W: int):
    from cosim.config import parse_config
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.drive import make_context
    from cosim.services.tvb_node.windowed import build_connectivity
    c = parse_config(cfg)
    node = c.spiking_nodes[0]
    conn = build_connectivity(c.tvb)
    idelays = np.rint(np.asarray(conn.tract_lengths) / c.tvb.conduction_speed_mm_per_ms / c.tvb.dt_ms).astype(np.int64)
    connectome = {"weights": np.asarray(conn.weights, float), "idelays": idelays,
                  "tract_lengths": np.asarray(conn.tract_lengths, float), "region_labels": [],
                  "speed_mm_per_ms": c.tvb.conduction_speed_mm_per_ms}
    params = dict(node.params)
    params.pop("mpi_ranks", None)
    dt = float(params.get("dt_ms", 0.025))
    ctx = make_context(node.regions, params, c.run.duration_ms, c.tvb.dt_ms, W, c.run.seed, None, node.name,
                       connectome=connectome, tick_ms=min(dt, c.tvb.dt_ms))
    ctx.config["tvb"] = c.tvb.model_dump()
    ctx.n_windows = math.ceil(round(c.run.duration_ms / c.tvb.dt_ms) / W)
    ad = NetpyneAdapter(params)
    ad.requires(ctx)
    t0 = time.perf_counter()
    ad.configure(ctx)
    return ad, ctx, time.perf_counter() - t0


def _coupling(path: str | None, K: int, W: int, n: int) -> np.ndarray:
    """Input of window k = what TVB produced in window k-1 (window 0: zeros)."""
    c = np.zeros((K * W, n))
    if path:
        rec = np.load(path)
        m = min(rec.shape[0], (K - 1) * W)
        c[W:W + m] = rec[:m]
    return c


def neuron_alone(cfg: dict, W: int, coupling: str | None) -> dict:
    from cosim.sdk.transformers import rates_from_signal
    ad, ctx, build_s = _spiking_adapter(cfg, W)
    K, e = ctx.n_windows, ad.engine
    c = _coupling(coupling, K, W, len(ad.regions))
    t0 = time.perf_counter()
    rates = rates_from_signal(c, ad.in_scale, ad.p.input.offset_hz)
    n_in = 0
    for j, r in enumerate(ad.regions):
        for k in range(K):          # same generator, same draws per window block as the node
            times, idx = ad.gens[r].window(rates[k * W:(k + 1) * W, j], k * W * ad.tvb_dt)
            n_in += e.deliver(r, times, idx)
    t1 = time.perf_counter()
    e.advance_to(K * W * ad.nrn_per_tvb)
    t2 = time.perf_counter()
    t, g = e.read_spikes()
    return {"what": "neuron", "build_s": build_s, "input_s": t1 - t0, "run_s": t2 - t1, "spikes": int(t.size),
            "input_spikes": n_in, "cells": int(ad.n_exc.sum() + ad.n_inh.sum()), "windows": K}


def windowed_alone(cfg: dict, W: int, coupling: str | None) -> dict:
    ad, ctx, build_s = _spiking_adapter(cfg, W)
    K = ctx.n_windows
    c = _coupling(coupling, K, W, len(ad.regions))
    t0 = time.perf_counter()
    for k in range(K):
        ad.step(k, {"coupling/R_e": c[k * W:(k + 1) * W]} if k else {})
    t1 = time.perf_counter()
    s = ad.finish(None)
    return {"what": "windowed", "build_s": build_s, "run_s": t1 - t0, "windows": K, "timing": s.get("timing")}


def main(argv=None) -> int:
    argv = argv or sys.argv[1:]
    what, cfg_path = argv[0], argv[1]
    cfg = yaml.safe_load(open(cfg_path)) or {}
    W = int(argv[2]) if len(argv) > 2 else 16
    coupling = argv[3] if len(argv) > 3 else None
    import logging
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("tvb", "numba", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if what == "tvb":
        res = tvb_alone(cfg)
    elif what == "neuron":
        res = neuron_alone(cfg, W, coupling)
    elif what == "windowed":
        res = windowed_alone(cfg, W, coupling)
    else:
        raise SystemExit(f"unknown baseline {what!r}")
    res["whole_s"] = time.perf_counter() - T_START
    print("RESULT " + json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
