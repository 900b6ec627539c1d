"""Results files appended window by window that survive a kill: one appender for every writer.

Every results file of a run (coordinator.h5, tvb.h5, <node>.h5) is an :class:`Appender`: a set
of HDF5 datasets growing along their first axis, with one rule for all of them:

- **durability**: rows are buffered in memory (an HDF5 call costs ~50 µs: too much for every
  window) and written at least every ``flush_s`` seconds (while windows arrive, and from
  ``tick()`` while they do not), every ``flush_every`` windows if set, and at close. After any
  kill the file opens with h5py (``open_h5``) and holds every window up to the last flush, never
  a partial one.
- **disk space**: a flush the file system cannot hold is refused *before* anything is written
  (HDF5 that runs out of space mid-write leaves datasets it cannot even shrink back); a failed
  flush rolls every dataset back to the rows durable before it and raises ResultsWriteError; a
  small ballast file next to the results is released then, so the roll-back, the marks and the
  close still succeed on a full disk.
- **completion marking**: the file's attributes ``status`` ("running", "completed",
  "stopped: <why>" or "write failed: <why>") and ``windows`` (windows durable in the file),
  updated at every flush and at close; ``on_flush(windows)`` lets the owner write a status marker
  next to it (``write_status``: the coordinator's ``status_coordinator.json``).

``swmr=True`` (the coordinator's record) puts the file in HDF5's single-writer/multiple-reader
mode once its datasets are declared, so it can be read while the run goes on; every dataset
must then be declared before the first window. Other files may create datasets as they go.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import h5py
import numpy as np


from cosim.errors import ResultsWriteError

log = logging.getLogger(__name__)


# Space set aside next to each recorded file (a "ballast" file, deleted when a write fails) so
# that rolling the file back to its last durable window, closing it and writing the status
# marker still succeed on a full disk.
RESERVE_BYTES = 64 * 1024


METADATA_MARGIN = 64 * 1024      # bytes of HDF5 metadata a flush may write besides new chunks


def chunk_bytes_to_append(d: h5py.Dataset, n_rows: int) -> int:
    """Bytes HDF5 allocates on disk to append `n_rows` rows to chunked dataset `d` (whole new chunks)."""
    cr = d.chunks[0] if d.chunks else max(n_rows, 1)
    n0 = d.shape[0]
    new_chunks = -(-(n0 + n_rows) // cr) - (-(-n0 // cr))
    return new_chunks * cr * d.dtype.itemsize * int(np.prod(d.shape[1:], dtype=np.int64))


def check_space(path: Path, need: int) -> None:
    """Refuse a flush the file system cannot hold *before* writing anything: HDF5 that runs out of
    space mid-write leaves datasets it cannot even shrink back (measured: "B-tree key not found"),
    while a refused flush leaves the file exactly as it was after the previous one."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if free < need + METADATA_MARGIN:
        import errno as _errno
        raise OSError(_errno.ENOSPC, f"{os.strerror(_errno.ENOSPC)} ({need + METADATA_MARGIN} bytes needed "
                                     f"to flush, {free} free)")


def os_reason(e: BaseException) -> str:
    """'No space left on device' rather than HDF5's multi-line driver message."""
    import errno as _errno
    eno = getattr(e, "errno", None)
    text = str(e)
    if eno is None:
        for code in (_errno.ENOSPC, _errno.EDQUOT, _errno.EROFS, _errno.EIO):
            if f"errno = {code}," in text:
                eno = code
                break
    if eno:
        return os.strerror(eno)
    return text.splitlines()[0] if text else type(e).__name__


@dataclass
class Column:
    """A declared dataset: rows of ``cols`` values (``cols == 0``: a 1-D dataset), ``rows_per_window`` a window."""
    cols: int
    rows_per_window: int = 1
    dtype: str = "f8"
    attrs: dict[str, Any] = field(default_factory=dict)


RUNNING, COMPLETED = "running", "completed"


