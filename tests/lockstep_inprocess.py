"""In-process lockstep driver for adapter-level tests: adapters stepped directly, no runtime.

The exactness tests through the real Coordinator and NodeRuntime use `cosim.launch.inprocess`
(inproc:// sockets, tests/test_inprocess_runtime.py). This driver is for what the real
coordinator refuses on purpose (a window one step past the causal limit, to show that the
exactness tests can fail) and for extra outputs; it plans and routes with the coordinator's
own `cosim.services.coordinator.routing`. No sockets, one process: REGISTER/CONFIGURE → ``requires``/``connectome``; PREPARE →
``configure``; READY → ``initial_outputs``; window k → ``step(k, inputs)`` for every node with
the other nodes' outputs of window k-m (``lag`` m, 1 unless given; PROTOCOL.md §3–4 and
cosim/runtime/adapter.py). Window k < m gets rows ``k*W .. (k+1)*W`` of the initial blocks (``m*W``
rows, windows -m .. -1). ``state/*`` of a region comes from the node that owns it,
``coupling/*`` from the TVB node.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, Signals, split_initial_outputs
from cosim.config import parse_config
from cosim.config.timing import crossing_min_delay_steps
from cosim.services.coordinator import routing


@dataclass
class LockstepResult:
    W: int
    K: int
    lag: int
    contexts: dict[str, RunContext]
    initial: dict[str, Signals]
    outputs: list[dict[str, Signals]] = field(default_factory=list)   # per window, per node
    summaries: dict[str, dict] = field(default_factory=dict)


def run_lockstep(config: dict, adapters: dict[str, NodeAdapter], *, tvb: str = "tvb",
                 window_steps: int | None = None, results_dir: str | None = None,
                 extra_outputs: dict[str, list[SignalSpec]] | None = None,
                 keep_outputs: bool = True, lag: int = 1) -> LockstepResult:
    """``window_steps`` defaults to ``floor(max(D, 1) / lag)`` (D: smallest crossing delay; 1 if
    nothing crosses)."""
    m = int(lag)
    if m < 1:
        raise ValueError(f"lag must be >= 1, got {lag}")
    cfg = parse_config(config)
    n_regions = None
    owner_spiking = {r: n.name for n in cfg.spiking_nodes for r in n.regions}
    ctxs: dict[str, RunContext] = {}
    for name in adapters:
        regions = tuple(cfg.spiking_regions()) if name == tvb else tuple(cfg.node(name).regions)
        ctxs[name] = RunContext(config=cfg.model_dump(), node_name=name, regions=regions,
                                tvb_dt_ms=cfg.tvb.dt_ms, tick_ms=cfg.tvb.dt_ms, results_dir=results_dir)
    requires = {name: a.requires(ctxs[name]) for name, a in adapters.items()}
    connectome = adapters[tvb].connectome()
    n_regions = connectome["weights"].shape[0]
    owner = {r: owner_spiking.get(r, tvb) for r in range(n_regions)}
    if window_steps is None:
        D = crossing_min_delay_steps(connectome["weights"], connectome["idelays"],
                                     [set(n.regions) for n in cfg.spiking_nodes])
        window_steps = max(D, 1) // m if D is not None else 1
        if window_steps < 1:
            raise ValueError(f"no causal window for a lag of {m} windows (smallest crossing delay {D} steps)")
    W = int(window_steps)
    K = math.ceil(round(cfg.run.duration_ms / cfg.tvb.dt_ms) / W)
    # who sends what to whom: the coordinator's own planning and routing code (no copy of it here);
    # extra outputs are asked for by a pseudo-consumer, as coordinator.watch_regions does
    wants = dict(requires)
    for p, specs in (extra_outputs or {}).items():
        wants[f"<extra {p}>"] = list(specs)
    try:
        pl = routing.plan(wants, owner, tvb=tvb, weights=connectome["weights"])
    except routing.PlanError as e:
        raise ValueError(str(e)) from None
    outputs = pl.outputs
    for name, a in adapters.items():
        c = ctxs[name]
        c.steps_per_window, c.n_windows, c.lag_windows = W, K, m
        c.outputs, c.inputs, c.connectome = outputs[name], list(pl.inputs[name]), connectome
        a.configure(c)

    def route(consumer: str, produced: dict[str, Signals]) -> Signals:
        return routing.route(pl, consumer, produced, W)

    def check(name: str, produced: Signals, allow_missing: bool, rows: int = W) -> None:
        for s in outputs[name]:
            a = produced.get(s.name)
            if a is None:
                if not allow_missing:
                    raise AssertionError(f"{name} did not produce {s.name}")
            elif a.shape != (rows, len(s.regions)):
                raise AssertionError(f"{name}: {s.name} has shape {a.shape}, expected {(rows, len(s.regions))}")

    initial = {name: a.initial_outputs() for name, a in adapters.items()}
    for name, prod in initial.items():
        check(name, prod, allow_missing=True, rows=m * W)
    res = LockstepResult(W=W, K=K, lag=m, contexts=ctxs, initial=initial)
    # outputs of windows k-m .. k-1, oldest first; windows -m .. -1 are the initial blocks split
    per_node = {name: split_initial_outputs(prod, W, m) for name, prod in initial.items()}
    in_flight = deque({name: per_node[name][j] for name in adapters} for j in range(m))
    try:
        for k in range(K):
            prev = in_flight.popleft()                # outputs of window k-m
            cur = {name: a.step(k, route(name, prev)) for name, a in adapters.items()}
            for a in adapters.values():           # as the runtime does once the outputs are out
                a.after_window()
            for name, prod in cur.items():
                check(name, prod, allow_missing=False)
            if keep_outputs:
                res.outputs.append(cur)
            in_flight.append(cur)
    except BaseException as e:
        for a in adapters.values():
            a.finish(f"{type(e).__name__}: {e}")
        raise
    res.summaries = {name: a.finish(None) for name, a in adapters.items()}
    return res
