"""``cosim validate`` for NEST nodes: current devices land on the grid and on populations that exist;
a user model file is run (network built, nothing simulated) and every mapped population must exist
in it, each region must have exc or inh cells; TVB's drive is connected as the run connects it
(weight unit and receptor from what the model's neurons declare)."""
from __future__ import annotations

from pathlib import Path


def check_node(entry, cfg, source: str = "<config>", progress=None) -> None:
    """Raise ``ValueError`` naming the culprit; ``entry`` is the node's ``NodeEntry``."""
    from .config import NestParams
    p = NestParams.model_validate(entry.params or {})
    regions = [int(r) for r in entry.regions]
    if p.stimulus:                       # the current devices: on NEST's grid, onto populations that exist
        from cosim.sdk.stimulus import check_devices, default_pops
        popmap = ({k: (m.region, m.role) for k, m in p.model_file.populations.items()} if p.model_file is not None
                else default_pops(regions))
        check_devices(p.stimulus, popmap, regions, p.dt_ms)
    if p.model_file is None:
        return
    if not Path(p.model_file.path).expanduser().is_file():
        raise ValueError(f"model_file.path: file not found: {p.model_file.path}")
    from .adapter import import_nest
    from .network import drive_receptor, drive_targets, drive_weight, load_user_model
    nest = import_nest()
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": p.dt_ms, "local_num_threads": p.local_num_threads})
    try:
        pops = load_user_model(nest, p, regions, cfg.run.seed)
        # TVB's drive as the run wires it: the weight's unit and the receptor from what the model
        # declares, then NEST itself connects a generator to every target (it refuses a bad port)
        targets = [q for r in regions for q in drive_targets(p, pops, r)]
        w, _, _ = drive_weight(nest, p, targets)
        gen = nest.Create("inhomogeneous_poisson_generator")
        delay = p.input.delay_ms - p.dt_ms
        for q in targets:
            rec = drive_receptor(nest, p, q)
            try:
                nest.Connect(gen, q.nodes, "all_to_all", {"synapse_model": "static_synapse", "weight": w,
                                                          "delay": delay, "receptor_type": rec})
            except Exception as e:  # noqa: BLE001  (NEST's own refusal, one line)
                raise ValueError(f"TVB's drive cannot reach population {q.label} on receptor {rec}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    finally:
        nest.ResetKernel()
