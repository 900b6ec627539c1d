from netpyne import specs
try:
    from __main__ import cfg          # set by NetPyNE's loadModel
except ImportError:
    from cfg import cfg

netParams = specs.NetParams()
soma = {'geom': {'diam': 18.8, 'L': 18.8, 'Ra': 123.0},
        'mechs': {'hh': {'gnabar': 0.12, 'gkbar': 0.036, 'gl': 0.0, 'el': -70}, 'nleak': {}}}
netParams.cellParams['E'] = {'conds': {'cellType': 'E'}, 'secs': {'soma': soma}}
netParams.cellParams['I'] = {'conds': {'cellType': 'I'}, 'secs': {'soma': soma}}
netParams.popParams['Epop'] = {'cellType': 'E', 'numCells': 20}
netParams.popParams['Ipop'] = {'cellType': 'I', 'numCells': 8}
netParams.synMechParams['exc'] = {'mod': 'Exp2Syn', 'tau1': 0.1, 'tau2': 5.0, 'e': 0}
netParams.synMechParams['inh'] = {'mod': 'Exp2Syn', 'tau1': 0.5, 'tau2': 8.0, 'e': -80}
netParams.connParams['E->all'] = {'preConds': {'pop': 'Epop'}, 'postConds': {'pop': ['Epop', 'Ipop']},
                                  'probability': 0.2, 'weight': 0.002, 'delay': 2 + cfg.dt, 'synMech': 'exc'}
netParams.connParams['I->E'] = {'preConds': {'pop': 'Ipop'}, 'postConds': {'pop': 'Epop'},
                                'probability': 0.3, 'weight': 0.004, 'delay': 2, 'synMech': 'inh'}
