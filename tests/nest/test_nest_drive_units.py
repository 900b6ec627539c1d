"""TVB's drive onto a user's NEST model: the weight's unit and the receptor come from what the
model's neurons declare (issue 22).

Before, ``input.weight_uS`` was multiplied by 1000 whatever the target: on a delta-synapse model
(NEST's brunel_delta) the default 0.006 became a 6 mV jump per input spike, silently, and raised
the rates (32 -> 38.5 Hz on brunel_delta); the drive always used receptor 0, which
``*_multisynapse`` neurons refuse, and ``cosim validate`` said ok before the run failed.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from cosim.services.nest_node.network import ModelError
from test_nest_adapter import drive, make

pytestmark = [pytest.mark.system, pytest.mark.nest]     # NEST alone in a subprocess, cosim validate, in-process

# brunel_delta in miniature (NEST's pynest/examples/brunel_delta_nest.py: iaf_psc_delta, J = 0.1 mV,
# g = 5, external Poisson drive at eta = 2 times threshold rate), 400 E + 100 I, 10 % connectivity
BRUNEL_DELTA = """
import nest
nest.ResetKernel()
nest.SetKernelStatus({"resolution": 0.1, "rng_seed": 5})
NE, NI, CE, CI, J, g, D = 400, 100, 40, 10, 0.1, 5.0, 1.5
neuron = {"C_m": 1.0, "tau_m": 20.0, "t_ref": 2.0, "E_L": 0.0, "V_reset": 10.0, "V_m": 0.0, "V_th": 20.0}
nest.SetDefaults("iaf_psc_delta", neuron)
nodes_ex = nest.Create("iaf_psc_delta", NE)
nodes_in = nest.Create("iaf_psc_delta", NI)
nu_ex = 2.0 * 20.0 / (J * CE * 20.0)                 # eta * nu_th, nu_th = theta / (J CE tau_m)
noise = nest.Create("poisson_generator", params={"rate": 1000.0 * nu_ex * CE})
nest.Connect(noise, nodes_ex + nodes_in, syn_spec={"weight": J, "delay": D})
nest.Connect(nodes_ex, nodes_ex + nodes_in, {"rule": "fixed_indegree", "indegree": CE}, {"weight": J, "delay": D})
nest.Connect(nodes_in, nodes_ex + nodes_in, {"rule": "fixed_indegree", "indegree": CI}, {"weight": -g * J, "delay": D})
rec = nest.Create("spike_recorder")
nest.Connect(nodes_ex, rec)
nest.Simulate(T_MS)
print("SPIKES", rec.n_events)
"""
T_MS = 480.0          # 300 windows of 16 TVB steps of 0.1 ms
POPS = {"nodes_ex": {"region": 33, "role": "exc"}, "nodes_in": {"region": 33, "role": "inh"}}


def _model(tmp_path, text, name="m.py"):
    f = tmp_path / name
    f.write_text(text)
    return f


def _cosim_e_spikes(tmp_path, f, inp, rate_hz, tag, K=300):
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": POPS}, "dt_ms": 0.1,
                                    "input": {"scale": 1.0, **inp}}, K=K, tag=tag)
    drive(a, ctx, rate_hz=rate_hz)
    a.finish(None)
    with h5py.File(tmp_path / tag / "s.h5") as h:
        return int(np.sum(h["spikes/pop"][...] == 0)), h.attrs["input_weight_unit"], float(h.attrs["input_weight"])


def test_delta_synapses_take_the_weight_in_mV_and_zero_weight_matches_nest_alone(tmp_path):
    f = _model(tmp_path, BRUNEL_DELTA.replace("T_MS", repr(T_MS)))
    # the default weight_uS on delta synapses is refused, naming the key to give (was: 6 mV per spike)
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": POPS}, "dt_ms": 0.1}, tag="dflt")
    with pytest.raises(ModelError, match=r"nodes_ex \(iaf_psc_delta\), which has delta synapses .* give "
                                         r"params\.input\.weight_mV \(the default weight_uS"):
        a.configure(ctx)
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": POPS}, "dt_ms": 0.1,
                                    "input": {"weight_nS": 1.0}}, tag="nS")
    with pytest.raises(ModelError, match=r"params\.input\.weight_nS: .* give params\.input\.weight_mV instead"):
        a.configure(ctx)

    out = subprocess.run([sys.executable, str(f)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PYNEST_QUIET": "1", "PATH": "/usr/bin:/bin"})
    alone = int(re.search(r"SPIKES (\d+)", out.stdout).group(1))
    # TVB's trains at 30 Hz per cell but weight 0 mV: the model's own rates (the generator's draws
    # shift the model's noise, so statistically: ~6,000 spikes, Poisson spread ~80, 5 sd allowed)
    zero, unit, w = _cosim_e_spikes(tmp_path, f, {"weight_mV": 0.0}, 30.0, "zero")
    assert unit == "mV" and w == 0.0
    assert alone > 2000 and abs(zero - alone) < 5 * np.sqrt(alone), (zero, alone)
    # 0.5 mV per input spike at 1 kHz (an eighth more than the model's own external drive) raises them
    some, unit, w = _cosim_e_spikes(tmp_path, f, {"weight_mV": 0.5}, 1000.0, "some")
    assert unit == "mV" and w == pytest.approx(0.5)
    assert some > alone + 5 * np.sqrt(alone), (some, alone)


MULTI = """
import nest
E = nest.Create("iaf_psc_alpha_multisynapse", 30, params={"tau_syn": [2.0, 8.0]})
I = nest.Create("iaf_psc_alpha", 10)
"""
COND_MULTI = """
import nest
E = nest.Create("aeif_cond_alpha_multisynapse", 30, params={"E_rev": [-80.0, 0.0], "tau_syn": [5.0, 1.0]})
I = nest.Create("aeif_cond_alpha", 10)
"""
HT = """
import nest
E = nest.Create("ht_neuron", 10)
I = nest.Create("ht_neuron", 5)
"""


@pytest.mark.parametrize("text, inp, port", [
    (MULTI, {"weight_pA": 200.0}, 1),                       # *_multisynapse: ports 1..n, port 0 refused
    (COND_MULTI, {"weight_nS": 20.0}, 2),                   # the first excitatory port (E_rev >= -20 mV)
    (HT, {"weight_nS": 20.0}, 1),                           # named receptors: AMPA
    (MULTI, {"weight_pA": 200.0, "receptor": 2}, 2),        # set in the config
    (HT, {"weight_nS": 20.0, "receptor": {"E": "NMDA"}}, 2),   # by name, per population
])
def test_the_drive_reaches_a_receptor_the_neuron_has(tmp_path, text, inp, port):
    f = _model(tmp_path, text)
    pops = {"E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": pops},
                                    "input": {"scale": 1.0, **inp}}, K=40)
    outs = drive(a, ctx, rate_hz=200.0)
    a.finish(None)
    assert a.in_receptor == {"E": port}
    with h5py.File(tmp_path / "a" / "s.h5") as h:
        assert json.loads(h.attrs["input_receptor_json"]) == {"E": port}
    assert np.mean([o["state/R_e"].mean() for o in outs]) > 0, "the drive should make E fire"


@pytest.mark.parametrize("text, inp, msg", [
    (MULTI, {"weight_pA": 1.0, "receptor": 0},
     r"params.input.receptor for E (iaf_psc_alpha_multisynapse): its receptor ports are 1..2, got 0"),
    (HT, {"weight_nS": 1.0, "receptor": "GLU"},
     r"params.input.receptor for E (ht_neuron): 'GLU' is not one of its receptors ['AMPA', 'GABA_A', 'GABA_B', 'NMDA']"),
    (MULTI, {},
     r"params.input: TVB's drive reaches E (iaf_psc_alpha_multisynapse), which has current-based synapses "
     r"(a weight in pA): give params.input.weight_pA (the default weight_uS is for conductance-based neurons)"),
])
def test_validate_refuses_a_drive_the_model_cannot_take_in_one_line(tmp_path, text, inp, msg):
    """`cosim validate` wires TVB's drive as the run does: exit 2 and one line, before any service starts."""
    import yaml
    from cosim.launch import command_lines
    f = _model(tmp_path, text)
    pops = {"E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": {"duration_ms": 50}, "spiking_nodes": [
        {"name": "spiking", "backend": "nest", "regions": [33],
         "params": {"model_file": {"path": str(f), "populations": pops}, "input": inp}}]}))
    p = subprocess.run(command_lines.cosim_cmd() + ["validate", str(path)], capture_output=True, text=True, timeout=180)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("cosim:")]
    assert p.returncode == 2 and lines == [f"cosim: configuration error: {path}: spiking_nodes[0] (spiking): {msg}"], \
        (p.returncode, p.stderr[-1500:])


