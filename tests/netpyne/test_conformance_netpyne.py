"""The NetPyNE backend passes the backend conformance kit (tiny network)."""
import pytest

pytest.importorskip("netpyne")

from conformance import BackendConformance, _chdir_tmp  # noqa: E402,F401
from np_helpers import TINY  # noqa: E402


class TestNetpyne(BackendConformance):
    backend = "netpyne"
    params = TINY
