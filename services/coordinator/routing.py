"""Who produces what, and who receives what (PROTOCOL.md §4). Pure: no sockets.

`plan()` turns every node's declared requirements into each node's `outputs` (what it must
produce each window) and `inputs` (what it receives), and a routing table; `route()` applies
the table to one window's outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosim.proto.signals import is_event, select_events
from cosim.runtime.adapter import SignalSpec


from cosim.errors import PlanError  # noqa: E402  (one hierarchy: cosim.errors)


@dataclass(frozen=True)
class Part:
    """Columns `src_cols` of producer's signal go to columns `dst_cols` of a consumer's input."""
    producer: str
    name: str
    src_cols: np.ndarray
    dst_cols: np.ndarray


@dataclass
class Plan:
    outputs: dict[str, list[SignalSpec]]
    inputs: dict[str, list[SignalSpec]]
    table: dict[str, dict[str, list[Part]]]      # consumer -> input name -> parts


def provider(name: str, region: int, owner: dict[int, str], tvb: str) -> str:
    """`state/*` comes from the region's owner; `coupling/*` is computed by the TVB node."""
    kind = name.split("/", 1)[0]
    if kind == "state":
        return owner[region]
    if kind == "coupling":
        return tvb
    if kind == "spikes":
        if owner[region] == tvb:
            raise PlanError(f"{name} of region {region}: a region simulated by TVB has no spikes")
        return owner[region]
    raise PlanError(f"unknown signal kind in {name!r}; expected state/…, coupling/… or spikes/…")


def prune_spikes(consumer: str, specs: list[SignalSpec], owner: dict[int, str], weights) -> list[SignalSpec]:
    """``spikes/<pop>`` of regions Q (PROTOCOL.md §4.2) keeps only the regions q that project to one of
    ``consumer``'s own regions (``weights[p, q] != 0``): a node names every region it could take
    spikes from before the connectome reaches it; spikes nobody wires to are not sent."""
    if weights is None or not any(s.name.startswith("spikes/") for s in specs):
        return specs
    w = np.asarray(weights)
    mine = [r for r, o in owner.items() if o == consumer]
    out = []
    for s in specs:
        if s.name.startswith("spikes/"):
            bad = [q for q in s.regions if not 0 <= q < w.shape[0]]
            if bad:
                raise PlanError(f"node {consumer!r} requires {s.name} of region {bad[0]}, which does not exist")
            s = SignalSpec(s.name, tuple(q for q in s.regions if mine and np.any(w[mine, q] != 0)))
            if not s.regions:
                continue
        out.append(s)
    return out


def expand_sources(consumer: str, specs: list[SignalSpec], owner: dict[int, str], weights) -> list[SignalSpec]:
    """``sources/<var>`` of regions P (PROTOCOL.md §4, per-source mode) becomes ``state/<var>`` of every
    region j not simulated by ``consumer`` with ``weights[p, j] != 0`` for some p in P, merged with an
    explicit ``state/<var>`` of the same node (one spec per name; region lists sorted)."""
    if not any(s.name.startswith("sources/") for s in specs):
        return specs
    if weights is None:
        raise PlanError(f"node {consumer!r} requires sources/… but no connectome is known")
    w = np.asarray(weights)
    wanted: dict[str, set[int]] = {}
    order: list[str] = []
    for s in specs:
        kind, _, var = s.name.partition("/")
        name = f"state/{var}" if kind == "sources" else s.name
        if name not in wanted:
            wanted[name] = set()
            order.append(name)
        if kind == "sources":
            for p in s.regions:
                if not 0 <= p < w.shape[0]:
                    raise PlanError(f"node {consumer!r} requires {s.name} of region {p}, which does not exist")
                wanted[name].update(int(j) for j in np.flatnonzero(w[p]) if owner.get(int(j)) != consumer)
        else:
            wanted[name].update(s.regions)
    return [SignalSpec(n, tuple(sorted(wanted[n]))) for n in order if wanted[n]]


