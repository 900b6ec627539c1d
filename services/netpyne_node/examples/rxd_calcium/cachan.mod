: High-voltage-activated calcium current that WRITES ica (feeds rxd intracellular calcium).
: Fixed reversal potential so the current does not depend on how eca is computed.
NEURON {
    SUFFIX cachan
    USEION ca WRITE ica
    RANGE gbar, erev
}
UNITS { (mV) = (millivolt) (mA) = (milliamp) }
PARAMETER {
    gbar = 2e-4 (S/cm2)
    erev = 120 (mV)
    vhalf = -20 (mV)
    k = 5 (mV)
    taum = 1 (ms)
}
ASSIGNED { v (mV) ica (mA/cm2) }
STATE { m }
INITIAL { m = minf(v) }
BREAKPOINT {
    SOLVE states METHOD cnexp
    ica = gbar * m * m * (v - erev)
}
DERIVATIVE states { m' = (minf(v) - m) / taum }
FUNCTION minf(v (mV)) { minf = 1 / (1 + exp(-(v - vhalf) / k)) }
