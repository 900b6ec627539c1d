: passive potassium-like leak (srclayout test model); units come from an include file
NEURON {
    SUFFIX kleak
    NONSPECIFIC_CURRENT i
    RANGE g, e
}
INCLUDE "kleak_units.inc"
PARAMETER {
    g = 0.0003 (S/cm2)
    e = -72 (mV)
}
ASSIGNED {
    v (mV)
    i (mA/cm2)
}
BREAKPOINT {
    i = g * (v - e)
}
