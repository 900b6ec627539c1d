"""Plugin spec of the null backend (entry point ``cosim.backends: noop``): protocol only."""
from cosim.backends import BackendSpec

SPEC = BackendSpec(
    name="noop",
    params="services.noop_node.adapter:NullParams",
    adapter="services.noop_node.adapter:NullSpiking",
    description="simulates nothing; well-formed zeros (protocol benchmarks and tests)",
    image="cosim-noop:latest",
    dockerfile="services/noop_node/Dockerfile",
)
