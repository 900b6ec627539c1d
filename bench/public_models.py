"""NetPyNE's own examples, unchanged, through `cosim run`: which run, which are refused in one line.

Every example folder of a NetPyNE source tree that has a model index (`index.npjson`, NetPyNE >=
1.0.5) is run for a few windows as region 33 of the default whole-brain model: its first
population with sections is mapped `exc`, the others `other`, and cosim attaches its drive.
Nothing in the example is edited; `--mod-exclude` leaves out mechanism files NEURON 9 cannot
compile (NEURON 7's `vecstim.mod`: NEURON has VecStim built in). Needs a NetPyNE checkout (not on
PyPI's wheels), e.g. `git clone https://github.com/suny-downstate-medical-center/netpyne`.

Usage: python bench/public_models.py NETPYNE_SOURCE [--only CA3model_3pops,HHTut] [--duration 30]
           [--mod-exclude vecstim.mod] [--out DIR]
Prints one line per example and a JSON summary: (exit code, seconds, populations, cosim's last line).

With ``--nest``, the source is a NEST source tree and every script of its ``pynest/examples``
(and of its subfolders) is taken as cosim takes a user's NEST file (services/nest_node/network.py:
run as ``python FILE`` runs it, up to its first Simulate/Run), unchanged, as region 33 of a node
stepped in-process for ``--duration`` ms (16-step windows, TVB's coupling a constant 10 Hz, a
synthetic connectome: no TVB, so the sweep is about the model file). Its first neuron population
(in the order the script keeps them) is mapped ``exc``. Each script is classified: *runs
unchanged* (only the mapping), *runs with keys* (which ``params`` keys the YAML needs: ``dt_ms``
when the script's resolution is not 0.05 ms, the drive's weight key when its neurons are not
conductance-based), or *refused* with cosim's one line. Each script gets ``--cpu`` seconds of CPU
(a larger network than that is *not judged*). ``--markdown`` prints the table of docs/user_models.md.

Usage: python bench/public_models.py --nest NEST_SOURCE [--only brunel_delta_nest] [--duration 32] [--cpu 30]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_PROBE = """
import contextlib, io, json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from cosim.services.netpyne_node.config import UserModel
from cosim.services.netpyne_node.mechanisms import load_mechanisms
from cosim.services.netpyne_node.usermodel import _read, build_mechanisms
path = Path({index!r})
build = build_mechanisms(UserModel(path=str(path), populations={{"_": {{"region": 0, "role": "exc"}}}},
                                   mod_exclude={exclude!r}))
if build is not None:
    load_mechanisms(build)
with contextlib.redirect_stdout(io.StringIO()):
    net, cfg = _read(path)
print(json.dumps({{k: (v.get("cellModel") if isinstance(v, dict) else None) for k, v in net.popParams.items()}}))
"""
POINT_CELLS = ("NetStim", "VecStim", "IntFire1", "IntFire2", "IntFire4")


def run_example(example: Path, out: Path, duration_ms: float, exclude: list[str]) -> dict:
    index = example / "index.npjson"
    probe = subprocess.run([sys.executable, "-c", _PROBE.format(repo=str(REPO), index=str(index), exclude=exclude)],
                           capture_output=True, text=True, timeout=900)
    if probe.returncode:
        lines = [ln for ln in probe.stderr.splitlines() if ln.strip()]
        return {"result": "not loadable", "reason": lines[-1][:300] if lines else "?"}
    pops = json.loads(probe.stdout.strip().splitlines()[-1])
    cells = [p for p, model in pops.items() if model not in POINT_CELLS]
    if not cells:
        return {"result": "no population with sections", "populations": pops}
    mapping = {p: {"region": 33, "role": "exc" if i == 0 else "other"} for i, p in enumerate(cells)}
    cfg = {"run": {"name": example.name, "duration_ms": duration_ms},
           "spiking_nodes": [{"name": "spiking", "regions": [33], "params": {"model_file": {
               "path": str(index), "mod_exclude": exclude, "populations": mapping}}}]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cosim.yaml").write_text(yaml.safe_dump(cfg))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(out / "cosim.yaml"), "--out", str(out / "run"),
                        "--no-plots"], capture_output=True, text=True, timeout=1800)
    last = [ln for ln in r.stderr.splitlines() if ln.startswith("cosim:")]
    return {"result": "ran" if r.returncode == 0 else f"exit {r.returncode}", "seconds": round(time.perf_counter() - t, 1),
            "populations": len(cells), "last_line": last[-1][:300] if last else ""}


_NEST_PROBE = r"""
import json, os, resource, sys, time
cpu = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
os.environ["PYNEST_QUIET"] = "1"
os.environ["MPLBACKEND"] = "Agg"
from pathlib import Path
import numpy as np
path, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
duration = float(sys.argv[4])
from cosim.services.nest_node import network as nw
from cosim.services.nest_node.adapter import NestAdapter, import_nest
from cosim.runtime.adapter import RunContext, SignalSpec

