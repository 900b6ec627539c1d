"""The basal ganglia, parkinson state with DBS-activated fibres (env BG_DBS_FIBRES, dbs_params.FIBRES; the
somatic current is cosim's stimulation device): a cosim NetPyNE model file."""
import os

from bg_network import build
from dbs_params import FIBRES_ENV, fibre_projections

netParams, simConfig = build("patient", fibres=fibre_projections(os.environ.get(FIBRES_ENV, "")))
