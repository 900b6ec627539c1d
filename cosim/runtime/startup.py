"""Where a service's start-up goes (issue 24), measured inside the service.

A :class:`StartupClock` times named phases with ``perf_counter``; phases may nest, and a
phase's figure excludes the phases nested in it, so the figures never overlap and add up to at
most the time from the service's start to its last phase. The node runtime times its dialog
(registration, configure, setup wait, build) and an adapter names the parts it knows
(``with startup.phase("connectome"): ...``: a no-op outside a clock). A node sends its figures
in READY.``info.startup`` (PROTOCOL.md §6, a free map: no wire change); the coordinator adds its
own and writes them to summary.json (``startup``), which `cosim run` and `cosim report` print.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

_local = threading.local()


def process_start_time() -> float:
    """This process's start (fork or exec) as a ``time.time()`` epoch, from /proc (to the kernel's
    clock tick, 10 ms); now if /proc cannot tell."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        now = time.time()
        started_s_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")     # field 22, starttime
        return now - uptime + started_s_after_boot
    except (OSError, ValueError, IndexError):
        return time.time()


class StartupClock:
    """Named, non-overlapping phases of a service's start-up; ``started_at`` is when the
    service started (epoch; e.g. :func:`process_start_time`)."""

    def __init__(self, started_at: float | None = None):
        now_wall, now = time.time(), time.perf_counter()
        self.started_at = now_wall if started_at is None else float(started_at)
        self._perf0 = now - max(0.0, now_wall - self.started_at)    # started_at on the perf_counter clock
        self.phases: dict[str, float] = {}
        self._stack: list[list[float]] = []          # [start, seconds of the phases nested in it]
        self._last = now                             # the last mark (:meth:`mark`)
        if started_at is not None:
            self.phases["start"] = now - self._perf0    # interpreter, imports, until this clock exists

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._stack.append([t0, 0.0])
        try:
            yield
        finally:
            _, nested = self._stack.pop()
            d = time.perf_counter() - t0
            self.add(name, d - nested)
            if self._stack:
                self._stack[-1][1] += d
            else:
                self._last = max(self._last, time.perf_counter())    # a mark never counts it again

    def mark(self, name: str) -> None:
        """The time since the previous mark, phase or the clock's creation is phase ``name``: for
        a service whose phases are events (the coordinator's "every node registered", ...)."""
        now = time.perf_counter()
        self.add(name, now - self._last)
        self._last = now

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + max(0.0, seconds)

    @contextlib.contextmanager
    def active(self) -> Iterator[StartupClock]:
        """Make this the clock that :func:`phase` uses in this thread."""
        prev = getattr(_local, "clock", None)
        _local.clock = self
        try:
            yield self
        finally:
            _local.clock = prev

    def report(self) -> dict:
        """``{started_at, total_s, phases}``: total_s from the start until now."""
        return {"started_at": self.started_at, "total_s": time.perf_counter() - self._perf0,
                "phases": dict(self.phases)}


def phase(name: str) -> contextlib.AbstractContextManager:
    """Time ``name`` on this thread's active clock (nothing without one)."""
    clock = getattr(_local, "clock", None)
    return clock.phase(name) if clock is not None else contextlib.nullcontext()
