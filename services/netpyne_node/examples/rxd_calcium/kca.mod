: Calcium-activated potassium current that READS cai (set by rxd): g = gbar * cai^n / (cai^n + kd^n).
NEURON {
    SUFFIX kca
    USEION k READ ek WRITE ik
    USEION ca READ cai
    RANGE gbar, kd, n, g
}
UNITS { (mV) = (millivolt) (mA) = (milliamp) (mM) = (milli/liter) }
PARAMETER {
    gbar = 0.01 (S/cm2)
    kd = 1e-3 (mM)
    n = 2
}
ASSIGNED { v (mV) ek (mV) ik (mA/cm2) cai (mM) g (S/cm2) }
BREAKPOINT {
    g = gbar * cai^n / (cai^n + kd^n)
    ik = g * (v - ek)
}
