"""The Brian2 network of a node: every region's E and I cells, input generator, synapses, monitor.

One ``NeuronGroup`` holds all cells (E of every region first, then I: each source type is one
contiguous subgroup), so the network has a fixed, small number of objects whatever the number
of regions: with the numpy target Brian2's cost per time step is per object, not per cell.
Connectivity is drawn in NumPy from the run seed (one generator per rule and region, like the
NEST backend), so the network does not depend on Brian2's random numbers; Brian2 itself draws
none (the input trains come from cosim's PoissonInput), which makes runs reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import Brian2Params

EQS = """
dv/dt = (g_L*(E_L - v) + g_e*(E_e - v) + g_i*(E_i - v)) / C_m : volt (unless refractory)
g_e = f_e*(ge_d - ge_r) : siemens
dge_d/dt = -ge_d/tau_e_d : siemens
dge_r/dt = -ge_r/tau_e_r : siemens
g_i = f_i*(gi_d - gi_r) : siemens
dgi_d/dt = -gi_d/tau_i_d : siemens
dgi_r/dt = -gi_r/tau_i_r : siemens
"""
#: with current devices (params.stimulus): their summed current, one TimedArray column per set of devices
EQS_STIM = EQS.replace("g_i*(E_i - v)) / C_m", "g_i*(E_i - v) + I_stim) / C_m") + """
I_stim = stim_ta(t, stim_col) : amp
stim_col : integer (constant)
"""
#: at most this many values (steps x device sets) in the stimulus TimedArray (8 bytes each)
MAX_STIM_VALUES = 50_000_000
ON_EXC = "ge_d_post += w\nge_r_post += w"      # Exp2Syn: both exponentials jump by w
ON_INH = "gi_d_post += w\ngi_r_post += w"


from cosim.errors import ModelError  # noqa: E402  (one hierarchy: cosim.errors)


@dataclass
class Population:
    label: str
    region: int
    role: str          # "exc" | "inh"
    start: int         # first cell index in the NeuronGroup
    size: int


@dataclass
class Built:
    net: Any           # brian2.Network (one for the whole run)
    cells: Any         # NeuronGroup
    gen: Any           # SpikeGeneratorGroup of every region's input neurons
    monitor: Any       # SpikeMonitor of cells
    pops: list[Population]
    gen_offset: dict[int, int]   # region -> index of its first input neuron in gen
    n_input: dict[int, int]
    n_synapses: int
    stims: list = field(default_factory=list)   # (name, device, GridStimulus, population labels) per current device


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, tags), 0xB2])))


def _random_pairs(n_pre: int, n_post: int, prob: float, w_nS: float, sd_frac: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (pre, post) pair with probability ``prob``; weight max(0, N(w, sd*w)) (NetPyNE's rule)."""
    if prob <= 0 or w_nS <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
    chunk = max(1, 1_000_000 // max(n_post, 1))          # bounds memory for large populations
    parts = [np.nonzero(rng.random((min(chunk, n_pre - a), n_post)) < prob) for a in range(0, n_pre, chunk)]
    pre = np.concatenate([pr + a for (pr, _), a in zip(parts, range(0, n_pre, chunk))]).astype(np.int64)
    post = np.concatenate([po for _, po in parts]).astype(np.int64)
    w = np.maximum(0.0, rng.normal(w_nS, sd_frac * w_nS, pre.size)) if sd_frac > 0 else np.full(pre.size, w_nS)
    return pre, post, w


def _stimuli(p: Brian2Params, pops: list[Population], regions: list[int], n_cells: int, n_steps: int):
    """Current devices as (TimedArray values in pA (n_steps, n_sets), column of each cell, placed devices):
    one column per distinct set of devices a cell receives (column 0: none)."""
    from cosim.sdk.stimulus import labels, on_grid, targets
    popmap = {q.label: (q.region, q.role) for q in pops}
    by = {q.label: q for q in pops}
    placed, member = [], [[] for _ in range(n_cells)]
    for i, (name, dev) in enumerate(zip(labels(p.stimulus), p.stimulus)):
        where = f"params.stimulus[{i}]"
        try:
            g = on_grid(dev, p.dt_ms, where)
            labs = targets(dev, popmap, regions, where)
        except ValueError as e:
            raise ModelError(str(e)) from None
        for lab in labs:
            for c in range(by[lab].start, by[lab].start + by[lab].size):
                member[c].append(i)
        placed.append((name, dev, g, labs))
    sets = sorted({tuple(m) for m in member} | {()})
    if n_steps * len(sets) > MAX_STIM_VALUES:
        raise ModelError(f"params.stimulus: {n_steps} steps x {len(sets)} device set(s) exceed the Brian2 plugin's "
                         f"{MAX_STIM_VALUES:,} stimulus values (a TimedArray of the whole run); shorten the run")
    values = np.zeros((n_steps, len(sets)))
    for j, st in enumerate(sets):
        for i in st:
            values[:, j] += placed[i][2].samples(0, n_steps)
    col = np.array([sets.index(tuple(m)) for m in member], dtype=np.int64)
    return values, col, placed


def _load_model_file(path: str):
    """The user's Brian2 model module (its folder first on sys.path while it loads)."""
    import importlib.util
    import sys
    from pathlib import Path
    f = Path(path).expanduser().resolve()
    if not f.is_file():
        raise ModelError(f"model_file.path {f} not found")
    spec = importlib.util.spec_from_file_location(f"cosim_brian2_user_{abs(hash(str(f)))}", f)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(f.parent))
    try:
        spec.loader.exec_module(mod)
    except Exception as e:
        raise ModelError(f"model file {f}: raised {type(e).__name__}: {e}") from None
    finally:
        sys.path.remove(str(f.parent))
    for name in ("POPULATIONS", "build"):
        if not hasattr(mod, name):
            raise ModelError(f"model file {f} defines no {name} (a Brian2 model file needs POPULATIONS and build)")
    return f, mod


