from netpyne import specs

cfg = specs.SimConfig()
cfg.duration = 500
cfg.dt = 0.025
cfg.verbose = False
cfg.recordTraces = {'V_soma': {'sec': 'soma', 'loc': 0.5, 'var': 'v'}}
cfg.filename = 'indexed'
cfg.analysis['plotRaster'] = {'saveFig': True}
