"""The NEST backend passes the backend conformance kit (small network)."""
import nest  # noqa: F401  (a missing install must fail, not skip)

from cosim.sdk.conformance import BackendConformance


class TestNest(BackendConformance):
    backend = "nest"
    params = {"network": {"n_exc": 24, "n_inh": 8}, "record": {"plot": False}}
