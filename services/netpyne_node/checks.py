"""Checks and builds of a NetPyNE node done before any service starts (`cosim validate`,
`cosim build`, `cosim run`).

``check_node`` loads the node's model exactly as the node will (mechanisms compiled or taken
from the cache and loaded, the model file run in its folder with NetPyNE's entry points
intercepted; no cell is created, nothing simulated) and checks populations, roles, the region
mapping and that the NEURON dt divides TVB's. ``build_node`` only compiles mechanisms. Both
raise :class:`ModelError` with one line naming the culprit; the CLI turns it into exit 2.
``check(entry, cfg)`` and ``build(entry, cfg)`` are the same for a config's node entry (the
shape of a backend plugin's hooks: ``entry`` a ``NodeEntry``, ``cfg`` the ``RunConfig``).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from collections.abc import Callable

import numpy as np

from .config import NetpyneParams
from .mechanisms import ModelError
from cosim.config.timing import whole_ticks

DEFAULT_CONNECTOME_REGIONS = 76     # tvb-data's default connectivity


def connectome_regions(connectivity: str) -> int | None:
    """Number of regions of a TVB connectivity ('default' or a zip with weights.txt); None if unknown."""
    if connectivity == "default":
        return DEFAULT_CONNECTOME_REGIONS
    try:
        with zipfile.ZipFile(Path(connectivity).expanduser()) as z:
            name = next(n for n in z.namelist() if n.endswith("weights.txt"))
            return int(np.loadtxt(io.StringIO(z.read(name).decode())).shape[0])
    except (OSError, StopIteration, ValueError, zipfile.BadZipFile):
        return None


def build_node(params: dict | NetpyneParams, progress: Callable[[int, int, str], None] | None = None) -> Path | None:
    """Compile this node's mechanisms into the cache (no-op when cached); the build folder or None."""
    p = params if isinstance(params, NetpyneParams) else NetpyneParams.model_validate(params or {})
    build = None
    if p.model_file is not None:
        from .usermodel import build_mechanisms
        build = build_mechanisms(p.model_file, progress)
    elif p.rxd.enabled:
        from .builder import RXD_MOD_DIR
        from .mechanisms import compile_mods
        build = compile_mods(RXD_MOD_DIR, progress=progress)
    if p.stimulus:                          # the current devices' mechanism (services/netpyne_node/stimulus.py)
        from .mechanisms import compile_mods
        from .stimulus import STIM_MOD_DIR
        stim = compile_mods(STIM_MOD_DIR, p.model_file.build_dir if p.model_file else None, progress=progress)
        build = build or stim
    return build


def needs_build(params: NetpyneParams) -> bool:
    """True when this node's mechanisms are not compiled in the cache yet."""
    from .mechanisms import is_cached
    if params.model_file is not None:
        from .usermodel import find_mod_dir
        um = params.model_file
        try:
            d = find_mod_dir(um)
        except ValueError:
            return False                  # reported by the load itself
        if d is not None and not is_cached(d, um.build_dir, um.mod_exclude):
            return True
    if params.stimulus:
        from .stimulus import STIM_MOD_DIR
        if not is_cached(STIM_MOD_DIR, params.model_file.build_dir if params.model_file else None):
            return True
    if params.rxd.enabled:
        from .builder import RXD_MOD_DIR
        return not is_cached(RXD_MOD_DIR)
    return False


def check_node(params: dict | NetpyneParams, regions: list[int], tvb_dt_ms: float,
               n_brain_regions: int | None = None, seed: int = 42,
               progress: Callable[[int, int, str], None] | None = None) -> None:
    """Everything that can be known about this node before it starts; raises ModelError."""
    p = params if isinstance(params, NetpyneParams) else NetpyneParams.model_validate(params or {})
    if whole_ticks(tvb_dt_ms, p.dt_ms) is None:
        raise ModelError(f"params.dt_ms = {p.dt_ms} ms does not divide the TVB dt {tvb_dt_ms} ms "
                         "(NEURON must take a whole number of steps per TVB step)")
    if n_brain_regions is not None:
        bad = [r for r in regions if r >= n_brain_regions]
        if bad:
            raise ModelError(f"regions {bad} do not exist (the connectome has {n_brain_regions} regions)")
    if p.stimulus:                       # the current devices: on NEURON's grid, onto populations that exist
        from cosim.sdk.stimulus import check_devices, default_pops
        pops = ({k: (m.region, m.role) for k, m in p.model_file.populations.items()} if p.model_file is not None
                else default_pops(regions))
        try:
            check_devices(p.stimulus, pops, [int(r) for r in regions], p.dt_ms)
        except ValueError as e:
            raise ModelError(str(e)) from None
    if p.model_file is not None:
        from .usermodel import load_user_model
        load_user_model(p, regions, seed, n_brain_regions, progress=progress)   # mapping first, then builds
    else:
        build_node(p, progress)


def check(entry, cfg, source: str = "<config>", progress=None) -> None:
    """Plugin hook for `cosim validate`/`cosim run`: every check of this node entry."""
    check_node(entry.params, list(entry.regions), cfg.tvb.dt_ms, connectome_regions(cfg.tvb.connectivity),
               cfg.run.seed, progress)


def build(entry, cfg, source: str = "<config>", progress=None) -> Path | None:
    """Plugin hook for `cosim build`: compile this node entry's mechanisms into the cache."""
    return build_node(entry.params, progress)

