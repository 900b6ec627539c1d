"""How spiking regions on *different* spiking services are coupled (``run.inter_service``).

Within one service, the default networks couple connected spiking regions E->E through synapses
(``params.inter_region``). Across services:

- ``spikes``: the same synapses. Each E spike of a region travels to the services that own its
  targets (``spikes/E`` signals, PROTOCOL.md §4.2); the receiver builds stand-ins for the remote
  cells and wires them with the synapses the single-service network would have (the same seeded
  draw, whatever the grouping), so the same config gives the same network on one service or many.
- ``rates``: the population rates only (``state/R_e`` → Poisson input), as before: a different
  network, chosen explicitly.
- ``auto`` (default): ``spikes`` between every two services that can exchange spikes
  (:func:`cannot_spike`), ``rates`` otherwise (``cosim run`` names the pairs coupled by rates).

Pure: plain config data (``RunConfig.model_dump()`` or CONFIGURE's ``config``), no simulator.
"""
from __future__ import annotations

from typing import Any

#: backends whose nodes send and receive ``spikes/E`` (their default network)
SPIKE_BACKENDS = ("netpyne",)


def cannot_spike(node: dict[str, Any]) -> str | None:
    """Why spiking node ``node`` (a ``spiking_nodes[i]`` entry as data) cannot exchange spikes with
    other services, or None when it can."""
    backend = node.get("backend") or "netpyne"
    p = node.get("params") or {}
    if backend not in SPIKE_BACKENDS:
        return f"backend {backend!r} has no spike channel (only {', '.join(SPIKE_BACKENDS)})"
    if p.get("model_file"):
        return "it runs a model_file (spikes between services wire the default network)"
    if ((p.get("network") or {}).get("wiring") or "numpy") != "numpy":
        return "network.wiring is 'netpyne' (NetPyNE's own draw depends on how regions are grouped)"
    if (p.get("toolbox") or {}).get("fixed_wiring"):
        return "toolbox.fixed_wiring draws the network with NetPyNE's own rule"
    if int(p.get("mpi_ranks") or 1) > 1:
        return "mpi_ranks > 1 (not supported with spikes between services yet)"
    if ((p.get("input") or {}).get("mode") or "coupling") == "per_source":
        return "input.mode is per_source (rates of every source region, spiking ones included)"
    if not ((p.get("inter_region") or {}).get("enabled", True)):
        return "inter_region.enabled is false (no E->E between its regions)"
    return None


def mode(config: dict[str, Any]) -> str:
    return str((config.get("run") or {}).get("inter_service") or "auto")


def spike_sources(config: dict[str, Any], node_name: str) -> list[int]:
    """Regions of other spiking services whose E spikes node ``node_name`` takes (every region
    of every other service it exchanges spikes with; the coordinator keeps those that project to
    the node's regions). Empty under ``rates``."""
    if mode(config) == "rates":
        return []
    nodes = config.get("spiking_nodes") or []
    me = next((n for n in nodes if n.get("name") == node_name), None)
    if me is None or cannot_spike(me) is not None:
        return []
    return sorted(int(r) for n in nodes if n.get("name") != node_name and cannot_spike(n) is None
                  for r in n.get("regions") or [])


def problem(config: dict[str, Any]) -> tuple[str, str] | None:
    """(field, reason) when the config cannot run its inter-service coupling: ``spikes`` asked for a
    node that cannot exchange spikes."""
    nodes = config.get("spiking_nodes") or []
    if len(nodes) < 2:
        return None
    m = mode(config)
    if m == "spikes":
        for i, n in enumerate(nodes):
            why = cannot_spike(n)
            if why:
                return ("run.inter_service", f"'spikes' but spiking_nodes[{i}] ({n.get('name')!r}) cannot exchange "
                                             f"spikes: {why}; use 'rates' or 'auto'")
    return None
