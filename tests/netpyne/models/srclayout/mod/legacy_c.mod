: written for NEURON 7 (C): malloc without a cast is not valid C++, so NEURON 9 cannot compile it
NEURON { SUFFIX legacyc }
ASSIGNED { v }
BREAKPOINT {
VERBATIM
    double* buf = malloc(4 * sizeof(double));
    free(buf);
ENDVERBATIM
}
