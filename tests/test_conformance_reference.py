"""The mean-field reference backend passes the conformance kit."""
from conformance import BackendConformance, _chdir_tmp  # noqa: F401


class TestReference(BackendConformance):
    backend = "reference"
