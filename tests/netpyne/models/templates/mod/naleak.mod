: leak with its own reversal (templates test model)
NEURON {
    SUFFIX naleak
    NONSPECIFIC_CURRENT i
    RANGE g, e
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { g = 0.0002 (S/cm2) e = -65 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = g * (v - e) }
