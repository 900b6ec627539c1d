"""The Brian2 plugin passes cosim's backend conformance kit (small network, in-process)."""
from cosim.sdk.conformance import BackendConformance
from cosim_brian2._compat import import_brian2

import_brian2()   # a missing Brian2 must fail here, not skip


class TestBrian2(BackendConformance):
    backend = "brian2"
    params = {"network": {"n_exc": 24, "n_inh": 8}, "record": {"plot": False}}
