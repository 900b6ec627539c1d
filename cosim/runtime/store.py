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
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np


from cosim.errors import ResultsWriteError  # noqa: E402  (one hierarchy: cosim.errors)


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
    """A dataset of shape (rows, cols) growing by `rows_per_window` each window."""
    cols: int
    rows_per_window: int
    dtype: str = "f8"
    attrs: dict[str, Any] = field(default_factory=dict)


class WindowRecorder:
    def __init__(self, path: str | Path, layout: dict[str, Column], file_attrs: dict[str, Any] | None = None,
                 flush_s: float = 1.0, on_flush: Callable[[int], None] | None = None, resume_windows: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.failed: str | None = None   # why the last flush failed (the file then stays as it was before)
        self._reserve = self.path.with_name(f".{self.path.name}.reserve")
        try:
            with open(self._reserve, "wb") as r:
                r.write(bytes(RESERVE_BYTES))
        except OSError:                   # already too full for the ballast: go on without it
            self._release_reserve()
        resume = resume_windows is not None
        # resume_windows: continue a file already cut back to that many windows (cosim.runtime.checkpoint)
        self.f = h5py.File(self.path, "a" if resume else "w", libver="latest")
        for k, v in (file_attrs or {}).items():
            self.f.attrs[k] = _attr(v)
        self.layout = layout
        self.ds: dict[str, h5py.Dataset] = {}
        for name, c in layout.items():
            if resume:
                self.ds[name] = self.f[name]
                continue
            d = self.f.create_dataset(name, shape=(0, c.cols), maxshape=(None, c.cols), dtype=c.dtype,
                                      chunks=(max(1, min(4096, c.rows_per_window * 64)), max(1, c.cols)))
            for k, v in c.attrs.items():
                d.attrs[k] = _attr(v)
            self.ds[name] = d
        self.f.swmr_mode = True        # from here on readers always see a consistent file
        self.windows = resume_windows or 0   # windows appended
        self.flushed = self.windows          # windows durable in the file (a kill keeps exactly these)
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
        """Write buffered windows and make them durable.

        If that fails (disk full, I/O error), every dataset is shrunk back to the windows durable
        before this flush (a consistent prefix; never rows of zeros counted as windows), the
        buffered windows are dropped and ResultsWriteError is raised; later flushes do nothing."""
        if self.failed:
            return
        rows_before = {name: d.shape[0] for name, d in self.ds.items()}
        try:
            check_space(self.path, sum(chunk_bytes_to_append(self.ds[name], sum(b.shape[0] for b in blocks))
                                       for name, blocks in self._pending.items()))
            for name, blocks in self._pending.items():
                d = self.ds[name]
                n = d.shape[0]
                arr = np.concatenate(blocks, axis=0)
                d.resize(n + arr.shape[0], axis=0)
                d[n:] = arr
            self.f.flush()
        except Exception as e:       # h5py raises OSError, sometimes RuntimeError, for a failed write
            self._roll_back(rows_before, os_reason(e))
            raise ResultsWriteError(f"cannot write {self.path}: {self.failed}; it holds the first "
                                    f"{self.flushed} windows", self.flushed) from None
        self._pending = {}
        self._last_flush = time.monotonic()
        self.flushed = self.windows
        if self.on_flush is not None:
            self.on_flush(self.flushed)

    def _roll_back(self, rows_before: dict[str, int], reason: str) -> None:
        self.failed = reason
        self._pending = {}
        self._release_reserve()       # room for the metadata the roll-back and the close write
        try:
            for name, n in rows_before.items():
                if self.ds[name].shape[0] != n:
                    self.ds[name].resize(n, axis=0)
            self.f.flush()
        except Exception:             # the status marker still says how many windows are valid
            pass

    def _release_reserve(self) -> None:
        try:
            self._reserve.unlink()
        except OSError:
            pass

    def tick(self) -> None:
        """Flush if windows have waited `flush_s` (call it from an idle loop: slow windows stay durable)."""
        if self.windows > self.flushed and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def close(self) -> None:
        """Flush and close; after a failed write, close what is there (raising nothing more)."""
        if self.f:
            try:
                self.flush()
            finally:
                try:
                    self.f.close()
                except Exception:
                    if not self.failed:
                        raise
                self.f = None
                self._release_reserve()


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
    try:
        tmp.write_text(json.dumps({"who": who, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **status},
                                  indent=2, default=str))
        os.replace(tmp, p)
    except OSError:                  # e.g. disk full: the previous marker stays, no empty leftover
        tmp.unlink(missing_ok=True)
        raise
    return p
