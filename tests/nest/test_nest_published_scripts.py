"""NEST scripts as they are published (issue 22): populations kept in objects, lists, functions or
under ``if __name__ == "__main__"``, a script's own scale parameter set from the YAML, recorders
with absolute labels, scripts that read what they simulated, and errors with file and line.

The models are written here in the style of NEST's examples (the Potjans-Diesmann microcircuit's
layout: ``run_microcircuit.py`` + ``network.py`` + ``network_params.py`` + ``sim_params.py``,
populations in ``net.pops``, recorders labelled ``os.path.join(data_path, "spike_recorder")``,
``net.evaluate()`` reading the recorded files after ``net.simulate``)."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from cosim.services.nest_node.network import ModelError
from test_nest_adapter import drive, make

pytestmark = [pytest.mark.nest]      # in-process

MC = {
    "network_params.py": """
        net_dict = {"populations": ["L23E", "L23I", "L4E", "L4I"], "full_num_neurons": [200, 60, 200, 60],
                    "N_scaling": 1.0, "neuron_model": "iaf_psc_exp"}
    """,
    "sim_params.py": """
        import os
        sim_dict = {"t_presim": 50.0, "t_sim": 1000.0, "sim_resolution": 0.1,
                    "data_path": os.path.join(os.getcwd(), "data/"), "rng_seed": 55}
    """,
    "network.py": """
        import os
        import numpy as np
        import nest


        class Network:
            def __init__(self, sim_dict, net_dict):
                self.sim_dict, self.net_dict = sim_dict, net_dict
                self.data_path = sim_dict["data_path"]
                os.makedirs(self.data_path, exist_ok=True)

            def create(self):
                nest.ResetKernel()
                nest.SetKernelStatus({"resolution": self.sim_dict["sim_resolution"], "rng_seed": self.sim_dict["rng_seed"]})
                n = [max(1, round(k * self.net_dict["N_scaling"])) for k in self.net_dict["full_num_neurons"]]
                self.pops = [nest.Create(self.net_dict["neuron_model"], k, params={"I_e": 380.0}) for k in n]
                self.spike_recorders = nest.Create("spike_recorder", len(n), params={
                    "record_to": "ascii", "label": os.path.join(self.data_path, "spike_recorder")})

            def connect(self):
                for pop, rec in zip(self.pops, self.spike_recorders):
                    nest.Connect(pop, rec)
                for i, pre in enumerate(self.pops):
                    for post in self.pops:
                        w = 20.0 if i % 2 == 0 else -60.0
                        nest.Connect(pre, post, {"rule": "fixed_indegree", "indegree": 5}, {"weight": w, "delay": 1.5})

            def simulate(self, t_sim):
                nest.Simulate(t_sim)

            def evaluate(self):
                files = [f for f in os.listdir(self.data_path) if f.startswith("spike_recorder")]
                rates = [np.loadtxt(os.path.join(self.data_path, f), skiprows=3).shape[0] for f in files]
                return rates[0]      # IndexError when nothing was simulated
    """,
    "run_microcircuit.py": """
        import network
        from network_params import net_dict
        from sim_params import sim_dict

        net = network.Network(sim_dict, net_dict)
        net.create()
        net.connect()
        net.simulate(sim_dict["t_presim"])
        net.simulate(sim_dict["t_sim"])
        net.evaluate()
    """,
}
MC_POPS = {f"net.pops.{i}": {"region": r, "role": role}
           for i, (r, role) in enumerate([(33, "exc"), (33, "inh"), (34, "exc"), (34, "inh")])}


def write(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip())
    return folder


def test_a_microcircuit_layout_runs_unchanged_at_a_scale_set_from_the_yaml(tmp_path):
    """Populations in a list of an object (``net.pops.0``), the network's scale in a dict of a module
    beside the script (``network_params.net_dict.N_scaling``), recorders with absolute labels (cosim
    used to set NEST's data_path: ``IOError``), and ``net.evaluate()`` reading the recorded files after
    ``net.simulate`` (the script now stops loading at its first Simulate)."""
    folder = write(tmp_path / "mc", MC)
    mf = {"path": str(folder / "run_microcircuit.py"), "populations": MC_POPS,
          "set": {"network_params.net_dict.N_scaling": 0.1}}
    a, ctx = make(tmp_path, params={"model_file": mf, "dt_ms": 0.1, "input": {"scale": 1.0, "weight_pA": 50.0}},
                  regions=(33, 34), K=20)
    outs = drive(a, ctx, rate_hz=50.0)
    a.finish(None)
    assert [(q.label, q.region, q.role, q.size) for q in a.pops] == [
        ("net.pops.0", 33, "exc", 20), ("net.pops.1", 33, "inh", 6), ("net.pops.2", 34, "exc", 20),
        ("net.pops.3", 34, "inh", 6)]
    assert np.mean([o["state/R_e"].mean() for o in outs]) > 0
    import h5py
    with h5py.File(tmp_path / "a" / "s.h5") as f:
        assert {0, 2} <= set(f["spikes/pop"][...].tolist())     # cosim's recorder, with an absolute label
    # the model's own recorders opened where the model said (its data/ folder), with nothing in them
    assert sorted(p.name.split("-")[0] for p in (folder / "data").iterdir())[:1] == ["spike_recorder"]
    import sys
    assert "network_params" not in sys.modules and "network" not in sys.modules   # fresh for the next load


def test_a_scale_parameter_that_does_not_exist_is_one_line(tmp_path):
    folder = write(tmp_path / "mc", MC)
    mf = {"path": str(folder / "run_microcircuit.py"), "populations": MC_POPS,
          "set": {"network_params.net_dict.N_scale": 0.1}}
    a, ctx = make(tmp_path, params={"model_file": mf, "dt_ms": 0.1}, regions=(33, 34))
    with pytest.raises(ModelError, match=r"^model_file\.set\.network_params\.net_dict\.N_scale: there is no 'N_scale' to set$"):
        a.configure(ctx)


GUARDED = """
import nest
N = 100


def main():
    E = nest.Create("iaf_psc_alpha", N)
    I = nest.Create("iaf_psc_alpha", N // 4)
    nest.Connect(E, I, {"rule": "fixed_indegree", "indegree": 5}, {"weight": 5.0})
    mm = nest.Create("multimeter", params={"record_from": ["V_m"]})
    nest.Connect(mm, E)
    nest.Simulate(200.0)
    print(mm.events["V_m"][0])          # reads what it simulated: IndexError if nothing was


if __name__ == "__main__":
    main()
"""
BUILDER = """
import nest


def build_network(n_exc=80, n_inh=20):
    E = nest.Create("iaf_cond_alpha", n_exc)
    I = nest.Create("iaf_cond_alpha", n_inh)
    return {"exc": E, "inh": I}


if __name__ == "__main__":
    nest.Simulate(100.0)
    raise SystemExit("not run when imported")
"""


@pytest.mark.parametrize("text, mf, sizes", [
    # run as `python FILE`: main() runs to its Simulate; its locals are `main.E`; N set from the YAML
    (GUARDED, {"populations": {"main.E": {"region": 33, "role": "exc"}, "main.I": {"region": 33, "role": "inh"}},
               "set": {"N": 40}}, [40, 10]),
    # imported and a named function called (the guarded block does not run), with keyword arguments
    (BUILDER, {"populations": {"exc": {"region": 33, "role": "exc"}, "inh": {"region": 33, "role": "inh"}},
               "function": "build_network", "kwargs": {"n_exc": 30}}, [30, 20]),
])
def test_populations_inside_functions_and_main_guards(tmp_path, text, mf, sizes):
    f = tmp_path / "model.py"
    f.write_text(text)
    weight = {"weight_pA": 1500.0} if "psc" in text else {"weight_nS": 100.0}
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), **mf}, "input": {"scale": 1.0, **weight}}, K=20)
    outs = drive(a, ctx, rate_hz=100.0)
    a.finish(None)
    assert [q.size for q in a.pops] == sizes
    assert np.mean([o["state/R_e"].mean() for o in outs]) > 0


def test_a_model_file_error_names_the_file_and_line(tmp_path):
    (tmp_path / "helper.py").write_text("def make(nest):\n    return nest.Create('no_such_model', 3)\n")
    f = tmp_path / "model.py"
    f.write_text("import nest\nimport helper\n\nE = helper.make(nest)\n")
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": {"E": {"region": 33, "role": "exc"}}}})
    with pytest.raises(ModelError, match=r"^model\.py: the model file failed: .*\(at helper\.py line 2\)$"):
        a.configure(ctx)


def test_an_unknown_population_lists_where_they_are(tmp_path):
    f = tmp_path / "model.py"
    f.write_text(GUARDED)
    a, ctx = make(tmp_path, params={"model_file": {"path": str(f), "populations": {"E": {"region": 33, "role": "exc"}}}})
    with pytest.raises(ModelError, match=r"populations\.E: model\.py defines no population 'E' \(its populations: "
                                         r"main\.E, main\.I, main\.mm\)"):
        a.configure(ctx)
