"""The NetPyNE backend passes the backend conformance kit (tiny network)."""
import netpyne  # noqa: F401  (a missing install must fail, not skip)
from np_helpers import TINY

from cosim.sdk.conformance import BackendConformance


class TestNetpyne(BackendConformance):
    backend = "netpyne"
    params = TINY
