COMMENT
Izhikevich neuron with Hamker's conductance synapses (Maith et al. 2021; Meier et al. 2022),
written for cosim (issue 21). Unlike an artificial cell, it integrates the SECTION's membrane
potential v, so electrode currents (cosim's CosimPulse stimulation devices, IClamp) and ordinary
its own synapses: Hamker's conductances g_ampa, g_gaba jump by |w| per incoming event (w > 0
excitatory, w < 0 inhibitory, as tvb-multiscale's Izhi2003c) and decay with tau_ampa, tau_gaba.

The soma must have a total capacitance of 1 nF (cm = 1 uF/cm2 on 1e5 um2, e.g. diam = L =
178.41 um, no other mechanisms). Then, in Izhikevich's units,
    dv/dt = n2 v^2 + n1 v + n0 - u/C + Ie/C + Inoise + g_ampa (E_ampa - v) + g_gaba (E_gaba - v) + I_electrode   [mV/ms]
    du/dt = a (b (v - Vr) - u)
with g in uS == 1/ms and 1 nA of electrode current == 1 mV/ms. At v > vpeak: v = c, u += d, and
for tref ms v is held at c (a stiff clamp, gclamp) and u frozen, as ANNarchy's refractory period
does. Each cell draws a constant current Inoise ~ N(0, noise_sd) at initialisation (the
heterogeneity of Maith et al.'s SteadyStateNoise, held for the run). Each spike sets `spk` to 1 for the refractory period: NetPyNE's spike source watches it
(cellParams 'vref': 'spk', section threshold 0.5).
ENDCOMMENT

NEURON {
    POINT_PROCESS IzhiHamker
    RANGE a, b, c, d, C, Ie, n0, n1, n2, Vr, vpeak, tref, gclamp, u0, spk, refr, noise_sd, Inoise
    RANGE tau_ampa, tau_gaba, E_ampa, E_gaba, gampa, ggaba
    NONSPECIFIC_CURRENT i
}

UNITS {
    (mV) = (millivolt)
    (nA) = (nanoamp)
}

PARAMETER {
    a = 0.02
    b = 0.2
    c = -65
    d = 2
    C = 1
    Ie = 0
    n0 = 140
    n1 = 5
    n2 = 0.04
    Vr = 0
    vpeak = 30
    tref = 10 (ms)
    gclamp = 100
    u0 = -18.55
    noise_sd = 0
    tau_ampa = 10 (ms)
    tau_gaba = 10 (ms)
    E_ampa = 0 (mV)
    E_gaba = -90 (mV)
}

ASSIGNED {
    v (mV)
    i (nA)
    spk
    refr
    Inoise
}

STATE {
    u
    gampa
    ggaba
}

INITIAL {
    u = u0
    gampa = 0
    ggaba = 0
    spk = 0
    refr = 0
    Inoise = 0
    if (noise_sd > 0) {
        Inoise = normrand(0, noise_sd)
    }
    net_send(0, 1)
}

BREAKPOINT {
    SOLVE states METHOD derivimplicit
    if (refr > 0.5) {
        i = gclamp * (v - c)
    } else {
        i = -(n2 * v * v + n1 * v + n0 - u / C + Ie / C + Inoise) + gampa * (v - E_ampa) + ggaba * (v - E_gaba)
    }
}

DERIVATIVE states {
    u' = (1 - refr) * a * (b * (v - Vr) - u)
    gampa' = -gampa / tau_ampa
    ggaba' = -ggaba / tau_gaba
}

NET_RECEIVE (w) {
    if (flag == 1) {
        WATCH (v > vpeak) 2
    } else if (flag == 2) {
        v = c
        u = u + d
        spk = 1
        if (tref > 0) {
            refr = 1
            net_send(tref, 3)
        } else {
            net_send(0.5, 3)
        }
    } else if (flag == 3) {
        refr = 0
        spk = 0
    } else {
        : a synaptic event (NetPyNE sends a cell with 'vref' its NetCons): Hamker's conductance
        : jumps by |w|; w > 0 excitatory (AMPA), w < 0 inhibitory (GABA)
        if (w > 0) {
            gampa = gampa + w
        } else {
            ggaba = ggaba - w
        }
    }
}
