"""Pyramidal cells and interneurons loaded from JSON cell files, with a cytosolic calcium
buffer-and-extrusion reaction (NEURON rxd through NetPyNE rxdParams); written for cosim's tests."""
from netpyne import specs

netParams = specs.NetParams()
netParams.loadCellParamsRule(label="PYR", fileName="cells/PYR.json")
netParams.loadCellParamsRule(label="INT", fileName="cells/INT.json")
netParams.popParams["pyr"] = {"cellType": "PYR", "numCells": 12}
netParams.popParams["int"] = {"cellType": "INT", "numCells": 4}
netParams.synMechParams["exc"] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0}
netParams.synMechParams["inh"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.5, "e": -75}
netParams.connParams["pyr->int"] = {"preConds": {"pop": "pyr"}, "postConds": {"pop": "int"},
                                    "probability": 0.3, "weight": 0.005, "delay": 2, "synMech": "exc"}
netParams.connParams["int->pyr"] = {"preConds": {"pop": "int"}, "postConds": {"pop": "pyr"},
                                    "probability": 0.5, "weight": 0.005, "delay": 2, "synMech": "inh"}

netParams.rxdParams = {
    "regions": {"cyt": {"cells": ["pyr"], "secs": ["soma"], "nrn_region": "i",
                        "geometry": {"class": "FractionalVolume",
                                     "args": {"volume_fraction": 0.83, "surface_fraction": 1}}}},
    "species": {"ca": {"regions": ["cyt"], "d": 0.25, "charge": 2, "initial": 1e-4}},
    "rates": {"extrusion": {"species": "ca", "regions": ["cyt"], "rate": "-(ca - 5e-5) / 50.0"}},
}

simConfig = specs.SimConfig()
simConfig.duration = 200
simConfig.dt = 0.025
simConfig.recordTraces = {"cai": {"sec": "soma", "loc": 0.5, "var": "cai"}}
