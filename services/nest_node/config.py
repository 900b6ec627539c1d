"""Parameters of the NEST backend (``spiking_nodes[i].params``); imports neither NEST nor NumPy.

The default region network is the NEST counterpart of the NetPyNE default (DOMAIN.md): the same
sizes (120 E + 40 I, ``scale``), the same within-region rules (probability, weight, 5 ms delay)
and the same E->E coupling between this node's spiking regions (weight = factor*G*C, delay from
the connectome). The neuron is NEST's ``hh_cond_beta_gap_traub``: a conductance-based
Hodgkin-Huxley point neuron (Traub-Miles kinetics, as in the COBAHH benchmark of Brette et al.
2007) whose synaptic conductances are beta functions with a rise and a decay time, i.e. the
shape of NEURON's Exp2Syn. Its membrane is scaled to the NetPyNE soma's area
(diam = L = 18.8 µm -> 1110 µm²): C_m, g_Na, g_K, g_L are the NetPyNE cell's per-area values
times that area (docs/backends.md, "NEST"). Weights are given in µS as in NetPyNE and converted
to NEST's nS (x1000): a beta synapse of weight w peaks at w, as an Exp2Syn of weight w does.
"""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cosim.sdk.region_params import (SCALE_KEEPS_HELP, InputTransformer, InterRegion, OutputTransformer, PopMap,
                                 RegionConns, ScaleKeeps, default_conns)
from cosim.sdk.stimulus import CurrentPA


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NestCell(_S):
    """``hh_cond_beta_gap_traub`` from the NetPyNE default soma (per-area values x area)."""
    model: Literal["hh_cond_beta_gap_traub"] = "hh_cond_beta_gap_traub"
    diam_um: float = Field(18.8, gt=0)
    length_um: float = Field(18.8, gt=0)
    cm_uF_cm2: float = Field(1.0, gt=0)
    gnabar_S_cm2: float = Field(0.12, ge=0)
    gkbar_S_cm2: float = Field(0.036, ge=0)
    gl_S_cm2: float = Field(0.003, ge=0)
    E_L_mV: float = -70.0
    E_Na_mV: float = 50.0
    E_K_mV: float = -77.0
    V_T_mV: float = Field(-63.0, description="Traub's threshold shift (COBAHH: -63 mV)")
    t_ref_ms: float = Field(8.0, ge=0, description="refractory period; 8 ms matches the NetPyNE soma's response "
                                                   "to single EPSPs (docs/backends.md)")

    def area_cm2(self) -> float:
        return math.pi * self.diam_um * self.length_um * 1e-8      # lateral surface, as NEURON's area()

    def nest_params(self) -> dict[str, float]:
        a = self.area_cm2()
        return {"C_m": self.cm_uF_cm2 * a * 1e6,       # µF -> pF
                "g_Na": self.gnabar_S_cm2 * a * 1e9,   # S -> nS
                "g_K": self.gkbar_S_cm2 * a * 1e9,
                "g_L": self.gl_S_cm2 * a * 1e9,
                "E_L": self.E_L_mV, "E_Na": self.E_Na_mV, "E_K": self.E_K_mV,
                "V_T": self.V_T_mV, "t_ref": self.t_ref_ms}


class BetaSynapse(_S):
    tau_rise_ms: float = Field(gt=0)
    tau_decay_ms: float = Field(gt=0)
    E_rev_mV: float

    @model_validator(mode="after")
    def _order(self) -> BetaSynapse:
        if self.tau_rise_ms >= self.tau_decay_ms:
            raise ValueError(f"tau_rise_ms must be < tau_decay_ms (got {self.tau_rise_ms} >= {self.tau_decay_ms})")
        return self


class NestNetwork(_S):
    """The default spiking network of one region (E and I populations)."""
    n_exc: int = Field(120, ge=1)
    n_inh: int = Field(40, ge=1)
    scale: float = Field(1.0, gt=0, description="multiplies n_exc and n_inh (rounded, >= 1); see scale_keeps")
    scale_keeps: ScaleKeeps = Field("in_degree", description=SCALE_KEEPS_HELP)
    cell: NestCell = Field(default_factory=NestCell)
    syn_exc: BetaSynapse = Field(default_factory=lambda: BetaSynapse(tau_rise_ms=0.8, tau_decay_ms=5.3, E_rev_mV=0.0))
    syn_inh: BetaSynapse = Field(default_factory=lambda: BetaSynapse(tau_rise_ms=0.6, tau_decay_ms=8.5, E_rev_mV=-75.0))
    conns: RegionConns = Field(default_factory=default_conns, description="keys among EE, EI, IE, II")
    v_init_mV: float = -65.0

    def sizes(self) -> tuple[int, int]:
        return max(1, round(self.n_exc * self.scale)), max(1, round(self.n_inh * self.scale))


