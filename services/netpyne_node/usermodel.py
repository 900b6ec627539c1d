"""Load a user's own NetPyNE model, unchanged, and map its populations onto TVB regions.

The model file is either

- ``.py``: executed with ``runpy``; defines ``netParams`` (a ``specs.NetParams`` or a dict) and
  maybe ``simConfig``/``cfg``, or hands them to ``sim.createSimulateAnalyze(...)`` and the like;
- ``.json``: a map with ``netParams`` (and optionally ``simConfig``), or what NetPyNE's
  ``saveJson`` writes: ``{"net": {"params": ...}, "simConfig": ...}``.

How it is loaded (see docs/user_models.md):

- **where it lives**: the model's folder is the working directory and first on ``sys.path``
  while the file runs (``from cfg import cfg``, relative cell/JSON/hoc/SWC paths work), then
  both are restored and the modules it imported from its folder are forgotten;
- **mechanisms first**: its ``.mod`` files are compiled (cached) and loaded before it runs, so
  cell templates that insert them load;
- **side-effect free**: NetPyNE's create/simulate/analyze/save entry points are replaced while it
  runs, so a tutorial ending in ``sim.createSimulateAnalyze(netParams, cfg)`` gives its network
  and runs nothing; settings the backend cannot honour are turned off with one warning each;
- **TVB drive**: ``input`` populations (NetStim point cells) are relays, one Poisson train per
  cell; a model without one gets a drive attached (:func:`attach_drive`, ``model_file.drive``).

Every check raises :class:`ModelError` with a one-line message naming the culprit.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import logging
import os
import runpy
import sys
import traceback
from typing import Any
import zlib
from pathlib import Path

import numpy as np

from .builder import BuiltNetwork, default_sim_config
from .config import NetpyneParams, UserModel
from .mechanisms import ModelError, compile_mods, load_mechanisms, mod_files

log = logging.getLogger(__name__)

#: NetPyNE entry points that would build, run, analyse or write while the model file loads
ENTRY_POINTS = ("create", "simulate", "analyze", "createSimulate", "createSimulateAnalyze",
                "createSimulateAnalyzeInterval", "createSimulateAnalyzeDistributed", "createExportNeuroML2",
                "runSim", "runSimWithIntervalFunc", "runSimIntervalSaving", "intervalSimulate",
                "distributedSimulate", "loadSimulate", "loadSimulateAnalyze", "loadAll", "saveData",
                "saveDataInNodes", "saveJSON", "saveModel", "save", "exportNeuroML2", "gatherData")
#: NetPyNE helpers that read a finished run (every tutorial ends in ``sim.checkOutput('tut2')``,
#: which compares its spike count with the expected one): nothing ran, so they do nothing
AFTER_RUN = ("checkOutput",)
#: changes a script makes to the network it built itself (NetPyNE's tut7: ``sim.net.modifyConns``
#: after ``sim.net.connectCells()``): recorded while the file loads and replayed, in order, on the
#: network the backend builds, so it runs the network as the script left it
MODIFICATIONS = ("modifyCells", "modifySynMechs", "modifyConns", "modifyStims")
#: simConfig settings this backend does not run, turned off with a warning (value when off)
UNSUPPORTED = {"recordLFP": [], "recordDipole": False, "recordDipolesHNN": False, "saveLFPCells": False,
               "cvode_active": False, "use_fast_imem": False, "coreneuron": False,
               "saveJson": False, "savePickle": False, "saveMat": False, "saveHDF5": False, "saveDpk": False,
               "saveDat": False, "saveCSV": False, "saveTiming": False, "recordTraces": {}, "analysis": {}}
DRIVE_SYN = "cosim_drive_syn"


INDEX = "index.npjson"


#: how a script names its model index: ``sim.loadFromIndexFile('index_net.npjson')``, ``sim.loadModel(...)``
_INDEX_CALL = re.compile(r"""(?:loadFromIndexFile|loadModel)\(\s*(?:[A-Za-z_]+\s*=\s*)?['"]([^'"]+\.npjson)['"]""")
#: how far above the model file an index is looked for (NetPyNE's LFPrecording: src/net/init.py)
INDEX_LEVELS = 4


def _index_file(path: Path) -> Path | None:
    """The model index of a model file, found as NetPyNE's own examples are run (from the index's
    folder): the index the script names (``sim.loadFromIndexFile('index_net.npjson')``, a path
    relative to where it is run) or ``index.npjson``, in the file's folder or up to INDEX_LEVELS
    folders above it; a ``.npjson`` given as the model is its own index."""
    path = Path(path).resolve()
    if path.suffix == ".npjson":
        return path
    names = []
    if path.suffix == ".py":
        try:
            names = _INDEX_CALL.findall(path.read_text(errors="replace"))
        except OSError:
            names = []
    names = list(dict.fromkeys(names + [INDEX]))
    for d in [path.parent, *path.parent.parents][:INDEX_LEVELS + 1]:
        for n in names:
            if (d / n).is_file():
                return d / n
    return None


def model_root(path: Path) -> Path:
    """The folder a model's scripts run from: its model index's (_index_file: ``mod_folder``,
    ``simConfig``, ``netParams`` and ``python_run`` are relative to it), else the model file's own."""
    index = _index_file(path)
    return index.parent if index is not None else Path(path).resolve().parent


