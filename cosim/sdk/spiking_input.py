"""What drives a spiking node's regions from outside, as one signal per region (any backend).

A spiking region p is driven by every region j that this node does not simulate, through the
connectome: ``c_p(n) = sum_j w[p, j] * R_e,j(n - 1 - idelay[p, j])`` (Hz*weight, TVB's coupling
indexing). The TVB node computes the part over its own regions (``coupling/R_e``); regions of
*other spiking services* (mixed runs: NEST owns one region, NetPyNE another) arrive as their
``state/R_e`` m windows late (``ctx.lag_windows``; window k brings window k-m's rows, steps
``(k-m)*W+1 .. (k-m+1)*W``), and this module applies their delays itself, from a history of
those rates. Under the timing rule (``m*W`` <= every crossing delay, + 1) everything a window
needs has arrived before it starts (PROTOCOL.md §4, cosim/runtime/adapter.py).

The input transformer then maps ``c_p`` to a Poisson rate per input train:
``rate = scale_p * c_p + offset`` with ``scale_p = 1 / sum_j w[p, j]`` for "row_mean" (the
weight-averaged rate of all of p's sources, whoever simulates them).
"""
from __future__ import annotations

import numpy as np

from cosim.runtime.adapter import RunContext, SignalSpec, lag_of


def transformer_scale(scale: float | str, row_weight: np.ndarray) -> np.ndarray:
    """Per target region: ``scale`` itself, or for "row_mean" 1 / its incoming weight (0 for a region
    nothing projects to)."""
    rw = np.asarray(row_weight, dtype=np.float64)
    if not isinstance(scale, str):
        return np.full(rw.shape, float(scale))
    return np.where(rw > 0, 1.0 / np.where(rw > 0, rw, 1.0), 0.0)


