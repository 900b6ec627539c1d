"""Plugin spec of the null backend (entry point ``cosim.plugins: noop``): protocol only."""
from cosim.plugins import BackendSpec, WholeBrainSpec

SPEC = BackendSpec(
    name="noop",
    params="cosim.services.noop_node.adapter:NullParams",
    adapter="cosim.services.noop_node.adapter:NullSpiking",
    description="simulates nothing; well-formed zeros (protocol benchmarks and tests)",
    image="cosim-noop:latest",
    dockerfile="services/noop_node/Dockerfile",
)

#: the whole-brain stand-in that serves a synthetic connectome (entry point ``cosim.whole_brain: noop``)
WHOLE_BRAIN = WholeBrainSpec(
    name="noop",
    adapter="cosim.services.noop_node.adapter:NullTVB",
    connectome="cosim.services.noop_node.adapter:connectome_of_config",
    description="serves a synthetic connectome and simulates nothing (protocol benchmarks and tests)",
)
