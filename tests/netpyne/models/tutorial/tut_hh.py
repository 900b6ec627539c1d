"""Two populations of Hodgkin-Huxley cells, as a NetPyNE tutorial script would build them
(written for cosim's tests). Run by itself it simulates 1 s, saves JSON, an LFP and plots."""
from netpyne import sim, specs

netParams = specs.NetParams()
simConfig = specs.SimConfig()

netParams.cellParams["HHcell"] = {"secs": {"soma": {
    "geom": {"diam": 18.8, "L": 18.8, "Ra": 123.0},
    "mechs": {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.003, "el": -70}}}}}
netParams.popParams["S"] = {"cellType": "HHcell", "numCells": 20}
netParams.popParams["M"] = {"cellType": "HHcell", "numCells": 10}
netParams.synMechParams["exc"] = {"mod": "Exp2Syn", "tau1": 0.1, "tau2": 5.0, "e": 0}
netParams.stimSourceParams["bkg"] = {"type": "NetStim", "rate": 5, "noise": 0.5}
netParams.stimTargetParams["bkg->S"] = {"source": "bkg", "conds": {"pop": "S"}, "weight": 0.005,
                                        "delay": 5, "synMech": "exc"}
netParams.connParams["S->M"] = {"preConds": {"pop": "S"}, "postConds": {"pop": "M"}, "probability": 0.5,
                                "weight": 0.01, "delay": 5, "synMech": "exc"}

simConfig.duration = 1000
simConfig.dt = 0.025
simConfig.verbose = False
simConfig.recordTraces = {"V_soma": {"sec": "soma", "loc": 0.5, "var": "v"}}
simConfig.recordStep = 0.1
simConfig.recordLFP = [[50, 50, 50]]
simConfig.filename = "tut_hh"
simConfig.saveJson = True
simConfig.analysis["plotRaster"] = {"saveFig": True}
simConfig.analysis["plotTraces"] = {"include": [1], "saveFig": True}

sim.createSimulateAnalyze(netParams=netParams, simConfig=simConfig)
sim.analysis.plotRaster(include=["S"], saveFig="tut_hh_raster.png")
sim.checkOutput("tut_hh")          # as NetPyNE's own tutorials end
