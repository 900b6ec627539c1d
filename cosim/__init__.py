"""cosim: TVB ⇄ NetPyNE/NEURON co-simulation over ZeroMQ.

    import cosim
    results = cosim.run(duration_ms=200)          # the services as subprocesses, like `cosim run`
    results = cosim.load("results/default_…")     # a finished (or stopped) run
    ds = cosim.sweep(grid={"tvb.coupling_a": [0.002, 0.004]}, seeds=2, workers=2, out="study")   # many runs
    results.tvb, results.spikes, results.rates, results.signals, results.timings, results.plot.activity()

Everything is imported on first use: `import cosim` stays cheap, and services that import
cosim submodules (the coordinator) never load NEURON, TVB, pandas or xarray through it.
"""
from __future__ import annotations

_API = {"run": "cosim.api", "load": "cosim.api", "RunHandle": "cosim.api", "RunFailed": "cosim.errors",
        "RunInterrupted": "cosim.errors", "ConfigError": "cosim.errors", "CosimError": "cosim.errors",
        "Results": "cosim.results.reader", "export_nwb": "cosim.results.nwb", "sweep": "cosim.api",
        "load_sweep": "cosim.api", "SweepFailed": "cosim.errors"}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'cosim' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
