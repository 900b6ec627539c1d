"""The one node interface every simulator backend implements (no sockets here).

A *signal* is a block of values for one window: a float64 array of shape
``(steps_per_window, len(regions))``, one row per TVB step, one column per region.
Signals are named ``"<kind>/<variable>"``:

- ``state/S_e``, ``state/S_i``, ``state/R_e``, ``state/R_i``: the node's own regions'
  values at the *end* of each TVB step of the window it just simulated
  (window k covers TVB steps ``k*W+1 .. k*W+W``; step 0 is the initial state).
- ``coupling/S_e``, ``coupling/R_e``: for each target region p and each step n of
  window k + m (``m = ctx.lag_windows``), ``sum_j w[p, j] * X_j(n - 1 - idelay[p, j])`` over
  the regions j the producing node owns (self-connections and other spiking regions
  excluded), without the coupling's ``a`` factor. Produced with window k (the producer has
  simulated up to step ``(k+1)*W``), so known m windows ahead because ``m*W <= D + 1``.

**Lag of m windows** (``ctx.lag_windows``, PREPARE's ``lag``; 1 unless set). Inputs of window k
are the other nodes' outputs of window ``k - m``: ``state/*`` rows of steps
``(k-m)*W+1 .. (k-m+1)*W`` and ``coupling/*`` rows for window k itself. This is causal when
``m*W <= D + 1`` (D: smallest crossing delay in TVB steps): a consumer computing step
``n <= (k+1)*W`` reads a producer's step ``n - 1 - idelay <= (k+1)*W - 1 - D``, which must be
``<= (k-m+1)*W``, the last step of window ``k - m``; the coordinator keeps ``m*W <= max(D, 1)``.
So a node may run up to m windows ahead of its peers while data is in flight. m = 1 is the
one-window lag (inputs of window k are outputs of window k-1).

``initial_outputs()`` stands in for windows ``-m .. -1``: each signal is one block of ``m*W``
rows, oldest window first (``state/*``: steps ``-m*W+1 .. 0``; ``coupling/*``: windows
``0 .. m-1``). The runtime splits it: window ``k < m`` receives rows ``k*W .. (k+1)*W`` of the
block as its input. A signal missing from the initial outputs means "keep your own initial
history" for windows ``0 .. m-1`` (both sides build identical initial history from the shared
config), e.g. the TVB node sends no state when ``m*W`` exceeds its history length. Every
input and every ``step`` output is still W rows.

The lockstep runtime (``cosim.runtime.node``) calls, in order (see proto/PROTOCOL.md §7)::

    requires(ctx) -> [SignalSpec]        on CONFIGURE (ctx.config, ctx.regions, dts known)
    connectome() -> dict                 on CONFIGURE, TVB role only (sent in CONFIGURED)
    configure(ctx) -> None               on PREPARE (W, K, outputs, inputs, connectome known)
    initial_outputs() -> Signals         sent in READY (m*W rows: windows -m .. -1)
    step(k, inputs) -> Signals           k = 0 .. K-1
    finish(aborted_reason | None) -> dict
and, when checkpoints are configured and ``can_checkpoint`` is true (PROTOCOL.md §10.1)::

    checkpoint(dir) -> dict              between windows: state into files under dir
    restore(dir, info) -> None           on a resumed run, after configure (ctx.resume set)
MPI backends: rank 0 runs the above; other ranks call ``follow()`` (which returns at the end).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Signals = dict[str, np.ndarray]


@dataclass(frozen=True)
class SignalSpec:
    """A named signal over an explicit, ordered list of region indices."""
    name: str
    regions: tuple[int, ...]

    def as_wire(self) -> dict:
        return {"name": self.name, "regions": list(self.regions)}

    @classmethod
    def from_wire(cls, d: dict) -> SignalSpec:
        return cls(str(d["name"]), tuple(int(r) for r in d["regions"]))


@dataclass
class RunContext:
    """What every node knows about the run once configured (the CONFIGURE message)."""
    config: dict                      # the validated run config, as plain data
    node_name: str
    regions: tuple[int, ...]          # regions this node simulates (spiking) / proxies it keeps (tvb: the spiking ones)
    tvb_dt_ms: float
    tick_ms: float                    # the run clock's unit; every dt and the window are whole ticks
    steps_per_window: int = 0         # W, in TVB steps (known from PREPARE on)
    n_windows: int = 0                # K (known from PREPARE on)
    lag_windows: int = 1              # m: inputs of window k are the outputs of window k - m (PREPARE.lag)
    outputs: list[SignalSpec] = field(default_factory=list)  # what this node must produce each window
    inputs: list[SignalSpec] = field(default_factory=list)   # what it will receive each window
    results_dir: str | None = None
    # From PREPARE on: {"weights": (N,N) f8, "idelays": (N,N) i8, "tract_lengths": (N,N) f8,
    #  "region_labels": [str], "speed_mm_per_ms": float} as the TVB node built it (TVB's idelays).
    connectome: dict[str, Any] | None = None
    # a resumed run (CONFIGURE.resume): {"window": k, "dir": checkpoint folder relative to the
    # results folder, "info": this node's CHECKPOINTED content}; results files are already cut
    # back to window k and must be continued (opened for appending), not recreated
    resume: dict[str, Any] | None = None

    def node_entry(self) -> dict:
        """This node's ``spiking_nodes[i]`` entry of the run config ({} if it has none)."""
        for n in self.config.get("spiking_nodes", []) or []:
            if n.get("name") == self.node_name:
                return n
        return {}

    def node_params(self, model):
        """This node's ``params`` validated by the backend's pydantic ``model``."""
        return model.model_validate(self.node_entry().get("params") or {})


