"""The spiking regions of a NEST node: the default E/I network or the user's own file.

Both give a list of :class:`Population` (label, region, role, NodeCollection). Connectivity of
the default network is drawn in NumPy from the run seed (one generator per rule and region),
then created with one ``nest.Connect`` of node-id arrays per rule: the network is the same for
any thread count, and the rules read like NetPyNE's (probability per pair, weights
``max(0, N(w, sd*w))``, fixed delays).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import NestParams

log = logging.getLogger(__name__)

US_TO_NS = 1000.0


from cosim.errors import ModelError  # noqa: E402  (one hierarchy: cosim.errors)


@dataclass
class Population:
    label: str
    region: int
    role: str                 # "input" | "exc" | "inh" | "other"
    nodes: Any                # nest.NodeCollection

    @property
    def size(self) -> int:
        return len(self.nodes)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, tags), 0x4E57])))


def _connect_random(nest, pre, post, prob: float, w_nS: float, sd_frac: float, delay: float,
                    rng: np.random.Generator, autapses: bool = True) -> int:
    """Each (pre, post) pair with probability ``prob``; weight max(0, N(w, sd*w)) (sign kept for inh)."""
    if prob <= 0 or w_nS == 0:
        return 0
    n_pre, n_post = len(pre), len(post)
    # draw target by target to bound memory for large populations
    src, tgt = [], []
    for j in range(n_post):
        s = np.flatnonzero(rng.random(n_pre) < prob)
        src.append(s)
        tgt.append(np.full(s.size, j))
    s, t = np.concatenate(src), np.concatenate(tgt)
    if not autapses and pre == post:
        keep = s != t
        s, t = s[keep], t[keep]
    if s.size == 0:
        return 0
    mag = abs(w_nS)
    w = np.maximum(0.0, rng.normal(mag, sd_frac * mag, s.size)) if sd_frac > 0 else np.full(s.size, mag)
    w = np.copysign(np.maximum(w, 1e-12), w_nS)   # a zero weight would flip receptor: keep it tiny, same sign
    pre_ids = np.asarray(pre.tolist())[s]
    post_ids = np.asarray(post.tolist())[t]
    nest.Connect(pre_ids, post_ids, "one_to_one",
                 {"synapse_model": "static_synapse", "weight": w, "delay": np.full(s.size, float(delay))})
    return int(s.size)


def build_default(nest, p: NestParams, regions: list[int], connectome: dict | None, G: float,
                  tvb_dt_ms: float, seed: int, remote: dict[int, int] | None = None, remote_shift_ms: float = 0.0,
                  stand_ins: dict[int, Any] | None = None) -> list[Population]:
    """E and I populations per region, within-region rules, E->E between this node's regions.

    ``remote`` (spikes between services, PROTOCOL.md §4.2): source region on another service -> the
    size of its E population. Each gets one ``spike_generator`` per E cell (put in ``stand_ins``),
    which replays the cell's spikes ``remote_shift_ms`` (m windows) late, wired onto this node's E
    cells by the draw one service would make (the same generator, ``_rng(seed, tgt, src, 0xEE)``,
    over the same number of cells) with delays ``remote_shift_ms`` shorter: each spike arrives at
    ``t_spike + d`` as within one service."""
    net = p.network
    n_e, n_i = net.sizes()
    cell = {**net.cell.nest_params(),
            "tau_rise_ex": net.syn_exc.tau_rise_ms, "tau_decay_ex": net.syn_exc.tau_decay_ms, "E_ex": net.syn_exc.E_rev_mV,
            "tau_rise_in": net.syn_inh.tau_rise_ms, "tau_decay_in": net.syn_inh.tau_decay_ms, "E_in": net.syn_inh.E_rev_mV,
            "V_m": net.v_init_mV}
    pops: list[Population] = []
    by = {}
    for r in regions:
        E = nest.Create(net.cell.model, n_e, params=cell)
        I = nest.Create(net.cell.model, n_i, params=cell)
        by[r] = {"E": E, "I": I}
        pops += [Population(f"E_{r}", r, "exc", E), Population(f"I_{r}", r, "inh", I)]
    n_syn = 0
    from cosim.sdk.region_params import scaled_prob

    def prob(p_: float) -> float:                       # scale keeps the in-degree (network.scale_keeps)
        return scaled_prob(p_, net.scale, net.scale_keeps)
    for r in regions:
        for key, c in net.conns.items():
            pre, post = by[r][key[0]], by[r][key[1]]
            sign = 1.0 if key[0] == "E" else -1.0       # negative weight = inhibitory receptor in NEST
            n_syn += _connect_random(nest, pre, post, prob(c.prob), sign * c.weight_uS * US_TO_NS, c.weight_sd_frac,
                                     c.delay_ms, _rng(seed, r, ord(key[0]), ord(key[1])))
    ir = p.inter_region
    remote = {int(q): int(n) for q, n in (remote or {}).items()}
    if ir.enabled and connectome is not None and len(regions) + len(remote) > 1:
        w = np.asarray(connectome["weights"], dtype=float)
        idel = np.asarray(connectome["idelays"])
        for tgt in regions:
            for src in list(regions) + sorted(remote):
                if src == tgt or w[tgt, src] == 0:
                    continue
                delay = max(float(idel[tgt, src]) * tvb_dt_ms, ir.min_delay_ms)
                pre = by[src]["E"] if src in by else None
                if pre is None:            # another service's region: its stand-ins (PROTOCOL.md §4.2)
                    delay -= remote_shift_ms
                    if delay < p.dt_ms - 1e-9:
                        raise ModelError(f"E->E delay from region {src} (another service) to {tgt} is "
                                         f"{delay + remote_shift_ms:g} ms: NEST needs it at least the lag "
                                         f"({remote_shift_ms:g} ms) plus one step ({p.dt_ms:g} ms); shorten run.window_ms")
                    if stand_ins is None:
                        raise ModelError("stand-ins of other services' cells need a place to go (stand_ins)")
                    if src not in stand_ins:
                        stand_ins[src] = nest.Create("spike_generator", remote[src],
                                                     params={"allow_offgrid_times": True})
                    pre = stand_ins[src]
                n_syn += _connect_random(nest, pre, by[tgt]["E"], prob(ir.prob),
                                         ir.weight_factor_uS * G * float(w[tgt, src]) * US_TO_NS, 0.0, delay,
                                         _rng(seed, tgt, src, 0xEE))
    log.info("built default NEST network: regions %s, %d E + %d I per region, %d synapses", regions, n_e, n_i, n_syn)
    return pops


@contextlib.contextmanager
def _model_dir(path: Path):
    """Run a model file from its own folder, importable siblings included; restore after."""
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(path.parent)
    sys.path.insert(0, str(path.parent))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


#: NEST calls that run a simulation (or reset the kernel cosim has set up): a script written to run
#: on its own (NEST's examples: ``nest.ResetKernel()`` … ``nest.Simulate(1000.0)``, then a raster
#: plot) loads with these doing nothing, so its network is taken and nothing is simulated
NEST_RUNS = ("Simulate", "Run", "Prepare", "Cleanup", "ResetKernel")
#: the calls at which a script stops loading: its network is built, what follows reads results
NEST_STOPS = ("Simulate", "Run")
#: NEST's plotting helpers a script calls after simulating (they raise "No events recorded")
NEST_PLOTS = ("raster_plot", "voltage_trace")


class _StopAtSimulate(ModelError):
    """Raised by the stand-in of the script's first ``nest.Simulate``/``Run`` to end its loading (the
    network is built); caught in _run_model, never seen outside it."""


@contextlib.contextmanager
def _intercepted(nest, calls: list, folder: Path | None = None, stopped: dict | None = None):
    """While a model file runs: NEST_RUNS and NEST_PLOTS functions record their call and do nothing;
    with ``stopped`` given, the first NEST_STOPS call also keeps the locals of every function of the
    model's folder then running (``stopped[function name]``) and ends the script there."""
    import importlib
    import inspect
    saved = [(nest, n, getattr(nest, n)) for n in NEST_RUNS if hasattr(nest, n)]
    for mod_name in NEST_PLOTS:
        try:
            mod = importlib.import_module(f"nest.{mod_name}")
        except Exception:  # noqa: BLE001  (matplotlib missing: the script's own import fails, and says why)
            continue
        saved += [(mod, n, f) for n, f in vars(mod).items() if callable(f) and not n.startswith("_")
                  and getattr(f, "__module__", "") == mod.__name__]

    def stand_in(owner, name):
        what = f"nest.{name}" if owner is nest else f"{owner.__name__}.{name}"

        def f(*args, **kw):
            calls.append(what)
            if stopped is not None and owner is nest and name in NEST_STOPS:
                for fr in inspect.stack()[1:]:
                    if folder is not None and Path(fr.filename).resolve().parent == folder \
                            and fr.function != "<module>":
                        stopped.setdefault(fr.function, dict(fr.frame.f_locals))
                raise _StopAtSimulate("stopped at the first Simulate/Run")
        return f
    import types
    put = types.ModuleType.__setattr__      # NEST 3's module object refuses plain attribute assignment
    for owner, n, _ in saved:
        put(owner, n, stand_in(owner, n))
    try:
        yield
    finally:
        for owner, n, f in saved:
            put(owner, n, f)