def _index(path: Path) -> dict:
    index = _index_file(path)
    if index is None:
        return {}
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"model index {index}: not readable JSON: {str(e).splitlines()[0]}") from None
    return data if isinstance(data, dict) else {}


def find_mod_dir(um: UserModel) -> Path | None:
    """The model's mechanism folder: ``mod_dir`` if set, else its model index's ``mod_folder``,
    else its folder, ``mod/`` or ``../mod/``."""
    path = Path(um.path).expanduser()
    if um.mod_dir:
        d = Path(um.mod_dir).expanduser()
        if not d.is_dir():
            raise ModelError(f"model_file.mod_dir {d} does not exist")
        return d
    indexed = _index(path).get("mod_folder")
    if isinstance(indexed, str) and (model_root(path) / indexed).is_dir():
        return model_root(path) / indexed
    for d in (path.parent, path.parent / "mod", path.parent / "mechanisms", path.parent.parent / "mod"):
        if d.is_dir() and mod_files(d, um.mod_exclude):
            return d
    return None


def build_mechanisms(um: UserModel, progress=None) -> Path | None:
    """Compile (or find cached) the model's mechanisms; None when it has none."""
    d = find_mod_dir(um)
    return None if d is None else compile_mods(d, um.build_dir, um.mod_exclude, progress)


@contextlib.contextmanager
def model_folder(path: Path):
    """Run code as if started in the model's root (model_root: its folder, or the folder of its
    NetPyNE model index) with its own folder first on sys.path; restore cwd, sys.path, sys.argv,
    sys.modules."""
    folder = str(path.parent.resolve())
    cwd, argv, before = os.getcwd(), sys.argv, set(sys.modules)
    sys.path.insert(0, folder)
    sys.argv = [str(path)]
    os.chdir(model_root(path))
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.argv = argv
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
        for name in set(sys.modules) - before:    # the model's own modules (e.g. cfg) belong to it alone
            f = getattr(sys.modules.get(name), "__file__", None) or ""
            if f and os.path.abspath(f).startswith(folder + os.sep):
                sys.modules.pop(name, None)


