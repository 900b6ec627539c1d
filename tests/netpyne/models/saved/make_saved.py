"""Writes net_saved_data.json (renamed net_saved.json) the way a NetPyNE user exports a network (saveJson of netParams and
simConfig). Run from this folder: python make_saved.py  (written for cosim's tests)."""
from netpyne import sim, specs

netParams = specs.NetParams()
netParams.cellParams["RS"] = {"secs": {"soma": {"geom": {"diam": 18.8, "L": 18.8, "Ra": 123.0},
                                                "mechs": {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.003,
                                                                 "el": -70}}}}}
netParams.popParams["RS"] = {"cellType": "RS", "numCells": 20}
netParams.popParams["FS"] = {"cellType": "RS", "numCells": 6}
netParams.synMechParams["AMPA"] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0}
netParams.synMechParams["GABA"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.5, "e": -75}
netParams.connParams["RS->FS"] = {"preConds": {"pop": "RS"}, "postConds": {"pop": "FS"}, "probability": 0.3,
                                  "weight": 0.005, "delay": 2, "synMech": "AMPA"}
netParams.connParams["FS->RS"] = {"preConds": {"pop": "FS"}, "postConds": {"pop": "RS"}, "probability": 0.5,
                                  "weight": 0.004, "delay": 2, "synMech": "GABA"}
cfg = specs.SimConfig({"duration": 300, "dt": 0.025, "filename": "net_saved", "saveJson": True,
                       "saveDataInclude": ["netParams", "simConfig"], "verbose": False})
sim.create(netParams, cfg)
sim.saveData()
