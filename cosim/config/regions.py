"""Whether the regions a config names exist in its connectome: asked by `cosim validate`/`cosim
run` before any service starts (cosim.launch.preflight) and by the coordinator once TVB has told
it the connectome's size (a deployment without preflight), so both refuse in the same words.

Pure: plain config data (``RunConfig.model_dump()`` or CONFIGURE's ``config``), no simulator.
"""
from __future__ import annotations

from typing import Any


def region_problem(config: dict[str, Any], n_regions: int) -> tuple[str, str] | None:
    """(field, reason) for the first spiking node, or ``coordinator.watch_regions``, that names a
    region the connectome (``n_regions`` regions) does not have; None when all exist."""
    n = int(n_regions)
    where = f"(the connectivity has {n} regions, 0..{n - 1})"
    for i, node in enumerate(config.get("spiking_nodes") or []):
        bad = [r for r in node.get("regions") or [] if not 0 <= int(r) < n]
        if bad:
            return f"spiking_nodes[{i}].regions", f"region(s) {bad} do not exist {where}"
    bad = [r for r in (config.get("coordinator") or {}).get("watch_regions") or [] if not 0 <= int(r) < n]
    if bad:
        return "coordinator.watch_regions", f"region(s) {bad} do not exist {where}"
    return None
