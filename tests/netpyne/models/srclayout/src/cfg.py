"""Simulation options of the srclayout test model (cfg module imported by netParams.py)."""
from netpyne import specs

cfg = specs.SimConfig()
cfg.duration = 500
cfg.dt = 0.025
cfg.hParams = {"celsius": 6.3, "v_init": -70}
cfg.recordTraces = {"V_soma": {"sec": "soma", "loc": 0.5, "var": "v"}}
cfg.saveJson = True
cfg.savePickle = True
cfg.analysis["plotRaster"] = {"saveFig": True}

# model parameters (batch-style: netParams reads them from cfg)
cfg.gleak = 3e-4
cfg.nE, cfg.nI = 24, 8
cfg.wEE, cfg.wEI, cfg.wIE = 0.004, 0.004, 0.006
