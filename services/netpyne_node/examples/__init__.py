"""Example spiking-region models for the NetPyNE backend."""