def _step(obj, part: str):
    """One step of a dotted path: a dict key, a list index, or an attribute; KeyError if absent."""
    if isinstance(obj, dict):
        if part in obj:
            return obj[part]
        if part.lstrip("-").isdigit() and int(part) in obj:
            return obj[int(part)]
        raise KeyError(part)
    if isinstance(obj, (list, tuple)) and part.lstrip("-").isdigit():
        try:
            return obj[int(part)]
        except IndexError:
            raise KeyError(part) from None
    if hasattr(obj, part):
        return getattr(obj, part)
    raise KeyError(part)


def _set_path(obj, parts: list[str], value, what: str) -> None:
    """Set ``obj.parts`` (keys, indices or attributes) to ``value``; the key must exist (a typo is one line)."""
    try:
        for part in parts[:-1]:
            obj = _step(obj, part)
        _step(obj, parts[-1])
    except KeyError as e:
        raise ModelError(f"model_file.set.{what}: there is no {e.args[0]!r} to set") from None
    last = parts[-1]
    if isinstance(obj, dict):
        obj[int(last) if last not in obj and last.lstrip("-").isdigit() else last] = value
    elif isinstance(obj, list) and last.lstrip("-").isdigit():
        obj[int(last)] = value
    else:
        setattr(obj, last, value)


