"""Plugin spec of the mean-field reference backend (entry point ``cosim.plugins: reference``)."""
from cosim.plugins import BackendSpec

SPEC = BackendSpec(
    name="reference",
    params="cosim.services.reference_node.config:ReferenceParams",
    adapter="cosim.services.reference_node.adapter:ReferenceAdapter",
    description="TVB's own equations for the spiking regions: the exact stand-in (bit for bit)",
    requires=("tvb",),
    install="pip install 'brain-cosim[tvb]'",
    image="cosim-reference:latest",
    dockerfile="services/reference_node/Dockerfile",
    checkpoint=True,
)
