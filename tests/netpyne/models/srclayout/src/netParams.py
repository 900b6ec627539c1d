"""E/I network of the srclayout test model: cells with the `kleak` mechanism from ../mod."""
from netpyne import specs

try:
    from __main__ import cfg  # noqa: F401  (when run by init.py, as batch tools do)
except ImportError:
    from cfg import cfg

netParams = specs.NetParams()
soma = {"geom": {"diam": 20.0, "L": 20.0, "Ra": 100.0},
        "mechs": {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.0, "el": -70}, "kleak": {"g": cfg.gleak}}}
netParams.cellParams["E"] = {"secs": {"soma": soma}}
netParams.cellParams["I"] = {"secs": {"soma": soma}}
netParams.popParams["Epop"] = {"cellType": "E", "numCells": cfg.nE}
netParams.popParams["Ipop"] = {"cellType": "I", "numCells": cfg.nI}
netParams.synMechParams["AMPA"] = {"mod": "Exp2Syn", "tau1": 0.5, "tau2": 3.0, "e": 0}
netParams.synMechParams["GABA"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.0, "e": -80}
for pre, post, w, syn in (("Epop", "Epop", cfg.wEE, "AMPA"), ("Epop", "Ipop", cfg.wEI, "AMPA"),
                          ("Ipop", "Epop", cfg.wIE, "GABA")):
    netParams.connParams[f"{pre}->{post}"] = {"preConds": {"pop": pre}, "postConds": {"pop": post},
                                              "probability": 0.2, "weight": w, "delay": 2.0, "synMech": syn}
