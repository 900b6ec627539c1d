"""The same basal ganglia on Brian2 alone (no TVB): rates and beta power per nucleus, one state and seed.

    python examples/virtual_dbs/standalone_brian2.py STATE SEED [--n 200] [--duration 2000]

The second backend of the study's spiking network: the equations of mod/izhi_hamker.mod written
as Brian2 equations (Euler, 0.1 ms), the same populations, fits, weights (scaled by 200/n), per-cell
constant noise and 10 ms refractory period (v held at c, u frozen, conductances decaying), the same
DBS device sampled on Brian2's grid by cosim.sdk.stimulus (GridStimulus.samples, a TimedArray).
Brian2 is imported through the cosim-brian2 plugin's loader (NumPy >= 2.4). Prints one JSON line.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "plugins" / "cosim-brian2"))

import numpy as np  # noqa: E402

from analysis import beta_power, rate_hz  # noqa: E402
from dbs_params import FIT, T_SKIP_MS, dbs_devices, fibre_projections, no_noise, standalone_args  # noqa: E402

DT_MS = 0.1


def main(argv=None) -> int:
    args = standalone_args(argv)
    if args.no_noise:
        no_noise()

    from cosim_brian2._compat import import_brian2
    b2 = import_brian2()
    from cosim.sdk.stimulus import CurrentPA, on_grid
    b2.seed(args.seed)
    ms = b2.ms

    from bg_brian2 import layout, network
    sizes = layout(args.n)
    start = np.cumsum([0] + list(sizes.values()))
    first = dict(zip(sizes, start[:-1]))
    nsteps = int(round(args.duration / DT_MS))
    stim_ta = stim_col = None
    if args.state == "parkinson_dbs" and dbs_devices(args.dbs, args.amp):
        # the same devices; on Brian2 cosim's unit is pA (the model takes pA/1000 = nA = mV/ms), one
        # TimedArray column per set of devices (column 0: none), as the cosim-brian2 plugin does
        devs = dbs_devices(args.dbs, args.amp)
        values = np.zeros((nsteps, 2))
        stim_col = np.zeros(int(start[-1]), dtype=np.int64)
        for k_dev, d in enumerate(devs):
            dev = CurrentPA(**{k.replace("_nA", "_pA"): (1000 * v if k.endswith("_nA") else v) for k, v in d.items()})
            values[:, 1] = on_grid(dev, DT_MS, f"DBS[{k_dev}]").samples(0, nsteps)   # same waveform for each
            stim_col[first[d["population"]]:first[d["population"]] + sizes[d["population"]]] = 1
        stim_ta = b2.TimedArray(values, dt=DT_MS * ms)
    clock = b2.Clock(dt=DT_MS * ms)
    fibres = fibre_projections(args.fibres) if args.state == "parkinson_dbs" else []
    G, syn, _ = network(b2, clock, FIT[args.state], args.n, args.seed, stim_ta, stim_col, fibres=fibres)
    order = list(sizes)
    M = b2.SpikeMonitor(G)
    net = b2.Network(G, *syn, M)
    t0 = time.perf_counter()
    net.run(args.duration * ms)
    wall = time.perf_counter() - t0
    t = np.asarray(M.t / ms)
    idx = np.asarray(M.i)
    out = {"backend": "brian2", "state": args.state, "seed": args.seed, "dbs": [args.dbs, args.amp, args.fibres],
           "no_noise": args.no_noise, "n": args.n, "duration_ms": args.duration, "wall_s": wall, "nuclei": {}}
    for p in order:
        sel = (idx >= first[p]) & (idx < first[p] + sizes[p])
        out["nuclei"][p] = {"rate_hz": rate_hz(t[sel], sizes[p], T_SKIP_MS, args.duration),
                            "beta_power": beta_power(t[sel], T_SKIP_MS, args.duration)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