def build_model_file(b2, p: Brian2Params, regions: list[int], seed: int, n_steps: int) -> Built:
    """A user's Brian2 network (``params.model_file``): its cells in one NeuronGroup, populations contiguous
    in the order of POPULATIONS; TVB's input drives every cell of the ``exc`` populations, one Poisson train
    each, through the model's own ``input on_pre`` statement (e.g. ``g_ampa_post += w``, w = input.weight_uS)."""
    mf = p.model_file
    f, mod = _load_model_file(mf.path)
    sizes = {str(k): int(v) for k, v in dict(mod.POPULATIONS).items()}
    unknown = sorted(set(mf.populations) - set(sizes))
    if unknown:
        raise ModelError(f"model_file.populations {unknown} are not in the model's POPULATIONS {sorted(sizes)}")
    for lab, m in mf.populations.items():
        if m.region not in regions:
            raise ModelError(f"population {lab!r} is mapped to region {m.region}, which this node does not simulate "
                             f"(its regions: {list(regions)})")
    missing = [r for r in regions if not any(m.region == r and m.role == "exc" for m in mf.populations.values())]
    if missing:
        raise ModelError(f"model_file.populations: region(s) {missing} have no 'exc' population")
    pops, start = [], 0
    for lab, n in sizes.items():
        m = mf.populations.get(lab)
        pops.append(Population(lab, m.region if m else regions[0], m.role if m else "other", start, n))
        start += n
    clock = b2.Clock(dt=p.dt_ms * b2.ms)
    stims, stim_ta, stim_col = [], None, None
    if p.stimulus:
        values, stim_col, stims = _stimuli(p, pops, list(regions), start, n_steps)
        stim_ta = b2.TimedArray(values, dt=p.dt_ms * b2.ms)        # pA, as plain numbers
    try:
        cells, objects, on_input = mod.build(b2, clock, seed, stim_ta, stim_col)
    except ModelError:
        raise
    except Exception as e:
        raise ModelError(f"model file {f}: build raised {type(e).__name__}: {e}") from None
    if len(cells) != start:
        raise ModelError(f"model file {f}: build made {len(cells)} cells, POPULATIONS says {start}")
    exc_cells = {r: np.concatenate([np.arange(q.start, q.start + q.size) for q in pops
                                    if q.region == r and q.role == "exc"]) for r in regions}
    n_input = {r: int(exc_cells[r].size) for r in regions}
    gen_offset, off = {}, 0
    for r in regions:
        gen_offset[r] = off
        off += n_input[r]
    gen = b2.SpikeGeneratorGroup(off, np.empty(0, np.int64), np.empty(0) * b2.ms, clock=clock)
    objects = [cells, *objects, gen]
    if p.input.weight_uS > 0:
        S_in = b2.Synapses(gen, cells, "w : 1 (constant)", on_pre=on_input, namespace={}, clock=clock,
                           delay=p.input.delay_ms * b2.ms)
        S_in.connect(i=np.arange(off), j=np.concatenate([exc_cells[r] for r in regions]))
        S_in.w = p.input.weight_uS
        objects.append(S_in)
    monitor = b2.SpikeMonitor(cells, record=True)
    objects.append(monitor)
    n_syn = sum(len(o) for o in objects if isinstance(o, b2.Synapses))
    return Built(b2.Network(*objects), cells, gen, monitor, pops, gen_offset, n_input, n_syn, stims)


