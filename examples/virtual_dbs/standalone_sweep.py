"""The spiking basal ganglia alone, three states over seeds, on NetPyNE and/or Brian2.

    python examples/virtual_dbs/standalone_sweep.py [--backends netpyne,brian2] [--seeds 5] [--n 100]
                                                    [--duration 1500] [--dbs stn] [--amp 160] [--fibres SETS]
                                                    [--no-noise] [--out FILE]

Each (backend, state, seed) runs in its own process (standalone_netpyne.py / standalone_brian2.py).
Writes {"<backend>_standalone": {STATE: {NUCLEUS: {"rate_hz": [per seed], "beta_power": [...]}}}}
(the format of dbs_results.json) plus "wall_s" per backend; prints a table, mean ± sd over seeds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dbs_params import DEFAULT_AMPLITUDE_NA  # noqa: E402
STATES = ["healthy", "parkinson", "parkinson_dbs"]
SCRIPT = {"netpyne": HERE / "standalone_netpyne.py", "brian2": HERE / "standalone_brian2.py"}


def one(backend: str, state: str, seed: int, a) -> dict:
    cmd = [sys.executable, str(SCRIPT[backend]), state, str(seed), "--n", str(a.n), "--duration", str(a.duration),
           "--dbs", a.dbs, "--fibres", getattr(a, "fibres", "")] + ([] if a.amp is None else ["--amp", str(a.amp)]) \
        + (["--no-noise"] if getattr(a, "no_noise", False) else [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{backend} {state} seed {seed} failed (exit {p.returncode}): {tail}")
    return json.loads(lines[-1])


def sweep(backends: list[str], a) -> dict:
    out = {}
    for b in backends:
        t0 = time.perf_counter()
        runs = {(s, sd): one(b, s, sd, a) for sd in range(1, a.seeds + 1) for s in STATES}
        nuclei = list(runs[("healthy", 1)]["nuclei"])
        out[f"{b}_standalone"] = {s: {p: {k: [runs[(s, sd)]["nuclei"][p][k] for sd in range(1, a.seeds + 1)]
                                          for k in ("rate_hz", "beta_power")} for p in nuclei} for s in STATES}
        out[f"{b}_standalone"]["wall_s"] = time.perf_counter() - t0
    return out


def table(res: dict) -> str:
    rows = []
    for key, by_state in res.items():
        for p in by_state["healthy"]:
            cells = []
            for s in STATES:
                r = np.array(by_state[s][p]["rate_hz"])
                cells.append(f"{r.mean():6.1f} ± {r.std(ddof=1) if r.size > 1 else 0:4.1f}")
            rows.append(f"{key:20s} {p:5s} " + "  ".join(cells))
    return "\n".join([f"{'':20s} {'':5s} " + "  ".join(f"{s:>13s}" for s in STATES)] + rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="netpyne,brian2")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--duration", type=float, default=1500.0)
    ap.add_argument("--dbs", default="stn")
    ap.add_argument("--amp", type=float, default=None, help=f"default: the variant's own ({DEFAULT_AMPLITUDE_NA:g} for stn)")
    ap.add_argument("--fibres", default="", help="fibre sets DBS activates (dbs_params.FIBRES)")
    ap.add_argument("--no-noise", action="store_true", help="no per-cell noise current (standalone_*.py --no-noise)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    try:
        res = sweep([b.strip() for b in a.backends.split(",") if b.strip()], a)
    except RuntimeError as e:
        print(f"standalone_sweep: {e}", file=sys.stderr)
        return 1
    print(table({k: v for k, v in res.items()}))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
