"""The basal ganglia, parkinson state (Maith et al. 2021's patient fit): a model file of the cosim-brian2 plugin."""
import os

from bg_brian2 import layout, network

N = int(os.environ.get("BG_N", 200))
POPULATIONS = layout(N)


def build(b2, clock, seed, stim_ta, stim_col):
    return network(b2, clock, "patient", N, seed, stim_ta, stim_col)
