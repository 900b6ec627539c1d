"""tvb.h5 (and the reference node's <node>.h5): time-series groups appended window by window.

Layout: groups (``raw``, ``tavg``, ``bold`` ...) each holding a ``time_ms`` vector and (T, N)
matrices that grow along the first axis. The file is a :class:`cosim.runtime.store.Appender`:
the same durability, disk-space rule and completion marks (``status``, ``windows``) as every
results file of a run. Groups fill at their own pace (raw every step, BOLD every 2 s), so the
owner says when a window is complete (``end_window``): rows are written every ``flush_every``
windows or ``flush_s`` seconds, whichever comes first (each h5py resize/write costs ~0.5 ms per
dataset, as much as integrating a few TVB steps), and at close.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cosim.runtime.store import Appender


class H5Appender:
    """Groups of time series in one results file."""

    def __init__(self, path: str | Path, attrs: dict[str, Any] | None = None, flush_every: int = 20,
                 flush_s: float = 1.0, append: bool = False, resume_windows: int | None = None):
        # append: a resumed run continues the file (cut back to its checkpoint by cosim.runtime.checkpoint)
        resume = resume_windows if resume_windows is not None else (0 if append else None)
        self.store = Appender(path, attrs, flush_s=flush_s, flush_every=max(1, int(flush_every)),
                              resume_windows=resume)
        self.path = self.store.path
        self._names: dict[str, set[str]] = {}

    @property
    def failed(self) -> str | None:
        return self.store.failed

    def add_group(self, name: str, columns: dict[str, int], attrs: dict[str, Any] | None = None,
                  dtypes: dict[str, str] | None = None, chunk_rows: int = 1024) -> None:
        """Group ``name`` with ``time_ms`` (T,) and one dataset per ``columns`` entry, (T, n) or (T,) if n == 0."""
        self._names[name] = set(columns)
        if self.store.has(f"{name}/time_ms"):          # a resumed file: continue its datasets
            return
        g = self.store.group(name)
        self.store._create(f"{name}/time_ms", (), "f8", {"units": "ms"}, chunk_rows=chunk_rows)
        for ds, n in columns.items():
            tail = (n,) if n else ()
            self.store._create(f"{name}/{ds}", tail, (dtypes or {}).get(ds, "f8"),
                               chunk_rows=max(1, min(chunk_rows, 2 ** 18 // max(n, 1))))
        self.store.set_attrs(name, attrs or {})
        del g

    def has_group(self, name: str) -> bool:
        return name in self._names

    def set_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        self.store.set_attrs(name, attrs)

    def append(self, group: str, time_ms: np.ndarray, data: dict[str, np.ndarray]) -> None:
        """Rows for ``group`` (every dataset of the group; copied, so callers may reuse arrays)."""
        t = np.array(time_ms, dtype=np.float64).ravel()
        if t.size == 0:
            return
        names = self._names.get(group)
        if names is None:
            raise KeyError(f"no group {group!r} in {self.path}")
        if set(data) != names:
            raise ValueError(f"{group}: append needs datasets {sorted(names)}, got {sorted(data)}")
        rows = {f"{group}/time_ms": t}
        for ds, arr in data.items():
            a = np.asarray(arr)
            if a.shape[0] != t.size:
                raise ValueError(f"{group}/{ds}: {a.shape[0]} rows for {t.size} time points")
            rows[f"{group}/{ds}"] = a
        self.store.append(rows)

    def end_window(self) -> None:
        """A window is complete: written when ``flush_every`` windows or ``flush_s`` seconds have passed."""
        self.store.end_window()

    def rows(self) -> dict[str, int]:
        """Rows durable in the file per dataset ("group/name"), after writing what is buffered."""
        return self.store.rows()

    def flush(self) -> None:
        self.store.flush()

    def close(self, completed: bool, reason: str | None) -> None:
        self.store.close(completed, reason)
