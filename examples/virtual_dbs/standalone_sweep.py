"""The spiking basal ganglia alone, three states over seeds, on NetPyNE and/or Brian2.

    python examples/virtual_dbs/standalone_sweep.py [--backends netpyne,brian2] [--seeds 5] [--n 100]
                                                    [--duration 1500] [--dbs stn] [--amp 160] [--fibres SETS]
                                                    [--no-noise] [--out FILE]

Each (backend, state, seed) runs in its own process (standalone_netpyne.py / standalone_brian2.py),
forked from one warm process per backend that imported what the script imports (Brian2, or NEURON
and NetPyNE: 2-3 CPU-s a fresh process pays): the child runs the script as `__main__`, from a
process in which nothing but imports has run, so it prints what a fresh process prints (but for
its wall_s; checked on both backends); `forked(backend, runs)` does this for any list of runs.
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


PRELOAD = {"brian2": ["cosim_brian2._compat:import_brian2()", "bg_brian2"],
           "netpyne": ["neuron", "netpyne.sim", "bg_network"]}


def _serve(backend: str, runs: list[list[str]]) -> int:
    """The warm process: import what SCRIPT[backend] imports, then fork one child per run in turn,
    its stdout to a file of its own; print each run's last line (its JSON). At the first failure:
    its exit code (1 if killed or silent)."""
    import importlib
    import os
    import runpy
    import tempfile
    import traceback
    sys.path.insert(0, str(HERE.parent / "plugins" / "cosim-brian2"))
    for m in ["analysis", "dbs_params", "cosim.sdk.stimulus", *PRELOAD[backend]]:
        mod, _, call = m.partition(":")
        obj = importlib.import_module(mod)
        if call:
            getattr(obj, call.rstrip("()"))()
    script = str(SCRIPT[backend])
    for argv in runs:
        with tempfile.TemporaryFile() as out:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.dup2(out.fileno(), 1)
                    sys.argv = [script, *argv]
                    runpy.run_path(script, run_name="__main__")
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            out.seek(0)
            lines = [ln for ln in out.read().decode(errors="replace").splitlines() if ln.startswith("{")]
            if code != 0 or not lines:
                return code if code > 0 else 1      # its own stderr (this one's) says why
            print(lines[-1], flush=True)
    return 0


def forked(backend: str, runs: list[list[str]]) -> list[dict]:
    """SCRIPT[backend] with each of `runs` (its arguments) forked from one warm process: the JSON
    each printed. RuntimeError naming the run that failed and its last line of stderr."""
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import standalone_sweep as s; "
            "sys.exit(s._serve(sys.argv[1], json.loads(sys.argv[2])))")
    p = subprocess.run([sys.executable, "-c", code, backend, json.dumps(runs)], capture_output=True, text=True)
    got = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or len(got) != len(runs):
        failed = runs[min(len(got), len(runs) - 1)]
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{backend} {failed[0]} seed {failed[1]} failed (exit {p.returncode}): {tail}")
    return got


def args_of(state: str, seed: int, a) -> list[str]:
    return [state, str(seed), "--n", str(a.n), "--duration", str(a.duration), "--dbs", a.dbs,
            "--fibres", getattr(a, "fibres", "")] + ([] if a.amp is None else ["--amp", str(a.amp)]) \
        + (["--no-noise"] if getattr(a, "no_noise", False) else [])


def sweep(backends: list[str], a) -> dict:
    out = {}
    for b in backends:
        t0 = time.perf_counter()
        keys = [(s, sd) for sd in range(1, a.seeds + 1) for s in STATES]
        runs = dict(zip(keys, forked(b, [args_of(s, sd, a) for s, sd in keys])))
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
