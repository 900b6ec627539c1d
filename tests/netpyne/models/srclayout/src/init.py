"""Run the srclayout model by itself: python init.py (from src/)."""
from netpyne import sim

cfg, netParams = sim.readCmdLineArgs(simConfigDefault="cfg.py", netParamsDefault="netParams.py")
sim.createSimulateAnalyze(netParams=netParams, simConfig=cfg)
