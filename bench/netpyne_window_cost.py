"""Per-window cost of the NetPyNE backend: NEURON integration vs everything around it.

Default network (2 regions x (120 E + 40 I) + 120 input relays each), NEURON dt 0.025 ms,
TVB dt 0.1 ms, W = 16 steps (1.6 ms), 1000 ms, synthetic coupling (fake lockstep, no sockets).
Reports, per window: integration (psolve) and the overhead outside it (input generation and
delivery, spike reading, rate/proxy computation, results buffering) as % of integration; then
the same network and the same input spikes run as one psolve of 1000 ms, and whether its spikes
are identical to the windowed run.

    python bench/netpyne_window_cost.py [--duration 1000] [--repeat 3] [--clock cpu|wall]

``--clock cpu`` (default) times with ``time.process_time``: on a shared, loaded machine wall time
mostly measures the other processes; CPU time of this process is what the backend costs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cosim.services.netpyne_node import parallel  # noqa: E402,F401  (mpi4py before neuron)

CLOCK = time.process_time


def windowed(duration: float, results_dir: str | None):
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.drive import make_context, run_fake_lockstep
    params = {"record": {"plot": False}}
    ad = NetpyneAdapter(params)
    ctx = make_context((33, 71), params, duration, results_dir=results_dir)
    res = run_fake_lockstep(ad, ctx, level=250.0, depth=0.5, first_input=True)
    return ctx, res


def one_shot(duration: float, ctx):
    """Same network, same Poisson trains (same generators, same window blocks), one psolve."""
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    from cosim.services.netpyne_node.drive import coupling_block
    from cosim.services.netpyne_node.engine import SpikingEngine
    from cosim.sdk.transformers import PoissonInput, rates_from_signal
    p = NetpyneParams.model_validate({"record": {"plot": False}})
    built = NetpyneNetworkBuilder(p, list(ctx.regions), ctx.connectome, tvb_dt_ms=0.1, seed=42).set_default().build()
    e = SpikingEngine(built, p.dt_ms)
    helper = NetpyneAdapter(p)
    helper.regions = list(ctx.regions)
    scale = helper._input_scale(ctx, p)
    gens = {r: PoissonInput(len(e.inputs[r]), 0.1, 42, r) for r in ctx.regions}
    W = ctx.steps_per_window
    for k in range(ctx.n_windows):
        rates = rates_from_signal(coupling_block(k, W, 2, 0.1, 250.0, 0.5), scale, 0.0)
        for j, r in enumerate(ctx.regions):
            t, i = gens[r].window(rates[:, j], k * W * 0.1)
            e.deliver(r, t, i)
    t0 = CLOCK()
    e.advance_to(ctx.n_windows * W * 4)
    wall = CLOCK() - t0
    t, g = e.read_spikes()
    order = np.lexsort((g, t))
    e.close()
    return wall, t[order], g[order]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=1000.0)
    ap.add_argument("--repeat", type=int, default=3, help="best of N (the machine is shared)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    from cosim.services.netpyne_node import adapter
    adapter.CLOCK = CLOCK
    print(f"clock: {a.clock}")
    import h5py
    best = {}
    for label, with_results in (("no results file", False), ("with results file", True)):
        runs = []
        for _ in range(a.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                ctx, res = windowed(a.duration, tmp if with_results else None)
                if with_results:
                    with h5py.File(Path(tmp) / "spiking.h5") as f:
                        spikes = (f["spikes/t_ms"][:], f["spikes/gid"][:])
            runs.append(res)
        r = min(runs, key=lambda x: x["summary"]["timing"]["integrate_s"])
        best[label] = r
        T, K = r["summary"]["timing"], ctx.n_windows
        integ = T["integrate_s"]
        over = sum(v for k, v in T.items() if k != "integrate_s")
        print(f"windowed ({label}): {K} windows of {ctx.steps_per_window} TVB steps, wall {r['wall_s']:.3f} s, "
              f"mean R_e {np.round(r['state/R_e'].mean(0), 2).tolist()} Hz")
        print(f"  per window: integration {1e6 * integ / K:.0f} us, overhead {1e6 * over / K:.0f} us "
              f"({100 * over / integ:.1f}% of integration)")
        print("  overhead split per window (us): " + ", ".join(f"{k[:-2]} {1e6 * v / K:.0f}" for k, v in T.items()
                                                                if k != "integrate_s"))
    walls = [one_shot(a.duration, ctx) for _ in range(a.repeat)]
    wall, t1, g1 = min(walls, key=lambda x: x[0])
    integ = best["no results file"]["summary"]["timing"]["integrate_s"]
    same = np.array_equal(t1, spikes[0]) and np.array_equal(g1, spikes[1])
    print(f"network alone, one psolve of {a.duration:g} ms: {wall:.3f} s; windowed integration total {integ:.3f} s "
          f"({100 * (integ / wall - 1):+.1f}%); windowed wall (no results) {best['no results file']['wall_s']:.3f} s")
    print(f"one-shot spikes identical to windowed spikes: {same} ({t1.size} spikes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
