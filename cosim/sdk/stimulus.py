"""Current stimulation of spiking populations (``params.stimulus`` of a spiking node, any backend).

A device injects the same current into every cell of a population: a pulse train (monophasic, or
biphasic with a second phase of its own amplitude and width, as clinical deep brain stimulation
uses: +A for 0.3 ms, then -A/10 for 3 ms) or a constant current, on from ``onset_ms`` until
``offset_ms``. Positive current depolarises. The amplitude's unit is in its key: ``amplitude_nA``
for NEURON's point processes (:class:`CurrentNA`), ``amplitude_pA`` for NEST and Brian2
(:class:`CurrentPA`); on the default networks (the same soma, 1110 µm², in every backend) 1 nA in
NetPyNE is 1000 pA in NEST or Brian2 (docs/backends.md, "Stimulation").

On a simulator whose step is ``dt`` (:func:`on_grid`), step n covers ``[n*dt, (n+1)*dt)`` and a
device's current during step n is :meth:`GridStimulus.samples`. The device starts at the first step
at or after ``onset_ms`` (``n_on = ceil(onset/dt - 1e-6)``); pulse k starts at step
``n_on + ceil(k*P - 1e-6)`` with ``P = 1000/(frequency*dt)`` steps (a period need not be whole
steps: each pulse starts within one step after its nominal time, counted from ``n_on``), lasts
``w1`` steps at ``a1`` and then ``w2`` steps at ``a2``; widths must be whole steps. Steps from
``n_off`` (``offset_ms`` likewise) on are silent: a pulse under way at the offset is cut. Every backend delivers
exactly these samples; what was delivered is written to the node's results (:func:`describe`,
``stimulus/pulse_t_ms``, ``stimulus/pulse_device``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: grid tolerance, in steps: an edge within this of a grid time is on it
EPS = 1e-6
NEVER = 2**62          # n_off of a device that stays on


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    UNIT: ClassVar[str] = ""

    population: str = Field(min_length=1, description="the default network's 'E' or 'I', or a population of "
                                                      "your model (its name in model_file.populations)")
    regions: list[int] | None = Field(None, description="default network: regions whose population is "
                                                        "stimulated; None: every region of the node")
    kind: Literal["pulse_train", "constant"] = "pulse_train"
    frequency_hz: float | None = Field(None, gt=0, le=10_000)
    width_ms: float | None = Field(None, gt=0, le=1000, description="first (or only) phase")
    phase2_width_ms: float | None = Field(None, gt=0, le=1000, description="biphasic: second phase, right after the first")
    onset_ms: float = Field(0.0, ge=0)
    offset_ms: float | None = Field(None, gt=0, description="None: until the end of the run")
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="name in the results; "
                                                                                 "default stim<index>")

    def amplitude(self) -> float:
        return float(getattr(self, f"amplitude_{self.UNIT}"))

    def amplitude2(self) -> float | None:
        v = getattr(self, f"phase2_amplitude_{self.UNIT}")
        return None if v is None else float(v)

    @model_validator(mode="after")
    def _shape(self) -> _Device:
        a2 = f"phase2_amplitude_{self.UNIT}"
        if self.kind == "constant":
            given = [k for k in ("frequency_hz", "width_ms", "phase2_width_ms", a2) if getattr(self, k) is not None]
            if given:
                raise ValueError(f"a constant current takes no {', '.join(given)} (kind: pulse_train for pulses)")
        else:
            if self.frequency_hz is None or self.width_ms is None:
                raise ValueError("a pulse_train needs frequency_hz and width_ms")
            if (self.phase2_width_ms is None) != (getattr(self, a2) is None):
                raise ValueError(f"a biphasic pulse needs both phase2_width_ms and {a2} (neither: monophasic)")
            period = 1000.0 / self.frequency_hz
            width = self.width_ms + (self.phase2_width_ms or 0.0)
            if width > period + 1e-9:
                raise ValueError(f"pulse width {width:g} ms (both phases) is longer than the period {period:g} ms "
                                 f"of {self.frequency_hz:g} Hz")
        if self.offset_ms is not None and self.offset_ms <= self.onset_ms:
            raise ValueError(f"offset_ms ({self.offset_ms:g}) must be after onset_ms ({self.onset_ms:g})")
        return self


class CurrentNA(_Device):
    """A current device in nA (NEURON point processes)."""
    UNIT: ClassVar[str] = "nA"
    amplitude_nA: float = Field(ge=-1000, le=1000, description="current of the pulse's first phase (or the constant)")
    phase2_amplitude_nA: float | None = Field(None, ge=-1000, le=1000, description="biphasic: second phase")


class CurrentPA(_Device):
    """A current device in pA (NEST, Brian2)."""
    UNIT: ClassVar[str] = "pA"
    amplitude_pA: float = Field(ge=-1e6, le=1e6, description="current of the pulse's first phase (or the constant)")
    phase2_amplitude_pA: float | None = Field(None, ge=-1e6, le=1e6, description="biphasic: second phase")


def _ceil_steps(t_ms: float, dt_ms: float) -> int:
    return int(math.ceil(t_ms / dt_ms - EPS))


def _whole_steps(ms: float, dt_ms: float, what: str) -> int:
    n = round(ms / dt_ms)
    if n < 1 or abs(n - ms / dt_ms) > EPS * max(1, n):
        raise ValueError(f"{what} = {ms:g} ms is not a whole number (>= 1) of steps of {dt_ms:g} ms")
    return int(n)


@dataclass(frozen=True)
class GridStimulus:
    """One device on a simulator's grid (all times in steps of ``dt_ms``; amplitudes in ``unit``)."""
    dt_ms: float
    unit: str
    n_on: int
    n_off: int
    period_steps: float          # 0: constant
    w1: int
    w2: int
    a1: float
    a2: float

    def _c(self, k: np.ndarray) -> np.ndarray:
        """Start of pulse k, in steps after n_on (the mechanism of services/netpyne_node computes the same)."""
        return np.ceil(k * self.period_steps - EPS)

    def pulse_starts(self, n0: int, n1: int) -> np.ndarray:
        """Steps in ``[n0, n1)`` at which a pulse starts (int64)."""
        lo, hi = max(n0, self.n_on), min(n1, self.n_off)
        if hi <= lo:
            return np.empty(0, np.int64)
        if self.period_steps <= 0:
            return np.array([self.n_on], np.int64) if lo == self.n_on else np.empty(0, np.int64)
        k0 = max(0, math.floor((lo - self.n_on) / self.period_steps) - 1)
        k1 = math.ceil((hi - self.n_on) / self.period_steps) + 1
        s = self.n_on + self._c(np.arange(k0, k1 + 1, dtype=np.float64)).astype(np.int64)
        return s[(s >= lo) & (s < hi)]

    def samples(self, n0: int, n1: int) -> np.ndarray:
        """The current during each step of ``[n0, n1)``."""
        n = np.arange(n0, n1, dtype=np.int64)
        out = np.zeros(n.size)
        on = (n >= self.n_on) & (n < self.n_off)
        if self.period_steps <= 0:
            out[on] = self.a1
            return out
        m = (n[on] - self.n_on).astype(np.float64)
        k = np.floor((m + EPS) / self.period_steps)
        k = np.where(self._c(k + 1) <= m, k + 1, k)
        k = np.where((k > 0) & (self._c(k) > m), k - 1, k)
        c = m - self._c(k)
        out[on] = np.where(c < self.w1, self.a1, np.where(c < self.w1 + self.w2, self.a2, 0.0))
        return out

    def edges(self, n_end: int) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) over ``[0, n_end)``: the current becomes ``values[i]`` at step ``steps[i]``
        and holds until the next change (0 before the first): a step current generator's schedule."""
        if self.period_steps <= 0:
            st, val, prio = np.array([self.n_on]), np.array([self.a1]), np.array([0])
        else:
            s = self.pulse_starts(0, n_end)
            parts = [(s, self.a1, 2)] + ([(s + self.w1, self.a2, 1)] if self.w2 else []) + [(s + self.w1 + self.w2, 0.0, 0)]
            st = np.concatenate([p[0] for p in parts])
            val = np.concatenate([np.full(p[0].size, p[1]) for p in parts])
            prio = np.concatenate([np.full(p[0].size, p[2]) for p in parts])
        order = np.lexsort((prio, st))                   # at one step the later kind wins: a start over an end
        st, val = st[order], val[order]
        last = np.append(st[1:] != st[:-1], True) if st.size else np.empty(0, bool)
        st, val = st[last], val[last]
        keep = st < min(self.n_off, n_end)
        st, val = st[keep], val[keep]
        if self.n_off < n_end:
            st, val = np.append(st, self.n_off), np.append(val, 0.0)
        change = np.diff(np.concatenate([[0.0], val])) != 0
        return st[change].astype(np.int64), val[change]


