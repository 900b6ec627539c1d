"""Load a user's own NetPyNE model and map its populations onto TVB regions.

The model file is either

- ``.py``: executed with ``runpy``; must define ``netParams`` (a ``specs.NetParams`` or a dict)
  and may define ``simConfig`` (or ``cfg``);
- ``.json``: a map with ``netParams`` (and optionally ``simConfig``), or NetPyNE's own saved
  format ``{"net": {"params": ...}, "simConfig": ...}``.

The mapping (``model_file.populations``) gives each population a region and a role:
``input`` populations (NetStim point cells) receive the TVB drive, one Poisson train per cell;
``exc``/``inh`` are counted and reported as R_e/R_i; ``other`` is simulated, not reported.
Every check happens before the run and raises :class:`ModelError` with a one-line message.
Custom ``.mod`` files in the model's folder (or ``mod_dir``) are compiled once (cached).
"""
from __future__ import annotations

import json
import logging
import runpy
from pathlib import Path

from .builder import BuiltNetwork, default_sim_config
from .config import NetpyneParams
from .mechanisms import ModelError, compile_mods

log = logging.getLogger(__name__)


def _read(path: Path) -> tuple[object, object | None]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"model file {path}: not readable JSON: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ModelError(f"model file {path}: top level must be a JSON object")
        net = data.get("netParams")
        if net is None and isinstance(data.get("net"), dict):
            net = data["net"].get("params")
        return net, data.get("simConfig")
    try:
        ns = runpy.run_path(str(path), run_name="__cosim_model__")
    except Exception as e:  # the user's code: report its error in one line
        raise ModelError(f"model file {path}: raised {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    return ns.get("netParams"), ns.get("simConfig", ns.get("cfg"))


def load_user_model(p: NetpyneParams, regions: list[int] | tuple[int, ...], seed: int,
                    n_brain_regions: int | None = None, compile_only: bool = False) -> BuiltNetwork | None:
    """Validate and load ``p.model_file`` for this node's ``regions``.

    ``compile_only`` runs every check and compiles mechanisms but does not import NetPyNE specs
    (rank 0 uses it before telling other MPI ranks to build).
    """
    um = p.model_file
    if um is None:
        raise ModelError("no model_file configured")
    path = Path(um.path).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    owned = [int(r) for r in regions]
    for pop, m in um.populations.items():
        if n_brain_regions is not None and m.region >= n_brain_regions:
            raise ModelError(f"population {pop!r} is mapped to region {m.region}, which does not exist "
                             f"(the connectome has {n_brain_regions} regions)")
        if m.region not in owned:
            raise ModelError(f"population {pop!r} is mapped to region {m.region}, which this node does not "
                             f"simulate (its regions: {owned})")
    for r in owned:
        if not any(m.region == r and m.role == "exc" for m in um.populations.values()):
            raise ModelError(f"region {r} has no population with role 'exc' in model_file.populations "
                             "(needed to report R_e)")
    mod_dir = Path(um.mod_dir).expanduser() if um.mod_dir else path.parent
    build = compile_mods(mod_dir, um.build_dir) if any(mod_dir.glob("*.mod")) else None
    net, sim_cfg = _read(path)
    if net is None:
        raise ModelError(f"model file {path} does not define netParams")
    pops = net.get("popParams") if isinstance(net, dict) else getattr(net, "popParams", None)
    if not pops:
        raise ModelError(f"model file {path}: netParams has no popParams")
    for pop, m in um.populations.items():
        if pop not in pops:
            raise ModelError(f"model file {path}: population {pop!r} (in model_file.populations) is not in "
                             f"netParams.popParams {sorted(pops)}")
        if m.role == "input":
            pp = pops[pop]
            model = pp.get("cellModel") if isinstance(pp, dict) else None
            if model != "NetStim":
                raise ModelError(f"model file {path}: input population {pop!r} must be NetStim point cells "
                                 f"(cellModel 'NetStim'), got {model!r}")
    if compile_only:
        return None
    from netpyne import specs
    if isinstance(net, dict):
        net = specs.NetParams(net)
    for pop, m in um.populations.items():
        if m.role == "input":      # relays: fire once per event the adapter sends, never on their own
            net.popParams[pop].update({"number": 1, "start": -1, "noise": 0, "interval": 1e9})
            net.popParams[pop].pop("rate", None)
    cfg = specs.SimConfig(sim_cfg if isinstance(sim_cfg, dict) else None) if not hasattr(sim_cfg, "dt") else sim_cfg
    if hasattr(sim_cfg, "dt") and abs(float(sim_cfg.dt) - p.dt_ms) > 1e-12:
        log.warning("model simConfig.dt %s replaced by params.dt_ms %s", sim_cfg.dt, p.dt_ms)
    user_h = dict(getattr(cfg, "hParams", {}) or {})
    default_sim_config(cfg, p, seed, v_init=user_h.get("v_init"))
    if "celsius" in user_h:                 # the model's temperature wins over params.celsius
        cfg.hParams["celsius"] = user_h["celsius"]
    popmap = {pop: (m.region, m.role) for pop, m in um.populations.items()}
    log.info("loaded user model %s: %d pops mapped to regions %s", path, len(popmap), owned)
    return BuiltNetwork(net, cfg, popmap, [mod_dir] if build is not None else [],
                        uses_rxd=bool(getattr(net, "rxdParams", None)))
