"""Plugin spec of the mean-field reference backend (entry point ``cosim.backends: reference``)."""
from cosim.backends import BackendSpec

SPEC = BackendSpec(
    name="reference",
    params="services.reference_node.config:ReferenceParams",
    adapter="services.reference_node.adapter:ReferenceAdapter",
    description="TVB's own equations for the spiking regions: the exact stand-in (bit for bit)",
    requires=("tvb",),
    install="pip install 'cosim[tvb]'",
    image="cosim-reference:latest",
    dockerfile="services/reference_node/Dockerfile",
    checkpoint=True,
)
