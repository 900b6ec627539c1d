"""`cosim validate`'s deep check of a NetPyNE user model: its network built in this process as the
node builds it, nothing simulated. Apart from checks.py, which the adapter itself imports: this
module imports the adapter."""
from __future__ import annotations

import contextlib
import io
import tempfile

from .checks import connectome_regions
from .config import NetpyneParams


def validate(entry, cfg, source: str = "<config>", progress=None) -> None:
    """Plugin hook for `cosim validate` only: a user model's network is built as the node builds it
    (NetPyNE creates the cells, connections and stimuli, cosim its drive, recording and the NEURON
    initialisation), in this process, and nothing is simulated: a model NetPyNE or NEURON cannot
    build (tut_artif's VecStim without its mechanism, netClamp) is refused here, not at run time."""
    p = NetpyneParams.model_validate(entry.params or {})
    if p.model_file is None:
        return                          # the default network: cosim's own builder (tested)
    from .adapter import NetpyneAdapter
    from .drive import make_context, synthetic_connectome
    regions = [int(r) for r in entry.regions]
    n = max(connectome_regions(cfg.tvb.connectivity) or 76, max(regions) + 1)
    with tempfile.TemporaryDirectory(prefix="cosim-validate-") as work:
        ad = NetpyneAdapter(entry.params or {})
        ctx = make_context(regions, entry.params or {}, cfg.run.duration_ms, tvb_dt_ms=cfg.tvb.dt_ms, W=1,
                           seed=cfg.run.seed, results_dir=work, node_name=entry.name or "spiking",
                           connectome=synthetic_connectome(n, 1))
        ad.requires(ctx)
        chatter = io.StringIO()            # NetPyNE's progress bars: the one line of a refusal stays alone
        try:
            with contextlib.redirect_stderr(chatter):
                ad.configure(ctx)
        finally:
            ad.finish(None)
