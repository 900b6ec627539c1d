"""The noop backend passes the conformance kit (it is what the protocol benchmarks use)."""
from cosim.sdk.conformance import BackendConformance


class TestNoop(BackendConformance):
    backend = "noop"
    regions = (3, 5)
    responds_to_input = False      # simulates nothing
    mixed_runs = False
