"""The backend SDK: what a spiking backend (in this package or in another one) builds on.

    from cosim.sdk import BackendSpec, NodeAdapter, RunContext, SignalSpec

- ``BackendSpec``: the plugin's spec, exported through the entry-point group ``cosim.backends``;
- ``NodeAdapter``, ``RunContext``, ``SignalSpec``, ``Signals``, ``lag_of``: the node interface
  (cosim.runtime.adapter) every backend implements;
- ``spiking_input``, ``spiking_node``, ``transformers``, ``region_params``: what every spiking
  network does the same way (TVB's drive, spike counts, proxy state, shared parameter blocks);
- ``spiking_file``, ``spiking_figure``: a spiking node's results file and its figure;
- ``conformance``: the conformance kit (a pytest plugin: ``pytest -p cosim.sdk.conformance``).
"""
from cosim.plugins import BackendSpec
from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals, lag_of

__all__ = ["BackendSpec", "NodeAdapter", "RunContext", "SignalSpec", "Signals", "lag_of"]