def build(b2, p: Brian2Params, regions: list[int], connectome: dict | None, G: float, tvb_dt_ms: float,
          seed: int, n_steps: int = 0) -> Built:
    """``n_steps``: Brian2 steps of the whole run (the current devices' waveform is built for them)."""
    if p.model_file is not None:
        return build_model_file(b2, p, regions, seed, n_steps)
    net_p, cell = p.network, p.network.cell
    n_e, n_i = net_p.sizes()
    R = len(regions)
    ms, mV, nS, pF = b2.ms, b2.mV, b2.nS, b2.pF
    clock = b2.Clock(dt=p.dt_ms * ms)            # one clock: every object steps together
    ns = {"g_L": cell.g_L_nS() * nS, "C_m": cell.C_pF() * pF, "E_L": cell.E_L_mV * mV,
          "E_e": net_p.syn_exc.E_rev_mV * mV, "E_i": net_p.syn_inh.E_rev_mV * mV,
          "f_e": net_p.syn_exc.peak_factor(), "f_i": net_p.syn_inh.peak_factor(),
          "tau_e_d": net_p.syn_exc.tau_decay_ms * ms, "tau_e_r": net_p.syn_exc.tau_rise_ms * ms,
          "tau_i_d": net_p.syn_inh.tau_decay_ms * ms, "tau_i_r": net_p.syn_inh.tau_rise_ms * ms,
          "V_th": cell.V_th_mV * mV, "V_reset": cell.V_reset_mV * mV}
    E0, I0 = 0, R * n_e                          # all E cells, then all I cells
    e_of = {r: E0 + j * n_e for j, r in enumerate(regions)}
    i_of = {r: I0 + j * n_i for j, r in enumerate(regions)}
    pops = [Population(f"E_{r}", r, "exc", e_of[r], n_e) for r in regions] + \
           [Population(f"I_{r}", r, "inh", i_of[r], n_i) for r in regions]
    stims = []
    if p.stimulus:                               # without devices the equations stay as they were
        values, stim_col, stims = _stimuli(p, pops, list(regions), R * (n_e + n_i), n_steps)
        ns["stim_ta"] = b2.TimedArray(values * b2.pA, dt=p.dt_ms * ms)
    cells = b2.NeuronGroup(R * (n_e + n_i), EQS_STIM if stims else EQS, threshold="v > V_th", reset="v = V_reset",
                           refractory=cell.t_ref_ms * ms, method="exponential_euler", namespace=ns, clock=clock)
    cells.v = net_p.v_init_mV * mV
    if stims:
        cells.stim_col = stim_col

    # within-region rules and E->E between this node's regions, as (pre, post, w nS, delay ms)
    exc, inh = [], []
    for r in regions:
        for key, c in net_p.conns.items():
            src_n, dst_n = (n_e if key[0] == "E" else n_i), (n_e if key[1] == "E" else n_i)
            pre, post, w = _random_pairs(src_n, dst_n, c.prob, c.weight_uS * 1000.0, c.weight_sd_frac,
                                         _rng(seed, r, ord(key[0]), ord(key[1])))
            src0 = (e_of[r] - E0) if key[0] == "E" else (i_of[r] - I0)     # index within the source subgroup
            dst0 = e_of[r] if key[1] == "E" else i_of[r]
            (exc if key[0] == "E" else inh).append((pre + src0, post + dst0, w, np.full(pre.size, c.delay_ms)))
    ir = p.inter_region
    if ir.enabled and connectome is not None and R > 1:
        wc = np.asarray(connectome["weights"], dtype=float)
        idel = np.asarray(connectome["idelays"])
        for tgt in regions:
            for src in regions:
                if src == tgt or wc[tgt, src] == 0:
                    continue
                delay = max(float(idel[tgt, src]) * tvb_dt_ms, ir.min_delay_ms)
                pre, post, w = _random_pairs(n_e, n_e, ir.prob, ir.weight_factor_uS * G * float(wc[tgt, src]) * 1000.0,
                                             0.0, _rng(seed, tgt, src, 0xEE))
                exc.append((pre + e_of[src] - E0, post + e_of[tgt], w, np.full(pre.size, delay)))

    objects = [cells]
    n_syn = 0
    for _name, src, rules, on_pre in (("exc", cells[E0:I0], exc, ON_EXC), ("inh", cells[I0:], inh, ON_INH)):
        pre, post, w, d = (np.concatenate([x[k] for x in rules]) if rules else np.empty(0) for k in range(4))
        if pre.size == 0:
            continue
        S = b2.Synapses(src, cells, "w : siemens", on_pre=on_pre, namespace={}, clock=clock)
        S.connect(i=pre.astype(np.int64), j=post.astype(np.int64))
        S.w = w * nS
        S.delay = d * ms
        objects.append(S)
        n_syn += pre.size

    # input neurons: region by region in one generator; input i of region r -> E cell i mod n_e of r
    n_input = {r: int(p.input.n_input or n_e) for r in regions}
    gen_offset, off = {}, 0
    for r in regions:
        gen_offset[r] = off
        off += n_input[r]
    gen = b2.SpikeGeneratorGroup(off, np.empty(0, np.int64), np.empty(0) * ms, clock=clock)
    objects.append(gen)
    if p.input.weight_uS > 0:
        pre = np.concatenate([gen_offset[r] + np.arange(n_input[r]) for r in regions])
        post = np.concatenate([e_of[r] + np.arange(n_input[r]) % n_e for r in regions])
        S_in = b2.Synapses(gen, cells, "w : siemens", on_pre=ON_EXC, namespace={}, clock=clock,
                           delay=p.input.delay_ms * ms)
        S_in.connect(i=pre, j=post)
        S_in.w = p.input.weight_uS * 1000.0 * nS
        objects.append(S_in)
    monitor = b2.SpikeMonitor(cells, record=True)
    objects.append(monitor)
    return Built(b2.Network(*objects), cells, gen, monitor, pops, gen_offset, n_input, n_syn, stims)