@contextlib.contextmanager
def intercepted_sim(calls: list, modifications: list | None = None):
    """Replace NetPyNE's run/analyse/save entry points; record (name, netParams, simConfig) of each
    call, and (name, args, kwargs) of each change the script makes to a network it built."""
    import copy
    from netpyne import sim
    from netpyne.network import Network
    saved = [(sim, n, getattr(sim, n)) for n in ENTRY_POINTS if hasattr(sim, n)]
    if modifications is not None:
        saved += [(Network, n, getattr(Network, n)) for n in MODIFICATIONS if hasattr(Network, n)]
    # plots a script draws after running (sim.analysis.plotRaster(...)): nothing to plot, draw nothing
    saved += [(sim.analysis, n, getattr(sim.analysis, n)) for n in dir(sim.analysis) if n.startswith("plot")]
    saved += [(sim, n, getattr(sim, n)) for n in AFTER_RUN if hasattr(sim, n)]

    def stand_in(name):
        if name in MODIFICATIONS:
            def modify(_net, *args, **kw):
                modifications.append((name, copy.deepcopy(args), copy.deepcopy(kw)))
            return modify

        def f(*args, **kw):
            if name.startswith("plot") or name in AFTER_RUN:
                return None
            net = kw.get("netParams", args[0] if args else None)
            cfg = kw.get("simConfig", args[1] if len(args) > 1 else None)
            calls.append((name, net, cfg))
        return f
    for owner, n, _ in saved:
        setattr(owner, n, stand_in(n))
    try:
        yield
    finally:
        for owner, n, f in saved:
            setattr(owner, n, f)


def _is(obj, kind: str) -> bool:
    return type(obj).__name__ == kind or (kind == "NetParams" and isinstance(obj, dict) and "popParams" in obj)


def _where(path: Path, tb) -> str:
    frames = [f for f in traceback.extract_tb(tb) if os.path.abspath(f.filename).startswith(str(path.parent.resolve()))]
    return f" (at {Path(frames[-1].filename).name} line {frames[-1].lineno})" if frames else ""


def _read(path: Path, modifications: list | None = None) -> tuple[Any, Any]:
    if path.suffix == ".npjson":        # NetPyNE's model index: its own loader (mechanisms are ours)
        from netpyne import sim
        try:
            with model_folder(path), contextlib.redirect_stdout(io.StringIO()):
                cfg, net = sim.loadModel(str(path.resolve()), loadMechs=False)
        except Exception as e:  # the user's code: its error and where, in one line
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ModelError(f"model index {path}: NetPyNE could not load it: {type(e).__name__}: {msg}") from None
        return net, cfg
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
    calls: list = []
    with model_folder(path), intercepted_sim(calls, modifications):
        try:
            ns = runpy.run_path(str(path), run_name="__cosim_model__")
        except SystemExit as e:
            raise ModelError(f"model file {path}: called exit({e.code}) while being loaded") from None
        except Exception as e:  # the user's code: its error and where, in one line
            msg = str(e).splitlines()[0] if str(e) else ""
            raise ModelError(f"model file {path}: raised {type(e).__name__}: {msg}"
                             f"{_where(path, e.__traceback__)}") from None
    net = ns.get("netParams") if _is(ns.get("netParams"), "NetParams") else None
    cfg = next((ns[k] for k in ("simConfig", "cfg") if _is(ns.get(k), "SimConfig") or isinstance(ns.get(k), dict)), None)
    if net is None:
        net = next((v for v in ns.values() if _is(v, "NetParams")), None)
    for _name, n, c in calls:      # e.g. sim.createSimulateAnalyze(netParams=np_, simConfig=cfg_) with other names
        net = net if net is not None else n
        cfg = cfg if cfg is not None else c
    if calls:
        log.info("model file %s called sim.%s: took its netParams/simConfig; nothing was simulated or written "
                 "(cosim steps the network itself)", path.name, ", sim.".join(dict.fromkeys(c[0] for c in calls)))
    if modifications:
        log.info("model file %s changed the network it built (sim.net.%s): replayed in order on the network "
                 "cosim builds, which is the network as the script left it", path.name,
                 ", sim.net.".join(dict.fromkeys(m[0] for m in modifications)))
    return net, cfg


def _check_mapping(um: UserModel, regions, n_brain_regions: int | None) -> list[int]:
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
    return owned


def _turn_off_unsupported(cfg, path: Path) -> None:
    for key, _off in UNSUPPORTED.items():
        val = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
        if val:
            what = sorted(val) if isinstance(val, dict) else val
            log.warning("model %s: simConfig.%s = %s turned off (not supported by the cosim NetPyNE backend; "
                        "see docs/user_models.md)", path.name, key, what if len(repr(what)) < 80 else "...")


