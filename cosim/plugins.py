"""Spiking backends as plugins: each is a :class:`BackendSpec` found through the entry-point
group ``cosim.plugins`` (docs/backends.md). The core names no backend: installing a package
that declares

    [project.entry-points."cosim.backends"]
    mysim = "my_package.spec:SPEC"

is all it takes for ``backend: mysim`` to work in a config, in ``cosim run`` and in
``cosim backends``. A spec names its params model and adapter as ``"module:attr"`` strings,
imported only when used, so the coordinator never imports a simulator.
"""
from __future__ import annotations

import functools
import importlib
import importlib.metadata as md
import importlib.util
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from cosim.errors import UnknownBackend

GROUP = "cosim.backends"
WHOLE_BRAIN_GROUP = "cosim.whole_brain"

__all__ = ["GROUP", "WHOLE_BRAIN_GROUP", "BackendSpec", "UnknownBackend", "WholeBrainSpec", "adapter_class",
           "check_function", "describe", "get", "installed", "names", "params_model", "registry",
           "validate_params", "whole_brain"]


@dataclass(frozen=True)
class BackendSpec:
    """Everything the core needs to know about one spiking backend.

    - ``params``/``adapter``: ``"module:attr"`` of the pydantic model of
      ``spiking_nodes[i].params`` (must not import the simulator) and of the
      :class:`cosim.runtime.adapter.NodeAdapter` subclass.
    - ``requires``: modules that must import for the backend to run (checked, not imported, by
      ``find_spec``); ``install``: what to tell a user who lacks them (e.g. a pip extra).
    - ``path_params``: dotted paths inside ``params`` that are files, resolved next to the config
      file (e.g. ``"model_file.path"``).
    - ``dt_param``: the params field holding the simulator's own time step (ms), which must
      divide TVB's dt (None: the backend steps on TVB's dt).
    - ``mpi_param``/``threads_param``: params fields giving MPI ranks / threads per process;
      ``launch`` wraps a node's command line accordingly (:mod:`cosim.launch.command_lines`).
    - ``image``: the container image (and ``dockerfile``, relative to the distribution's root)
      that runs this backend (compose's ``COSIM_BACKEND``).
    - ``checkpoint``: the adapter can checkpoint and restore its state (``cosim resume``).
    - ``check``: optional ``"module:attr"`` of ``check(entry, cfg, source, progress)`` for ``cosim
      validate`` and ``cosim run``: deeper, slower checks than the params model (files, models,
      compilers); raises ValueError with one line. ``build``: the same shape, for ``cosim build``
      (e.g. compile mechanisms ahead); ``progress`` is None or ``(done, total, what)``.
    """
    name: str
    params: str
    adapter: str
    description: str = ""
    requires: tuple[str, ...] = ()
    install: str = ""
    path_params: tuple[str, ...] = ()
    dt_param: str | None = None
    mpi_param: str | None = None
    threads_param: str | None = None
    image: str | None = None
    dockerfile: str | None = None
    check: str | None = None
    build: str | None = None
    #: optional ``"module:attr"`` of ``validate(entry, cfg, source, progress)``, for ``cosim validate``
    #: only: build the node's network as the run would (cells, connections, TVB's drive), simulate nothing
    validate: str | None = None
    #: the adapter implements checkpoint/restore (PROTOCOL.md §10.1); `cosim validate` refuses
    #: `run.checkpoint` for a backend that cannot
    checkpoint: bool = False
    #: set by the registry: the distribution that provides the spec and its version
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)

    # ---- lazy pieces --------------------------------------------------------------------
    def params_model(self):
        return _load(self.params)

    def adapter_class(self):
        self.ensure_installed()
        return _load(self.adapter)

    def missing(self) -> list[str]:
        """Required modules that are not installed."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def ensure_installed(self) -> None:
        miss = self.missing()
        if miss:
            hint = f"; install it with {self.install}" if self.install else ""
            raise UnknownBackend(f"backend {self.name!r} needs {', '.join(miss)}, which is not installed{hint}")

    # ---- what the core reads off validated params ---------------------------------------
    def dt_ms(self, params: Any) -> float | None:
        return None if self.dt_param is None else _get(params, self.dt_param)

    def mpi_ranks(self, params: Any) -> int:
        return int((_get(params, self.mpi_param) if self.mpi_param else None) or 1)

    def threads(self, params: Any) -> int:
        return int((_get(params, self.threads_param) if self.threads_param else None) or 1)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _load(ref: str) -> Any:
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)


@dataclass(frozen=True)
class WholeBrainSpec:
    """The whole-brain side of a run (the node named ``tvb``): which adapter simulates it and
    how its connectome is known before any service starts (``cosim validate``, ``cosim run``).

    - ``adapter``: ``"module:attr"`` of its :class:`cosim.runtime.adapter.NodeAdapter` subclass;
    - ``connectome``: ``"module:attr"`` of ``connectome(cfg) -> {"weights", "idelays"}`` (the
      weights and integer delays in TVB steps the node will serve; ValueError with one line);
    - ``requires``/``install``: as for :class:`BackendSpec`.
    """
    name: str
    adapter: str
    connectome: str
    description: str = ""
    requires: tuple[str, ...] = ()
    install: str = ""
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def adapter_class(self):
        miss = self.missing()
        if miss:
            hint = f"; install it with {self.install}" if self.install else ""
            raise UnknownBackend(f"whole-brain side {self.name!r} needs {', '.join(miss)}, which is not installed{hint}")
        return _load(self.adapter)

    def load_connectome(self, cfg: Any) -> dict:
        return _load(self.connectome)(cfg)


def _read_group(group: str, kind: type[Any]) -> dict[str, Any]:
    """name -> spec of every installed plugin of one entry-point group; a broken plugin is
    skipped with one warning naming it (it must not break the others)."""
    import logging
    warn = logging.getLogger(__name__).warning
    specs: dict[str, Any] = {}
    for ep in md.entry_points(group=group):
        if ep.name in specs:      # the first one found on sys.path wins, as for any import
            continue
        try:
            spec: Any = ep.load()
        except Exception as e:
            warn("plugin %r of %s (%s) failed to load: %s", ep.name, group, ep.value, e)
            continue
        if not isinstance(spec, kind) or spec.name != ep.name:
            warn("plugin %r of %s (%s) is not a %s named %r; ignored", ep.name, group, ep.value, kind.__name__, ep.name)
            continue
        dist = getattr(ep, "dist", None)
        from dataclasses import replace
        specs[ep.name] = replace(spec, distribution=dist.name if dist else "", version=dist.version if dist else "")
    return specs


@functools.cache
def registry() -> dict[str, BackendSpec]:
    """name -> spec of every installed spiking backend (entry points are read once per process)."""
    return _read_group(GROUP, BackendSpec)


@functools.cache
def whole_brain_registry() -> dict[str, WholeBrainSpec]:
    return _read_group(WHOLE_BRAIN_GROUP, WholeBrainSpec)


def whole_brain(name: str = "tvb") -> WholeBrainSpec:
    specs = whole_brain_registry()
    if name not in specs:
        raise UnknownBackend(f"unknown whole-brain side {name!r}; installed: {', '.join(sorted(specs)) or 'none'}")
    return specs[name]


def names() -> list[str]:
    return sorted(registry())


def installed() -> list[str]:
    """Backends whose simulator is importable."""
    return sorted(n for n, s in registry().items() if not s.missing())


def get(name: str) -> BackendSpec:
    specs = registry()
    if name not in specs:
        raise UnknownBackend(f"unknown backend {name!r}; installed: {', '.join(installed()) or 'none'} "
                             f"(a backend from another package appears once that package is pip-installed; "
                             f"`cosim backends` lists them)")
    return specs[name]


def params_model(name: str):
    return get(name).params_model()


def validate_params(name: str, params: dict) -> Any:
    return params_model(name).model_validate(params or {})


def adapter_class(name: str):
    return get(name).adapter_class()


def check_function(name: str) -> Callable | None:
    spec = get(name)
    return _load(spec.check) if spec.check else None


@functools.cache
def _module_dists() -> dict[str, list[str]]:
    return dict(md.packages_distributions())


def describe() -> list[dict]:
    """One row per installed plugin, for ``cosim backends``."""
    rows = []
    for name, s in sorted(registry().items()):
        miss = s.missing()
        sim_versions = {}
        for m in s.requires:             # module -> the distribution that installs it -> version
            for dist in _module_dists().get(m, []):
                try:
                    sim_versions[dist] = md.version(dist)
                except md.PackageNotFoundError:
                    pass
        rows.append({"name": name, "distribution": s.distribution, "version": s.version,
                     "ready": not miss, "missing": miss, "install": s.install if miss else "",
                     "simulators": sim_versions, "mpi": bool(s.mpi_param), "threads": bool(s.threads_param),
                     "image": s.image or "", "description": s.description,
                     "checkpoint": s.checkpoint})
    return rows
