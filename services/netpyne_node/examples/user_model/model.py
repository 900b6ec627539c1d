"""Example user model for the NetPyNE backend: one region with a custom leak mechanism.

Map it in the run config (spiking_nodes[i].params)::

    model_file:
      path: services/netpyne_node/examples/user_model/model.py
      populations:
        drive: {region: 33, role: input}
        PYR:   {region: 33, role: exc}
        BAS:   {region: 33, role: inh}
"""
from netpyne import specs

netParams = specs.NetParams()
netParams.cellParams["pyr"] = {"secs": {"soma": {
    "geom": {"diam": 18.8, "L": 18.8, "Ra": 123.0},
    "mechs": {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0, "el": -70.0}, "myleak": {"g": 0.003, "e": -70.0}}}}}
netParams.synMechParams["AMPA"] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0}
netParams.synMechParams["GABA"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.5, "e": -75}
netParams.popParams["PYR"] = {"cellType": "pyr", "numCells": 20}
netParams.popParams["BAS"] = {"cellType": "pyr", "numCells": 8}
netParams.popParams["drive"] = {"cellModel": "NetStim", "numCells": 20}
netParams.connParams["drive->PYR"] = {"preConds": {"pop": "drive"}, "postConds": {"pop": "PYR"},
                                      "connList": [[i, i] for i in range(20)], "weight": 0.008, "delay": 1.0,
                                      "synMech": "AMPA"}
netParams.connParams["PYR->BAS"] = {"preConds": {"pop": "PYR"}, "postConds": {"pop": "BAS"}, "probability": 0.2,
                                    "weight": 0.005, "delay": 2.0, "synMech": "AMPA"}
netParams.connParams["BAS->PYR"] = {"preConds": {"pop": "BAS"}, "postConds": {"pop": "PYR"}, "probability": 0.3,
                                    "weight": 0.005, "delay": 2.0, "synMech": "GABA"}

simConfig = specs.SimConfig()
simConfig.hParams = {"celsius": 6.3, "v_init": -65.0}