def _where(exc: BaseException, folder: Path) -> str:
    """`` (at FILE line N)`` of the innermost frame of a file in the model's folder, or ''."""
    import traceback
    hit = ""
    for fr in traceback.extract_tb(exc.__traceback__):
        f = Path(fr.filename)
        if f.is_absolute() and folder in f.resolve().parents:
            hit = f" (at {f.resolve().relative_to(folder)} line {fr.lineno})"
    return hit


def _compile(path: Path, sets: dict[str, Any], folder: Path):
    """The model file compiled, with ``model_file.set`` entries for the script's own variables
    inserted after each top-level assignment of the variable (line numbers kept); the entries for a
    module beside the file are returned to be set on the module before the script runs."""
    import ast
    src = path.read_text()
    tree = ast.parse(src, str(path))
    script, modules = {}, {}
    for key, value in sets.items():
        head = key.split(".")[0]
        if (folder / f"{head}.py").is_file() or (folder / head / "__init__.py").is_file():
            if "." not in key:
                raise ModelError(f"model_file.set.{key}: {head} is a module: name what to set in it ({head}.VAR)")
            modules[key] = value
        else:
            script[key] = value
    body, done = [], set()
    for stmt in tree.body:
        body.append(stmt)
        names = set()
        if isinstance(stmt, ast.Assign):
            names = {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names = {stmt.target.id}
        for key in script:
            if key.split(".")[0] in names:
                call = ast.parse(f"__cosim_set__({key.split('.')[0]!s}, {key!r})").body[0]
                if "." not in key:
                    call = ast.parse(f"{key} = __cosim_values__[{key!r}]").body[0]
                for node in ast.walk(call):
                    ast.copy_location(node, stmt)
                    node.end_lineno = getattr(stmt, "end_lineno", stmt.lineno)  # type: ignore[attr-defined]
                body.append(call)
                done.add(key)
    missing = [k for k in script if k not in done]
    if missing:
        raise ModelError(f"model_file.set.{missing[0]}: {path.name} assigns no {missing[0].split('.')[0]!r} at its "
                         "top level (and no module of that name is beside it)")
    tree.body = body
    return compile(tree, str(path), "exec"), modules, script


def _run_model(nest, path: Path, um, calls: list) -> tuple[dict, Any, dict]:
    """Run the model file as the published script runs (``__main__``), or import it and call
    ``um.function``; stop at its first Simulate/Run. Returns (module globals, the function's
    return value, locals of the model's functions running at the stop)."""
    import builtins
    import importlib
    folder = path.parent
    code, module_sets, script_sets = _compile(path, um.set, folder)

    def cosim_set(root, key):
        _set_path(root, key.split(".")[1:], script_sets[key], key)
    ns = {"__name__": "cosim_nest_model" if um.function else "__main__", "__file__": str(path),
          "__builtins__": builtins, "__cosim_set__": cosim_set, "__cosim_values__": script_sets}
    stopped: dict = {}
    result = None
    before = set(sys.modules)
    try:
        with _model_dir(path), _intercepted(nest, calls, folder, stopped):
            for key, value in module_sets.items():
                head, *rest = key.split(".")
                _set_path(importlib.import_module(head), rest, value, key)
            try:
                exec(code, ns)
                if um.function:
                    fn = ns.get(um.function)
                    if not callable(fn):
                        raise ModelError(f"model_file.function: {path.name} defines no function {um.function!r}")
                    result = fn(**um.kwargs)
                elif callable(ns.get("build")):          # the convention of cosim's own examples
                    result = ns["build"](nest, list(um._regions), int(um._seed))
            except _StopAtSimulate:
                pass
            except SystemExit as e:              # a script that ends itself while it builds
                raise ModelError(f"{path.name}: the model file exited (sys.exit({e.code!r})) while it was "
                                 f"loading{_where(e, folder)}") from None
    finally:
        for name in set(sys.modules) - before:           # the model's own modules: fresh for the next load
            f = getattr(sys.modules[name], "__file__", None)
            if f and folder in Path(f).resolve().parents:
                del sys.modules[name]
    return ns, result, stopped


def _lookup(name: str, result, ns: dict, stopped: dict, nest):
    """A population named by where the script keeps it: in what ``function`` returned, in the
    module's globals (also a dict ``populations``, cosim's own convention), or ``FUNC.VAR`` among
    the locals of a function running at the stop. Returns (NodeCollection or None, why not)."""
    parts = name.split(".")
    roots = []
    if result is not None:
        roots.append(("the function's return value", result, parts))
    roots.append(("the script", ns, parts))
    if isinstance(ns.get("populations"), dict):
        roots.append(("populations", ns["populations"], parts))
    if len(parts) > 1 and parts[0] in stopped:
        roots.append((f"function {parts[0]}", stopped[parts[0]], parts[1:]))
    for _, root, ps in roots:
        obj = root
        try:
            for part in ps:
                obj = _step(obj, part)
        except KeyError:
            continue
        if isinstance(obj, nest.NodeCollection):
            return obj, ""
        return None, f"{name} is a {type(obj).__name__}, not a NodeCollection"
    return None, ""


def _kept(prefix: str, v, nest, depth: int) -> list[str]:
    """Paths of the NodeCollections held by ``v``: itself, the items of a list/tuple/dict, and (``depth``
    levels down) the attributes of an object of the model's own classes (``net.pops.0``)."""
    if isinstance(v, nest.NodeCollection):
        return [prefix]
    if depth <= 0:
        return []
    import types
    if isinstance(v, dict):
        items = list(v.items())
    elif isinstance(v, (list, tuple)):
        items = list(enumerate(v))
    elif not isinstance(v, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)) \
            and hasattr(v, "__dict__") and type(v).__module__ not in ("builtins",) \
            and not type(v).__module__.startswith(("nest", "numpy")):
        items = [(k, x) for k, x in vars(v).items() if not str(k).startswith("__")]
    else:
        return []
    out = []
    for k, x in items[:200]:
        out += _kept(f"{prefix}.{k}", x, nest, depth - 1)
    return out


