"""Plugin spec of the NEST backend (entry point ``cosim.plugins: nest``).

The PyPI wheel of NEST 3.10 is built without MPI (``build_info.have_mpi`` is False), so the
parallel knob is threads (``params.local_num_threads``), not ranks."""
from cosim.plugins import BackendSpec

SPEC = BackendSpec(
    name="nest",
    params="cosim.services.nest_node.config:NestParams",
    adapter="cosim.services.nest_node.adapter:NestAdapter",
    description="point-neuron spiking regions in NEST (conductance-based HH, or your own NEST network)",
    requires=("nest",),
    install="pip install 'brain-cosim[nest]'",
    path_params=("model_file.path",),
    dt_param="dt_ms",
    threads_param="local_num_threads",
    image="cosim-nest:latest",
    dockerfile="services/nest_node/Dockerfile",
    check="cosim.services.nest_node.checks:check_node",
    # NEST has no state save: run.checkpoint is refused for it (PROTOCOL.md §10.1)
    checkpoint=False,
)
