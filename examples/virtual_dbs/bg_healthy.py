"""The basal ganglia, healthy state (Maith et al. 2021's control fit): a cosim NetPyNE model file."""
from bg_network import build

netParams, simConfig = build("control")