def one(e):
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
    keep = lines[-1:] if "validation error" in str(e) else lines[:2] if lines and lines[0].endswith(":") else lines[:1]
    return (type(e).__name__ + ": " + " ".join(keep))[:300]

def done(**kw):
    print("\nRESULT " + json.dumps(kw)); sys.exit(0)

nest = import_nest()
nest.ResetKernel()
class Spec:
    function, kwargs, set, _regions, _seed = None, {}, {}, [33], 42
try:
    ns, result, stopped = nw._run_model(nest, path, Spec, [])
except BaseException as e:
    done(result="refused", reason=f"{path.name}: the model file failed: {one(e)}{nw._where(e, path.parent)}")
names = nw._available(result, ns, stopped, nest)
pops = []
for n in names:
    nodes, _ = nw._lookup(n, result, ns, stopped, nest)
    try:
        et, model = nodes[0].get("element_type"), str(nodes[0].get("model"))
    except Exception:
        continue
    if et == "neuron" and not model.startswith(("parrot", "astrocyte")):
        pops.append((n, model))
if not pops:
    done(result="refused", reason="no neuron population kept where cosim can map it (module level, an object, "
         "a returned dict, or a function running at Simulate)", found=names[:8])
res = float(nest.GetKernelStatus("resolution"))
name, model = pops[0]
keys = []
params = {"model_file": {"path": str(path), "populations": {name: {"region": 33, "role": "exc"}}},
          "input": {"scale": 1.0}, "record": {"plot": False}}
if abs(res - 0.05) > 1e-12:
    params["dt_ms"] = res
    keys.append(f"dt_ms: {res:g}")
kind = nw.synapse_kind(nest, model)
if kind == "current":
    params["input"]["weight_pA"] = 10.0; keys.append("input.weight_pA")
elif kind == "delta":
    params["input"]["weight_mV"] = 0.1; keys.append("input.weight_mV")
elif kind is None:
    params["input"]["weight_pA"] = 10.0; keys.append("input.weight_* (kind unknown)")
W, K = 16, max(1, int(round(duration / 1.6)))
n = 76
cfg = {"run": {"seed": 42}, "tvb": {"model": {}},
       "spiking_nodes": [{"name": "s", "backend": "nest", "regions": [33], "params": params}]}
ctx = RunContext(config=cfg, node_name="s", regions=(33,), tvb_dt_ms=0.1, tick_ms=min(res, 0.05), steps_per_window=W,
                 n_windows=K, outputs=[SignalSpec("state/R_e", (33,)), SignalSpec("state/S_e", (33,))],
                 connectome={"weights": np.zeros((n, n)), "idelays": np.full((n, n), 32)}, results_dir=str(out))
a = NestAdapter()
t = time.perf_counter()
try:
    ctx.inputs = a.requires(ctx)
    a.configure(ctx)
    for k in range(K):
        a.step(k, {"coupling/R_e": np.full((W, 1), 10.0)})
    a.finish(None)
except BaseException as e:
    done(result="refused", reason=one(e), population=name, model=model, keys=keys)
import h5py
with h5py.File(out / "s.h5") as f:
    spikes = int(f["spikes/t_ms"].shape[0])
done(result="runs with keys" if keys else "runs unchanged", population=name, model=model, keys=keys,
     n_cells=int(a.pops[0].size), spikes=spikes, populations_found=len(pops), threads=a.n_threads,
     seconds=round(time.perf_counter() - t, 2))
