"""TVB node cost per window against TVB alone, same model, same run (docs/models.md, issue 20).

    python bench/tvb_models.py [--duration-ms 500] [--repeats 3]

For JansenRit (SigmoidalJansenRit coupling) and MontbrioPazoRoxin (Linear), on tvb-data's 76
regions with regions 33 and 71 spiking, dt 0.1 ms, W = the largest causal window:

- **TVB alone**: tvb-library's own ``Simulator`` with Raw and TemporalAverage monitors of every
  state variable (the node records them all), iterated over the same number of steps (``for _ in
  sim(...)``), from zero history like the node.
- **TVB node**: ``TVBAdapter.step`` + ``after_window`` for every window: the window's
  integration, the interface's rate, the spiking regions' ``coupling/R_e``, the proxies'
  overwrite from synthetic spike rates through the model's transformer, and recording (raw +
  TemporalAverage into tvb.h5, in a temporary folder). No sockets: the node's own cost.

Both are timed in one process, alternating (alone, node, alone, node, ...), as CPU time of the
process (``time.process_time``: on a shared machine wall time mostly measures the other
processes), one thread per numerical library; the ratio is the median over repeats of node /
alone. Prints one JSON line per model. The goal is <= 1.1.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")     # one thread each, as the services run (DOMAIN.md, Threads)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

REGIONS = (33, 71)
MODELS = {
    "JansenRit": {"model": {"class": "JansenRit"}, "coupling": {"class": "SigmoidalJansenRit", "params": {"a": 1.0}}},
    "MontbrioPazoRoxin": {"model": {"class": "MontbrioPazoRoxin", "params": {"eta": -4.6, "J": 14.5, "Delta": 0.7}},
                          "coupling": {"class": "Linear", "params": {"a": 0.1}}},
}
#: synthetic spike rates (Hz) inside each model's range (JansenRit's sigmoid tops at 5 Hz)
RATES = {"JansenRit": (0.5, 4.0), "MontbrioPazoRoxin": (2.0, 20.0)}


def config(name: str, duration_ms: float) -> dict:
    return {"run": {"duration_ms": duration_ms, "seed": 1},
            "tvb": {**MODELS[name], "initial_history": "zero", "monitors": {"raw": True, "temporal_average_ms": 1.0}},
            "spiking_nodes": [{"name": "spiking", "backend": "nest", "regions": list(REGIONS)}]}


def tvb_alone(cfg: dict) -> tuple[float, int]:
    from tvb.simulator import monitors
    from cosim.config import parse_config
    from cosim.services.tvb_node.windowed import build_simulator
    c = parse_config(cfg)
    sim = build_simulator(c.tvb, c.run.seed)
    sim.monitors = [monitors.Raw(), monitors.TemporalAverage(period=1.0)]
    sim.model.variables_of_interest = tuple(sim.model.state_variables)   # record what the node records
    conn = sim.connectivity          # zero history, as the node's initial_history: zero
    horizon = int(np.max(np.rint(conn.tract_lengths / c.tvb.conduction_speed_mm_per_ms / c.tvb.dt_ms))) + 1
    sim.initial_conditions = np.zeros((horizon, len(sim.model.state_variables), conn.number_of_regions, 1))
    np.random.seed(c.run.seed)
    sim.configure()
    n = int(round(c.run.duration_ms / c.tvb.dt_ms))
    t0 = time.process_time()
    for _ in sim(n_steps=n):
        pass
    return time.process_time() - t0, n


def tvb_node(cfg: dict, out_dir: str, rates=(2.0, 20.0)) -> tuple[float, int, int]:
    from cosim.config import parse_config
    from cosim.config.timing import crossing_min_delay_steps
    from cosim.runtime.adapter import RunContext, SignalSpec
    from cosim.services.tvb_node.adapter import TVBAdapter
    c = parse_config(cfg)
    ctx = RunContext(config=c.model_dump(mode="json"), node_name="tvb", regions=REGIONS, tvb_dt_ms=c.tvb.dt_ms,
                     tick_ms=c.tvb.dt_ms, results_dir=out_dir)
    a = TVBAdapter()
    req = a.requires(ctx)
    con = a.connectome()
    W = crossing_min_delay_steps(con["weights"], con["idelays"], [set(REGIONS)])
    n = int(round(c.run.duration_ms / c.tvb.dt_ms))
    K = n // W
    ctx.steps_per_window, ctx.n_windows, ctx.connectome = W, K, con
    ctx.inputs = req
    ctx.outputs = [SignalSpec("coupling/R_e", REGIONS)]
    a.configure(ctx)
    a.initial_outputs()
    rng = np.random.default_rng(0)
    blocks = [{s.name: rng.uniform(*rates, (W, len(s.regions))) for s in req} for _ in range(K)]
    t0 = time.process_time()
    for k in range(K):
        a.step(k, blocks[k] if k else {})
        a.after_window()
    dt = time.process_time() - t0
    a.finish()
    return dt, K * W, W


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-ms", type=float, default=500.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    logging.getLogger("tvb").setLevel(logging.ERROR)
    for name in MODELS:
        cfg = config(name, a.duration_ms)
        tvb_alone(config(name, 20.0))                 # JIT and imports warm, untimed
        ratios, alone_s, node_s = [], [], []
        for _ in range(a.repeats):
            ta, na = tvb_alone(cfg)
            with tempfile.TemporaryDirectory() as d:
                tn, nn, W = tvb_node(cfg, d, RATES[name])
            per_alone, per_node = ta / na * W, tn / nn * W
            alone_s.append(per_alone)
            node_s.append(per_node)
            ratios.append(per_node / per_alone)
        print(json.dumps({"model": name, "W_steps": W, "alone_ms_per_window": round(statistics.median(alone_s) * 1e3, 3),
                          "node_ms_per_window": round(statistics.median(node_s) * 1e3, 3),
                          "ratio_median": round(statistics.median(ratios), 3),
                          "ratios": [round(r, 3) for r in ratios], "goal": 1.1}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
