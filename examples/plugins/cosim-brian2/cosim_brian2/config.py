"""Parameters of the Brian2 backend (``spiking_nodes[i].params``); imports neither Brian2 nor NumPy.

The default region is the Brian2 counterpart of cosim's default spiking region (DOMAIN.md):
the same sizes (120 E + 40 I, ``scale``), the same within-region rules (cosim.sdk.region_params:
probability, weight, 5 ms delay), the same Exp2Syn-shaped synapses (rise/decay, reversal), the
same E->E coupling between this node's regions and the same input/output transformers. Only
the neuron differs: the default NetPyNE cell's passive membrane (1 µF/cm², leak 0.003 S/cm²,
-70 mV, on the soma's 1110 µm²: C 11.1 pF, g_L 33.3 nS, tau_m 0.33 ms) with its Hodgkin-Huxley
spike replaced by integrate-and-fire: threshold -40 mV, reset -70 mV, 8 ms refractory. On the
same membrane the µS weights of the shared blocks mean what they mean for NetPyNE and NEST (an
Exp2Syn conductance that peaks at w). Calibration (README, "Regime"): the threshold keeps a
single within-region E->E synapse (0.02 µS: ~26 mV at its peak) below threshold, the input
weight (0.03 µS: ~33 mV) above it, so an input spike fires its E cell as NetPyNE's relays do;
the refractory period makes that one spike, not a burst for as long as the ~5 ms conductance
lasts (the membrane forgets the reset within ~1 ms). 8 ms, as the NEST backend's calibration
chose for the same reason, puts the region in the other backends' regime (README, "Regime");
5 ms gave E 17 / 43 Hz at 7.7 / 11.5 Hz input.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cosim.sdk.region_params import InputTransformer, InterRegion, OutputTransformer, RegionConns, default_conns
from cosim.sdk.stimulus import CurrentPA


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LifCell(_S):
    """Conductance-based LIF: the NetPyNE soma's passive membrane, integrate-and-fire spike."""
    diam_um: float = Field(18.8, gt=0)
    length_um: float = Field(18.8, gt=0)
    cm_uF_cm2: float = Field(1.0, gt=0)
    gl_S_cm2: float = Field(0.003, gt=0, description="leak per area (the NetPyNE cell's gl)")
    E_L_mV: float = -70.0
    V_th_mV: float = -40.0
    V_reset_mV: float = -70.0
    t_ref_ms: float = Field(8.0, ge=0, description="one spike per input spike, not a burst (module doc)")

    @model_validator(mode="after")
    def _order(self) -> LifCell:
        if self.V_reset_mV >= self.V_th_mV:
            raise ValueError(f"V_reset_mV ({self.V_reset_mV}) must be below V_th_mV ({self.V_th_mV})")
        return self

    def area_cm2(self) -> float:
        return math.pi * self.diam_um * self.length_um * 1e-8      # lateral surface, as NEURON's area()

    def C_pF(self) -> float:
        return self.cm_uF_cm2 * self.area_cm2() * 1e6

    def g_L_nS(self) -> float:
        return self.gl_S_cm2 * self.area_cm2() * 1e9


class Exp2Synapse(_S):
    """A conductance with a rise and a decay time (NEURON's Exp2Syn); weight w peaks at w."""
    tau_rise_ms: float = Field(gt=0)
    tau_decay_ms: float = Field(gt=0)
    E_rev_mV: float

    @model_validator(mode="after")
    def _order(self) -> Exp2Synapse:
        if self.tau_rise_ms >= self.tau_decay_ms:
            raise ValueError(f"tau_rise_ms must be < tau_decay_ms (got {self.tau_rise_ms} >= {self.tau_decay_ms})")
        return self

    def peak_factor(self) -> float:
        """Exp2Syn's factor: g = factor * w * (exp(-t/decay) - exp(-t/rise)) peaks at w."""
        tr, td = self.tau_rise_ms, self.tau_decay_ms
        tp = tr * td / (td - tr) * math.log(td / tr)
        return 1.0 / (math.exp(-tp / td) - math.exp(-tp / tr))


