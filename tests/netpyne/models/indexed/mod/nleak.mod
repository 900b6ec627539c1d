: a leak current (indexed test model): found through index.npjson's mod_folder
NEURON {
    SUFFIX nleak
    NONSPECIFIC_CURRENT i
    RANGE g, e
}
UNITS {
    (mV) = (millivolt)
    (mA) = (milliamp)
    (S) = (siemens)
}
PARAMETER {
    g = 0.0002 (S/cm2)
    e = -70 (mV)
}
ASSIGNED {
    v (mV)
    i (mA/cm2)
}
BREAKPOINT {
    i = g * (v - e)
}
