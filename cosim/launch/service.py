"""One service of a run, as a function: the coordinator or a node, from its options to its end.

`cosim coordinator` / `cosim tvb-node` / `cosim spiking-node` call these, and so does every
starter (cosim.launch.starters) that runs a service inside this process. They raise instead of
exiting: every way a service ends early is an exception of cosim.errors carrying its exit code
(the CLI turns it into one).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from collections.abc import Callable

log = logging.getLogger(__name__)


def run_coordinator(cfg: Any, out: str | Path, *, resume: bool = False, curve: Any = None, plots: bool = True,
                    keys_dir: str | None = None, progress: Callable | None = None,
                    started: Callable[[Any], None] | None = None, echo: bool = True,
                    started_at: float | None = None) -> dict:
    """Coordinate the run ``cfg`` with results in ``out``; its summary. ``started(coordinator)``
    is called once its sockets are bound (a thread starter waits for it before starting nodes);
    ``progress`` is the coordinator's progress callback (done, total, sim_ms, wall_s); ``echo``
    prints the summary (a service's output goes to its log); ``started_at``: when this service's
    process started (epoch), the origin of its start-up figures (summary.json ``startup``)."""
    from cosim.results.report import write_run_outputs
    from cosim.services.coordinator.coordinator import Coordinator
    out = Path(out)
    if cfg.coordinator.curve and curve is None:
        from cosim.runtime import security
        curve = security.server_from_dir(cfg.coordinator.keys_dir or keys_dir or os.environ.get("COSIM_KEYS"))
    coord = Coordinator(cfg, out, curve=curve, progress=progress, resume=resume, started_at=started_at)
    coord.bind()
    if started is not None:
        started(coord)
    summary = coord.run()
    write_run_outputs(out, summary, plots=plots, echo=echo)
    return summary


def make_adapter_factory(name: str, role: str, backend: str = "") -> Callable[[dict], Any]:
    """The adapter of node ``name``: the whole-brain side's (``backend``: tvb or noop) or, for a
    spiking node, the one its backend plugin names in the run config."""
    def make(config: dict):
        from cosim import plugins
        if role == "tvb":
            return plugins.whole_brain(backend or "tvb").adapter_class()()
        entry = next(n for n in config["spiking_nodes"] if n["name"] == name)
        return plugins.adapter_class(entry["backend"])()
    return make


def run_node(name: str, role: str, coordinator: str, *, backend: str = "", keys: str | None = None,
             results_dir: str | None = None, resume: bool = False, register_timeout_ms: int = 30_000,
             data_bind: str | None = None, data_advertise: str | None = None,
             make_adapter: Callable[[dict], Any] | None = None, started_at: float | None = None) -> None:
    """Node ``name`` (role "tvb" or "spiking") of the run coordinated at ``coordinator``, to its end."""
    from cosim.runtime.node import NodeRuntime
    curve = None
    if keys:
        from cosim.runtime import security
        curve = security.client_from_dir(keys, name)
    rt = NodeRuntime(name, role, coordinator, make_adapter or make_adapter_factory(name, role, backend),
                     backend=backend if role == "spiking" else "", results_dir=results_dir, curve=curve,
                     register_timeout_ms=register_timeout_ms, require_resume=resume,
                     data_bind=data_bind, data_advertise=data_advertise, started_at=started_at)
    rt.run()
