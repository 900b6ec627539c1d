"""A whole run in one process: the real coordinator and one real node runtime per node, each a
thread (the :class:`cosim.launch.starters.Thread` starter), talking over ZeroMQ's in-process
transport (`inproc://`).

Same protocol, same code paths as separate processes (PROTOCOL.md §2–§8: the dialog, direct
data, RUN grants, heartbeats), only no TCP and no process start-up. For tests that need the
real coordinator and runtime around adapters they build themselves (e.g. with special
recording options), and for notebooks that want a quick run without services.

    summary = run_inprocess(config, {"tvb": TVBAdapter(), "spiking": ReferenceAdapter()}, out)
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from collections.abc import Callable

from cosim.config import parse_config
from cosim.errors import RunFailed
from cosim.launch.run import Launch, services_of
from cosim.launch.starters import Thread
from cosim.runtime.adapter import NodeAdapter


def run_inprocess(config: dict, adapters: dict[str, NodeAdapter | Callable[[dict], NodeAdapter]],
                  results_dir: str | Path, *, timeout_s: float = 600.0) -> dict:
    """Run `config` with these adapters (node name → adapter, or a factory taking the run config);
    returns the coordinator's summary, raises RunFailed (the coordinator's reason) or the first
    node's error. Every node of the config needs an adapter."""
    tag = uuid.uuid4().hex[:12]
    config = dict(config)
    config["coordinator"] = {**(config.get("coordinator") or {}),
                             "router": f"inproc://cosim-{tag}-router", "pub": f"inproc://cosim-{tag}-pub"}
    config["run"] = {**(config.get("run") or {}), "progress": False}
    cfg = parse_config(config)
    names = ["tvb"] + [n.name for n in cfg.spiking_nodes]
    missing = sorted(set(names) - set(adapters))
    if missing:
        raise ValueError(f"run_inprocess: no adapter for node(s) {missing}")
    out = Path(results_dir)
    specs = services_of(cfg, "<in-process>", out, cfg.coordinator.router, cfg.coordinator.pub, plots=False)
    starter = Thread(adapters)
    services: list[Any] = [starter.start(spec) for spec in specs]     # ThreadServices
    job = Launch(services, cfg.coordinator.pub, cfg, out)
    deadline = time.monotonic() + timeout_s
    for svc in services:
        if svc.wait(max(0.0, deadline - time.monotonic())) is None:
            job.stop()
            raise RunFailed(f"in-process run did not finish within {timeout_s:g} s (thread {svc.name})", out=out)
    errors: dict[str, Any] = {s.name: s.error for s in services if s.error is not None}
    if "coordinator" in errors:
        raise errors["coordinator"]
    if errors:
        raise next(iter(errors.values()))
    return services[0].result