PARROTS = """
import nest
inp = nest.Create("parrot_neuron", 20)
E = nest.Create("iaf_cond_alpha", 20)
I = nest.Create("iaf_cond_alpha", 5)
nest.Connect(inp, E, "one_to_one", {"weight": 30.0})
"""


def test_an_input_population_shows_the_trains_it_received(tmp_path):
    """A population mapped `input` (parrots relaying TVB's trains) is recorded: its spikes are the
    trains that arrived (before, the results showed it silent); the rates sent to TVB stay E's."""
    f = _model(tmp_path, PARROTS)
    pops = {"inp": {"region": 33, "role": "input"}, "E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": pops}, "input": {"scale": 1.0}}, K=50)
    drive(a, ctx, rate_hz=100.0)
    a.finish(None)
    with h5py.File(tmp_path / "a" / "s.h5") as h:
        pop = h["spikes/pop"][...]
        n_in, n_e = int((pop == 0).sum()), int((pop == 1).sum())
        e_from_rates = float(h["rates/exc"][...].sum() * 20 * 0.1e-3)
    # 20 parrots x 100 Hz x 80 ms = 160 expected; Poisson, so within 5 sd (~63)
    assert abs(n_in - 160) < 5 * np.sqrt(160), n_in
    assert e_from_rates == pytest.approx(n_e)