def on_grid(dev: _Device, dt_ms: float, where: str = "stimulus") -> GridStimulus:
    """The device on a grid of ``dt_ms``; ValueError (one line naming ``where``) if a width is not
    whole steps or the pulses overlap there."""
    n_on = _ceil_steps(dev.onset_ms, dt_ms)
    n_off = NEVER if dev.offset_ms is None else _ceil_steps(dev.offset_ms, dt_ms)
    if dev.kind == "constant":
        return GridStimulus(dt_ms, dev.UNIT, n_on, n_off, 0.0, 0, 0, dev.amplitude(), 0.0)
    assert dev.width_ms is not None and dev.frequency_hz is not None    # the model's validator saw to it
    w1 = _whole_steps(dev.width_ms, dt_ms, f"{where}.width_ms")
    w2 = 0 if dev.phase2_width_ms is None else _whole_steps(dev.phase2_width_ms, dt_ms, f"{where}.phase2_width_ms")
    ps = 1000.0 / (dev.frequency_hz * dt_ms)
    if w1 + w2 > math.floor(ps + EPS):
        raise ValueError(f"{where}: the pulse ({w1 + w2} steps of {dt_ms:g} ms) does not fit between pulses "
                         f"{math.floor(ps + EPS)} steps apart at {dev.frequency_hz:g} Hz")
    return GridStimulus(dt_ms, dev.UNIT, n_on, n_off, ps, w1, w2, dev.amplitude(), dev.amplitude2() or 0.0)


