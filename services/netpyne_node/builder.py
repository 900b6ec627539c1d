"""Builder of the spiking regions' network as ordinary NetPyNE ``netParams``/``simConfig``.

In the spirit of the TVB-NetPyNE poster's ``NetpyneNetworkBuilder``: the builder holds plain
Python descriptions that the ``set_*`` methods fill in, and :meth:`build` turns them into
NetPyNE specs. Override any ``set_*`` method (or edit the lists after ``set_default()``) to
change the network::

    b = NetpyneNetworkBuilder(params, regions=[33, 71], connectome=ctx.connectome, G=2.0)
    b.set_default()
    b.populations.append({"label": "SOM", "cell_model": "PYR_I", "size": 10, "nodes": [33]})
    b.connections.append({"source": "SOM", "target": "E", "prob": 0.1, "weight": 0.005,
                          "delay": 2.0, "receptor": "inh", "nodes": None})
    net = b.build()          # BuiltNetwork(netParams, simConfig, popmap, mod_dirs)

``nodes: None`` means every spiking region of this node. Population labels in NetPyNE are
``"<label>_<region>"`` (e.g. ``E_33``); inputs are NetStim relays ``in_<region>`` driven by
the adapter event by event. No NEURON import happens here until :meth:`build`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np

from .config import CellModel, NetpyneParams

log = logging.getLogger(__name__)

RXD_MOD_DIR = Path(__file__).parent / "examples" / "rxd_calcium"


def _relay_pop(netParams, popmap: dict, label: str, region: int, tgt: str, n_in: int, n_tgt: int,
               weight: float, inp: dict) -> None:
    """A population of NetStim relays (events queued per window from Python) connected one to one
    onto ``tgt`` (relay i → cell i mod n_tgt), or with ``inp["divergence"]`` each relay onto one
    cell NetPyNE draws at random (its ``divergence: 1`` rule, as the toolbox connects its trains)."""
    netParams.popParams[label] = {"cellModel": "NetStim", "numCells": n_in, "number": 1,
                                  "start": -1, "noise": 0, "interval": 1e9}
    popmap[label] = (region, "input")
    rule = {"divergence": 1} if inp.get("divergence") else {"connList": [[i, i % n_tgt] for i in range(n_in)]}
    netParams.connParams[f"{label}->{tgt}"] = {
        "preConds": {"pop": label}, "postConds": {"pop": tgt}, **rule,
        "weight": weight, "delay": inp["delay"], "synMech": inp["receptor"]}


@dataclass
class BuiltNetwork:
    """What the adapter needs: NetPyNE specs plus the pop -> (region, role) map."""
    netParams: Any                              # netpyne.specs.NetParams
    simConfig: Any                              # netpyne.specs.SimConfig
    popmap: dict[str, tuple[int, str]]          # NetPyNE pop label -> (region, "input"|"exc"|"inh"|"other")
    mod_dirs: list[Path] = field(default_factory=list)   # mechanisms to compile/load before creating cells
    uses_rxd: bool = False
    # sim.net.modify*(…) calls a user's model file made on the network it built: (name, args, kwargs),
    # replayed in order once the network is built (services/netpyne_node/usermodel.py)
    modifications: list = field(default_factory=list)


def pop_label(label: str, region: int) -> str:
    return f"{label}_{region}"


def remote_label(region: int) -> str:
    """The population standing in for the E cells of ``region``, simulated by another service."""
    return f"remoteE_{region}"


class NetpyneNetworkBuilder:
    """Default excitatory/inhibitory region network with TVB input (poster's DefaultExcIOInh)."""

    def __init__(self, params: NetpyneParams, regions: list[int] | tuple[int, ...],
                 connectome: dict | None = None, G: float = 2.0, tvb_dt_ms: float = 0.1, seed: int = 42,
                 input_links: list[tuple[int, int, float]] | None = None,
                 remote: dict[int, int] | None = None, remote_shift_ms: float = 0.0):
        self.p = params
        # spikes between services (run.inter_service, PROTOCOL.md §4.2): source region on another
        # service -> the size of its E population; its spikes of window k - m are replayed here
        # remote_shift_ms (m windows) late, so its synapses' delays are that much shorter
        self.remote = {int(q): int(n) for q, n in (remote or {}).items()}
        self.remote_shift_ms = float(remote_shift_ms)
        self.input_links = input_links      # per-source mode: (target region, source region, weight_uS)
        self.regions = [int(r) for r in regions]
        self.connectome = connectome
        self.G = float(G)
        self.tvb_dt_ms = float(tvb_dt_ms)
        self.seed = int(seed)
        self.cell_models: dict[str, CellModel] = {}
        self.synapse_models: dict[str, dict] = {}
        self.populations: list[dict] = []
        self.connections: list[dict] = []
        self.node_connections: list[dict] = []
        self.output_devices: dict[str, list[str]] = {}
        self.mod_dirs: list[Path] = []
        self.rxd_params: dict | None = None

    # ---- the poster's steps --------------------------------------------------------------
    def set_default(self) -> NetpyneNetworkBuilder:
        self.set_cell_models()
        self.set_synapse_models()
        self.set_populations()
        self.set_population_connections()
        self.set_nodes_connections()
        self.set_input_devices()
        self.set_output_devices()
        self.set_rxd()
        return self

    def set_cell_models(self) -> None:
        self.cell_models = {"PYR_E": self.p.network.cell_E, "PYR_I": self.p.network.cell_I}

    def set_synapse_models(self) -> None:
        n = self.p.network
        self.synapse_models = {
            "exc": {"mod": "Exp2Syn", "tau1": n.syn_exc.tau1_ms, "tau2": n.syn_exc.tau2_ms, "e": n.syn_exc.e_mV},
            "inh": {"mod": "Exp2Syn", "tau1": n.syn_inh.tau1_ms, "tau2": n.syn_inh.tau2_ms, "e": n.syn_inh.e_mV}}

    def set_populations(self) -> None:
        n_e, n_i = self.p.network.sizes()
        self.populations = [{"label": "E", "cell_model": "PYR_E", "size": n_e, "nodes": None},
                            {"label": "I", "cell_model": "PYR_I", "size": n_i, "nodes": None}]

    def _prob(self, p: float) -> float:
        """A rule's probability at this ``scale``: ``prob / scale`` keeps each cell's expected in-degree
        (``network.scale_keeps: in_degree``), or ``prob`` as given."""
        from cosim.sdk.region_params import scaled_prob
        return scaled_prob(p, self.p.network.scale, self.p.network.scale_keeps)

    def set_population_connections(self) -> None:
        self.connections = []
        for key, c in self.p.network.conns.items():
            self.connections.append({"source": key[0], "target": key[1], "prob": self._prob(c.prob), "weight": c.weight_uS,
                                     "weight_sd_frac": c.weight_sd_frac, "delay": c.delay_ms,
                                     "receptor": "exc" if key[0] == "E" else "inh", "nodes": None})

    def set_nodes_connections(self) -> None:
        """E->E between this node's regions: p, weight = factor*G*C[target, source], delay from idelays."""
        ir = self.p.inter_region
        self.node_connections = []
        if not ir.enabled or self.connectome is None or len(self.regions) + len(self.remote) < 2:
            return
        w = np.asarray(self.connectome["weights"], dtype=float)
        idel = np.asarray(self.connectome["idelays"])
        for tgt in self.regions:
            for src in self.regions + sorted(self.remote):
                if src == tgt or w[tgt, src] == 0:
                    continue
                delay = max(float(idel[tgt, src]) * self.tvb_dt_ms, ir.min_delay_ms)
                remote = src in self.remote
                if remote:
                    # the stand-in fires remote_shift_ms after the real cell did: the rest of the delay
                    if delay < self.remote_shift_ms - 1e-9:
                        raise ValueError(f"E->E delay {delay:g} ms from region {src} (another service) to {tgt} is "
                                         f"shorter than the window times the lag ({self.remote_shift_ms:g} ms)")
                    delay = max(delay - self.remote_shift_ms, 0.0)
                self.node_connections.append({
                    "source": "E", "target": "E", "source_node": src, "target_node": tgt, "prob": self._prob(ir.prob),
                    "weight": ir.weight_factor_uS * self.G * float(w[tgt, src]),
                    "delay": delay, "receptor": "exc", "remote": remote})

    def set_input_devices(self) -> None:
        """One NetStim relay per input neuron, one-to-one onto the E cells."""
        self.input_devices: dict[str, Any] = {"target": "E", "n": self.p.input.n_input, "weight": self.p.input.weight_uS,
                              "delay": self.p.input.delay_ms, "receptor": "exc",
                              "divergence": self.p.toolbox.input_random_divergence}
        if self.input_links is not None:
            # per-source mode: one relay population per (target region, source region) link, each
            # relay one-to-one onto the E cells at that link's weight; the offset train, if any, last
            self.input_devices["links"] = list(self.input_links)

    def set_output_devices(self) -> None:
        self.output_devices = {"exc": list(self.p.output.exc_pops), "inh": list(self.p.output.inh_pops)}

    def set_rxd(self) -> None:
        rx = self.p.rxd
        if not rx.enabled:
            return
        region = self.regions[0] if rx.region is None else rx.region
        if region not in self.regions:
            raise ValueError(f"rxd.region {region} is not one of this node's regions {self.regions}")
        self.mod_dirs.append(RXD_MOD_DIR)
        from .examples.rxd_calcium import rxd_spec
        self.rxd_region = region
        self.rxd_params = rxd_spec.rxd_params([pop_label(p, region) for p in rx.pops], rx)

    # ---- NetPyNE specs -------------------------------------------------------------------
    def _nodes(self, nodes) -> list[int]:
        if nodes is None:
            return self.regions
        bad = [r for r in nodes if r not in self.regions]
        if bad:
            raise ValueError(f"nodes {bad} are not spiking regions of this node {self.regions}")
        return [int(r) for r in nodes]

    @staticmethod
    def _cell_spec(cm: CellModel, extra_mechs: dict | None = None) -> dict:
        mechs = {k: dict(v) for k, v in cm.mechs.items()}
        mechs.update(extra_mechs or {})
        return {"secs": {"soma": {"geom": {"diam": cm.diam_um, "L": cm.length_um, "Ra": cm.Ra_ohm_cm,
                                           "cm": cm.cm_uF_cm2}, "mechs": mechs}}}

    def _weight(self, w: float, sd_frac: float) -> float | str:
        from .toolbox import weight_expr                  # NEURON's normal(mean, variance)
        return weight_expr(w, sd_frac, self.p.toolbox.weight_sd_as_variance)

    @property
    def numpy_wiring(self) -> bool:
        """Fixed-probability rules drawn by NumPy in O(N·k) (wiring.py), unless ``network.wiring:
        netpyne`` or the toolbox's fixed wiring (NetPyNE's own draw of every pair) asks otherwise."""
        return self.p.network.wiring == "numpy" and not self.p.toolbox.fixed_wiring

    def _add_rule(self, netParams, sizes: dict[str, int], src: str, tgt: str, c: dict, sd_frac: float,
                  drawn_as: str | None = None) -> None:
        """``drawn_as``: the rule this one stands in for (``E_q->E_p`` for stand-ins of region q's cells):
        its connections are drawn from that rule's seed, as the single-service network draws them."""
        label = f"{src}->{tgt}"
        if not self.numpy_wiring:
            if drawn_as is not None:
                raise ValueError("spikes between services need network.wiring: numpy")
            netParams.connParams[label] = {
                "preConds": {"pop": src}, "postConds": {"pop": tgt}, "probability": c["prob"],
                "weight": self._weight(c["weight"], sd_frac), "delay": c["delay"], "synMech": c["receptor"]}
            return
        from .wiring import conn_list_rule, weight_sd
        sd = weight_sd(c["weight"], sd_frac, self.p.toolbox.weight_sd_as_variance)
        rule = conn_list_rule(src, tgt, sizes[src], sizes[tgt], c["prob"], c["weight"], sd, c["delay"],
                              c["receptor"], self.seed, drawn_as=drawn_as)
        if rule is not None:
            netParams.connParams[label] = rule

    def _pop_region_order(self) -> list[tuple[dict, int]]:
        """(population, region) in the order NetPyNE numbers the cells: population by population,
        or region by region (E, I of one region, then the next) as the toolbox does (toolbox.fixed_wiring)."""
        pairs = [(pop, r) for pop in self.populations for r in self._nodes(pop.get("nodes"))]
        if self.p.toolbox.fixed_wiring:
            pairs.sort(key=lambda pr: self.regions.index(pr[1]))          # stable: populations keep their order
        return pairs

    def build(self) -> BuiltNetwork:
        from netpyne import specs
        netParams, cfg = specs.NetParams(), specs.SimConfig()
        popmap: dict[str, tuple[int, str]] = {}
        for name, cm in self.cell_models.items():
            netParams.cellParams[name] = self._cell_spec(cm)
        for name, syn in self.synapse_models.items():
            netParams.synMechParams[name] = dict(syn)
        sizes: dict[str, int] = {}
        for pop, r in self._pop_region_order():
            cell = pop["cell_model"]
            if self.rxd_params is not None and r == self.rxd_region and pop["label"] in self.p.rxd.pops:
                cell = f"{cell}_rxd"
                if cell not in netParams.cellParams:
                    rx = self.p.rxd
                    netParams.cellParams[cell] = self._cell_spec(self.cell_models[pop["cell_model"]], {
                        "cachan": {"gbar": rx.gcabar}, "kca": {"gbar": rx.gkcabar, "kd": rx.kd_mM}})
            label = pop_label(pop["label"], r)
            netParams.popParams[label] = {"cellType": cell, "numCells": int(pop["size"])}
            sizes[label] = int(pop["size"])
            role = ("exc" if pop["label"] in self.output_devices.get("exc", []) else
                    "inh" if pop["label"] in self.output_devices.get("inh", []) else "other")
            popmap[label] = (r, role)
        for c in self.connections:
            for r in self._nodes(c.get("nodes")):
                src, tgt = pop_label(c["source"], r), pop_label(c["target"], r)
                self._add_rule(netParams, sizes, src, tgt, c, c.get("weight_sd_frac", 0.0))
        for c in self.node_connections:
            src, tgt = pop_label(c["source"], c["source_node"]), pop_label(c["target"], c["target_node"])
            if c.get("remote"):       # stand-ins of another service's E cells (PROTOCOL.md §4.2)
                stand_in = remote_label(c["source_node"])
                if stand_in not in netParams.popParams:
                    netParams.popParams[stand_in] = {"cellModel": "NetStim", "numCells": self.remote[c["source_node"]],
                                                     "number": 1, "start": -1, "noise": 0, "interval": 1e9}
                    popmap[stand_in] = (c["source_node"], "remote")
                    sizes[stand_in] = self.remote[c["source_node"]]
                self._add_rule(netParams, sizes, stand_in, tgt, c, 0.0, drawn_as=f"{src}->{tgt}")
                continue
            self._add_rule(netParams, sizes, src, tgt, c, 0.0)
        inp = self.input_devices
        for r in self.regions:
            tgt = pop_label(inp["target"], r)
            n_tgt = sizes[tgt]
            n_in = inp["n"] or n_tgt
            if "links" in inp:
                for p_, j, w_uS in inp["links"]:
                    if p_ != r:
                        continue
                    _relay_pop(netParams, popmap, pop_label(f"in{j}", r), r, tgt, n_in, n_tgt, float(w_uS), inp)
                if self.p.input.offset_hz <= 0:
                    continue
            _relay_pop(netParams, popmap, pop_label("in", r), r, tgt, n_in, n_tgt, inp["weight"], inp)
        if self.rxd_params is not None:
            netParams.rxdParams = self.rxd_params
        default_sim_config(cfg, self.p, self.seed, v_init=self.p.network.v_init_mV)
        log.info("built default network: regions %s, pops %s", self.regions,
                 {k: v for k, v in sizes.items()})
        return BuiltNetwork(netParams, cfg, popmap, list(self.mod_dirs), self.rxd_params is not None)


def default_sim_config(cfg, p: NetpyneParams, seed: int, v_init: float | None = None):
    """Fill a NetPyNE SimConfig with what window stepping needs (no file output, quiet)."""
    cfg.dt = p.dt_ms
    cfg.duration = 0.0             # the adapter sets the run's length before cells are created (adapter._build)
    cfg.hParams = dict(getattr(cfg, "hParams", {}) or {})
    cfg.hParams["celsius"] = p.celsius
    if v_init is not None:
        cfg.hParams["v_init"] = v_init
    cfg.oneSynPerNetcon = False
    cfg.verbose = False
    cfg.progressBar = 0
    cfg.timing = False
    cfg.printRunTime = False
    cfg.printPopAvgRates = False
    cfg.saveJson = cfg.savePickle = cfg.saveMat = cfg.saveHDF5 = cfg.saveDpk = False
    cfg.analysis = {}
    cfg.seeds = {"conn": seed + 1, "stim": seed + 2, "loc": seed + 3, "cell": seed + 4}
    if p.toolbox.fixed_wiring:                # the toolbox's network in every run (toolbox.py (g))
        from .toolbox import NETPYNE_DEFAULT_SEEDS
        cfg.seeds = dict(NETPYNE_DEFAULT_SEEDS)
    cfg.recordStep = p.record.trace_step_ms
    cfg.recordTraces = dict(p.record.traces)
    cfg.recordCells = list(p.record.trace_cells) if p.record.traces else []
    cfg.recordStim = False
    return cfg
