"""Incremental HDF5 results of a spiking node (any backend): ``<results_dir>/<node_name>.h5``.

Layout (all appended window by window; time in ms, rates in Hz)::

    attrs: node, backend, regions, tvb_dt_ms, sim_dt_ms (the simulator's dt; NetPyNE: also neuron_dt_ms), steps_per_window, seed,
           status ("running" | "completed" | "stopped: <reason>" | "write failed: <reason>"), windows (durable)
    pops/label, pops/region, pops/role, pops/n_cells      one row per population (any spiking backend)
    spikes/t_ms, spikes/gid, spikes/pop, spikes/region    pop = row index into pops/
    input_spikes/t_ms, input_spikes/region, input_spikes/index     (record.input_spikes)
    stimulus/pulse_t_ms, stimulus/pulse_device     each delivered pulse's start (params.stimulus; device = index
                                                   into attrs stimulus_json, cosim.sdk.stimulus.describe)
    steps                                                  TVB step numbers n (rows below)
    rates/exc, rates/inh                  (n_steps, n_regions) measured rates per TVB step
    input/coupling, input/rate_hz         (n_steps, n_regions) signal received, Poisson rate used
    output/R_e, output/S_e, output/R_i, output/S_i         (n_steps, n_regions) proxy state sent
    traces/<var>/<gid>                    written at finish (NetPyNE recordTraces, rxd [Ca]i, ...)

The file is a :class:`cosim.runtime.store.Appender`: the same durability, disk-space rule and
completion marks as every results file of a run.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cosim.runtime.store import Appender


def population_spikes(path: str | Path, prefixes: tuple[str, ...] = ("E", "I")) -> dict[str, list[tuple[float, int]]]:
    """The spikes of a results file's populations whose label starts with one of ``prefixes``
    (``E_71``, ``I_38``; not a node's relays or stand-ins): label -> sorted (t_ms, cell), with cell
    the index within its population. Gids are taken as numbered from 0 in population order, as
    NetPyNE numbers them (a NEST file's gids are NEST's node ids: use ``spikes/gid`` there)."""
    out: dict[str, list[tuple[float, int]]] = {}
    with h5py.File(path, "r") as f:
        labels = [x.decode() if isinstance(x, bytes) else str(x) for x in f["pops/label"][:]]
        first = np.concatenate([[0], np.cumsum(f["pops/n_cells"][:])[:-1]])
        t, gid, pop = f["spikes/t_ms"][:], f["spikes/gid"][:], f["spikes/pop"][:]
    for i, lab in enumerate(labels):
        if lab.split("_")[0] in prefixes:
            sel = pop == i
            out[lab] = sorted(zip(t[sel].tolist(), (gid[sel] - first[i]).tolist()))
    return out


class ResultsWriter:
    def __init__(self, path: str | Path, attrs: dict, pops: list[tuple[str, int, str, int]],
                 n_regions: int, flush_every: int = 20, flush_s: float = 1.0, resume_windows: int | None = None):
        # resume_windows: continue a file cut back to that many windows (cosim.runtime.checkpoint)
        resume = resume_windows if resume_windows is not None and Path(path).exists() else None
        self.store = Appender(path, attrs, flush_s=flush_s, flush_every=flush_every, resume_windows=resume)
        self.path, self.n_regions = self.store.path, n_regions
        if resume is None:
            self.store.write_whole("pops/label", np.array([p[0] for p in pops], dtype=h5py.string_dtype()))
            self.store.write_whole("pops/region", np.array([p[1] for p in pops], dtype=np.int64))
            self.store.write_whole("pops/role", np.array([p[2] for p in pops], dtype=h5py.string_dtype()))
            self.store.write_whole("pops/n_cells", np.array([p[3] for p in pops], dtype=np.int64))
            self.store.f.flush()     # a file killed before its first data flush must still open

    @property
    def f(self) -> h5py.File:
        return self.store.f

    def window(self, steps: np.ndarray, blocks: dict[str, np.ndarray], spikes: dict[str, np.ndarray] | None = None,
               input_spikes: dict[str, np.ndarray] | None = None, columns: dict[str, np.ndarray] | None = None) -> None:
        """Append one window: ``blocks`` name -> (W, n_regions); spikes columns -> 1-D arrays; ``columns``
        dataset path -> 1-D array of any length (e.g. ``stimulus/pulse_t_ms``).
        Written every ``flush_every`` windows or ``flush_s`` seconds (and at close)."""
        rows = {"steps": np.asarray(steps, dtype=np.int64)}
        rows.update({name: np.asarray(arr, dtype=np.float64) for name, arr in blocks.items()})
        for group, cols in (("spikes", spikes), ("input_spikes", input_spikes)):
            if cols is not None:
                rows.update({f"{group}/{col}": np.asarray(arr) for col, arr in cols.items()})
        rows.update({name: np.asarray(arr) for name, arr in (columns or {}).items()})
        self.store.append(rows)
        self.store.end_window()

    def flush(self) -> None:
        self.store.flush()

    def rows(self) -> dict[str, int]:
        """Rows per dataset once everything buffered is written (a checkpoint's `rows`)."""
        return self.store.rows()

    def traces(self, traces: dict[str, dict[int, np.ndarray]], step_ms: float) -> None:
        """Recorded traces, written once at the end: traces/<var>/<gid>."""
        self.store.group("traces").attrs["step_ms"] = step_ms
        for var, per_gid in traces.items():
            for gid, arr in per_gid.items():
                self.store.write_whole(f"traces/{var}/{gid}", np.asarray(arr, dtype=np.float64))

    def close(self, aborted: str | None) -> None:
        if self.store.f is None:
            return
        self.store.set_attrs("", {"windows_written": self.store.windows})
        self.store.close(aborted is None, aborted)
