"""The basal ganglia, parkinson state with DBS-activated fibres (env BG_DBS_FIBRES, dbs_params.FIBRES; the
somatic current is cosim's stimulation device): a model file of the cosim-brian2 plugin."""
import os

from bg_brian2 import layout, network
from dbs_params import FIBRES_ENV, fibre_projections

N = int(os.environ.get("BG_N", 200))
POPULATIONS = layout(N)
FIBRES = fibre_projections(os.environ.get(FIBRES_ENV, ""))


def build(b2, clock, seed, stim_ta, stim_col):
    return network(b2, clock, "patient", N, seed, stim_ta, stim_col, fibres=FIBRES)
