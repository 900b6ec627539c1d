"""The spiking basal ganglia of Maith et al. (2021) / Meier et al. (2022) as a NetPyNE model.

Izhikevich neurons with Hamker's conductance synapses (``mod/izhi_hamker.mod``, our own
mechanism: it integrates the section's v, so cosim's stimulation devices reach it), populations
and parameters as in tvb-multiscale's ``NetPyNE_basal_ganglia.ipynb`` and ANNarchy model
(``izhikevich_maith_etal.py``), connection probabilities and weights from Maith et al.'s fits
(``examples/data/basal_ganglia/fits``: control = healthy, patient = Parkinsonian).
Written for cosim from those sources (not copied); see /examples/data/basal_ganglia/README.md.

``build(fit, n)`` returns ``(netParams, simConfig)``; the model files ``bg_healthy.py`` and
``bg_parkinson.py`` beside this one call it, so a cosim config picks the state by file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

try:
    HERE = Path(__file__).resolve().parent
except NameError:                      # exec'd without __file__: cosim runs model files in their folder
    HERE = Path(os.getcwd())
FITS = HERE.parent / "data" / "basal_ganglia" / "fits"
FIT_FILES = {"control": "control_OutputSim_Patient08.mat", "patient": "patient_OutputSim_Patient09.mat"}

#: the 19 fitted projections, in the order of the .mat files' X (19 probabilities, then 19 weights)
PROJECTIONS = ["dSN-GPi", "iSN-GPe", "GPe-STN", "STN-GPe", "STN-GPi", "GPe-GPi", "GPe-GPe", "GPi-GPi",
               "GPi-Thal", "Thal-iSN", "Thal-dSN", "dSN-dSN", "iSN-iSN", "CxE-dSN", "CxE-iSN", "CxE-STN",
               "CxE-CxI", "CxI-CxE", "CxI-CxI"]
EXCITATORY = {"CxE", "STN", "Thal"}
NUCLEI = ["dSN", "iSN", "GPe", "GPi", "STN", "Thal"]   # the basal ganglia + thalamus (CxE, CxI: the model's cortex)
N_REF = 200                                             # cells per nucleus in the fits

#: a, b, c, d, C, Ie, n0, n1, n2, Vr, vpeak, u0, v0 (Maith et al. 2021, as in tvb-multiscale)
#: per-cell constant input sd (Maith et al.'s SteadyStateNoise sd per nucleus; cortex 10)
NOISE_SD = {"Str": 2.0, "GPi": 3.0, "GPe": 5.0, "STN": 2.0, "Thal": 2.0, "CxE": 10.0, "CxI": 0.0}
CELLS = {
    "Str":  (0.05, -20.0, -55.0, 377.0, 50.0, 0.0, 61.65119, 2.594639, 0.022799, -80.0, 40.0, -18.55, -70.0),
    "GPi":  (0.005, 0.585, -65.0, 4.0, 1.0, 30.0, 140.0, 5.0, 0.04, 0.0, 30.0, -18.55, -70.0),
    "GPe":  (0.005, 0.585, -65.0, 4.0, 1.0, 12.0, 140.0, 5.0, 0.04, 0.0, 30.0, -18.55, -70.0),
    "STN":  (0.005, 0.265, -65.0, 2.0, 1.0, 3.0, 140.0, 5.0, 0.04, 0.0, 30.0, -18.55, -70.0),
    "Thal": (0.02, 0.25, -65.0, 0.05, 1.0, 3.5, 140.0, 5.0, 0.04, 0.0, 30.0, -18.55, -70.0),
    "CxE":  (0.02, 0.2, -72.0, 6.0, 1.0, 7.0, 140.0, 5.0, 0.04, 0.0, 30.0, -14.0, -72.0),
    "CxI":  (0.02, 0.2, -72.0, 6.0, 1.0, 0.0, 140.0, 5.0, 0.04, 0.0, 30.0, -14.0, -72.0),
}
POP_CELL = {"dSN": "Str", "iSN": "Str", "GPe": "GPe", "GPi": "GPi", "STN": "STN", "Thal": "Thal",
            "CxE": "CxE", "CxI": "CxI"}
#: 1e5 um2 at 1 uF/cm2 = 1 nF: then 1 nA of electrode current is 1 mV/ms and g in uS is 1/ms
SOMA_UM = 178.41
TAU_SYN_MS = 10.0
REFRACTORY_MS = 10.0


def fitted(fit: str) -> dict[str, tuple[float, float]]:
    """{projection: (probability, weight)} of Maith et al.'s ``control`` or ``patient`` fit."""
    from scipy.io import loadmat
    x = np.asarray(loadmat(str(FITS / FIT_FILES[fit]))["X"]).ravel()
    return {k: (float(x[i]), float(x[19 + i])) for i, k in enumerate(PROJECTIONS)}


