"""A whole run in one process: the real `Coordinator` and one real `NodeRuntime` per node, each
in a thread, talking over ZeroMQ's in-process transport (`inproc://`).

Same protocol, same code paths as separate processes (PROTOCOL.md §2–§8: the dialog, direct
data, RUN grants, heartbeats), only no TCP and no process start-up. For tests that need the
real coordinator and runtime around adapters they build themselves (e.g. with special
recording options), and for notebooks that want a quick run without services.

    summary = run_inprocess(config, {"tvb": TVBAdapter(), "spiking": ReferenceAdapter()}, out)
"""
from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Callable

from cosim.runtime.adapter import NodeAdapter
from cosim.config import parse_config
from cosim.errors import RunFailed


def run_inprocess(config: dict, adapters: dict[str, NodeAdapter | Callable[[dict], NodeAdapter]],
                  results_dir: str | Path, *, timeout_s: float = 600.0) -> dict:
    """Run `config` with these adapters (node name → adapter, or a factory taking the run config);
    returns the coordinator's summary, raises RunFailed (the coordinator's reason) or the first
    node's error. Every node of the config needs an adapter."""
    from cosim.runtime.node import NodeRuntime
    from cosim.services.coordinator.coordinator import Coordinator
    tag = uuid.uuid4().hex[:12]
    config = dict(config)
    config["coordinator"] = {**(config.get("coordinator") or {}),
                             "router": f"inproc://cosim-{tag}-router", "pub": f"inproc://cosim-{tag}-pub"}
    cfg = parse_config(config)
    names = ["tvb"] + [n.name for n in cfg.spiking_nodes]
    missing = sorted(set(names) - set(adapters))
    if missing:
        raise ValueError(f"run_inprocess: no adapter for node(s) {missing}")
    coord = Coordinator(cfg, Path(results_dir))
    coord.bind()                 # inproc: the ROUTER must exist before anyone connects (run() keeps it)
    bound = threading.Event()
    errors: dict[str, BaseException] = {}
    result: dict = {}

    def coordinator():
        try:
            bound.set()
            result["summary"] = coord.run()
        except BaseException as e:   # noqa: BLE001  (reported to the caller)
            errors["coordinator"] = e

    def node(name: str):
        a = adapters[name]
        factory = a if callable(a) and not isinstance(a, NodeAdapter) else (lambda _cfg, a=a: a)
        rt = NodeRuntime(name, "tvb" if name == "tvb" else "spiking", cfg.coordinator.router, factory,
                         results_dir=str(results_dir))
        try:
            rt.run()
        except BaseException as e:   # noqa: BLE001
            errors[name] = e

    threads = [threading.Thread(target=coordinator, name="coordinator", daemon=True)]
    threads += [threading.Thread(target=node, args=(n,), name=f"node-{n}", daemon=True) for n in names]
    threads[0].start()
    bound.wait(10)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(timeout_s)
        if t.is_alive():
            raise RunFailed(f"in-process run did not finish within {timeout_s:g} s (thread {t.name})")
    if "coordinator" in errors:
        raise errors["coordinator"]
    if errors:
        raise next(iter(errors.values()))
    return result["summary"]