"""


def nest_scripts(source: Path) -> list[Path]:
    """The scripts a user runs: those that simulate (helpers and parameter modules are imported by them)."""
    ex = source / "pynest" / "examples"
    return sorted(p for p in ex.rglob("*.py") if "__pycache__" not in p.parts
                  and any(c in p.read_text(errors="replace") for c in ("Simulate(", ".simulate(", "Run(")))


def run_nest_script(script: Path, out: Path, duration_ms: float, cpu_s: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-c", _NEST_PROBE, str(script), str(out), str(cpu_s), str(duration_ms)],
                           capture_output=True, text=True, timeout=cpu_s * 4 + 60, cwd=out)
    except subprocess.TimeoutExpired:
        return {"result": "not judged", "reason": f"more than {cpu_s * 4 + 60} s"}
    hit = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if hit:
        return {**json.loads(hit[-1][7:]), "wall_s": round(time.perf_counter() - t, 1)}
    if r.returncode in (-24, -9, 152):      # SIGXCPU / SIGKILL at the CPU limit
        return {"result": "not judged", "reason": f"more than {cpu_s} s of CPU to build or run"}
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return {"result": "refused", "reason": (lines[-1] if lines else f"exit {r.returncode}")[:300]}


def nest_markdown(results: dict) -> str:
    rows = ["| script | result | population mapped (model) | keys the YAML needs / why refused |", "|---|---|---|---|"]
    for name, r in results.items():
        pop = f"`{r['population']}` ({r['model']})" if r.get("population") else ""
        why = ", ".join(f"`{k}`" for k in r.get("keys", [])) if r["result"].startswith("runs") else r.get("reason", "")
        if r["result"].startswith("runs"):
            why += f" — {r.get('spikes', 0)} spikes" if why else f"{r.get('spikes', 0)} spikes"
        rows.append(f"| `{name}` | {r['result']} | {pop} | {why.replace('|', '/')} |")
    return "\n".join(rows)


def main_nest(a) -> None:
    source = Path(a.source)
    scripts = nest_scripts(source)
    if a.only:
        scripts = [s for s in scripts if s.stem in a.only.split(",")]
    work = Path(a.out or tempfile.mkdtemp(prefix="cosim-public-nest-"))
    results = {}
    for s in scripts:
        rel = str(s.relative_to(source / "pynest" / "examples"))
        copy = work / rel.replace("/", "__")[:-3] / "model"           # a copy: the checkout stays as it is
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(s.parent, copy, ignore=shutil.ignore_patterns("*.png", "*.gif", "*.svg", "*.h5", "*.dat"))
        results[rel] = run_nest_script(copy / s.name, copy.parent / "out", a.duration, a.cpu)
        print(f"{rel}: {results[rel]}", file=sys.stderr, flush=True)
    print(nest_markdown(results) if a.markdown else json.dumps(results, indent=1))
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["result"]] = counts.get(r["result"], 0) + 1
    print(json.dumps(counts), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a NetPyNE source tree (its examples/ folder is used), or NEST's with --nest")
    ap.add_argument("--nest", action="store_true", help="sweep a NEST source tree's pynest/examples")
    ap.add_argument("--cpu", type=int, default=30, help="--nest: CPU seconds per script (default 30)")
    ap.add_argument("--markdown", action="store_true", help="--nest: print the docs' table")
    ap.add_argument("--only", help="comma-separated example names")
    ap.add_argument("--duration", type=float, default=30.0, help="simulated ms per example (default 30; --nest: 32)")
    ap.add_argument("--mod-exclude", default="vecstim.mod", help="comma-separated .mod globs to leave out")
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    if a.nest:
        return main_nest(a)
    examples = sorted(p.parent for p in (Path(a.source) / "examples").glob("*/index.npjson"))
    if a.only:
        examples = [e for e in examples if e.name in a.only.split(",")]
    work = Path(a.out or tempfile.mkdtemp(prefix="cosim-public-"))
    results = {}
    for ex in examples:
        copy = work / ex.name / ex.name                 # a copy: the checkout stays as it is
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(ex, copy)
        try:
            results[ex.name] = run_example(copy, work / ex.name, a.duration, [g for g in a.mod_exclude.split(",") if g])
        except subprocess.TimeoutExpired:
            results[ex.name] = {"result": "timeout"}
        print(f"{ex.name}: {results[ex.name]}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
