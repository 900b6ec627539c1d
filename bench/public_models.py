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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("netpyne_source", help="a NetPyNE source tree (its examples/ folder is used)")
    ap.add_argument("--only", help="comma-separated example names")
    ap.add_argument("--duration", type=float, default=30.0, help="simulated ms per example (default 30)")
    ap.add_argument("--mod-exclude", default="vecstim.mod", help="comma-separated .mod globs to leave out")
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    examples = sorted(p.parent for p in (Path(a.netpyne_source) / "examples").glob("*/index.npjson"))
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