def _available(result, ns: dict, stopped: dict, nest) -> list[str]:
    """Where the script keeps NodeCollections, as paths ``_lookup`` resolves (in the order it keeps them)."""
    out = []
    if isinstance(result, dict):
        for k, v in result.items():
            out += _kept(str(k), v, nest, 2)
    for k, v in ns.items():
        if not k.startswith("__"):
            out += _kept(k, v, nest, 2)
    for fn, loc in stopped.items():
        for k, v in loc.items():
            out += _kept(f"{fn}.{k}", v, nest, 2)
    return list(dict.fromkeys(out))


def load_user_model(nest, p: NestParams, regions: list[int], seed: int) -> list[Population]:
    """Run the user's file (it builds its network with ``nest.Create/Connect``) as ``python FILE``
    runs it, up to its first ``nest.Simulate``/``Run`` (or import it and call ``model_file.function``),
    with ``model_file.set`` applied to its own parameters, and map its populations by where it keeps
    them (:func:`_lookup`). Simulating, resetting the kernel and plotting do nothing while it runs
    (NEST_RUNS, NEST_PLOTS); kernel settings it changes are checked (resolution) or put back
    (data_path, print_time) afterwards. Its errors name the file and line."""
    um = p.model_file
    assert um is not None                    # called only for a node with a model file
    path = Path(um.path).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"model_file.path: file not found: {um.path}")
    kernel = {k: nest.GetKernelStatus(k) for k in ("overwrite_files",)}      # data_path: adapter._place_files
    calls: list[str] = []
    try:
        um_run = _RunSpec(um, regions, seed)
        ns, found, stopped = _run_model(nest, path, um_run, calls)
    except ModelError:
        raise
    except Exception as e:
        after = [c for c in calls if c.split(".")[-1] in NEST_RUNS or "plot" in c or "trace" in c]
        hint = (f"; it had called {', '.join(dict.fromkeys(after))}, which do nothing while cosim loads a model"
                if after else "")
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"{path.name}: the model file failed: {type(e).__name__}: {msg}{_where(e, path.parent)}"
                         f"{hint}") from e
    if calls:
        log.info("model file %s called %s: nothing was simulated, reset or plotted (cosim runs the network "
                 "window by window)%s", path.name, ", ".join(dict.fromkeys(calls)),
                 "; it was loaded up to its first Simulate/Run" if any(c.split(".")[-1] in NEST_STOPS for c in calls)
                 else "")
    resolution = float(nest.GetKernelStatus("resolution"))
    if abs(resolution - p.dt_ms) > 1e-9:
        raise ModelError(f"{path.name} sets the kernel resolution to {resolution:g} ms, but params.dt_ms is "
                         f"{p.dt_ms:g}: set params.dt_ms: {resolution:g} in the config (cosim steps NEST at it)")
    # cosim's recorder files and no progress printing
    restore = {k: v for k, v in kernel.items() if v not in ("", None) and nest.GetKernelStatus(k) != v}
    nest.SetKernelStatus({**restore, "print_time": False})
    pops = []
    for name, m in um.populations.items():
        nodes, why = _lookup(name, found, ns, stopped, nest)
        if nodes is None:
            raise ModelError(f"model_file.populations.{name}: {why or f'{path.name} defines no population {name!r}'} "
                             f"(its populations: {', '.join(_available(found, ns, stopped, nest)) or 'none'})")
        if m.region not in regions:
            raise ModelError(f"model_file.populations.{name}.region: {m.region} is not one of this node's regions {regions}")
        pops.append(Population(name, int(m.region), m.role, nodes))
    for r in regions:
        if not any(q.region == r and q.role in ("exc", "inh") for q in pops):
            raise ModelError(f"region {r}: no population mapped to it with role exc or inh")
    return pops


