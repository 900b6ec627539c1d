"""`python bench/public_models.py --nest SOURCE` classifies NEST scripts as cosim takes them (issue 22):
on a tree of three scripts written here in the style of pynest/examples, one runs with the keys it
needs, one is refused in one line, one keeps no neuron population where cosim can map it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.nest]      # the sweep runs each script in a subprocess

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "brunel_like.py": "import nest\nnest.ResetKernel()\nnest.SetKernelStatus({'resolution': 0.1})\n"
                      "nodes_ex = nest.Create('iaf_psc_delta', 50, params={'I_e': 500.0})\n"
                      "rec = nest.Create('spike_recorder')\nnest.Connect(nodes_ex, rec)\nnest.Simulate(100.0)\n"
                      "print(rec.events['times'][0])\n",
    "broken.py": "import nest\nneuron = nest.Create('no_such_model')\nnest.Simulate(10.0)\n",
    "functions_only.py": "import nest\n\ndef run():\n    n = nest.Create('iaf_psc_alpha', 3)\n    return None\n\n"
                         "run()\nnest.Simulate(10.0)\n",
    "params_module.py": "scale = 1.0\n",          # imported by scripts, never run: not swept
}


def test_the_nest_sweep_classifies_scripts(tmp_path):
    ex = tmp_path / "nest" / "pynest" / "examples"
    ex.mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (ex / name).write_text(text)
    p = subprocess.run([sys.executable, "bench/public_models.py", "--nest", str(tmp_path / "nest"), "--out",
                        str(tmp_path / "work"), "--cpu", "30", "--duration", "16"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["brunel_like.py"]["result"] == "runs with keys"
    assert r["brunel_like.py"]["keys"] == ["dt_ms: 0.1", "input.weight_mV"] and r["brunel_like.py"]["spikes"] > 0
    assert r["broken.py"]["result"] == "refused" and "(at broken.py line 2)" in r["broken.py"]["reason"]
    assert r["functions_only.py"]["result"] == "refused" and "no neuron population" in r["functions_only.py"]["reason"]
    assert "params_module.py" not in r
    assert sorted(x.name for x in ex.iterdir()) == sorted(SCRIPTS)         # the source tree is left as it was
