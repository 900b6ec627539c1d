"""The basal ganglia network in Brian2: the equations of mod/izhi_hamker.mod, the populations, fits,
weights and noise of bg_network.py. Used by standalone_brian2.py and, through the model files
bg_brian2_healthy.py / bg_brian2_parkinson.py, by the cosim-brian2 plugin (params.model_file).

Units: v in mV, time in ms, conductances in 1/ms (== uS on NEURON's 1 nF soma), currents in mV/ms
(== nA there). cosim's current devices arrive in pA (TimedArray ``stim_ta``, column ``stim_col``
per cell) and enter as pA/1000.
"""
from __future__ import annotations

import numpy as np

from dbs_params import FREQUENCY_HZ
from bg_network import CELLS, EXCITATORY, N_REF, NOISE_SD, NUCLEI, POP_CELL, REFRACTORY_MS, TAU_SYN_MS, fitted, pop_sizes

DELAY_MS = 0.1
ORDER = list(NUCLEI) + ["CxE", "CxI"]
EQS = """
dv/dt = (n2*v**2 + n1*v + n0 - u/C + Ie/C + Inoise + I_stim - g_ampa*(v - E_ampa) - g_gaba*(v - E_gaba))/ms : 1 (unless refractory)
du/dt = a*(b*(v - Vr) - u)/ms : 1 (unless refractory)
dg_ampa/dt = -g_ampa/tau_syn : 1
dg_gaba/dt = -g_gaba/tau_syn : 1
a : 1 (constant)
b : 1 (constant)
c : 1 (constant)
d : 1 (constant)
C : 1 (constant)
Ie : 1 (constant)
n0 : 1 (constant)
n1 : 1 (constant)
n2 : 1 (constant)
Vr : 1 (constant)
vpeak : 1 (constant)
Inoise : 1 (constant)
"""
STIM = "I_stim = stim_ta(t, stim_col) / 1000.0 : 1\nstim_col : integer (constant)\n"
NOSTIM = "I_stim : 1 (constant)\n"
ON_INPUT = "g_ampa_post += w"           # TVB's Poisson input: Hamker's AMPA conductance jumps by w


def layout(n: int) -> dict[str, int]:
    sizes = pop_sizes(n)
    return {p: sizes[p] for p in ORDER}


def network(b2, clock, fit: str, n: int, seed: int, stim_ta=None, stim_col=None, fibres=None):
    """(NeuronGroup, [Synapses and DBS fibre groups], input on_pre) of the network with n cells per nucleus.

    ``fibres``: projections whose axons DBS activates (as bg_network.build): per projection, one spike
    source per presynaptic cell firing at 0.1 ms + k/130 Hz (the step nearest), onto a copy of the
    projection (its own draw of synapses)."""
    rng = np.random.default_rng([seed, 0xB6])
    sizes = layout(n)
    start = np.cumsum([0] + list(sizes.values()))
    first = dict(zip(sizes, start[:-1]))
    N = int(start[-1])
    ns = {"E_ampa": 0.0, "E_gaba": -90.0, "tau_syn": TAU_SYN_MS * b2.ms}
    if stim_ta is not None:
        ns["stim_ta"] = stim_ta
    G = b2.NeuronGroup(N, EQS + (STIM if stim_ta is not None else NOSTIM), threshold="v > vpeak",
                       reset="v = c; u = u + d", refractory=REFRACTORY_MS * b2.ms, method="euler", clock=clock,
                       namespace=ns)
    if stim_ta is not None:
        G.stim_col = np.asarray(stim_col)
    for p, size in sizes.items():
        sl = slice(first[p], first[p] + size)
        pa, pb, pc, pd, pC, pIe, p0, p1, p2, pVr, pvpeak, pu0, pv0 = CELLS[POP_CELL[p]]
        for key, val in dict(a=pa, b=pb, c=pc, d=pd, C=pC, Ie=pIe, n0=p0, n1=p1, n2=p2, Vr=pVr, vpeak=pvpeak,
                             v=pv0, u=pu0).items():
            getattr(G, key)[sl] = val
        sd = NOISE_SD[POP_CELL[p]]
        G.Inoise[sl] = rng.normal(0.0, sd, size) if sd > 0 else 0.0
    # every (pre, post) pair with the fitted probability (NetPyNE's 'probability' rule, self-connections allowed)
    pre_all, post_all, w_all = [], [], []
    scale = N_REF / n
    for proj, (prob, weight) in fitted(fit).items():
        pre, post = proj.split("-")
        src, trg = np.nonzero(rng.random((sizes[pre], sizes[post])) < prob)
        pre_all.append(src + first[pre])
        post_all.append(trg + first[post])
        w_all.append(np.full(src.size, (weight if pre in EXCITATORY else -weight) * scale))
    S = b2.Synapses(G, G, "w : 1 (constant)", on_pre="g_ampa_post += w * int(w > 0)\ng_gaba_post -= w * int(w < 0)",
                    clock=clock, namespace={})
    S.connect(i=np.concatenate(pre_all), j=np.concatenate(post_all))
    S.w = np.concatenate(w_all)
    S.delay = DELAY_MS * b2.ms
    objects = [S]
    period_ms = 1000.0 / FREQUENCY_HZ
    for proj in fibres or []:
        pre, post = proj.split("-")
        prob, weight = fitted(fit)[proj]
        F = b2.NeuronGroup(sizes[pre], "fibre_x : 1", clock=clock, namespace={"Tp": period_ms},
                           threshold="abs(t/ms - 0.1 - Tp*floor((t/ms - 0.1)/Tp + 0.5)) < 0.05")
        src, trg = np.nonzero(rng.random((sizes[pre], sizes[post])) < prob)
        syn = "g_ampa_post += w" if pre in EXCITATORY else "g_gaba_post += w"
        SF = b2.Synapses(F, G, "w : 1 (constant)", on_pre=syn, clock=clock, namespace={})
        SF.connect(i=src, j=trg + first[post])
        SF.w = weight * scale
        SF.delay = DELAY_MS * b2.ms
        objects += [F, SF]
    return G, objects, ON_INPUT