@dataclass
class _RunSpec:
    """What _run_model needs of ``model_file``, with the node's regions and seed for ``build``."""
    um: Any
    regions: list
    seed: int

    def __getattr__(self, name):
        if name == "_regions":
            return self.regions
        if name == "_seed":
            return self.seed
        return getattr(self.um, name)


# ---- TVB's drive: which cells, in which unit, on which receptor ---------------------------------

#: a weight key of ``params.input`` -> (the synapse kind it is for, factor to NEST's unit)
WEIGHT_KEYS = {"weight_uS": ("conductance", US_TO_NS), "weight_nS": ("conductance", 1.0),
               "weight_pA": ("current", 1.0), "weight_mV": ("delta", 1.0)}
KIND_KEY = {"conductance": "weight_nS (or weight_uS)", "current": "weight_pA", "delta": "weight_mV"}
KIND_WHAT = {"conductance": "conductance-based synapses (a weight in nS)",
             "current": "current-based synapses (a weight in pA)",
             "delta": "delta synapses (a weight is a jump of the membrane potential in mV)"}


def drive_targets(p: NestParams, pops: list[Population], region: int) -> list[Population]:
    """The populations of ``region`` that get TVB's trains: its ``input`` populations if any, else its
    ``exc`` ones (and ``inh`` with ``input.targets: exc+inh``)."""
    targets = [q for q in pops if q.region == region and q.role == "input"]
    if not targets:
        roles = ("exc",) if p.input.targets == "exc" else ("exc", "inh")
        targets = [q for q in pops if q.region == region and q.role in roles]
    return targets


