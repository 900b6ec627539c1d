"""Python cell template of a fast-spiking interneuron (written for cosim's tests); needs naleak."""
from neuron import h


class FastSpiking:
    def __init__(self):
        self.soma = h.Section(name="soma", cell=self)
        self.soma.L = self.soma.diam = 12.0
        self.soma.insert("hh")
        self.soma.insert("naleak")
        for seg in self.soma:
            seg.hh.gl = 0.0
            seg.naleak.g = 2e-4
