: Passive leak as a custom mechanism (shows .mod compilation of a user model).
NEURON { SUFFIX myleak NONSPECIFIC_CURRENT i RANGE g, e }
UNITS { (mV) = (millivolt) (mA) = (milliamp) }
PARAMETER { g = 0.003 (S/cm2) e = -70 (mV) }
ASSIGNED { v (mV) i (mA/cm2) }
BREAKPOINT { i = g * (v - e) }