def models_of(q: Population) -> list[str]:
    """The NEST model names of a population's neurons (one unless it joins several)."""
    m = q.nodes.get("model")
    return sorted({str(x) for x in m}) if isinstance(m, (list, tuple)) else [str(m)]


def synapse_kind(nest, model: str) -> str | None:
    """How a NEST neuron takes a spike's weight: "conductance" (nS), "current" (pA), "delta" (mV),
    "any" (parrot neurons repeat spikes, the weight is unused), or None (cannot tell). From NEST's
    naming convention (``*_cond_*``, ``*_psc_*``, ``*_psc_delta*``), then the model's reversal
    potentials (``E_ex``/``E_rev`` mean conductances)."""
    if model.startswith("parrot_neuron"):
        return "any"
    if "psc_delta" in model or model == "izhikevich":
        return "delta"
    if "_cond" in model or model == "ht_neuron" or model.startswith("iaf_bw_2001"):
        return "conductance"
    if "_psc" in model:
        return "current"
    try:
        d = nest.GetDefaults(model)
    except Exception:  # noqa: BLE001  (not a NEST model name)
        return None
    return "conductance" if ("E_ex" in d or "E_rev" in d) else None


def drive_weight(nest, p: NestParams, targets: list[Population]) -> tuple[float, str, str]:
    """The weight of one of TVB's input spikes in NEST's unit for the targets' synapses, the
    ``params.input`` key it came from and the kind: a key whose unit does not fit the targets'
    synapses is one line naming both (``weight_uS`` on ``iaf_psc_delta`` used to be read as
    1000x mV); without a key, conductance targets take ``weight_uS``'s default, others must say."""
    kinds: dict[str, list[str]] = {}
    for q in targets:
        for m in models_of(q):
            kinds.setdefault(synapse_kind(nest, m) or "unknown", []).append(f"{q.label} ({m})")
    kinds.pop("any", None)
    inp = p.input
    given = [k for k in WEIGHT_KEYS if k in inp.model_fields_set and getattr(inp, k) is not None]
    if len(kinds) > 1:
        raise ModelError("params.input: TVB's drive reaches populations with different synapse kinds ("
                         + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(kinds.items()))
                         + "): map an input population, or drive only one kind (input.targets)")
    kind = next(iter(kinds), "any")
    who = ", ".join(next(iter(kinds.values()), []))
    if given:
        key = given[0]
        need, factor = WEIGHT_KEYS[key]
        if kind not in ("any", "unknown") and need != kind:
            raise ModelError(f"params.input.{key}: TVB's drive reaches {who}, which has {KIND_WHAT[kind]}: "
                             f"give params.input.{KIND_KEY[kind]} instead")
        return float(getattr(inp, key)) * factor, key, need
    if kind in ("conductance", "any"):
        return float(inp.weight_uS) * US_TO_NS, "weight_uS", "conductance"
    if kind == "unknown":
        raise ModelError(f"params.input: cannot tell how {who} takes a spike's weight: give "
                         "params.input.weight_nS, weight_pA or weight_mV (conductance, current or delta synapses)")
    raise ModelError(f"params.input: TVB's drive reaches {who}, which has {KIND_WHAT[kind]}: give "
                     f"params.input.{KIND_KEY[kind]} (the default weight_uS is for conductance-based neurons)")


