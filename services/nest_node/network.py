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
import runpy
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
                  tvb_dt_ms: float, seed: int) -> list[Population]:
    """E and I populations per region, within-region rules, E->E between this node's regions."""
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
    if ir.enabled and connectome is not None and len(regions) > 1:
        w = np.asarray(connectome["weights"], dtype=float)
        idel = np.asarray(connectome["idelays"])
        for tgt in regions:
            for src in regions:
                if src == tgt or w[tgt, src] == 0:
                    continue
                delay = max(float(idel[tgt, src]) * tvb_dt_ms, ir.min_delay_ms)
                n_syn += _connect_random(nest, by[src]["E"], by[tgt]["E"], prob(ir.prob),
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
#: NEST's plotting helpers a script calls after simulating (they raise "No events recorded")
NEST_PLOTS = ("raster_plot", "voltage_trace")


@contextlib.contextmanager
def _intercepted(nest, calls: list):
    """While a model file runs: NEST_RUNS and NEST_PLOTS functions record their call and do nothing."""
    import importlib
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


def load_user_model(nest, p: NestParams, regions: list[int], seed: int) -> list[Population]:
    """Run the user's file (it builds its network with ``nest.Create/Connect``) and map its
    populations: module-level NodeCollections, a dict ``populations``, or ``build(nest, regions,
    seed)`` returning a dict. Simulating, resetting the kernel and plotting do nothing while it
    runs (NEST_RUNS, NEST_PLOTS); kernel settings it changes are checked (resolution) or put back
    (data_path, print_time) afterwards."""
    um = p.model_file
    path = Path(um.path).expanduser()
    if not path.is_file():
        raise ModelError(f"model_file.path: file not found: {um.path}")
    kernel = {k: nest.GetKernelStatus(k) for k in ("data_path", "overwrite_files")}
    calls: list[str] = []
    try:
        with _model_dir(path), _intercepted(nest, calls):
            ns = runpy.run_path(str(path), run_name="cosim_nest_model")
            if callable(ns.get("build")):
                found = ns["build"](nest, list(regions), int(seed))
            else:
                found = ns.get("populations") if isinstance(ns.get("populations"), dict) else ns
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"{path.name}: the model file failed: {type(e).__name__}: {e}") from e
    if calls:
        log.info("model file %s called %s: nothing was simulated, reset or plotted (cosim runs the network "
                 "window by window)", path.name, ", ".join(dict.fromkeys(calls)))
    resolution = float(nest.GetKernelStatus("resolution"))
    if abs(resolution - p.dt_ms) > 1e-9:
        raise ModelError(f"{path.name} sets the kernel resolution to {resolution:g} ms, but params.dt_ms is "
                         f"{p.dt_ms:g}: set params.dt_ms: {resolution:g} in the config (cosim steps NEST at it)")
    # cosim's recorder files and no progress printing (a data_path never set stays unset: NEST refuses '')
    restore = {k: v for k, v in kernel.items() if v not in ("", None) and nest.GetKernelStatus(k) != v}
    nest.SetKernelStatus({**restore, "print_time": False})
    available = sorted(k for k, v in (found or {}).items() if isinstance(v, nest.NodeCollection))
    pops = []
    for name, m in um.populations.items():
        nodes = (found or {}).get(name)
        if not isinstance(nodes, nest.NodeCollection):
            raise ModelError(f"model_file.populations.{name}: {path.name} defines no population {name!r} "
                             f"(its populations: {', '.join(available) or 'none'})")
        if m.region not in regions:
            raise ModelError(f"model_file.populations.{name}.region: {m.region} is not one of this node's regions {regions}")
        pops.append(Population(name, int(m.region), m.role, nodes))
    for r in regions:
        if not any(q.region == r and q.role in ("exc", "inh") for q in pops):
            raise ModelError(f"region {r}: no population mapped to it with role exc or inh")
    return pops
