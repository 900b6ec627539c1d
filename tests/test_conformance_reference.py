"""The mean-field reference backend passes the conformance kit."""
from cosim.conformance import BackendConformance


class TestReference(BackendConformance):
    backend = "reference"
