"""The noop backend passes the conformance kit (it is what the protocol benchmarks use)."""
import pytest

from cosim.sdk.conformance import BackendConformance

pytestmark = [pytest.mark.tvb]      # in-process; the kit takes TVB's connectome


class TestNoop(BackendConformance):
    backend = "noop"
    regions = (3, 5)
    responds_to_input = False      # simulates nothing
    mixed_runs = False
