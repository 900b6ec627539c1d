COMMENT
CosimPulse: the current of one cosim stimulation device (cosim/sdk/stimulus.py, GridStimulus) into
one cell. The waveform is a function of the NEURON step n alone, so it needs no vector, no event and
no state: it runs window by window with psolve, under MPI and through SaveState/restore unchanged.
During step n (t in [n*dt, (n+1)*dt); NEURON evaluates currents mid-step) the current is
  0 outside [n_on, n_off);  a1 for a constant device (ps = 0);
  else with m = n - n_on and pulse k the last with c_k = ceil(k*ps - 1e-6) <= m:
  a1 for m - c_k < w1, a2 for the next w2 steps, 0 after.
Positive i depolarises (ELECTRODE_CURRENT, as IClamp).
ENDCOMMENT

NEURON {
    POINT_PROCESS CosimPulse
    RANGE n_on, n_off, ps, w1, w2, a1, a2, i
    ELECTRODE_CURRENT i
}

UNITS {
    (nA) = (nanoamp)
}

PARAMETER {
    n_on = 0            : first step of the device
    n_off = 1e18        : first step after it
    ps = 0              : period in steps (0: a constant current)
    w1 = 0              : steps of the first phase
    w2 = 0              : steps of the second phase
    a1 = 0 (nA)
    a2 = 0 (nA)
}

ASSIGNED {
    i (nA)
}

BREAKPOINT {
    i = wave(t)
}

FUNCTION start(k) {
    start = ceil(k * ps - 1e-6)
}

FUNCTION wave(tt (ms)) (nA) {
    LOCAL n, m, k, c
    n = floor(tt / dt + 0.25)
    if (n < n_on || n >= n_off) {
        wave = 0
    } else if (ps <= 0) {
        wave = a1
    } else {
        m = n - n_on
        k = floor((m + 1e-6) / ps)
        if (start(k + 1) <= m) {
            k = k + 1
        }
        if (k > 0 && start(k) > m) {
            k = k - 1
        }
        c = m - start(k)
        if (c < w1) {
            wave = a1
        } else if (c < w1 + w2) {
            wave = a2
        } else {
            wave = 0
        }
    }
}