def _keep_rxd_on_own_cells(net, own: list[str], path: Path) -> None:
    """An RxD region over ``cells: ['all']`` means the model's own cells: NetPyNE would also take
    the drive's NetStim relays (point cells without sections) and fail on them (``'function'
    object has no attribute 'items'``; NetPyNE's examples/rxd_buffering), so 'all' becomes the
    model's own populations."""
    regions = (getattr(net, "rxdParams", None) or {}).get("regions") or {}
    for label, reg in regions.items():
        cells = reg.get("cells") if isinstance(reg, dict) else None
        if isinstance(cells, (list, tuple)) and "all" in cells:
            reg["cells"] = [c for c in cells if c != "all"] + own
            log.info("model %s: rxdParams region %r over the model's own populations %s (not cosim's drive)",
                     path.name, label, own)


def density_cells(net, pp: dict) -> int | None:
    """How many cells NetPyNE makes of a population given by a number ``density`` (cells/mm³): its
    own arithmetic (netpyne/network/pop.py, ``Pop.createCellsDensity``: the network's volume by
    ``shape`` and ``sizeX/Y/Z`` µm, times each normalized range, ``int(density * volume)``; no
    ``netParams.scale``); None for a density given as a function (NetPyNE draws the count)."""
    import math
    d = pp.get("density")
    if d is None or isinstance(d, str):
        return None
    size = {c: float(getattr(net, f"size{c.upper()}", 100) or 100) for c in "xyz"}
    shape = getattr(net, "shape", "cuboid") or "cuboid"
    v = size["y"] / 1e3 * size["x"] / 1e3 * size["z"] / 1e3
    if shape == "cylinder":
        v = size["y"] / 1e3 * size["x"] / 1e3 / 2 * size["z"] / 1e3 / 2 * math.pi
    elif shape == "ellipsoid":
        v = size["y"] / 1e3 / 2.0 * size["x"] / 1e3 / 2.0 * size["z"] / 1e3 / 2.0 * math.pi * 4.0 / 3.0
    for c in "xyz":
        if f"{c}Range" in pp:
            lo, hi = (pt / size[c] for pt in pp[f"{c}Range"])
        elif f"{c}normRange" in pp:
            lo, hi = pp[f"{c}normRange"]
        else:
            continue
        v *= hi - lo
    return int(d * v)


def attach_drive(net, um: UserModel, seed: int) -> dict[str, tuple[int, str]]:
    """Add one NetStim relay population per driven population, connected one relay per (cell, source).

    Only in regions without an ``input`` population of their own. A seeded ``fraction`` of each
    population's cells is driven, each by ``sources_per_cell`` relays; returns the new
    populations' map (label -> (region, "input")).
    """
    d = um.drive
    syn = d.synapse
    if syn is None:
        syn = DRIVE_SYN
        net.synMechParams[syn] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0.0}
    elif syn not in net.synMechParams:
        raise ModelError(f"model_file.drive.synapse {syn!r} is not in the model's synMechParams "
                         f"{sorted(net.synMechParams)}")
    scale = float(getattr(net, "scale", 1) or 1)
    fed = {m.region for m in um.populations.values() if m.role == "input"}   # regions with their own input pop
    added = {}
    for pop, m in um.populations.items():
        if m.role not in d.roles or m.region in fed:
            continue
        pp = net.popParams[pop]
        n: int | None
        if "numCells" in pp:
            n = int(scale * pp["numCells"])
        elif "cellsList" in pp:
            n = len(pp["cellsList"])
        elif (n := density_cells(net, pp)) is None:
            raise ModelError(f"population {pop!r} has no numCells and its density is a function of position (NetPyNE "
                             "draws how many cells it makes), so cosim cannot size the TVB drive: give it numCells or "
                             "add a NetStim population with role 'input'")
        if pp.get("cellModel") in ("NetStim", "VecStim"):
            raise ModelError(f"population {pop!r} (role {m.role!r}) is made of {pp['cellModel']} point processes: "
                             "map spiking cells as exc/inh")
        rng = np.random.default_rng([seed, m.region, zlib.crc32(pop.encode())])
        k = n if d.fraction >= 1 else max(1, int(round(d.fraction * n)))
        targets = np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
        label = f"cosim_drive_{pop}"
        n_relays = k * d.sources_per_cell      # NetPyNE creates int(netParams.scale * numCells) cells
        net.popParams[label] = {"cellModel": "NetStim", "numCells": n_relays if scale == 1 else (n_relays + 0.5) / scale,
                                "number": 1, "start": -1, "noise": 0, "interval": 1e9}
        conn = {"preConds": {"pop": label}, "postConds": {"pop": pop},
                "connList": [[i * d.sources_per_cell + s, int(t)] for i, t in enumerate(targets)
                             for s in range(d.sources_per_cell)],
                "weight": d.weight_uS, "delay": d.delay_ms, "synMech": syn, "loc": d.loc}
        if d.sec:
            conn["sec"] = d.sec
        net.connParams[f"{label}->{pop}"] = conn
        added[label] = (m.region, "input")
        log.info("TVB drive: %d of %d %s cells x %d Poisson source(s), %.4g uS on %s", k, n, pop,
                 d.sources_per_cell, d.weight_uS, syn)
    return added


