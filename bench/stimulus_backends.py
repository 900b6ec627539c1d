"""The same current device on each backend's default region network (docs/backends.md, "Stimulation").

Each backend's default network (120 E + 40 I; NetPyNE HH soma, NEST HH point neuron on the same
membrane, Brian2 LIF on the same membrane) runs alone in this process (its adapter through a fake
lockstep: a constant TVB coupling, no TVB, no sockets), once without and once with a pulse train
on E of region 33 from `--onset` on, for several seeds. The device is declared once in nA and
given to NetPyNE as `amplitude_nA` and to NEST and Brian2 as `amplitude_pA` = 1000 x that: the same
current on the same 1110 µm² soma. Reported: E rate of region 33 before and after onset, with and
without the device (mean ± sd over seeds), per backend.

Usage: python bench/stimulus_backends.py [--amplitudes 0.5 1 2] [--seeds 3] [--duration 400] [--onset 100]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

# bench/ holds a nest.py (the NEST benchmark): keep it from shadowing the simulator's module
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

W, TVB_DT = 16, 0.1
LEVEL = 200.0                   # coupling/R_e (Hz*weight): the drive of the default example's regions


def device(amplitude_nA: float, onset_ms: float, unit: str) -> dict:
    """The clinical DBS shape: 130 Hz, +A for 0.3 ms, then -A/10 for 3 ms (charge-balanced)."""
    k = 1.0 if unit == "nA" else 1000.0
    return {"population": "E", "regions": [33], "frequency_hz": 130.0, "width_ms": 0.3, "phase2_width_ms": 3.0,
            f"amplitude_{unit}": amplitude_nA * k, f"phase2_amplitude_{unit}": -amplitude_nA * k / 10,
            "onset_ms": onset_ms}


def connectome(n: int = 76) -> dict:
    """A random 76-region connectome (what netpyne_node.drive uses; not imported from there: it loads
    mpi4py, after which NEST's module does not initialise)."""
    rng = np.random.default_rng(0)
    w = rng.random((n, n)) * (rng.random((n, n)) < 0.3) * 3.0
    return {"weights": w, "idelays": np.full((n, n), W, dtype=np.int64), "tract_lengths": np.full((n, n), W * 0.3),
            "region_labels": [f"r{i}" for i in range(n)], "speed_mm_per_ms": 3.0}


def run_one(backend: str, stim: list, seed: int, duration_ms: float, out: Path) -> dict:
    from cosim.runtime.adapter import RunContext, SignalSpec
    K = int(round(duration_ms / (W * TVB_DT)))
    params = {"record": {"plot": False}, "stimulus": stim}
    dt = {"netpyne": 0.025, "nest": 0.05, "brian2": 0.05}[backend]
    cfg = {"run": {"seed": seed}, "tvb": {"model": {}},
           "spiking_nodes": [{"name": "s", "backend": backend, "regions": [33], "params": params}]}
    ctx = RunContext(config=cfg, node_name="s", regions=(33,), tvb_dt_ms=TVB_DT, tick_ms=0.025, steps_per_window=W,
                     n_windows=K, outputs=[SignalSpec("state/R_e", (33,))], results_dir=str(out),
                     connectome=connectome())
    if backend == "netpyne":
        from cosim.services.netpyne_node.adapter import NetpyneAdapter as A
    elif backend == "nest":
        from cosim.services.nest_node.adapter import NestAdapter as A
    else:
        from cosim_brian2.adapter import Brian2Adapter as A
    a = A(params)
    ctx.inputs = a.requires(ctx)
    a.configure(ctx)
    for k in range(K):
        a.step(k, {"coupling/R_e": np.full((W, 1), LEVEL)})
    a.finish(None)
    import h5py
    with h5py.File(out / "s.h5") as f:
        return {"t_ms": f["steps"][()] * TVB_DT, "exc": f["rates/exc"][()][:, 0], "dt": dt}


def measure(backend: str, amplitudes: list[float], seeds: int, duration: float, onset: float) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-stim-{backend}-"))
    unit = "nA" if backend == "netpyne" else "pA"
    rows = []
    for amp in [0.0, *amplitudes]:
        before, after = [], []
        for seed in range(1, seeds + 1):
            stim = [device(amp, onset, unit)] if amp else []
            r = run_one(backend, stim, seed, duration, tmp / f"{amp}_{seed}")
            before.append(float(r["exc"][(r["t_ms"] > 20) & (r["t_ms"] <= onset)].mean()))
            after.append(float(r["exc"][r["t_ms"] > onset + 20].mean()))
        rows.append({"backend": backend, "amplitude_nA": amp, "amplitude_key": f"amplitude_{unit}",
                     "before_hz": [float(np.mean(before)), float(np.std(before))],
                     "after_hz": [float(np.mean(after)), float(np.std(after))]})
        print(f"{backend:8s} {amp:4.1f} nA: E33 before {np.mean(before):6.2f} ± {np.std(before):5.2f} Hz, "
              f"after {np.mean(after):6.2f} ± {np.std(after):5.2f} Hz", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    import subprocess
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amplitudes", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="nA (x1000 in pA)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=400.0)
    ap.add_argument("--onset", type=float, default=100.0)
    ap.add_argument("--backends", nargs="+", default=["netpyne", "nest", "brian2"])
    ap.add_argument("--one", help=argparse.SUPPRESS)          # internal: one backend, rows as JSON on stdout
    a = ap.parse_args()
    if a.one:
        print(json.dumps(measure(a.one, a.amplitudes, a.seeds, a.duration, a.onset)))
        return
    rows = []
    for backend in a.backends:        # one process per simulator (NEST and NEURON in one process do not mix)
        p = subprocess.run([sys.executable, __file__, "--one", backend, "--seeds", str(a.seeds), "--duration",
                            str(a.duration), "--onset", str(a.onset), "--amplitudes", *map(str, a.amplitudes)],
                           stdout=subprocess.PIPE, text=True, check=True)
        rows += json.loads(p.stdout.strip().splitlines()[-1])
    print("| backend | device | E 33 before onset (Hz) | E 33 after onset (Hz) |\n|---|---|---|---|")
    for r in rows:
        dev = "none" if not r["amplitude_nA"] else (f"{r['amplitude_nA']:g} nA" if r["backend"] == "netpyne"
                                                    else f"{r['amplitude_nA'] * 1000:g} pA")
        print(f"| {r['backend']} | {dev} | {r['before_hz'][0]:.2f} ± {r['before_hz'][1]:.2f} | "
              f"{r['after_hz'][0]:.2f} ± {r['after_hz'][1]:.2f} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
