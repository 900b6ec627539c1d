"""The Brian2 plugin passes cosim's backend conformance kit (small network, in-process)."""
import pytest

from cosim.sdk.conformance import BackendConformance

# cosim's suite skips these, with the reason, where Brian2 or this plugin is missing (outside CI)
pytestmark = [pytest.mark.brian2, pytest.mark.tvb]


@pytest.fixture(autouse=True, scope="module")
def _brian2():
    from cosim_brian2._compat import import_brian2
    import_brian2()        # Brian2 on this NumPy (a broken install fails here)


class TestBrian2(BackendConformance):
    backend = "brian2"
    params = {"network": {"n_exc": 24, "n_inh": 8}, "record": {"plot": False}}
