"""The NetPyNE backend passes the backend conformance kit (tiny network)."""
import pytest

import netpyne  # noqa: F401,E402  (a missing install must fail, not skip)

from conformance import BackendConformance, _chdir_tmp  # noqa: E402,F401
from np_helpers import TINY  # noqa: E402


class TestNetpyne(BackendConformance):
    backend = "netpyne"
    params = TINY
