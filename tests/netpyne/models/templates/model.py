"""Cells from a hoc template, a Python class and an SWC morphology, each needing this model's own
mechanisms (mod/); written for cosim's tests."""
from netpyne import specs

netParams = specs.NetParams()
netParams.importCellParams(label="BS", fileName="cells/BallStick.hoc", cellName="BallStick",
                           conds={"cellType": "BS"})
netParams.importCellParams(label="FS", fileName="cells/fastspiking.py", cellName="FastSpiking",
                           conds={"cellType": "FS"})
netParams.importCellParams(label="ST", fileName="cells/stellate.swc", cellName="stellate",
                           conds={"cellType": "ST"})
for sec in netParams.cellParams["ST"]["secs"].values():
    sec["mechs"] = {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0}, "naleak": {"g": 2e-4}}

netParams.popParams["BS"] = {"cellType": "BS", "numCells": 12}
netParams.popParams["FS"] = {"cellType": "FS", "numCells": 4}
netParams.popParams["ST"] = {"cellType": "ST", "numCells": 4}
netParams.synMechParams["exc"] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0}
netParams.synMechParams["inh"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.5, "e": -75}
netParams.connParams["BS->FS"] = {"preConds": {"pop": "BS"}, "postConds": {"pop": "FS"}, "probability": 0.4,
                                  "weight": 0.005, "delay": 2, "synMech": "exc"}
netParams.connParams["BS->ST"] = {"preConds": {"pop": "BS"}, "postConds": {"pop": "ST"}, "probability": 0.4,
                                  "weight": 0.01, "delay": 2, "synMech": "exc"}
netParams.connParams["FS->BS"] = {"preConds": {"pop": "FS"}, "postConds": {"pop": "BS"}, "probability": 0.5,
                                  "weight": 0.004, "delay": 2, "synMech": "inh"}

simConfig = specs.SimConfig({"duration": 500, "dt": 0.025, "hParams": {"celsius": 6.3, "v_init": -65}})
