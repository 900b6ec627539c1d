"""cosim-brian2: Brian2 spiking regions behind cosim's node interface (backend ``brian2``)."""
__version__ = "0.1.0"