class Appender:
    """One HDF5 results file appended window by window (module docstring: the rules)."""

    def __init__(self, path: str | Path, attrs: dict[str, Any] | None = None, *, flush_s: float = 1.0,
                 flush_every: int | None = None, swmr: bool = False, resume_windows: int | None = None,
                 on_flush: Callable[[int], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.failed: str | None = None   # why the last flush failed (the file then stays as it was before)
        self._reserve = self.path.with_name(f".{self.path.name}.reserve")
        try:
            with open(self._reserve, "wb") as r:
                r.write(bytes(RESERVE_BYTES))
        except OSError:                   # already too full for the ballast: go on without it
            self._release_reserve()
        # resume_windows: continue a file already cut back to that many windows (cosim.runtime.checkpoint)
        resume = resume_windows is not None and self.path.exists()
        self.swmr = swmr
        self.f: Any = None
        try:
            self._open(resume, resume_windows, attrs, flush_s, flush_every, on_flush)
        except Exception as e:      # a full disk at creation: h5py raises OSError, or RuntimeError from a flush
            self._created_failed(e)

    def _created_failed(self, e: BaseException) -> None:
        """Creating (or declaring) the file failed: one ResultsWriteError naming it and why (not
        HDF5's multi-line RuntimeError, which a caller would take for a bug)."""
        self.failed = os_reason(e)
        try:
            if self.f is not None:
                self.f.close()
        except Exception:  # noqa: BLE001  (closing a file on a full disk may fail again)
            pass
        self.f = None
        self._release_reserve()
        held = getattr(self, "flushed", 0)
        raise ResultsWriteError(f"cannot write {self.path}: {self.failed}; it holds the first {held} windows", held) from None

    def _open(self, resume: bool, resume_windows: int | None, attrs: dict[str, Any] | None, flush_s: float,
              flush_every: int | None, on_flush: Callable[[int], None] | None) -> None:
        # an h5py.File; None once closed
        self.f = h5py.File(self.path, "a" if resume else "w", **({"libver": "latest"} if self.swmr else {}))
        for k, v in (attrs or {}).items():
            self.f.attrs[k] = _attr(v)
        self.f.attrs["status"] = RUNNING
        self.windows: int = resume_windows if resume_windows is not None and resume else 0    # windows appended
        self.flushed = self.windows                       # windows durable in the file (a kill keeps these)
        self.f.attrs["windows"] = self.flushed
        # persistent handles: a dataset handle closed after each write flushes its chunk cache in
        # h5py's destructor, where a failed write (disk full) cannot be caught; open ones are
        # written by f.flush(), which raises
        self.ds: dict[str, h5py.Dataset] = {}
        if resume:
            self.f.visititems(lambda name, obj: self.ds.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
        self.flush_s, self.flush_every, self.on_flush = flush_s, flush_every, on_flush
        self._pending: dict[str, list[np.ndarray]] = {}
        self._last_flush = time.monotonic()
        self._swmr_on = False
        self.f.flush()      # a file killed before its first data flush must still open

    # ---- layout ---------------------------------------------------------------------------
    def declare(self, layout: dict[str, Column]) -> None:
        """Datasets known up front (a resumed file keeps its own); then SWMR starts if asked."""
        try:
            self._declare(layout)
        except Exception as e:      # a full disk: as at creation
            self._created_failed(e)

    def _declare(self, layout: dict[str, Column]) -> None:
        for name, c in layout.items():
            if name not in self.ds:
                shape = (c.cols,) if c.cols else ()
                self._create(name, shape, c.dtype, c.attrs, chunk_rows=max(1, min(4096, c.rows_per_window * 64)))
        if self.swmr and not self._swmr_on:
            self.f.swmr_mode = True       # from here on readers always see a consistent file
            self._swmr_on = True

    def _create(self, name: str, tail: tuple, dtype: Any, attrs: dict[str, Any] | None = None,
                chunk_rows: int | None = None) -> h5py.Dataset:
        if self._swmr_on:
            raise RuntimeError(f"{self.path}: dataset {name!r} was not declared before the run (SWMR file)")
        width = int(np.prod(tail, dtype=np.int64)) if tail else 1
        rows = chunk_rows or max(1, min(4096, 2 ** 18 // max(width, 1)))
        d = self.f.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                                  chunks=(rows, *[max(1, t) for t in tail]))
        for k, v in (attrs or {}).items():
            d.attrs[k] = _attr(v)
        self.ds[name] = d
        return d

    def has(self, name: str) -> bool:
        return name in self.ds

    def set_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        """Attributes of the file (``name`` "") or of a group/dataset; nothing after a failed write."""
        if self.f is not None and not self.failed:
            obj = self.f[name] if name else self.f
            for k, v in attrs.items():
                obj.attrs[k] = _attr(v)

    def group(self, name: str) -> h5py.Group:
        return self.f.require_group(name)

    # ---- writing --------------------------------------------------------------------------
    def append(self, rows: dict[str, np.ndarray]) -> None:
        """Rows for the datasets named in ``rows`` (copied: callers may reuse their arrays). A
        dataset not seen before is created from its first rows (not in an SWMR file)."""
        if self.f is None:
            raise RuntimeError(f"{self.path} is closed")
        for name, arr in rows.items():
            a = np.array(arr, copy=True)
            if name not in self.ds:
                self._create(name, a.shape[1:], a.dtype)
            self._pending.setdefault(name, []).append(a)

    def end_window(self, n: int = 1) -> None:
        """``n`` more windows are complete: flush if one is due."""
        self.windows += n
        if (self.flush_every and self.windows % self.flush_every == 0) \
                or time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def tick(self) -> None:
        """Flush if windows have waited ``flush_s`` (call it from an idle loop: slow windows stay durable)."""
        if self.windows > self.flushed and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def write_whole(self, name: str, data: np.ndarray, attrs: dict[str, Any] | None = None) -> None:
        """A dataset written once, at the end (e.g. recorded traces); not in an SWMR file."""
        if self.f is None or self.failed:
            return
        if self._swmr_on:
            raise RuntimeError(f"{self.path}: {name!r} cannot be added to an SWMR file")
        check_space(self.path, np.asarray(data).nbytes)
        if name in self.f:
            del self.f[name]
        self.f[name] = data
        for k, v in (attrs or {}).items():
            self.f[name].attrs[k] = _attr(v)

    def flush(self) -> None:
        """Write buffered rows and make them durable.

        If that fails (disk full, I/O error), every dataset is shrunk back to the rows durable
        before this flush (a consistent prefix; never rows of zeros counted as windows), the
        buffered rows are dropped, the file is marked "write failed: …" and ResultsWriteError is
        raised; later flushes do nothing."""
        if self.f is None or self.failed:
            return
        before = {name: d.shape[0] for name, d in self.ds.items()}
        try:
            check_space(self.path, sum(chunk_bytes_to_append(self.ds[name], sum(b.shape[0] for b in blocks))
                                       for name, blocks in self._pending.items()))
            for name, blocks in self._pending.items():
                d = self.ds[name]
                n = d.shape[0]
                arr = np.concatenate(blocks, axis=0)
                d.resize(n + arr.shape[0], axis=0)
                d[n:] = arr
            self.f.attrs["windows"] = self.windows
            self.f.flush()
        except Exception as e:       # h5py raises OSError, sometimes RuntimeError, for a failed write
            self._roll_back(before, os_reason(e))
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}; it holds the first "
                                    f"{self.flushed} windows", self.flushed) from None
        self._pending = {}
        self._last_flush = time.monotonic()
        self.flushed = self.windows
        if self.on_flush is not None:
            self.on_flush(self.flushed)

    def rows(self) -> dict[str, int]:
        """Rows durable per dataset of the file (every dataset, also those written whole), after
        writing what is buffered: a checkpoint's ``rows`` (cosim.runtime.checkpoint.truncate_h5)."""
        self.flush()
        if self.failed:
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}", self.flushed)
        out: dict[str, int] = {}
        self.f.visititems(lambda name, obj: out.__setitem__(name, int(obj.shape[0]))
                          if isinstance(obj, h5py.Dataset) and obj.shape else None)
        return out

    def _roll_back(self, before: dict[str, int], reason: str) -> None:
        self.failed = reason
        self._pending = {}
        self._release_reserve()       # room for the metadata the roll-back, the marks and the close write
        for name, n in before.items():    # each on its own: one failing must not leave the others long
            try:
                if self.ds[name].shape[0] != n:
                    self.ds[name].resize(n, axis=0)
            except Exception as e:   # the marks still say how many windows are valid
                log.error("%s: cannot roll %s back to %d rows: %s", self.path, name, n, os_reason(e))
        for step in (lambda: self.f.attrs.__setitem__("status", f"write failed: {reason}"),
                     lambda: self.f.attrs.__setitem__("windows", self.flushed), self.f.flush):
            try:
                step()
            except Exception as e:
                log.error("%s: cannot mark the file after a failed write: %s", self.path, os_reason(e))

    def _release_reserve(self) -> None:
        try:
            self._reserve.unlink()
        except OSError:
            pass

    def close(self, completed: bool = True, reason: str | None = None) -> None:
        """Flush, mark the file ("completed" or "stopped: <reason>") and close it. After a failed
        write the file keeps its "write failed" mark and closes with what it holds; a flush that
        fails here raises ResultsWriteError after closing."""
        if self.f is None:
            return
        error: ResultsWriteError | None = None
        try:
            self.flush()
        except ResultsWriteError as e:
            error = e
        try:
            if not self.failed:
                self.f.attrs["status"] = COMPLETED if completed else f"stopped: {reason or 'stopped'}"
                self.f.attrs["windows"] = self.flushed
                self.f.flush()
        except Exception as e:       # the marks could not be written: keep what the last flush made durable
            self._roll_back({}, os_reason(e))
            error = error or ResultsWriteError(f"cannot write {self.path}: {self.failed}", self.flushed)
        finally:
            try:
                self.ds = {}
                self.f.close()
            except Exception:
                if not self.failed:
                    raise
            self.f = None
            self._release_reserve()
        log.info("results written to %s%s", self.path, f" (up to the last flush: {self.failed})" if self.failed else "")
        if error is not None:
            raise error


def open_h5(path: str | Path) -> h5py.File:
    """Open a results file for reading, also one whose writer was killed: an SWMR file not closed
    by its writer keeps a 'file is open for write' flag that only an SWMR reader may ignore."""
    try:
        return h5py.File(path, "r")
    except OSError:
        return h5py.File(path, "r", swmr=True)


def _attr(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
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
    try:
        tmp.write_text(json.dumps({"who": who, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **status},
                                  indent=2, default=str))
        os.replace(tmp, p)
    except OSError:                  # e.g. disk full: the previous marker stays, no empty leftover
        tmp.unlink(missing_ok=True)
        raise
    return p
