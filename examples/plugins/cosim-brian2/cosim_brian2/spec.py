"""Plugin spec of the Brian2 backend (entry point ``cosim.plugins: brian2``).

Imports neither Brian2 nor NumPy: the coordinator and ``cosim backends`` read this module
without the simulator. Brian2's numpy target runs in one process (no MPI, no threads), so the
spec names no parallel knob."""
from cosim.sdk import BackendSpec

SPEC = BackendSpec(
    name="brian2",
    params="cosim_brian2.config:Brian2Params",
    adapter="cosim_brian2.adapter:Brian2Adapter",
    description="E/I conductance-based LIF regions in Brian2 (an outside plugin: examples/plugins/cosim-brian2)",
    requires=("brian2",),
    install="pip install ./examples/plugins/cosim-brian2",
    dt_param="dt_ms",
)