class Brian2Network(_S):
    """The default spiking network of one region (E and I populations)."""
    n_exc: int = Field(120, ge=1)
    n_inh: int = Field(40, ge=1)
    scale: float = Field(1.0, gt=0, description="multiplies n_exc and n_inh (rounded, >= 1)")
    cell: LifCell = Field(default_factory=LifCell)
    syn_exc: Exp2Synapse = Field(default_factory=lambda: Exp2Synapse(tau_rise_ms=0.8, tau_decay_ms=5.3, E_rev_mV=0.0))
    syn_inh: Exp2Synapse = Field(default_factory=lambda: Exp2Synapse(tau_rise_ms=0.6, tau_decay_ms=8.5, E_rev_mV=-75.0))
    conns: RegionConns = Field(default_factory=default_conns, description="keys among EE, EI, IE, II")
    v_init_mV: float = -70.0

    def sizes(self) -> tuple[int, int]:
        return max(1, round(self.n_exc * self.scale)), max(1, round(self.n_inh * self.scale))


class Brian2Input(InputTransformer):
    """TVB coupling -> one Poisson train per input neuron (cosim.sdk.transformers.PoissonInput), input
    neuron i -> E cell i mod n_exc of its region (one-to-one by default: n_input = n_exc)."""
    weight_uS: float = Field(0.03, ge=0, description="input -> E peak conductance (µS): one input spike fires its cell")


class Brian2Record(_S):
    spikes: bool = True
    input_spikes: bool = Field(False, description="also record the Poisson input trains (input_spikes/ in the HDF5)")
    flush_every: int = Field(20, ge=1, description="flush the HDF5 file every N windows")
    plot: bool = True


class Brian2PopMap(_S):
    region: int = Field(ge=0)
    role: Literal["exc", "inh", "other"] = Field(description="exc: counted as the region's R_e (and driven by "
                                                              "TVB's input), inh: R_i, other: simulated only")


class Brian2ModelFile(_S):
    """A Brian2 network of your own (a Python file; see the plugin's README, "Bring your Brian2 model")."""
    path: str = Field(description="Python file defining POPULATIONS {label: size} and build(b2, clock, seed, stim_ta, "
                                  "stim_col) -> (NeuronGroup, [other Brian2 objects], input on_pre statement)")
    populations: dict[str, Brian2PopMap] = Field(min_length=1)


class Brian2Params(_S):
    dt_ms: float = Field(0.05, gt=0, description="Brian2's time step; must divide the TVB dt")
    network: Brian2Network = Field(default_factory=Brian2Network)
    input: Brian2Input = Field(default_factory=Brian2Input)
    output: OutputTransformer = Field(default_factory=OutputTransformer)
    inter_region: InterRegion = Field(default_factory=InterRegion)
    record: Brian2Record = Field(default_factory=Brian2Record)
    model_file: Brian2ModelFile | None = Field(None, description="a Brian2 network of your own instead of the "
                                                                  "default E/I network (network and inter_region "
                                                                  "are then not used)")
    stimulus: list[CurrentPA] = Field(default_factory=list, max_length=64,
                                      description="current devices (pulse trains, constant currents) in pA, added to "
                                                  "the membrane equation through a TimedArray (1 nA in NetPyNE = 1000 pA)")

    @model_validator(mode="after")
    def _input_delay(self) -> Brian2Params:
        # input trains are placed on Brian2's grid and delivered after a whole number of steps
        if self.input.delay_ms < self.dt_ms:
            raise ValueError(f"input.delay_ms ({self.input.delay_ms}) must be at least dt_ms ({self.dt_ms})")
        from cosim.sdk.stimulus import labels
        labels(self.stimulus)
        return self
