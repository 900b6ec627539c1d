"""Incremental HDF5 output for the TVB-based nodes: resizable datasets appended per window.

Layout: groups (``raw``, ``tavg``, ``bold`` ...) holding a ``time_ms`` vector and (T, N)
matrices that grow along the first axis. Appended rows are buffered in memory and written +
flushed every ``flush_every`` appends per group or ``flush_s`` seconds, whichever comes first (each h5py resize/write costs ~0.5 ms per
dataset, as much as integrating a few TVB steps) and on close, so a killed run leaves every
window up to the last flush readable. ``close()`` records ``completed`` (bool) and
``stopped_reason`` as file attributes.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.runtime.store import RESERVE_BYTES, ResultsWriteError, check_space, chunk_bytes_to_append, os_reason

log = logging.getLogger(__name__)


def _attr(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
        return np.array(v, dtype=h5py.string_dtype())
    if v is None:
        return ""
    return v


class H5Appender:
    """Append-only HDF5 file of time series groups."""

    def __init__(self, path: str | Path, attrs: dict[str, Any] | None = None, flush_every: int = 20,
                 flush_s: float = 1.0, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.failed: str | None = None   # why a flush failed; the file then holds what it held before
        self._reserve = self.path.with_name(f".{self.path.name}.reserve")   # see cosim.runtime.store.RESERVE_BYTES
        try:
            with open(self._reserve, "wb") as r:
                r.write(bytes(RESERVE_BYTES))
        except OSError:
            self._release_reserve()
        # append: a resumed run continues the file (cut back to its checkpoint by cosim.runtime.checkpoint)
        self.f: h5py.File | None = h5py.File(self.path, "a" if append and self.path.exists() else "w")
        for k, v in (attrs or {}).items():
            self.f.attrs[k] = _attr(v)
        self.f.attrs["completed"] = False
        self.f.attrs["stopped_reason"] = "running"
        self.flush_every = max(1, int(flush_every))
        self.flush_s = flush_s                 # and at least this often (a kill loses at most ~flush_s)
        self._last_flush = time.monotonic()
        self._buf: dict[str, list[tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
        self._names: dict[str, set[str]] = {}
        self._ds: dict[str, h5py.Dataset] = {}
        self.f.flush()      # a file killed before its first data flush must still open

    def add_group(self, name: str, columns: dict[str, int], attrs: dict[str, Any] | None = None,
                  dtypes: dict[str, str] | None = None, chunk_rows: int = 1024) -> None:
        """Group ``name`` with ``time_ms`` (T,) and one dataset per ``columns`` entry, (T, n) or (T,) if n == 0."""
        if self.f is None:
            raise RuntimeError(f"{self.path} is closed")
        if name in self.f:          # a resumed file: continue its datasets
            g = self.f[name]
            self._names[name] = set(columns)
            self._ds.update({f"{name}/{ds}": g[ds] for ds in (*columns, "time_ms")})
            return
        g = self.f.create_group(name)
        g.create_dataset("time_ms", shape=(0,), maxshape=(None,), dtype="f8", chunks=(chunk_rows,))
        g["time_ms"].attrs["units"] = "ms"
        for ds, n in columns.items():
            dt = (dtypes or {}).get(ds, "f8")
            if n == 0:
                g.create_dataset(ds, shape=(0,), maxshape=(None,), dtype=dt, chunks=(chunk_rows,))
            else:
                g.create_dataset(ds, shape=(0, n), maxshape=(None, n), dtype=dt,
                                 chunks=(max(1, min(chunk_rows, 2 ** 18 // n)), n))
        for k, v in (attrs or {}).items():
            g.attrs[k] = _attr(v)
        self._names[name] = set(columns)
        # persistent handles: a dataset handle closed after each write flushes its chunk cache in
        # h5py's destructor, where a failed write (disk full) cannot be caught; open ones are
        # written by f.flush(), which raises
        self._ds.update({f"{name}/{ds}": g[ds] for ds in (*columns, "time_ms")})
        self.f.flush()

    def has_group(self, name: str) -> bool:
        return name in self._names

    def set_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        if self.f is not None and not self.failed:     # after a failed write the file keeps its marks
            obj = self.f[name] if name else self.f
            for k, v in attrs.items():
                obj.attrs[k] = _attr(v)

    def append(self, group: str, time_ms: np.ndarray, data: dict[str, np.ndarray]) -> None:
        """Rows for ``group`` (every dataset of the group; copied, so callers may reuse arrays)."""
        if self.f is None:
            raise RuntimeError(f"{self.path} is closed")
        t = np.array(time_ms, dtype=np.float64).ravel()
        if t.size == 0:
            return
        names = self._names.get(group)
        if names is None:
            raise KeyError(f"no group {group!r} in {self.path}")
        if set(data) != names:
            raise ValueError(f"{group}: append needs datasets {sorted(names)}, got {sorted(data)}")
        rows = {}
        for ds, arr in data.items():
            a = np.array(arr)
            if a.shape[0] != t.size:
                raise ValueError(f"{group}/{ds}: {a.shape[0]} rows for {t.size} time points")
            rows[ds] = a
        buf = self._buf.setdefault(group, [])
        buf.append((t, rows))
        if len(buf) >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def _write(self, group: str) -> None:
        buf = self._buf.pop(group, [])
        if not buf:
            return
        t = np.concatenate([b[0] for b in buf])
        tds = self._ds[f"{group}/time_ms"]
        n0 = tds.shape[0]
        tds.resize(n0 + t.size, axis=0)
        tds[n0:] = t
        for ds in buf[0][1]:
            d = self._ds[f"{group}/{ds}"]
            d.resize(n0 + t.size, axis=0)
            d[n0:] = np.concatenate([b[1][ds] for b in buf])

    def rows(self) -> dict[str, int]:
        """Rows durable in the file per dataset ("group/name"), after writing what is buffered."""
        self.flush()
        if self.failed:
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}", 0)
        return self._rows()

    def _rows(self) -> dict[str, int]:
        return {key: d.shape[0] for key, d in self._ds.items()}

    def flush(self) -> None:
        """Write buffered rows and flush the file. If that fails (disk full, I/O error), every
        dataset is shrunk back to its rows before this flush, the file is marked
        (`stopped_reason` = "write failed: …") and ResultsWriteError is raised."""
        if self.f is None or self.failed:
            return
        before = self._rows()
        try:
            need = 0
            for group, buf in self._buf.items():
                n = sum(b[0].size for b in buf)
                need += sum(chunk_bytes_to_append(self._ds[f"{group}/{ds}"], n) for ds in (*buf[0][1], "time_ms"))
            check_space(self.path, need)
            for group in list(self._buf):
                self._write(group)
            self.f.flush()
        except Exception as e:
            self._roll_back(before, os_reason(e))
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}", 0) from None
        self._last_flush = time.monotonic()

    def _roll_back(self, before: dict[str, int], reason: str) -> None:
        self.failed = reason
        self._buf = {}
        self._release_reserve()
        for key, n in before.items():    # each on its own: one failing must not leave the others long
            try:
                if self._ds[key].shape[0] != n:
                    self._ds[key].resize(n, axis=0)
            except Exception as e:
                log.error("%s: cannot roll %s back to %d rows: %s", self.path, key, n, os_reason(e))
        for step in (lambda: self.f.attrs.__setitem__("completed", False),
                     lambda: self.f.attrs.__setitem__("stopped_reason", f"write failed: {reason}"), self.f.flush):
            try:
                step()
            except Exception as e:
                log.error("%s: cannot mark the file after a failed write: %s", self.path, os_reason(e))

    def _release_reserve(self) -> None:
        try:
            self._reserve.unlink()
        except OSError:
            pass

    def close(self, completed: bool, reason: str | None) -> None:
        if self.f is None:
            return
        try:
            if not self.failed:
                self.flush()
                self.f.attrs["completed"] = bool(completed)
                self.f.attrs["stopped_reason"] = "completed" if completed else (reason or "stopped")
                self.f.flush()
        except ResultsWriteError:
            raise
        except Exception as e:        # the attributes could not be written: roll back what the flush wrote
            self._roll_back({}, os_reason(e))
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}", 0) from None
        finally:
            try:
                self._ds = {}
                self.f.close()
            except Exception:
                if not self.failed:
                    raise
            self.f = None
            self._release_reserve()
            log.info("results written to %s%s", self.path, f" (up to the last flush: {self.failed})" if self.failed else "")
