"""The mean-field reference backend passes the conformance kit."""
from cosim.sdk.conformance import BackendConformance


class TestReference(BackendConformance):
    backend = "reference"
