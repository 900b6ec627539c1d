"""Incremental HDF5 results of a spiking node (any backend): ``<results_dir>/<node_name>.h5``.

Layout (all appended window by window; time in ms, rates in Hz)::

    attrs: node, backend, regions, tvb_dt_ms, sim_dt_ms (the simulator's dt; NetPyNE: also neuron_dt_ms), steps_per_window, seed, status
           status = "running" | "completed" | "stopped: <reason>"
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
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np

log = logging.getLogger(__name__)


class ResultsWriter:
    def __init__(self, path: str | Path, attrs: dict, pops: list[tuple[str, int, str, int]],
                 n_regions: int, flush_every: int = 20, flush_s: float = 1.0, resume_windows: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # resume_windows: continue a file cut back to that many windows (cosim.runtime.checkpoint)
        resume = resume_windows is not None and self.path.exists()
        self.f = h5py.File(self.path, "a" if resume else "w")
        for k, v in attrs.items():
            self.f.attrs[k] = v
        self.f.attrs["status"] = "running"
        self._windows = resume_windows if resume else 0
        if resume:
            self.n_regions, self.flush_every, self.flush_s = n_regions, flush_every, flush_s
            self._last_flush = time.monotonic()
            self._buf: dict[str, list[np.ndarray]] = {}
            return
        g = self.f.create_group("pops")
        g["label"] = np.array([p[0] for p in pops], dtype=h5py.string_dtype())
        g["region"] = np.array([p[1] for p in pops], dtype=np.int64)
        g["role"] = np.array([p[2] for p in pops], dtype=h5py.string_dtype())
        g["n_cells"] = np.array([p[3] for p in pops], dtype=np.int64)
        self.n_regions = n_regions
        self.flush_every = flush_every
        self.flush_s = flush_s        # and at least this often: a kill loses at most ~flush_s of windows
        self._last_flush = time.monotonic()
        self._buf = {}
        self.f.flush()      # a file killed before its first data flush must still open

    def _append(self, name: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        if name not in self.f:
            self.f.create_dataset(name, shape=(0,) + arr.shape[1:], maxshape=(None,) + arr.shape[1:],
                                  dtype=arr.dtype, chunks=(max(1, 4096 // max(1, int(np.prod(arr.shape[1:])))),)
                                  + arr.shape[1:])
        if arr.shape[0] == 0:
            return
        d = self.f[name]
        n = d.shape[0]
        d.resize(n + arr.shape[0], axis=0)
        d[n:] = arr

    def window(self, steps: np.ndarray, blocks: dict[str, np.ndarray], spikes: dict[str, np.ndarray] | None = None,
               input_spikes: dict[str, np.ndarray] | None = None, columns: dict[str, np.ndarray] | None = None) -> None:
        """Append one window: ``blocks`` name -> (W, n_regions); spikes columns -> 1-D arrays; ``columns``
        dataset path -> 1-D array of any length (e.g. ``stimulus/pulse_t_ms``).
        Buffered in memory and written every ``flush_every`` windows or ``flush_s`` seconds (and at close)."""
        buf = self._buf
        buf.setdefault("steps", []).append(np.asarray(steps, dtype=np.int64))
        for name, arr in blocks.items():
            buf.setdefault(name, []).append(np.array(arr, dtype=np.float64))
        for group, cols in (("spikes", spikes), ("input_spikes", input_spikes)):
            if cols is not None:
                for col, arr in cols.items():
                    buf.setdefault(f"{group}/{col}", []).append(np.asarray(arr))
        for name, arr in (columns or {}).items():
            buf.setdefault(name, []).append(np.asarray(arr))
        self._windows += 1
        if self._windows % self.flush_every == 0 or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        for name, parts in self._buf.items():
            if parts:
                self._append(name, np.concatenate(parts))
        self._buf = {}
        self.f.flush()
        self._last_flush = time.monotonic()

    def rows(self) -> dict[str, int]:
        """Rows per dataset once everything buffered is written (a checkpoint's `rows`)."""
        from cosim.runtime.checkpoint import h5_rows
        self.flush()
        return h5_rows(self.f)

    def traces(self, traces: dict[str, dict[int, np.ndarray]], step_ms: float) -> None:
        g = self.f.require_group("traces")
        g.attrs["step_ms"] = step_ms
        for var, per_gid in traces.items():
            gv = g.require_group(var)
            for gid, arr in per_gid.items():
                gv[str(gid)] = np.asarray(arr, dtype=np.float64)

    def close(self, aborted: str | None) -> None:
        if not self.f.id.valid:
            return
        self.flush()
        self.f.attrs["status"] = "completed" if aborted is None else f"stopped: {aborted}"
        self.f.attrs["windows_written"] = self._windows
        self.f.close()
        log.info("results written to %s (%s)", self.path, "completed" if aborted is None else "stopped")