class CouplingInput:
    """Per-window drive of ``regions`` (this node's) from TVB and from other spiking services."""

    def __init__(self, ctx: RunContext, regions: list[int]):
        self.regions = [int(r) for r in regions]
        own = set(self.regions)
        mine = ctx.node_name
        # regions simulated by other spiking services (known from the config alone); those whose E
        # spikes reach this node (run.inter_service, PROTOCOL.md §4.2) couple through synapses, as
        # regions of this node do, not through their rates
        from cosim.config.inter_service import spike_sources
        self.spiking = set(spike_sources(ctx.config, mine))
        self.others = sorted(int(r) for n in ctx.config.get("spiking_nodes", []) if n.get("name") != mine
                             for r in n.get("regions", []) if int(r) not in own and int(r) not in self.spiking)
        self.W = 0
        self.m = 1

    def requires(self) -> list[SignalSpec]:
        specs = [SignalSpec("coupling/R_e", tuple(self.regions))]
        if self.others:
            specs.append(SignalSpec("state/R_e", tuple(self.others)))
        return specs

    def configure(self, ctx: RunContext, initial_rate_hz: float = 0.0) -> None:
        """Needs the connectome (PREPARE): weights and TVB's integer delays."""
        self.W = int(ctx.steps_per_window)
        self.m = m = lag_of(ctx)
        if ctx.connectome is None:          # standalone use (no brain): TVB's coupling only
            if self.others:
                raise ValueError("rates from other spiking services need the connectome (sent with PREPARE)")
            self.row_weight = np.zeros(len(self.regions))
            self.links, self.depth = [], 1
            self.hist = np.zeros((1, 1))
            return
        w = np.asarray(ctx.connectome["weights"], dtype=np.float64)
        idel = np.asarray(ctx.connectome["idelays"], dtype=np.int64)
        n = w.shape[0]
        bad = [r for r in self.regions + self.others if not 0 <= r < n]
        if bad:
            raise ValueError(f"region(s) {bad} do not exist (the connectivity has {n} regions)")
        own = np.zeros(n, dtype=bool)
        own[self.regions] = True
        own[[q for q in self.spiking if 0 <= q < n]] = True      # coupled by spikes: as if here
        # incoming weight from everything this node does not simulate (TVB + other services)
        self.row_weight = np.array([w[p, ~own].sum() for p in self.regions])
        # other services' regions that actually project here: (target col, source col, weight, delay)
        oc = {q: i for i, q in enumerate(self.others)}
        links = [(j, oc[q], w[p, q], int(idel[p, q])) for j, p in enumerate(self.regions)
                 for q in self.others if w[p, q] != 0]
        self.links = links
        if links:
            dmin = min(d for *_, d in links)
            if dmin < m * self.W:
                lagged = "" if m == 1 else f" times the lag of {m} windows"
                raise ValueError(f"window of {self.W} steps{lagged} is longer than the delay ({dmin} steps) from "
                                 f"another spiking service's region (the coordinator should have prevented this)")
            depth = max(d for *_, d in links) + (m + 1) * self.W + 1
        else:
            depth = 1
        # history of the other services' R_e by absolute TVB step (ring buffer)
        self.hist = np.full((depth, max(len(self.others), 1)), float(initial_rate_hz))
        self.depth = depth
        self.t_idx = np.array([l[0] for l in links], dtype=np.int64)
        self.s_idx = np.array([l[1] for l in links], dtype=np.int64)
        self.wts = np.array([l[2] for l in links], dtype=np.float64)
        self.dly = np.array([l[3] for l in links], dtype=np.int64)

    def scale(self, scale: float | str) -> np.ndarray:
        """The input transformer's per-region scale: a number, or "row_mean" (1 / incoming weight)."""
        return transformer_scale(scale, self.row_weight)

    def signal(self, k: int, inputs: dict[str, np.ndarray] | None, input_specs: list[SignalSpec]) -> np.ndarray:
        """``c`` (W, n_regions) for window ``k`` from this window's inputs (outputs of window k-m)."""
        W, m = self.W, self.m
        inputs = inputs or {}
        c = np.zeros((W, len(self.regions)))
        tvb = inputs.get("coupling/R_e")
        if tvb is not None:
            tvb = np.asarray(tvb, dtype=np.float64)
            spec = next((s for s in input_specs if s.name == "coupling/R_e"), None)
            order = list(spec.regions) if spec is not None else self.regions
            if tvb.shape != (W, len(order)):
                raise ValueError(f"coupling/R_e has shape {tvb.shape}, expected {(W, len(order))}")
            c += tvb if order == self.regions else tvb[:, [order.index(r) for r in self.regions]]
        if self.others:
            rates = inputs.get("state/R_e")
            if rates is not None:                 # window k-m's rows: steps (k-m)W+1 .. (k-m+1)W
                rates = np.asarray(rates, dtype=np.float64)
                if rates.shape != (W, len(self.others)):
                    raise ValueError(f"state/R_e has shape {rates.shape}, expected {(W, len(self.others))}")
                steps = (k - m) * W + 1 + np.arange(W)
                self.hist[steps % self.depth] = rates
            if len(self.links):
                n = k * W + 1 + np.arange(W)              # the steps of window k
                src = (n[:, None] - 1 - self.dly[None, :]) % self.depth
                terms = self.wts[None, :] * self.hist[src, self.s_idx[None, :]]
                np.add.at(c, (slice(None), self.t_idx), terms)  # type: ignore[arg-type]  # numpy's stub lacks slices
        return c


