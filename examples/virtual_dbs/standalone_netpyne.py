"""The basal ganglia on NetPyNE alone (no TVB): rates and beta power per nucleus for one state and seed.

    python examples/virtual_dbs/standalone_netpyne.py STATE SEED [--n 200] [--duration 2000] [--out FILE]

STATE: healthy | parkinson | parkinson_dbs. DBS is cosim's own stimulation device (a
cosim.sdk.stimulus.CurrentNA pulse train, CosimPulse mechanism of services/netpyne_node), declared
exactly as the NetPyNE node declares ``params.stimulus``. Prints one JSON line.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from dbs_params import FIT, T_SKIP_MS, dbs_devices, fibre_projections, no_noise, standalone_args  # noqa: E402
from analysis import beta_power, rate_hz  # noqa: E402


def mechanisms() -> Path:
    """izhi_hamker.mod + cosim's CosimPulse compiled once, cached by content."""
    import cosim.services.netpyne_node.stimulus as st
    mods = sorted((HERE / "mod").glob("*.mod")) + sorted(Path(st.STIM_MOD_DIR).glob("*.mod"))
    key = hashlib.sha256(b"".join(m.read_bytes() for m in mods)).hexdigest()[:16]
    d = Path(os.environ.get("COSIM_NRNMECH_CACHE", Path.home() / ".cache" / "cosim" / "nrnmech")) / f"virtual_dbs_{key}"
    if not (d / "x86_64").exists() and not (d / "aarch64").exists():
        d.mkdir(parents=True, exist_ok=True)
        for m in mods:
            shutil.copy(m, d)
        subprocess.run(["nrnivmodl", "."], cwd=d, check=True, capture_output=True)
    return d


def main(argv=None) -> int:
    a = standalone_args(argv)
    if a.no_noise:
        no_noise()

    import neuron
    neuron.load_mechanisms(str(mechanisms()))
    from netpyne import sim
    from bg_network import NUCLEI, build, pop_sizes
    from cosim.sdk.stimulus import CurrentNA, on_grid

    fibres = fibre_projections(a.fibres) if a.state == "parkinson_dbs" else []
    net, cfg = build(FIT[a.state], a.n, fibres=fibres)
    cfg.duration = a.duration
    cfg.verbose = False
    cfg.printRunTime = False
    cfg.printPopAvgRates = False
    cfg.seeds = {"conn": a.seed, "stim": a.seed + 1, "loc": a.seed + 2, "cell": a.seed + 3}
    cfg.recordStep = 1.0
    if a.state == "parkinson_dbs":
        for i, d in enumerate(dbs_devices(a.dbs, a.amp)):
            dev = CurrentNA(**d)
            g = on_grid(dev, cfg.dt, f"DBS[{i}]")
            src = f"dbs{i}"
            net.stimSourceParams[src] = {"type": "CosimPulse", "n_on": float(g.n_on), "n_off": float(g.n_off),
                                         "ps": g.period_steps, "w1": float(g.w1), "w2": float(g.w2),
                                         "a1": g.a1, "a2": g.a2}
            net.stimTargetParams[f"{src}->{d['population']}"] = {"source": src, "conds": {"pop": d["population"]},
                                                                 "loc": 0.5}
    t0 = time.perf_counter()
    sim.create(netParams=net, simConfig=cfg, output=False)
    sim.simulate()
    wall = time.perf_counter() - t0
    spkt = np.asarray(sim.allSimData["spkt"])
    spkid = np.asarray(sim.allSimData["spkid"]).astype(int)
    sizes = pop_sizes(a.n)
    out = {"backend": "netpyne", "state": a.state, "seed": a.seed, "dbs": [a.dbs, a.amp, a.fibres], "no_noise": a.no_noise,
           "n": a.n, "duration_ms": a.duration,
           "wall_s": wall, "nuclei": {}}
    for pop in list(NUCLEI) + ["CxE", "CxI"]:
        gids = np.asarray(sim.net.allPops[pop]["cellGids"])
        t = spkt[np.isin(spkid, gids)]
        out["nuclei"][pop] = {"rate_hz": rate_hz(t, sizes[pop], T_SKIP_MS, a.duration),
                              "beta_power": beta_power(t, T_SKIP_MS, a.duration)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
