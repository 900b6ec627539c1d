"""A Brian2 network of the user's own (``params.model_file``): its populations are mapped onto
regions by role, TVB's input drives its ``exc`` cells through its own on_pre statement, current
devices reach the populations they name, other populations are simulated but not counted, and a
bad mapping is one line."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cosim.errors import ModelError
from cosim.runtime.adapter import RunContext, SignalSpec
from cosim_brian2.adapter import Brian2Adapter

pytestmark = pytest.mark.brian2

MODEL = '''
POPULATIONS = {"A": 10, "B": 6, "X": 4}


def build(b2, clock, seed, stim_ta, stim_col):
    eqs = "dv/dt = (-v + I_stim)/(10*ms) + g/ms : 1\\ndg/dt = -g/(5*ms) : 1\\n"
    eqs += ("I_stim = stim_ta(t, stim_col) / 100.0 : 1\\nstim_col : integer (constant)\\n" if stim_ta is not None
            else "I_stim : 1 (constant)\\n")
    ns = {"stim_ta": stim_ta} if stim_ta is not None else {}
    G = b2.NeuronGroup(20, eqs, threshold="v > 1", reset="v = 0", refractory=2 * b2.ms, method="euler",
                       clock=clock, namespace=ns)
    if stim_ta is not None:
        G.stim_col = stim_col
    return G, [], "g_post += w"
'''


def _run(tmp_path, tag, populations, stim=(), weight=0.5, K=20):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    params = {"dt_ms": 0.1, "record": {"plot": False}, "input": {"scale": 1.0, "weight_uS": weight},
              "model_file": {"path": str(path), "populations": populations}, "stimulus": list(stim)}
    cfg = {"run": {"seed": 3}, "tvb": {"model": {}},
           "spiking_nodes": [{"name": "s", "backend": "brian2", "regions": [5, 7], "params": params}]}
    con = {"weights": np.ones((10, 10)), "idelays": np.full((10, 10), 32)}
    ctx = RunContext(config=cfg, node_name="s", regions=(5, 7), tvb_dt_ms=0.1, tick_ms=0.1,
                     steps_per_window=10, n_windows=K, outputs=[SignalSpec("state/R_e", (5, 7))],
                     connectome=con, results_dir=str(tmp_path / tag))
    a = Brian2Adapter()
    ctx.inputs = a.requires(ctx)
    a.configure(ctx)
    for k in range(K):
        a.step(k, {"coupling/R_e": np.full((10, 2), 200.0)})
    a.finish(None)
    with h5py.File(tmp_path / tag / "s.h5") as f:
        return {k: f[k][()] for k in ("spikes/gid", "rates/exc", "rates/inh", "pops/label", "pops/role")}


MAP = {"A": {"region": 5, "role": "exc"}, "B": {"region": 7, "role": "exc"}}


def test_input_drives_the_exc_populations_only(tmp_path):
    r = _run(tmp_path, "in", MAP)
    gid = r["spikes/gid"]
    assert np.isin(np.arange(16), gid).sum() >= 12      # A and B cells are driven by TVB's trains
    assert not np.any(gid >= 16)                         # X (unmapped: 'other') gets no input and is silent
    assert r["rates/exc"].mean(0)[0] > 0 and r["rates/exc"].mean(0)[1] > 0
    assert [x.decode() if isinstance(x, bytes) else x for x in r["pops/role"]] == ["exc", "exc", "other"]
    silent = _run(tmp_path, "zero", MAP, weight=0.0)
    assert silent["spikes/gid"].size == 0                # no input, no spikes: the input is what drove them


def test_a_current_device_reaches_the_population_it_names(tmp_path):
    dev = {"population": "X", "kind": "constant", "amplitude_pA": 300.0, "label": "c"}
    r = _run(tmp_path, "stim", MAP, stim=[dev], weight=0.0)
    gid = r["spikes/gid"]
    assert gid.size > 0 and np.all(gid >= 16)           # only X's cells fire (3.0 > threshold 1)


@pytest.mark.parametrize("pops, msg", [
    ({"Q": {"region": 5, "role": "exc"}}, "['Q'] are not in the model's POPULATIONS"),
    ({"A": {"region": 9, "role": "exc"}, "B": {"region": 7, "role": "exc"}}, "region 9, which this node does not simulate"),
    ({"A": {"region": 5, "role": "exc"}}, "region(s) [7] have no 'exc' population"),
])
def test_a_bad_mapping_is_one_line(tmp_path, pops, msg):
    with pytest.raises(ModelError, match=None) as e:
        _run(tmp_path, "bad", pops)
    assert msg in str(e.value) and "\n" not in str(e.value)