class PerSourceInput:
    """Per-source drive (``input.mode: per_source``): one rate per (target region p, source region j).

    The node requires ``sources/R_e`` of its regions; the coordinator turns it into ``state/R_e``
    of every region outside the node that projects to them (TVB's regions from the TVB node, other
    services' regions from their owners; PROTOCOL.md §4). With a lag of m windows
    (``ctx.lag_windows``) rows of window k-m (steps ``(k-m)W+1 .. (k-m+1)W``) are window k's inputs;
    this class keeps their history and applies each connection's delay itself: the rate of link
    (p, j) at step n is ``R_e,j(n - 1 - idelay[p, j])``, TVB's own coupling indexing, so
    ``sum_j w[p, j] * rate[p, j]`` equals TVB's ``coupling/R_e`` of p (PROTOCOL.md §4) wherever
    the history is known. Under the timing rule (``idelay >= m*W - 1`` across the boundary, what
    the coordinator's window and lag already guarantee) every term is known when window k starts.

    Initial history: windows 0 .. m-1 bring the last ``m*W`` steps of TVB's initial history;
    steps older than that were never sent and are taken equal to the first row received (exact
    for a constant initial history, e.g. the zero history of ``tvb.conventions: tvb-multiscale``).
    In a mixed run the other services send no initial outputs, so the coordinator leaves
    ``state/R_e`` out of windows 0 .. m-1 altogether: the history is then held from window m's
    first row (step 1) backwards.
    """

    def __init__(self, ctx: RunContext, regions: list[int]):
        self.regions = [int(r) for r in regions]
        self.W = 0
        self.m = 1

    def requires(self) -> list[SignalSpec]:
        return [SignalSpec("sources/R_e", tuple(self.regions))]

    def configure(self, ctx: RunContext, initial_rate_hz: float = 0.0) -> None:
        self.W = W = int(ctx.steps_per_window)
        self.m = m = lag_of(ctx)
        if ctx.connectome is None:
            raise ValueError("input.mode per_source needs the connectome (sent with PREPARE)")
        w = np.asarray(ctx.connectome["weights"], dtype=np.float64)
        idel = np.asarray(ctx.connectome["idelays"], dtype=np.int64)
        n = w.shape[0]
        bad = [r for r in self.regions if not 0 <= r < n]
        if bad:
            raise ValueError(f"region(s) {bad} do not exist (the connectivity has {n} regions)")
        spec = next((s for s in ctx.inputs if s.name == "state/R_e"), None)
        self.sources = [int(j) for j in spec.regions] if spec is not None else []
        col = {j: i for i, j in enumerate(self.sources)}
        own = set(self.regions)
        links = [(t, p, j, w[p, j], int(idel[p, j])) for t, p in enumerate(self.regions)
                 for j in range(n) if w[p, j] != 0 and j not in own]
        missing = sorted({j for *_, j, _, _ in links if j not in col})
        if missing:
            raise ValueError(f"state/R_e of source region(s) {missing} is not among this node's inputs")
        short = [(p, j, d) for _, p, j, _, d in links if d < m * W - 1]
        if short:
            p, j, d = short[0]
            lagged = "" if m == 1 else f" and a lag of {m} windows"
            raise ValueError(f"connection {j} -> {p} has delay {d} steps, too short for windows of {W} steps{lagged}")
        self.t_idx = np.array([l[0] for l in links], dtype=np.int64)
        self.target = np.array([l[1] for l in links], dtype=np.int64)
        self.source = np.array([l[2] for l in links], dtype=np.int64)
        self.weight = np.array([l[3] for l in links], dtype=np.float64)
        self.dly = np.array([l[4] for l in links], dtype=np.int64)
        self.s_idx = np.array([col[l[2]] for l in links], dtype=np.int64)
        self.row_weight = np.array([w[p, [j for j in range(n) if j not in own]].sum() for p in self.regions])
        self.depth = int(self.dly.max()) + (m + 1) * W + 1 if links else 1
        self.hist = np.full((self.depth, max(len(self.sources), 1)), float(initial_rate_hz))
        self._filled = False

    @property
    def n_links(self) -> int:
        return int(self.t_idx.size)

    def scale(self, scale: float | str) -> np.ndarray:
        """Per target region, as :meth:`CouplingInput.scale` ("row_mean": 1 / incoming weight)."""
        return transformer_scale(scale, self.row_weight)

    def rates(self, k: int, inputs: dict[str, np.ndarray] | None, input_specs: list[SignalSpec]) -> np.ndarray:
        """``R_e,j(n - 1 - idelay[p, j])`` (W, n_links) for the steps n of window ``k``; ``inputs`` are
        window k-m's outputs."""
        W, m = self.W, self.m
        got = (inputs or {}).get("state/R_e")
        if got is not None and self.sources:
            got = np.asarray(got, dtype=np.float64)
            spec = next((s for s in input_specs if s.name == "state/R_e"), None)
            order = [int(r) for r in spec.regions] if spec is not None else self.sources
            if got.shape != (W, len(order)):
                raise ValueError(f"state/R_e has shape {got.shape}, expected {(W, len(order))}")
            if order != self.sources:
                got = got[:, [order.index(j) for j in self.sources]]
            if not self._filled:                   # older steps were never sent: hold the first row
                self.hist[:] = got[0]
                self._filled = True
            steps = (k - m) * W + 1 + np.arange(W)
            self.hist[steps % self.depth] = got
        if not self.n_links:
            return np.zeros((W, 0))
        n = k * W + 1 + np.arange(W)
        src = (n[:, None] - 1 - self.dly[None, :]) % self.depth
        return self.hist[src, self.s_idx[None, :]]

    def coupling(self, rates: np.ndarray) -> np.ndarray:
        """The summed equivalent ``sum_j w[p, j] * rate[p, j]`` (W, n_regions), for records and plots."""
        c = np.zeros((rates.shape[0], len(self.regions)))
        np.add.at(c, (slice(None), self.t_idx), rates * self.weight[None, :])  # type: ignore[arg-type]
        return c
