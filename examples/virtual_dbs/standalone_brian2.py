"""The same basal ganglia on Brian2 alone (no TVB): rates and beta power per nucleus, one state and seed.

    python examples/virtual_dbs/standalone_brian2.py STATE SEED [--n 200] [--duration 2000]

The second backend of the study's spiking network: the equations of mod/izhi_hamker.mod written
as Brian2 equations (Euler, 0.1 ms), the same populations, fits, weights (scaled by 200/n), per-cell
constant noise and 10 ms refractory period (v held at c, u frozen, conductances decaying), the same
DBS device sampled on Brian2's grid by cosim.sdk.stimulus (GridStimulus.samples, a TimedArray).
Brian2 is imported through the cosim-brian2 plugin's loader (NumPy >= 2.4). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "plugins" / "cosim-brian2"))

import numpy as np  # noqa: E402

from analysis import beta_power, rate_hz  # noqa: E402
from bg_network import CELLS, EXCITATORY, N_REF, NOISE_SD, NUCLEI, POP_CELL, REFRACTORY_MS, TAU_SYN_MS, fitted, pop_sizes  # noqa: E402
from dbs_params import DEFAULT_AMPLITUDE_NA, DEFAULT_VARIANT, FIT, T_SKIP_MS, VARIANTS, dbs_devices  # noqa: E402

DT_MS = 0.1
DELAY_MS = 0.1
EQS = """
dv/dt = (n2*v**2 + n1*v + n0 - u/C + Ie/C + Inoise + is_dbs*I_dbs(t) - g_ampa*(v - E_ampa) - g_gaba*(v - E_gaba))/ms : 1 (unless refractory)
du/dt = a*(b*(v - Vr) - u)/ms : 1 (unless refractory)
dg_ampa/dt = -g_ampa/tau_syn : 1
dg_gaba/dt = -g_gaba/tau_syn : 1
a : 1 (constant)
b : 1 (constant)
c : 1 (constant)
d : 1 (constant)
C : 1 (constant)
Ie : 1 (constant)
n0 : 1 (constant)
n1 : 1 (constant)
n2 : 1 (constant)
Vr : 1 (constant)
vpeak : 1 (constant)
Inoise : 1 (constant)
is_dbs : 1 (constant)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("state", choices=["healthy", "parkinson", "parkinson_dbs"])
    ap.add_argument("seed", type=int)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--duration", type=float, default=2000.0)
    ap.add_argument("--dbs", choices=sorted(VARIANTS), default=DEFAULT_VARIANT)
    ap.add_argument("--amp", type=float, default=DEFAULT_AMPLITUDE_NA, help="DBS first-phase amplitude (nA)")
    args = ap.parse_args(argv)

    from cosim_brian2._compat import import_brian2
    b2 = import_brian2()
    from cosim.sdk.stimulus import CurrentPA, on_grid
    b2.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    ms = b2.ms

    sizes = pop_sizes(args.n)
    order = list(NUCLEI) + ["CxE", "CxI"]
    start = np.cumsum([0] + [sizes[p] for p in order])
    first = dict(zip(order, start[:-1]))
    N = int(start[-1])
    nsteps = int(round(args.duration / DT_MS))
    dbs = np.zeros(nsteps)
    dbs_pops = set()
    if args.state == "parkinson_dbs":
        for k_dev, dev_spec in enumerate(dbs_devices(args.dbs, args.amp)):
            # the same device; on Brian2 cosim's unit is pA, and here (C = 1 nF) 1 nA = 1000 pA = 1 mV/ms.
            # Every device of a variant has the same waveform: one TimedArray, switched on per population
            dev = CurrentPA(label=dev_spec["label"], population=dev_spec["population"], frequency_hz=dev_spec["frequency_hz"],
                            width_ms=dev_spec["width_ms"], amplitude_pA=1000 * dev_spec["amplitude_nA"],
                            phase2_width_ms=dev_spec["phase2_width_ms"], phase2_amplitude_pA=1000 * dev_spec["phase2_amplitude_nA"],
                            onset_ms=dev_spec["onset_ms"])
            dbs = on_grid(dev, DT_MS, f"DBS[{k_dev}]").samples(0, nsteps) / 1000.0
            dbs_pops.add(dev_spec["population"])
    I_dbs = b2.TimedArray(dbs, dt=DT_MS * ms)  # noqa: F841 (used by name in EQS)

    G = b2.NeuronGroup(N, EQS, threshold="v > vpeak", reset="v = c; u = u + d", refractory=REFRACTORY_MS * ms,
                       method="euler", dt=DT_MS * ms,
                       namespace={"I_dbs": I_dbs, "E_ampa": 0.0, "E_gaba": -90.0, "tau_syn": TAU_SYN_MS * ms})
    for p in order:
        sl = slice(first[p], first[p] + sizes[p])
        pa, pb, pc, pd, pC, pIe, p0, p1, p2, pVr, pvpeak, pu0, pv0 = CELLS[POP_CELL[p]]
        for key, val in dict(a=pa, b=pb, c=pc, d=pd, C=pC, Ie=pIe, n0=p0, n1=p1, n2=p2, Vr=pVr, vpeak=pvpeak,
                           v=pv0, u=pu0).items():
            getattr(G, key)[sl] = val
        G.Inoise[sl] = rng.normal(0.0, NOISE_SD[POP_CELL[p]], sizes[p]) if NOISE_SD[POP_CELL[p]] > 0 else 0.0
        G.is_dbs[sl] = 1.0 if p in dbs_pops else 0.0
    # connections: every (pre, post) pair with the fitted probability (NetPyNE's 'probability' rule)
    pre_all, post_all, w_all = [], [], []
    scale = N_REF / args.n
    for proj, (prob, weight) in fitted(FIT[args.state]).items():
        pre, post = proj.split("-")
        m = rng.random((sizes[pre], sizes[post])) < prob
        src, trg = np.nonzero(m)
        pre_all.append(src + first[pre]); post_all.append(trg + first[post])
        w_all.append(np.full(src.size, (weight if pre in EXCITATORY else -weight) * scale))
    S = b2.Synapses(G, G, "w : 1 (constant)",
                    on_pre="g_ampa += w * int(w > 0)\ng_gaba -= w * int(w < 0)", dt=DT_MS * ms)
    S.connect(i=np.concatenate(pre_all), j=np.concatenate(post_all))
    S.w = np.concatenate(w_all)
    S.delay = DELAY_MS * ms
    M = b2.SpikeMonitor(G)
    net = b2.Network(G, S, M)
    t0 = time.perf_counter()
    net.run(args.duration * ms)
    wall = time.perf_counter() - t0
    t = np.asarray(M.t / ms)
    idx = np.asarray(M.i)
    out = {"backend": "brian2", "state": args.state, "seed": args.seed, "dbs": [args.dbs, args.amp], "n": args.n, "duration_ms": args.duration,
           "wall_s": wall, "nuclei": {}}
    for p in order:
        sel = (idx >= first[p]) & (idx < first[p] + sizes[p])
        out["nuclei"][p] = {"rate_hz": rate_hz(t[sel], sizes[p], T_SKIP_MS, args.duration),
                            "beta_power": beta_power(t[sel], T_SKIP_MS, args.duration)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
