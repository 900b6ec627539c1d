"""The Python API: `cosim.run(...)` and `cosim.load(RUN_DIR)`.

`cosim.run` starts the same services as `cosim run` (coordinator, TVB node, spiking nodes as
separate processes; cosim.launch.run.Launch) and follows them with a `tqdm.auto` progress bar
(a widget in Jupyter). It raises instead of exiting: `ConfigError` for a bad configuration,
`RunFailed` (with `.exit_code`, `.out` and the one-line reason) when a node or the coordinator
fails, `RunInterrupted` when stopped. Overrides are the `--set` of the command line:

    cosim.run(duration_ms=200, set={"spiking_nodes.0.backend": "reference"})
    cosim.run("my.yaml", run__seed=3)           # keyword: "__" for "."

With `block=False` it returns a `RunHandle` at once (`.progress`, `.done()`, `.wait()`, `.stop()`).

`cosim.sweep` runs many such runs, a grid of overrides × seeds, on a local pool or a Dask
cluster (cosim.launch.sweep), and `cosim.load_sweep(OUT)` reads the sweep's dataset back:

    ds = cosim.sweep(grid={"tvb.coupling_a": [0.002, 0.004]}, seeds=2, workers=2, out="study")
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from cosim.errors import ConfigError, RunFailed, RunInterrupted, SweepFailed
from cosim.results.reader import Results

__all__ = ["ConfigError", "Results", "RunFailed", "RunHandle", "RunInterrupted", "SweepFailed", "load", "load_sweep",
           "run", "sweep"]


def load(run_dir: str | Path) -> Results:
    """The results of a run (finished or stopped) in `run_dir`."""
    return Results(run_dir)


def _settings(duration_ms: float | None, set: dict | None, overrides: dict) -> list[str]:
    items = dict(set or {})
    items.update({k.replace("__", "."): v for k, v in overrides.items()})
    if duration_ms is not None:
        items["run.duration_ms"] = duration_ms
    # values travel as YAML, exactly like --set key=value (JSON is YAML)
    return [f"{k}={json.dumps(v)}" for k, v in items.items()]


class RunHandle:
    """A run started with `block=False`; its services keep running while Python does other work."""

    def __init__(self, launch, progress: bool):
        self._launch = launch
        self.out: Path = launch.out
        self.code: int | None = None
        self._error: BaseException | None = None
        bar: Any = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm
        self._thread = threading.Thread(target=self._follow, args=(bar,), name=f"cosim-run {self.out.name}",
                                        daemon=True)
        self._thread.start()

    def _follow(self, bar) -> None:
        try:
            self._launch.supervise(bar_cls=bar, err=sys.stderr)
            self.code = 0
        except BaseException as e:   # reported by wait()
            self._error = e
            self.code = getattr(e, "exit_code", 1)
        finally:
            self._launch.reap()

    @property
    def progress(self) -> dict:
        """The latest progress: windows_done, windows, t_ms, wall_s, fraction (PROTOCOL.md §6.1)."""
        p = dict(self._launch.progress or {"windows_done": 0, "windows": None, "t_ms": 0.0, "wall_s": 0.0})
        p["fraction"] = p["windows_done"] / p["windows"] if p.get("windows") else 0.0
        p.pop("rates", None)
        return p

    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Abort the run (the coordinator tells every node; results so far are kept) and wait for it."""
        self._launch.stop()
        self._thread.join()

    def wait(self, timeout: float | None = None) -> Results:
        """Until the run ends: its Results, or RunFailed / RunInterrupted; TimeoutError if still running."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the run in {self.out} is still going after {timeout} s")
        e = self._error
        if isinstance(e, RunFailed) and not isinstance(e, RunInterrupted) and self._launch.stopped:
            e = RunInterrupted(str(e), out=self.out)
        if e is not None:
            if isinstance(e, RunFailed) and e.out is not None and str(e.out) not in str(e):
                e.args = (f"{e} (results and logs in {e.out})",)
            raise e
        return Results(self.out)

    def __repr__(self) -> str:
        p = self.progress
        state = "running" if not self.done() else f"ended (exit code {self.code})"
        return f"<cosim run {self.out}: {state}, {p['windows_done']}/{p['windows']} windows>"


def run(config: str | Path | None = None, *, duration_ms: float | None = None, out: str | Path | None = None,
        set: dict[str, Any] | None = None, block: bool = True, progress: bool = True, plots: bool = False,
        log_level: str = "INFO", **overrides: Any) -> Results | RunHandle:
    """Run a co-simulation like `cosim run CONFIG --set ...`; its Results (or a RunHandle).

    config: YAML/TOML path, or None for the documented default example. out: results
    directory (default `<run.results_dir>/<name>_<time>`). plots: also write the PNG figures
    (the `results.plot.*` methods draw them on demand). Call from the main thread: the services
    are tied to the thread that starts them.
    """
    from cosim.config import apply_overrides
    from cosim.launch.run import start
    sets = _settings(duration_ms, set, overrides)
    cfg = apply_overrides(str(config) if config is not None else None, sets)
    a = argparse.Namespace(config=str(config) if config is not None else None, set=sets,
                           out=str(out) if out is not None else None, no_plots=not plots, log_level=log_level)
    launch = start(a, cfg)
    handle = RunHandle(launch, progress)
    if not block:
        return handle
    try:
        return handle.wait()
    except KeyboardInterrupt:        # Ctrl-C or a Jupyter kernel interrupt: end the run, keep its results
        handle.stop()
        raise RunInterrupted(f"interrupted; results up to the last completed window are in {handle.out}",
                             out=handle.out) from None


def sweep(config: str | Path | None = None, grid: dict[str, list] | None = None, seeds: int | list[int] | None = None,
          *, out: str | Path, workers: int | None = None, scheduler: str | None = None, duration_ms: float | None = None,
          set: dict[str, Any] | None = None, transient_ms: float = 0.0, plots: bool = False, progress: bool = True,
          log_level: str = "INFO", warm: bool = True, zipped: dict[str, list] | None = None, **overrides: Any):
    """Run a parameter sweep like `cosim sweep`; its xarray dataset (dimension `run`).

    grid: {key: [values]} (`--set` keys), every combination run; zipped: {key: [values]}, keys that
    vary together (variant i sets each to its i-th value, `--zip`), times the grid; seeds: a count (seeds 0..N-1) or
    a list, set as `run.seed`; workers: a LocalCluster of that many worker processes (default 1),
    or scheduler: the address of an existing Dask cluster. A rerun into the same `out` skips the
    runs that completed. Raises SweepFailed (`.failures`: folder → reason, `.results`: the
    dataset) if any run failed, after writing OUT/sweep.nc. warm=False: every service a fresh
    process (default: forked from a process per worker that imported the simulators once).
    """
    from cosim.launch.sweep import parse_seeds, run_sweep
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm
    sets = _settings(duration_ms, set, overrides)
    return run_sweep(str(config) if config is not None else None, dict(grid or {}), parse_seeds(seeds), out,
                     sets=sets, workers=workers, scheduler=scheduler, plots=plots, transient_ms=transient_ms,
                     progress=progress, log_level=log_level, warm=warm, bar_cls=bar, zipped=zipped)


def load_sweep(out: str | Path):
    """The dataset of the sweep in `out` (OUT/sweep.nc)."""
    from cosim.launch.sweep import load_sweep as _load
    return _load(out)
