"""The noop backend passes the conformance kit (it is what the protocol benchmarks use)."""
from conformance import BackendConformance, _chdir_tmp  # noqa: F401


class TestNoop(BackendConformance):
    backend = "noop"
    regions = (3, 5)