def targets(dev: _Device, pops: Mapping[str, tuple[int, str]], regions: list[int], where: str) -> list[str]:
    """The backend's labels of the populations a device reaches. ``pops``: label -> (region, role) of
    every population of the node. ``dev.population`` is a label itself (a model file's population;
    ``regions`` then left out or its own region) or a default-network name, whose label in region r
    is ``<population>_<r>``, for each of ``dev.regions`` (None: every region). ValueError naming ``where``."""
    if dev.population in pops:
        r = pops[dev.population][0]
        if dev.regions is not None and dev.regions != [r]:
            raise ValueError(f"{where}: population {dev.population!r} sits in region {r}, not in {dev.regions}")
        return [dev.population]
    chosen = list(regions) if dev.regions is None else list(dev.regions)
    bad = [r for r in chosen if r not in regions]
    if bad:
        raise ValueError(f"{where}.regions {bad} are not regions of this node {list(regions)}")
    found = [f"{dev.population}_{r}" for r in chosen if f"{dev.population}_{r}" in pops]
    if len(found) != len(chosen):
        names = sorted({lab[:-len(f"_{r}")] if lab.endswith(f"_{r}") else lab
                        for lab, (r, role) in pops.items() if role != "input"})
        raise ValueError(f"{where}.population {dev.population!r} is not a population of this node "
                         f"(populations: {', '.join(names)})")
    return found


def check_devices(devices: Sequence[_Device], pops: Mapping[str, tuple[int, str]], regions: list[int], dt_ms: float,
                  where: str = "params.stimulus") -> None:
    """What a node's configure would refuse, checked before any service starts (``cosim validate``):
    every device on the grid and its populations among ``pops`` (label -> (region, role)). ValueError."""
    labels(devices)
    for i, dev in enumerate(devices):
        on_grid(dev, dt_ms, f"{where}[{i}]")
        targets(dev, pops, regions, f"{where}[{i}]")


def default_pops(regions: list[int]) -> dict[str, tuple[int, str]]:
    """The default region network's populations (E and I per region), as :func:`targets` takes them."""
    return {f"{name}_{r}": (int(r), role) for r in regions for name, role in (("E", "exc"), ("I", "inh"))}


def labels(devices: Sequence[_Device]) -> list[str]:
    """Each device's name in the results: its label, or stim<index>; ValueError on a repeated name."""
    names = [d.label or f"stim{i}" for i, d in enumerate(devices)]
    if len(set(names)) != len(names):
        raise ValueError(f"stimulus labels must be unique: {names}")
    return names


def describe(name: str, dev: _Device, grid: GridStimulus, targets: list[tuple[str, int, int]]) -> dict:
    """What a device delivers, for the results file (``stimulus_json``): the declaration, its grid
    form, and the populations it reaches as (label, region, cells)."""
    return {"label": name, "declared": dev.model_dump(mode="json"), "unit": grid.unit,
            "grid": {k: (None if k == "n_off" and v == NEVER else v) for k, v in asdict(grid).items()},
            "targets": [{"population": p, "region": int(r), "n_cells": int(n)} for p, r, n in targets]}


def grid_of(desc: dict) -> GridStimulus:
    """:class:`GridStimulus` back from a :func:`describe` record (figures, tests)."""
    g = dict(desc["grid"])
    if g["n_off"] is None:
        g["n_off"] = NEVER
    return GridStimulus(**g)


def window_pulses(grids: list[GridStimulus], n0: int, n1: int) -> dict[str, np.ndarray]:
    """The pulses that start in steps ``[n0, n1)`` of every device, as results columns: ``pulse_t_ms``
    (start time on the grid) and ``pulse_device`` (index into the devices), sorted by time."""
    t, d = [], []
    for i, g in enumerate(grids):
        s = g.pulse_starts(n0, n1)
        t.append(s * g.dt_ms)
        d.append(np.full(s.size, i, np.int32))
    t_all = np.concatenate(t) if t else np.empty(0)
    d_all = np.concatenate(d) if d else np.empty(0, np.int32)
    order = np.argsort(t_all, kind="stable")
    return {"pulse_t_ms": t_all[order], "pulse_device": d_all[order]}
