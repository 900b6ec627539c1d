"""The basal ganglia, parkinson state (Maith et al. 2021's patient fit): a cosim NetPyNE model file."""
from bg_network import build

netParams, simConfig = build("patient")
