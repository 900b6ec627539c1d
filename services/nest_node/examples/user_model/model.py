"""Example user model for the NEST backend: a region as a small E/I network of conductance-based
leaky integrate-and-fire neurons (``iaf_cond_alpha``), built with plain ``nest.Create`` and
``nest.Connect``. cosim has already reset the kernel and set the resolution, threads and seed;
the populations are found by their names here (``E``, ``I``) and mapped in the YAML
(examples/nest_user_model.yaml). No input population: cosim gives every cell of the populations
mapped ``exc`` its own Poisson train from TVB (``params.input``).
"""
import nest

cell = {"C_m": 250.0, "g_L": 16.7, "E_L": -70.0, "V_th": -50.0, "V_reset": -60.0, "t_ref": 2.0,
        "E_ex": 0.0, "E_in": -80.0, "tau_syn_ex": 0.5, "tau_syn_in": 2.0}
E = nest.Create("iaf_cond_alpha", 80, params=cell)
I = nest.Create("iaf_cond_alpha", 20, params=cell)
E.V_m = nest.random.uniform(-70.0, -55.0)
I.V_m = nest.random.uniform(-70.0, -55.0)

nest.Connect(E, E + I, {"rule": "pairwise_bernoulli", "p": 0.1}, {"weight": 2.0, "delay": 1.5})
nest.Connect(I, E + I, {"rule": "pairwise_bernoulli", "p": 0.1}, {"weight": -8.0, "delay": 1.5})