def pop_sizes(n: int) -> dict[str, int]:
    return {**{p: n for p in NUCLEI}, "CxE": 3 * n, "CxI": max(1, round(0.75 * n))}


def fibre_pop(proj: str) -> str:
    """The population of DBS-evoked axon spikes of one projection (``dbs_ax_GPe_STN``)."""
    return "dbs_ax_" + proj.replace("-", "_")


def build(fit: str = "control", n: int | None = None, delay_ms: float = 0.1, fibres: list[str] | None = None):
    """NetPyNE (netParams, simConfig) of the network with ``n`` cells per nucleus (env BG_N, default 200).

    With fewer cells than the fits' 200, weights are scaled by 200/n so each cell gets the same
    mean synaptic input (the probabilities are kept). ``fibres``: projections (``"GPe-STN"``) whose axons
    DBS activates (dbs_params.FIBRES): one NetStim per presynaptic cell firing once per pulse
    (130 Hz, from the first pulse's first step), onto a copy of the projection."""
    from netpyne import specs
    n = int(n or os.environ.get("BG_N", N_REF))
    net = specs.NetParams()
    for name, (a, b, c, d, C, Ie, n0, n1, n2, Vr, vpeak, u0, v0) in CELLS.items():
        net.cellParams[name] = {"secs": {"soma": {
            "geom": {"diam": SOMA_UM, "L": SOMA_UM, "cm": 1.0, "Ra": 100.0},
            "vinit": v0, "threshold": 0.5,
            "pointps": {"izhi": {"mod": "IzhiHamker", "vref": "spk", "a": a, "b": b, "c": c, "d": d, "C": C,
                                 "Ie": Ie, "n0": n0, "n1": n1, "n2": n2, "Vr": Vr, "vpeak": vpeak,
                                 "tref": REFRACTORY_MS, "u0": u0, "noise_sd": NOISE_SD[name]}}}}}
    # events reach the IzhiHamker process itself (NetPyNE's rule for cells with 'vref'); the sign of
    # the weight picks the conductance. The labels name the synapse for cosim's drive (model_file.drive).
    net.synMechParams["AMPA"] = {"mod": "ExpSyn", "tau": TAU_SYN_MS, "e": 0.0}
    net.synMechParams["GABA"] = {"mod": "ExpSyn", "tau": TAU_SYN_MS, "e": -90.0}
    for pop, size in pop_sizes(n).items():
        net.popParams[pop] = {"cellType": POP_CELL[pop], "numCells": size}
    scale = N_REF / n
    for proj, (p, w) in fitted(fit).items():
        pre, post = proj.split("-")
        net.connParams[proj] = {"preConds": {"pop": pre}, "postConds": {"pop": post}, "probability": p,
                                "weight": (w if pre in EXCITATORY else -w) * scale, "delay": delay_ms,
                                "synMech": "AMPA" if pre in EXCITATORY else "GABA"}
    from dbs_params import FREQUENCY_HZ
    fits = fitted(fit)
    for proj in fibres or []:
        pre, post = proj.split("-")
        p, w = fits[proj]
        net.popParams[fibre_pop(proj)] = {"cellModel": "NetStim", "numCells": pop_sizes(n)[pre],
                                          "rate": FREQUENCY_HZ, "noise": 0.0, "start": 0.1, "number": 1e9}
        net.connParams[fibre_pop(proj)] = {"preConds": {"pop": fibre_pop(proj)}, "postConds": {"pop": post},
                                           "probability": p, "weight": (w if pre in EXCITATORY else -w) * scale,
                                           "delay": delay_ms, "synMech": "AMPA" if pre in EXCITATORY else "GABA"}
    cfg = specs.SimConfig()
    cfg.dt = 0.1
    cfg.allowSelfConns = True            # as Maith et al.'s fits (ANNarchy's fixed_probability allows them)
    cfg.hParams = {"celsius": 6.3, "v_init": -70.0}
    return net, cfg