def _is_seq(x) -> bool:
    return isinstance(x, (list, tuple, np.ndarray))


def drive_receptor(nest, p: NestParams, q: Population) -> int:
    """The receptor port TVB's drive connects to on ``q``'s neurons: ``input.receptor`` (a port, a
    name of the neuron's ``receptor_types``, or per population), else chosen from what the neuron
    declares: ``AMPA`` (or the ``*_exc`` port nearest the soma) of named receptors, the first
    excitatory port (E_rev >= -20 mV) of a ``*_multisynapse`` neuron (ports 1..n; port 0 is
    refused), else 0."""
    given = p.input.receptor
    if isinstance(given, dict):
        given = given.get(q.label)
    model = models_of(q)[0]
    st = q.nodes[0].get()
    types = st.get("receptor_types") or {}
    where = f"params.input.receptor for {q.label} ({model})"
    if types:
        if given is None:
            for name in ("AMPA", "soma_exc", "proximal_exc", "distal_exc"):
                if name in types:
                    return int(types[name])
            raise ModelError(f"{where}: the neuron's receptors are {sorted(types)}: name the one TVB's drive "
                             "should reach (params.input.receptor)")
        if isinstance(given, str):
            if given not in types:
                raise ModelError(f"{where}: {given!r} is not one of its receptors {sorted(types)}")
            return int(types[given])
        if int(given) not in types.values():
            raise ModelError(f"{where}: port {given} is not one of its receptors {types}")
        return int(given)
    taus = st.get("tau_syn")
    n = st.get("n_receptors")
    if n is None and _is_seq(taus):
        n = len(taus)
    if n is not None and ("multisynapse" in model or model.startswith("glif")):
        n = int(n)
        if n == 0:
            raise ModelError(f"{where}: the neuron has no receptor ports (its tau_syn is empty)")
        if given is None:
            e_rev = st.get("E_rev")
            if _is_seq(e_rev) and len(e_rev) == n:
                exc = [i + 1 for i, e in enumerate(e_rev) if e >= -20.0]
                if not exc:
                    raise ModelError(f"{where}: none of its {n} receptor ports is excitatory (E_rev {list(e_rev)}): "
                                     "give params.input.receptor")
                return exc[0]
            return 1
        if isinstance(given, str) or not 1 <= int(given) <= n:
            raise ModelError(f"{where}: its receptor ports are 1..{n}, got {given!r}")
        return int(given)
    if given not in (None, 0):
        raise ModelError(f"{where}: the neuron has one receptor port (0), got {given!r}")
    return 0