def lag_of(ctx: RunContext) -> int:
    """``ctx.lag_windows`` checked: an integer >= 1."""
    m = int(ctx.lag_windows)
    if m < 1 or m != ctx.lag_windows:
        raise ValueError(f"lag_windows must be an integer >= 1, got {ctx.lag_windows!r}")
    return m


def split_initial_outputs(initial: Signals, steps_per_window: int, lag_windows: int) -> list[Signals]:
    """A node's ``initial_outputs()`` (blocks of ``m*W`` rows, windows ``-m .. -1``) as the outputs of
    each of those windows, oldest first: element ``k`` is what window ``k`` (``k < m``) receives.
    Raises ValueError if a block does not have ``m*W`` rows."""
    W, m = int(steps_per_window), int(lag_windows)
    out: list[Signals] = [{} for _ in range(m)]
    for name, block in initial.items():
        a = np.asarray(block)
        if a.ndim != 2 or a.shape[0] != m * W:
            raise ValueError(f"initial output {name} has shape {a.shape}, expected {m * W} rows "
                             f"({m} window(s) of {W} steps)")
        for k in range(m):
            out[k][name] = a[k * W:(k + 1) * W]
    return out


class NodeAdapter(abc.ABC):
    """A simulator behind the protocol. Library code: raises, never exits."""

    #: role announced on REGISTER: "tvb" or "spiking"
    role: str = "spiking"
    #: implements ``checkpoint``/``restore`` (a backend's spec says the same: BackendSpec.checkpoint)
    can_checkpoint: bool = False

    @abc.abstractmethod
    def requires(self, ctx: RunContext) -> list[SignalSpec]:
        """Signals this node consumes each window (called before configure, region lists resolved)."""

    @abc.abstractmethod
    def configure(self, ctx: RunContext) -> None:
        """Build the simulator. ``ctx.outputs`` says exactly which signals ``step`` must return."""

    @abc.abstractmethod
    def initial_outputs(self) -> Signals:
        """Outputs standing in for windows ``-m .. -1`` (``m = ctx.lag_windows``): one block of
        ``m*W`` rows per signal, oldest window first; may be a subset of ``ctx.outputs``."""

    @abc.abstractmethod
    def step(self, window: int, inputs: Signals) -> Signals:
        """Advance exactly one window. ``inputs`` (the others' outputs of window ``k - m``) keyed by
        signal name, arrays (W, n_regions); returns arrays (W, n_regions)."""

    def connectome(self) -> dict[str, Any]:
        """TVB role only: the connectome as built (see RunContext.connectome)."""
        raise NotImplementedError

    def finish(self, aborted: str | None = None) -> dict:
        """Flush results; ``aborted`` is the reason when the run did not complete. Returns a summary."""
        return {}

    def checkpoint(self, directory) -> dict[str, Any]:
        """Between windows (after the last ``step``): write everything the next ``step`` depends on
        into files under ``directory`` (atomically: ``cosim.runtime.checkpoint.atomic_write``/``save_arrays``)
        and make the results file durable. Returns ``{"files": [names under directory], "rows":
        {results file relative to the results folder: {dataset: rows}}, ...}``; the whole map comes
        back as ``info`` to ``restore``."""
        raise NotImplementedError(f"{type(self).__name__} cannot checkpoint")

    def restore(self, directory, info: dict[str, Any]) -> None:
        """A resumed run, after ``configure``: load what ``checkpoint`` wrote; the next ``step`` is
        window ``ctx.resume["window"] + 1``."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore a checkpoint")

    def after_window(self) -> None:  # noqa: B027 (an optional hook)
        """Optional: called after each window's outputs have left (DATA to the consumers, the copy
        to the coordinator), while the other nodes compute: the place for work nobody waits for,
        e.g. writing results. Must not change what the next ``step`` computes."""

    def warm_up(self) -> None:  # noqa: B027 (an optional hook)
        """Optional: called once right after CONFIGURED is sent, while the coordinator waits for the
        other nodes to configure (e.g. import the simulator, so that ``configure`` on PREPARE is
        shorter). A failure here is logged and ignored; ``configure`` reports real errors."""

    def window_timing(self) -> dict[str, float]:
        """Seconds the last ``step`` spent by part, reported per window in STEP_DONE.timing.

        ``simulate_s`` is the simulator's own integration; the rest of ``step`` counts as
        transformation (inputs, outputs, recording) in the run's timing breakdown. The default
        reads a cumulative ``integrate_s`` counter from ``self.timing`` or ``self._timing`` (as the
        TVB and NetPyNE adapters keep); backends without one report nothing (all ``step`` time
        then counts as simulation). Override to report more parts.
        """
        counters = getattr(self, "timing", None)
        if not isinstance(counters, dict) or "integrate_s" not in counters:
            counters = getattr(self, "_timing", None)
        if not isinstance(counters, dict) or "integrate_s" not in counters:
            return {}
        total = float(counters["integrate_s"])
        last, self._window_timing_total = getattr(self, "_window_timing_total", 0.0), total
        return {"simulate_s": total - last}

    def follow(self) -> None:
        """MPI ranks > 0: serve rank 0's collective calls until the run ends."""
        raise NotImplementedError(f"{type(self).__name__} does not run under MPI")