class NestInput(InputTransformer):
    """TVB coupling -> one independent Poisson train per target cell (NEST's
    ``inhomogeneous_poisson_generator``, rates set per TVB step each window)."""
    targets: Literal["exc", "exc+inh"] = Field("exc", description="which populations get a train per cell")
    # the weight of one input spike, in the unit its target's synapses take (network.drive_weight):
    # weight_uS (inherited, NetPyNE's key) and weight_nS for conductance-based neurons (*_cond_*),
    # weight_pA for current-based ones (*_psc_*), weight_mV for delta synapses (*_psc_delta, izhikevich)
    weight_nS: float | None = Field(None, ge=0, description="per input spike, conductance-based targets (nS)")
    weight_pA: float | None = Field(None, ge=0, description="per input spike, current-based targets (pA)")
    weight_mV: float | None = Field(None, ge=0, description="per input spike, delta-synapse targets (mV jump)")
    generator: Literal["nest", "numpy"] = Field(
        "nest", description="who draws TVB's trains: nest = NEST's inhomogeneous_poisson_generator (the kernel's "
                            "RNG, whose draws depend on everything else the process simulates); numpy = the NetPyNE "
                            "backend's seeded per-region trains (cosim.sdk.transformers.PoissonInput) replayed by one "
                            "spike_generator per target cell: the draws depend on the seed and the region only, so the "
                            "same regions give the same spikes however they are grouped into services "
                            "(PROTOCOL.md §4.2)")
    receptor: int | str | dict[str, int | str] | None = Field(
        None, description="the target's receptor port for TVB's drive: a number, a name from the neuron's "
                          "receptor_types, or {population: port}; default: chosen from the neuron's receptors")

    @model_validator(mode="after")
    def _one_weight(self) -> NestInput:
        given = [k for k in ("weight_uS", "weight_nS", "weight_pA", "weight_mV")
                 if k in self.model_fields_set and getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one input weight, not {' and '.join(given)} (the unit follows the target's synapses)")
        return self

    @field_validator("process")
    @classmethod
    def _poisson_only(cls, v: str) -> str:
        if v != "poisson":
            raise ValueError("NEST's inhomogeneous_poisson_generator makes Poisson trains only "
                             "(regular trains: use the netpyne backend)")
        return v


class NestUserModel(_S):
    """Your own NEST network: a Python file that builds it with ``nest.Create/Connect``, run as
    ``python FILE`` runs it (``__name__ == "__main__"``) up to its first ``nest.Simulate``/``Run``,
    or imported with ``function`` named and that function called. Each population is named by where
    the script keeps it (``E``, ``populations.E``, ``net.pops.0``, ``main.E`` for a local of the
    function ``main`` running when the script reached ``Simulate``) and mapped onto a region and a
    role here (network.load_user_model)."""
    path: str = Field(description=".py file that builds the network")
    populations: dict[str, PopMap] = Field(min_length=1, description="where the script keeps a population "
                                           "(a name or a dotted path) -> region and role")
    function: str | None = Field(None, description="import the file (guarded code does not run) and call this "
                                                   "function; populations are looked up in what it returns first")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of `function`")
    set: dict[str, Any] = Field(default_factory=dict, description="the script's own parameters: NAME (a top-level "
                                "assignment of the file), VAR.key (an item or attribute of one) or MODULE.VAR.key "
                                "(of a module beside the file), set before the network is built")

    @model_validator(mode="after")
    def _suffix(self) -> NestUserModel:
        if not self.path.endswith(".py"):
            raise ValueError(f"NEST model file must be a .py file, got {self.path!r}")
        return self


class NestRecord(_S):
    spikes: bool = True
    input_spikes: bool = Field(False, description="input.mode per_source: record one train per link (a parrot "
                                                 "neuron per generator) as input_spikes/ (index = link)")
    flush_every: int = Field(20, ge=1, description="flush the HDF5 file every N windows")
    plot: bool = True


class NestParams(_S):
    dt_ms: float = Field(0.05, gt=0, description="NEST resolution; must divide the TVB dt")
    local_num_threads: int = Field(1, ge=1, le=256, description="NEST threads (the wheel has no MPI)")
    network: NestNetwork = Field(default_factory=NestNetwork)
    input: NestInput = Field(default_factory=NestInput)
    output: OutputTransformer = Field(default_factory=OutputTransformer)
    inter_region: InterRegion = Field(default_factory=InterRegion)
    model_file: NestUserModel | None = None
    record: NestRecord = Field(default_factory=NestRecord)
    stimulus: list[CurrentPA] = Field(default_factory=list, max_length=64,
                                      description="current devices (pulse trains, constant currents) in pA: one "
                                                  "step_current_generator each (1 nA in NetPyNE = 1000 pA here)")

    @model_validator(mode="after")
    def _input_delay(self) -> NestParams:
        if self.input.generator == "numpy" and self.input.mode == "per_source":
            raise ValueError("input.generator: numpy draws summed trains only (input.mode: summed)")
        # generator rates change one resolution step late; the input delay absorbs it (adapter.py)
        if self.input.delay_ms <= self.dt_ms:
            raise ValueError(f"input.delay_ms ({self.input.delay_ms}) must exceed dt_ms ({self.dt_ms})")
        from cosim.sdk.stimulus import labels
        labels(self.stimulus)
        lead_ms = max(1, round(self.input.delay_ms / self.dt_ms) - 1) * self.dt_ms
        for i, d in enumerate(self.stimulus):
            # a generator's current reaches its neurons after the input synapses' delay (adapter.py)
            if d.onset_ms < lead_ms - 1e-9:
                raise ValueError(f"stimulus[{i}].onset_ms ({d.onset_ms:g}) must be at least {lead_ms:g} ms: NEST "
                                 "delivers a generator's current after the input synapses' delay "
                                 "(input.delay_ms - dt_ms)")
        return self
