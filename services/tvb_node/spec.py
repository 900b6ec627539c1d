"""Plugin spec of the whole-brain side (entry point ``cosim.whole_brain: tvb``): TVB itself."""
from __future__ import annotations

from typing import Any

from cosim.plugins import WholeBrainSpec

SPEC = WholeBrainSpec(
    name="tvb",
    adapter="cosim.services.tvb_node.adapter:TVBAdapter",
    connectome="cosim.services.tvb_node.spec:connectome",
    description="The Virtual Brain (tvb-library): every region, spiking ones as proxies",
    requires=("tvb",),
    install="pip install 'brain-cosim[tvb]'",
)


def connectome(cfg: Any) -> dict:
    """The weights and integer delays (TVB steps) the TVB node will serve for ``cfg``."""
    import numpy as np

    from cosim.services.tvb_node.windowed import build_connectivity, silence_tvb_random_state_warning
    silence_tvb_random_state_warning()
    conn = build_connectivity(cfg.tvb)
    conn.set_idelays(cfg.tvb.dt_ms)
    return {"weights": np.asarray(conn.weights), "idelays": np.asarray(conn.idelays, dtype=np.int64)}