def plan(requires: dict[str, list[SignalSpec]], owner: dict[int, str], tvb: str = "tvb", weights=None) -> Plan:
    """`requires[node]` = what the node consumes; `owner[region]` = node that simulates it;
    `weights` (the connectome) expands `sources/*` requirements (:func:`expand_sources`)."""
    requires = {n: prune_spikes(n, expand_sources(n, ss, owner, weights), owner, weights) for n, ss in requires.items()}
    wanted: dict[str, dict[str, set[int]]] = {}
    for consumer, specs in requires.items():
        for s in specs:
            for r in s.regions:
                if r not in owner:
                    raise PlanError(f"node {consumer!r} requires {s.name} of region {r}, which does not exist")
                p = provider(s.name, r, owner, tvb)
                if p == consumer:
                    raise PlanError(f"node {consumer!r} requires its own {s.name} of region {r}")
                wanted.setdefault(p, {}).setdefault(s.name, set()).add(r)
    outputs = {n: [SignalSpec(name, tuple(sorted(rs))) for name, rs in sorted(wanted.get(n, {}).items())]
               for n in requires}
    col = {(n, s.name): {r: i for i, r in enumerate(s.regions)} for n, ss in outputs.items() for s in ss}
    table: dict[str, dict[str, list[Part]]] = {}
    for consumer, specs in requires.items():
        table[consumer] = {}
        for s in specs:
            by_prod: dict[str, tuple[list[int], list[int]]] = {}
            for j, r in enumerate(s.regions):
                p = provider(s.name, r, owner, tvb)
                src, dst = by_prod.setdefault(p, ([], []))
                src.append(col[(p, s.name)][r])
                dst.append(j)
            table[consumer][s.name] = [Part(p, s.name, np.array(src), np.array(dst))
                                       for p, (src, dst) in by_prod.items()]
    return Plan(outputs=outputs, inputs={n: list(ss) for n, ss in requires.items()}, table=table)


def route(plan_: Plan, consumer: str, produced: dict[str, dict[str, np.ndarray]], steps: int) -> dict[str, np.ndarray]:
    """Inputs for `consumer` from every producer's outputs of the previous window.

    A signal whose producer did not send it (allowed only for initial outputs) is left out.
    """
    out: dict[str, np.ndarray] = {}
    for spec in plan_.inputs[consumer]:
        parts = plan_.table[consumer][spec.name]
        got = [produced.get(p.producer, {}).get(p.name) for p in parts]
        blocks = [b for b in got if b is not None]
        if len(blocks) < len(got):
            continue
        if len(parts) == 1 and len(parts[0].src_cols) == blocks[0].shape[1] and \
                np.array_equal(parts[0].src_cols, parts[0].dst_cols):
            out[spec.name] = blocks[0]           # the whole block, same order: no copy
            continue
        arr = np.empty((steps, len(spec.regions)))
        for p, b in zip(parts, blocks):
            arr[:, p.dst_cols] = b[:, p.src_cols]
        out[spec.name] = arr
    return out


def links(plan_: Plan, node: str) -> tuple[list[dict], list[dict]]:
    """Direct data (protocol 3, PROTOCOL.md §4.1): what ``node`` sends to whom and receives from
    whom, per consumer/producer as ``[{name, cols}]``. ``send`` cols index the producer's output
    (its region order), ``receive`` cols the consumer's input. Consumers that are not nodes (the
    coordinator's own ``<...>`` pseudo-consumers) are left out: the coordinator gets every output
    with STEP_DONE anyway."""
    send: dict[str, list[dict]] = {}
    receive: dict[str, list[dict]] = {}
    for consumer, inputs in plan_.table.items():
        if consumer.startswith("<"):
            continue
        for name, parts in inputs.items():
            for p in parts:
                if p.producer == node:
                    send.setdefault(consumer, []).append({"name": name, "cols": p.src_cols.tolist()})
                if consumer == node:
                    receive.setdefault(p.producer, []).append({"name": name, "cols": p.dst_cols.tolist()})
    return ([{"to": c, "signals": s} for c, s in send.items()],
            [{"from": p, "signals": s} for p, s in receive.items()])


def data_for(plan_: Plan, producer: str, consumer: str, outputs: dict[str, np.ndarray] | None) -> dict | None:
    """The DATA signals ``producer`` sends ``consumer`` for one window of ``outputs`` (what the
    producer's own runtime sends; the coordinator uses it to resend from its copy), or None when
    the consumer takes nothing from the producer or the outputs are unknown."""
    if outputs is None or consumer.startswith("<"):
        return None
    sigs, any_part = {}, False
    for name, parts in plan_.table.get(consumer, {}).items():
        for p in parts:
            if p.producer == producer:
                any_part = True
                if name in outputs:
                    sigs[name] = select_events(outputs[name], p.src_cols) if is_event(name) else \
                        np.ascontiguousarray(outputs[name][:, p.src_cols])
    return sigs if any_part else None


# what a signal may hold, checked by producers, consumers and the coordinator alike (PROTOCOL.md §7)
from cosim.proto.signals import SIGNAL_BOUND, check_outputs  # noqa: E402,F401
