"""``cosim validate`` for NEST nodes: current devices land on the grid and on populations that exist;
a user model file is run (network built, nothing simulated) and every mapped population must exist
in it, each region must have exc or inh cells."""
from __future__ import annotations

from pathlib import Path


def check_node(entry, cfg, source: str = "<config>", progress=None) -> None:
    """Raise ``ValueError`` naming the culprit; ``entry`` is the node's ``NodeEntry``."""
    from .config import NestParams
    p = NestParams.model_validate(entry.params or {})
    regions = [int(r) for r in entry.regions]
    if p.stimulus:                       # the current devices: on NEST's grid, onto populations that exist
        from cosim.sdk.stimulus import check_devices, default_pops
        pops = ({k: (m.region, m.role) for k, m in p.model_file.populations.items()} if p.model_file is not None
                else default_pops(regions))
        check_devices(p.stimulus, pops, regions, p.dt_ms)
    if p.model_file is None:
        return
    if not Path(p.model_file.path).expanduser().is_file():
        raise ValueError(f"model_file.path: file not found: {p.model_file.path}")
    from .adapter import import_nest
    from .network import load_user_model
    nest = import_nest()
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": p.dt_ms})
    load_user_model(nest, p, [int(r) for r in entry.regions], cfg.run.seed)
    nest.ResetKernel()
