"""Command lines of the services, built in one place (the launcher, the benchmarks and the tests
all start services through here).

A spiking node's command comes from its backend's spec (:mod:`cosim.plugins`): under
``mpiexec -n N`` when its params ask for N > 1 MPI ranks (on the hosts and with the extra
arguments of the node's ``mpi`` block, if any), with its thread count in the environment.
Every service gets one compute thread for BLAS/OpenMP/numba unless its backend asks for more
(two simulators on one machine otherwise fight over the cores; DOMAIN.md).
"""
from __future__ import annotations

import os
import sys
from typing import Any

from cosim.runtime.transport import LISTEN_FDS_ENV  # noqa: F401  (inherited listening sockets)

#: one compute thread per service unless configured otherwise
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def cosim_cmd(log_level: str | None = None) -> list[str]:
    """``python -P -m cosim.cli [--log-level L]`` with this interpreter. ``-P``: the working
    folder is not put first on the module path, so a folder of the user's own (a ``cosim/``,
    ``services/`` or ``proto/`` package beside their scripts) never shadows the installed package."""
    return [sys.executable, "-P", "-m", "cosim.cli"] + (["--log-level", log_level] if log_level else [])


def coordinator_args(config_path: str, out: str, *, router: str | None = None, pub: str | None = None,
                     plots: bool = True, extra: list[str] | None = None) -> list[str]:
    """The `cosim` arguments of the coordinator (no interpreter: a starter adds what runs them)."""
    argv = ["coordinator", str(config_path), "--out", str(out)]
    if router:
        argv += ["--router", router]
    if pub:
        argv += ["--pub", pub]
    return argv + ([] if plots else ["--no-plots"]) + list(extra or [])


def tvb_args(router: str, *, name: str = "tvb", side: str = "tvb", keys: str | None = None) -> list[str]:
    """The `cosim` arguments of the whole-brain node (``side``: its plugin, tvb or noop)."""
    return (["tvb-node", "--coordinator", router, "--name", name] + (["--backend", side] if side != "tvb" else [])
            + (["--keys", keys] if keys else []))


def spiking_args(entry: Any, router: str, *, keys: str | None = None) -> list[str]:
    """The `cosim` arguments of the spiking node ``entry`` (a ``NodeEntry`` or its dict)."""
    name, backend, _ = _entry_fields(entry)
    return (["spiking-node", "--coordinator", router, "--name", name, "--backend", backend]
            + (["--keys", keys] if keys else []))


def mpi_prefix(entry: Any) -> list[str]:
    """``mpiexec -n N ...`` when the node's params ask for N > 1 MPI ranks, else []."""
    from cosim import plugins
    _, backend, params = _entry_fields(entry)
    spec = plugins.get(backend)
    ranks = spec.mpi_ranks(spec.params_model().model_validate(params))
    if ranks <= 1:
        return []
    return ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", str(ranks),
            *[x for v in THREAD_VARS for x in ("-x", f"{v}=1")], *_mpi_args(entry)]


def coordinator_cmd(config_path: str, out: str, *, router: str | None = None, pub: str | None = None,
                    plots: bool = True, log_level: str | None = None, extra: list[str] | None = None) -> list[str]:
    return cosim_cmd(log_level) + coordinator_args(config_path, out, router=router, pub=pub, plots=plots, extra=extra)


def tvb_cmd(router: str, *, name: str = "tvb", noop: bool = False, keys: str | None = None,
            log_level: str | None = None) -> list[str]:
    return cosim_cmd(log_level) + tvb_args(router, name=name, side="noop" if noop else "tvb", keys=keys)


def _entry_fields(entry: Any) -> tuple[str, str, dict]:
    if isinstance(entry, dict):
        from cosim.config import NodeEntry
        return entry["name"], entry.get("backend") or NodeEntry.model_fields["backend"].default, entry.get("params") or {}
    return entry.name, entry.backend, entry.params or {}


def spiking_cmd(entry: Any, router: str, *, keys: str | None = None, log_level: str | None = None) -> list[str]:
    """Command line of the spiking node ``entry`` (a ``NodeEntry`` or its dict), MPI included."""
    return mpi_prefix(entry) + cosim_cmd(log_level) + spiking_args(entry, router, keys=keys)


def _mpi_args(entry: Any) -> list[str]:
    """The node's ``mpi`` block (hosts, more arguments) as mpiexec arguments."""
    from cosim.config import MpiSection
    mpi = entry.get("mpi") if isinstance(entry, dict) else entry.mpi
    if mpi is None:
        return []
    return (mpi if isinstance(mpi, MpiSection) else MpiSection.model_validate(mpi)).mpiexec_args()


def spiking_env(entry: Any, base: dict | None = None) -> dict[str, str]:
    """Environment of a spiking node: one BLAS/OpenMP thread unless the backend's threads param
    asks for more (e.g. NEST's ``local_num_threads``)."""
    from cosim import plugins
    _, backend, params = _entry_fields(entry)
    spec = plugins.get(backend)
    threads = spec.threads(spec.params_model().model_validate(params))
    return service_env(base, threads)


def service_env(base: dict | None = None, threads: int = 1) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    for v in THREAD_VARS:
        if threads > 1 or v not in env:      # one thread by default; a user's own setting is kept
            env[v] = str(threads)
    return env