def load_user_model(p: NetpyneParams, regions: list[int] | tuple[int, ...], seed: int,
                    n_brain_regions: int | None = None, compile_only: bool = False,
                    progress=None) -> BuiltNetwork | None:
    """Validate and load ``p.model_file`` for this node's ``regions`` (nothing is simulated).

    ``compile_only`` checks the mapping and compiles mechanisms but does not run the model file
    (rank 0 uses it before telling other MPI ranks to build).
    """
    um = p.model_file
    if um is None:
        raise ModelError("no model_file configured")
    path = Path(um.path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    owned = _check_mapping(um, regions, n_brain_regions)
    build = build_mechanisms(um, progress)
    if compile_only:
        return None
    if build is not None:
        load_mechanisms(build)          # before the model runs: its cell templates may insert them
    modifications: list = []
    net, sim_cfg = _read(path, modifications)
    if net is None:
        raise ModelError(f"model file {path} does not define netParams (nor passes it to sim.create*)")
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
    from netpyne import specs
    if isinstance(net, dict):
        with model_folder(path):        # a saved network may name cell files relative to itself
            net = specs.NetParams(net)
    popmap: dict[str, tuple[int, str]] = {pop: (m.region, m.role) for pop, m in um.populations.items()}
    if any(m.region not in {n.region for n in um.populations.values() if n.role == "input"}
           for m in um.populations.values()):
        own = list(net.popParams)
        added = attach_drive(net, um, seed)             # regions without an input population
        popmap.update(added)
        _keep_rxd_on_own_cells(net, own, path)
    for pop, m in um.populations.items():
        if m.role == "input":      # relays: fire once per event the adapter sends, never on their own
            net.popParams[pop].update({"number": 1, "start": -1, "noise": 0, "interval": 1e9})
            net.popParams[pop].pop("rate", None)
    if sim_cfg is not None:
        _turn_off_unsupported(sim_cfg, path)
    cfg = sim_cfg if hasattr(sim_cfg, "dt") else specs.SimConfig(sim_cfg if isinstance(sim_cfg, dict) else None)
    if sim_cfg is not None and abs(float(getattr(cfg, "dt", p.dt_ms)) - p.dt_ms) > 1e-12:
        log.warning("model %s: simConfig.dt %s replaced by params.dt_ms %s", path.name, cfg.dt, p.dt_ms)
    user_h = dict(getattr(cfg, "hParams", {}) or {})
    default_sim_config(cfg, p, seed, v_init=user_h.get("v_init"))
    for key, off in UNSUPPORTED.items():
        if key not in ("recordTraces", "analysis"):       # default_sim_config set those from params
            setattr(cfg, key, off)
    if "celsius" in user_h:                 # the model's temperature wins over params.celsius
        cfg.hParams["celsius"] = user_h["celsius"]
    log.info("loaded user model %s: %d pops mapped to regions %s", path, len(um.populations), owned)
    return BuiltNetwork(net, cfg, popmap, [], uses_rxd=bool(getattr(net, "rxdParams", None)),
                        modifications=modifications)
