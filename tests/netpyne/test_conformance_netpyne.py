"""The NetPyNE backend passes the backend conformance kit (tiny network)."""
import pytest
from np_helpers import TINY

from cosim.sdk.conformance import BackendConformance

pytestmark = [pytest.mark.netpyne, pytest.mark.tvb]   # in-process; TVB's connectome


class TestNetpyne(BackendConformance):
    backend = "netpyne"
    params = TINY
