"""Current devices (``params.stimulus``, cosim/sdk/stimulus.py) in a NetPyNE network.

Each device is one ``CosimPulse`` point process (``stimulus_mod/cosim_pulse.mod``) in every cell of
its target populations, declared through NetPyNE's own ``stimSourceParams``/``stimTargetParams``,
so ``sim.net.addStims()`` creates them on whichever rank owns the cell. The mechanism computes the
device's :class:`~cosim.sdk.stimulus.GridStimulus` from NEURON's step number: nothing is queued or
played per window, memory does not grow with the run, and SaveState/restore continue it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosim.errors import ModelError
from cosim.sdk.stimulus import GridStimulus, labels, on_grid, targets

from .builder import BuiltNetwork
from .config import NetpyneParams, NetpyneStimulus

STIM_MOD_DIR = Path(__file__).parent / "stimulus_mod"


@dataclass
class Placed:
    name: str
    device: NetpyneStimulus
    grid: GridStimulus
    pops: list[str]                     # NetPyNE population labels it reaches


def add_stimuli(built: BuiltNetwork, p: NetpyneParams, regions: list[int]) -> list[Placed]:
    """Declare every device of ``p.stimulus`` in ``built`` (and its mechanism among the ones to load)."""
    if not p.stimulus:
        return []
    placed = []
    for i, (name, dev) in enumerate(zip(labels(p.stimulus), p.stimulus)):
        where = f"params.stimulus[{i}]"
        try:
            grid = on_grid(dev, p.dt_ms, where)
            pops = targets(dev, built.popmap, list(regions), where)
        except ValueError as e:
            raise ModelError(str(e)) from None
        src = f"cosim_{name}"
        built.netParams.stimSourceParams[src] = {
            "type": "CosimPulse", "n_on": float(grid.n_on), "n_off": float(grid.n_off), "ps": grid.period_steps,
            "w1": float(grid.w1), "w2": float(grid.w2), "a1": grid.a1, "a2": grid.a2}
        for lab in pops:
            built.netParams.stimTargetParams[f"{src}->{lab}"] = {
                "source": src, "conds": {"pop": lab}, "loc": dev.loc, **({"sec": dev.sec} if dev.sec else {})}
        placed.append(Placed(name, dev, grid, pops))
    if STIM_MOD_DIR not in built.mod_dirs:
        built.mod_dirs.append(STIM_MOD_DIR)
    return placed
