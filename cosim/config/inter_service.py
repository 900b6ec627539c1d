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
  (:func:`cannot_spike`: NetPyNE's and NEST's default networks, across the two backends too),
  ``rates`` otherwise (``cosim run`` names the pairs coupled by rates).

Spikes into a NEST service need one TVB step beyond the lag (:func:`slack_delay_steps`).

Pure: plain config data (``RunConfig.model_dump()`` or CONFIGURE's ``config``), no simulator.
"""
from __future__ import annotations

from typing import Any

#: backends whose nodes send and receive ``spikes/E`` (their default network); the signal is
#: backend-neutral, so a NetPyNE service and a NEST service exchange spikes too
SPIKE_BACKENDS = ("netpyne", "nest")
#: backends whose stand-ins cannot take a synapse shorter than one simulator step (NEST: a
#: connection's delay is at least its resolution), so spikes into them need one TVB step of slack
#: beyond the lag: crossing delay >= m*W + 1 step (:func:`slack_delay_steps`, PROTOCOL.md §4.2)
NEEDS_STEP_SLACK = ("nest",)


def cannot_spike(node: dict[str, Any]) -> str | None:
    """Why spiking node ``node`` (a ``spiking_nodes[i]`` entry as data) cannot exchange spikes with
    other services, or None when it can."""
    backend = node.get("backend") or "netpyne"
    p = node.get("params") or {}
    if backend not in SPIKE_BACKENDS:
        return f"backend {backend!r} has no spike channel (only {', '.join(SPIKE_BACKENDS)})"
    if p.get("model_file"):
        return "it runs a model_file (spikes between services wire the default network)"
    if backend == "netpyne" and ((p.get("network") or {}).get("wiring") or "numpy") != "numpy":
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


def e_size(node: dict[str, Any]) -> int:
    """The size of each E population of spiking node ``node``'s default network (its backend's params)."""
    from cosim.plugins import validate_params
    return int(validate_params(node.get("backend") or "netpyne", node.get("params") or {}).network.sizes()[0])


def slack_delay_steps(config: dict[str, Any], weights, idelays) -> int | None:
    """The smallest delay (TVB steps) of a connection that carries spikes into a node of a
    NEEDS_STEP_SLACK backend from another service, or None: such delays must be >= m*W + 1 step
    (the coordinator and ``cosim validate`` shorten the window so; NEST cannot deliver a stand-in's
    spike through a synapse of delay 0)."""
    import numpy as np
    nodes = config.get("spiking_nodes") or []
    w, d = np.asarray(weights), np.asarray(idelays)
    best = None
    for n in nodes:
        if (n.get("backend") or "netpyne") not in NEEDS_STEP_SLACK:
            continue
        src = spike_sources(config, str(n.get("name")))
        tgt = [int(r) for r in n.get("regions") or [] if 0 <= int(r) < w.shape[0]]
        src = [q for q in src if 0 <= q < w.shape[0]]
        if not src or not tgt:
            continue
        sub_w, sub_d = w[np.ix_(tgt, src)], d[np.ix_(tgt, src)]
        if (sub_w != 0).any():
            m = int(sub_d[sub_w != 0].min())
            best = m if best is None else min(best, m)
    return best


def window_limit_steps(config: dict[str, Any], weights, idelays) -> tuple[int | None, str]:
    """The delay (TVB steps) the lag's windows must fit in (PROTOCOL.md §3): the smallest delay
    crossing between services, or one step less than the smallest delay carrying spikes into a
    NEEDS_STEP_SLACK service (§4.2) when that is shorter; None when nothing crosses. With it, a note
    for error messages that says why when the slack set it ('' otherwise). `cosim validate` and the
    coordinator both ask this function, so they cannot disagree on a window."""
    from cosim.config.timing import crossing_min_delay_steps
    groups = [set(int(r) for r in n.get("regions") or []) for n in config.get("spiking_nodes") or []]
    d = crossing_min_delay_steps(weights, idelays, groups)
    ds = slack_delay_steps(config, weights, idelays)
    if d is None or ds is None or ds - 1 >= d:
        return d, ""
    return max(ds - 1, 0), (f" (spikes into a NEST service cross a delay of {ds} steps, and NEST needs one step "
                            "beyond the lag: counted as one step shorter, PROTOCOL.md §4.2)")


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
