"""Artificial cells in the style of NetPyNE's tutorial doc/source/code/tut_artif.py (written for
cosim's tests): HH cells driven by a NetStim and a VecStim population (a background rate plus a
pulse of higher rate, as tut_artif's), IntFire2 cells driven by the HH cells, and a VecStim
population with explicit spike times. ``mod/vecstim.mod`` gives NEURON its VecStim (NEURON has
none built in). Seeds, delays and sizes are fixed, so a run is the same wherever it runs."""
from netpyne import sim, specs

netParams = specs.NetParams()
simConfig = specs.SimConfig()

netParams.cellParams['PYR'] = {'secs': {'soma': {'geom': {'diam': 18.8, 'L': 18.8, 'Ra': 123.0},
                                                 'mechs': {'hh': {'gnabar': 0.12, 'gkbar': 0.036, 'gl': 0.003, 'el': -70}}}}}
netParams.cellParams['artif_IntFire2'] = {'cellModel': 'IntFire2', 'params': {'ib': 0}}
netParams.cellParams['artif_NetStim'] = {'cellModel': 'NetStim'}
netParams.cellParams['artif_VecStim'] = {'cellModel': 'VecStim'}

netParams.popParams['PYR1'] = {'cellType': 'PYR', 'numCells': 20}
netParams.popParams['pop_IntFire2'] = {'cellType': 'artif_IntFire2', 'numCells': 20}
netParams.popParams['pop_NetStim'] = {'cellType': 'artif_NetStim', 'numCells': 20, 'rate': 10, 'noise': 0.8,
                                      'start': 1, 'seed': 2}
netParams.popParams['pop_VecStim'] = {'cellType': 'artif_VecStim', 'numCells': 20, 'rate': 5, 'noise': 0.5,
                                      'start': 20, 'pulses': [{'start': 80, 'end': 140, 'rate': 60, 'noise': 0.2}]}
netParams.popParams['pop_times'] = {'cellType': 'artif_VecStim', 'numCells': 2,
                                    'spkTimes': [10, 30, 50, 70, 90, 110, 130, 150, 170, 190]}

netParams.synMechParams['AMPA'] = {'mod': 'Exp2Syn', 'tau1': 0.1, 'tau2': 1.0, 'e': 0}
netParams.connParams['NetStim->PYR1'] = {'preConds': {'pop': 'pop_NetStim'}, 'postConds': {'pop': 'PYR1'},
                                         'connList': [[i, i] for i in range(20)], 'weight': 0.002,
                                         'synMech': 'AMPA', 'delay': 2}
netParams.connParams['VecStim->PYR1'] = {'preConds': {'pop': 'pop_VecStim'}, 'postConds': {'pop': 'PYR1'},
                                         'connList': [[i, j] for i in range(20) for j in range(20) if (i + j) % 3 == 0],
                                         'weight': 0.005, 'synMech': 'AMPA', 'delay': 2}
netParams.connParams['times->PYR1'] = {'preConds': {'pop': 'pop_times'}, 'postConds': {'pop': 'PYR1'},
                                       'connList': [[0, j] for j in range(20)], 'weight': 0.01,
                                       'synMech': 'AMPA', 'delay': 2}
netParams.connParams['PYR1->IntFire2'] = {'preConds': {'pop': 'PYR1'}, 'postConds': {'pop': 'pop_IntFire2'},
                                          'connList': [[i, j] for i in range(20) for j in range(20) if (i * 7 + j) % 2 == 0],
                                          'weight': 0.4, 'delay': 3}

simConfig.duration = 200
simConfig.dt = 0.025
simConfig.seeds = {'conn': 43, 'stim': 44, 'loc': 45, 'cell': 46}   # what cosim sets for run.seed 42
simConfig.analysis['plotRaster'] = {'orderInverse': True}

sim.createSimulateAnalyze(netParams, simConfig)
