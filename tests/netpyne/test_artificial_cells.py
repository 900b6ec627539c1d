"""Artificial cells of a user model fire under cosim as they do when NetPyNE runs the model alone.

Issue 22: cosim set ``simConfig.duration = 0`` (it steps NEURON itself), but NetPyNE reads the
duration while it creates cells and cuts every VecStim train to t <= duration: NetPyNE's
tut_artif gave 775 VecStim spikes standalone and 0 under cosim, and every population downstream
changed. ``models/artificial`` (tut_artif's populations, fixed seeds and connection lists) is run
by NetPyNE alone (``sim.createSimulateAnalyze``, a subprocess) and under cosim with TVB's drive
silent: every population's spike count is the same.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from np_helpers import run

pytestmark = [pytest.mark.system, pytest.mark.netpyne, pytest.mark.slow]   # NetPyNE alone in a subprocess, then in-process

MODEL = Path(__file__).resolve().parent / "models" / "artificial"
STANDALONE = """
import json, os, runpy, sys
from neuron import h
h.nrn_load_dll(sys.argv[2])
os.chdir(os.path.dirname(sys.argv[1]))
runpy.run_path(sys.argv[1], run_name="__main__")
from netpyne import sim
pop_of = {c["gid"]: c["tags"]["pop"] for c in sim.net.allCells}
counts = {}
for g in sim.allSimData["spkid"]:
    counts[pop_of[int(g)]] = counts.get(pop_of[int(g)], 0) + 1
print("COUNTS", json.dumps(counts))
"""
POPS = {"PYR1": {"region": 33, "role": "exc"}, "pop_IntFire2": {"region": 33, "role": "inh"},
        "pop_NetStim": {"region": 33, "role": "other"}, "pop_VecStim": {"region": 33, "role": "other"},
        "pop_times": {"region": 33, "role": "other"}}


def test_vecstim_and_intfire_populations_fire_as_standalone(tmp_path):
    from cosim.services.netpyne_node.mechanisms import compile_mods
    build = compile_mods(MODEL / "mod", tmp_path / "build")
    lib = next(p for pat in ("*/libnrnmech.so", "*/.libs/libnrnmech.so") for p in build.glob(pat))
    (tmp_path / "alone.py").write_text(STANDALONE)
    out = subprocess.run([sys.executable, str(tmp_path / "alone.py"), str(MODEL / "artif.py"), str(lib)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    m = re.search(r"COUNTS (\{.*\})", out.stdout)
    assert m, (out.stdout[-1000:], out.stderr[-2000:])
    alone = json.loads(m.group(1))

    params = {"model_file": {"path": str(MODEL / "artif.py"), "populations": POPS, "build_dir": str(tmp_path / "build")},
              "input": {"scale": 0.1}, "record": {"plot": False}}
    run(params, duration_ms=200.0, level=0.0, results_dir=tmp_path / "res")   # the model's own 200 ms
    with h5py.File(tmp_path / "res" / "spiking.h5") as f:
        labels = [x.decode() if isinstance(x, bytes) else x for x in f["pops/label"][...]]
        pop = f["spikes/pop"][...]
    cosim = {lab: int((pop == i).sum()) for i, lab in enumerate(labels)}
    # every population fires standalone (the VecStim trains, and the HH and IntFire2 cells they drive)
    assert all(alone.get(p, 0) > 0 for p in POPS), alone
    assert {p: cosim[p] for p in POPS} == {p: alone[p] for p in POPS}, (cosim, alone)
