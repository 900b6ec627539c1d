"""init.py: run from the model's root as NetPyNE >= 1.0.5 lays models out (python src/init.py)."""
from netpyne import sim

cfg, netParams = sim.loadFromIndexFile('index.npjson')
sim.createSimulateAnalyze(netParams, cfg)
