: leak towards the potassium reversal (templates test model)
NEURON {
    SUFFIX kdrx
    NONSPECIFIC_CURRENT i
    RANGE g, e
}
UNITS { (mA) = (milliamp) (mV) = (millivolt) (S) = (siemens) }
PARAMETER { g = 0.0003 (S/cm2) e = -75 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = g * (v - e) }
