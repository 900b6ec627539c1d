"""Plugin spec of the NetPyNE/NEURON backend (entry point ``cosim.plugins: netpyne``)."""
from cosim.plugins import BackendSpec

SPEC = BackendSpec(
    name="netpyne",
    params="cosim.services.netpyne_node.config:NetpyneParams",
    adapter="cosim.services.netpyne_node.adapter:NetpyneAdapter",
    description="biophysical spiking regions in NEURON, built with NetPyNE (default HH network or your model)",
    requires=("neuron", "netpyne"),
    install="pip install 'brain-cosim[netpyne]'",
    path_params=("model_file.path", "model_file.mod_dir"),
    dt_param="dt_ms",
    mpi_param="mpi_ranks",
    image="cosim-netpyne:latest",
    dockerfile="services/netpyne_node/Dockerfile",
    check="cosim.services.netpyne_node.checks:check",
    build="cosim.services.netpyne_node.checks:build",
    validate="cosim.services.netpyne_node.validate:validate",
    # NEURON SaveState (incl. the relays' queued events) + Poisson generators, input history, rate
    # proxy (PROTOCOL.md §10.1); not with MPI, a user model or traces (NetpyneParams.cannot_checkpoint)
    checkpoint=True,
)
