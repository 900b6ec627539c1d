"""Window-by-window result files that survive a kill (HDF5 in SWMR mode + a status marker).

Layout is declared up front (datasets, column counts, attributes); then each completed window
appends rows. The file is flushed at least every `flush_s` seconds (while windows arrive, and from
`tick()` while they do not) and at close, so after any kill it opens with h5py (`open_h5`: an
SWMR reader, since a killed writer leaves the 'open for write' flag set) and holds every window
up to the last flush, never a partial window. `status_<who>.json` (written atomically, by the
owner's `on_flush` callback after each flush and at close) says how many windows the file holds,
whether the run completed, or where it stopped and why.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np


@dataclass
class Column:
    """A dataset of shape (rows, cols) growing by `rows_per_window` each window."""
    cols: int
    rows_per_window: int
    dtype: str = "f8"
    attrs: dict[str, Any] = field(default_factory=dict)


class WindowRecorder:
    def __init__(self, path: str | Path, layout: dict[str, Column], file_attrs: dict[str, Any] | None = None,
                 flush_s: float = 1.0, on_flush: Callable[[int], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = h5py.File(self.path, "w", libver="latest")
        for k, v in (file_attrs or {}).items():
            self.f.attrs[k] = _attr(v)
        self.layout = layout
        self.ds: dict[str, h5py.Dataset] = {}
        for name, c in layout.items():
            d = self.f.create_dataset(name, shape=(0, c.cols), maxshape=(None, c.cols), dtype=c.dtype,
                                      chunks=(max(1, min(4096, c.rows_per_window * 64)), max(1, c.cols)))
            for k, v in c.attrs.items():
                d.attrs[k] = _attr(v)
            self.ds[name] = d
        self.f.swmr_mode = True        # from here on readers always see a consistent file
        self.windows = 0               # windows appended
        self.flushed = 0               # windows durable in the file (a kill keeps exactly these)
        self.on_flush = on_flush       # called with `flushed` after every flush (status markers)
        self._pending: dict[str, list[np.ndarray]] = {}
        self.flush_s = flush_s
        self._last_flush = time.monotonic()

    def append(self, rows: dict[str, np.ndarray]) -> None:
        """One completed window: rows for every dataset named in `rows`.

        Rows are buffered in memory (HDF5 calls cost ~50 µs each: too much for every window)
        and written at the next flush point, at most `flush_s` later.
        """
        for name, arr in rows.items():
            self._pending.setdefault(name, []).append(np.array(arr, copy=True))
        self.windows += 1
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered windows and make them durable."""
        for name, blocks in self._pending.items():
            d = self.ds[name]
            n = d.shape[0]
            arr = np.concatenate(blocks, axis=0)
            d.resize(n + arr.shape[0], axis=0)
            d[n:] = arr
        self._pending = {}
        self.f.flush()
        self._last_flush = time.monotonic()
        self.flushed = self.windows
        if self.on_flush is not None:
            self.on_flush(self.flushed)

    def tick(self) -> None:
        """Flush if windows have waited `flush_s` (call it from an idle loop: slow windows stay durable)."""
        if self.windows > self.flushed and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def close(self) -> None:
        if self.f:
            self.flush()
            self.f.close()
            self.f = None


def open_h5(path: str | Path) -> h5py.File:
    """Open a results file for reading, also one whose writer was killed: an SWMR file not closed
    by its writer keeps a 'file is open for write' flag that only an SWMR reader may ignore."""
    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)


def _attr(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], str):
        return np.array(v, dtype=h5py.string_dtype())
    if isinstance(v, dict):
        return json.dumps(v)
    return v


def write_status(results_dir: str | Path, who: str, **status: Any) -> Path:
    """Atomically write `<results_dir>/status_<who>.json`."""
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"status_{who}.json"
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"who": who, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **status},
                              indent=2, default=str))
    os.replace(tmp, p)
    return p
