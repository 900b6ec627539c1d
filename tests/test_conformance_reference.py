"""The mean-field reference backend passes the conformance kit."""
import pytest

from cosim.sdk.conformance import BackendConformance

pytestmark = [pytest.mark.tvb]      # in-process; the reference node and the kit's connectome are TVB's


class TestReference(BackendConformance):
    backend = "reference"
