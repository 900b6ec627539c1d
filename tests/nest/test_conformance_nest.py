"""The NEST backend passes the backend conformance kit (small network)."""
import pytest

from cosim.sdk.conformance import BackendConformance

pytestmark = [pytest.mark.nest, pytest.mark.tvb]      # in-process; TVB's connectome


class TestNest(BackendConformance):
    backend = "nest"
    params = {"network": {"n_exc": 24, "n_inh": 8}, "record": {"plot": False}}
