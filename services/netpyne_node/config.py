"""Parameters of the NetPyNE/NEURON spiking backend (``spiking_nodes[i].params``).

Validated by the coordinator, so this module imports neither ``neuron`` nor ``netpyne``.
Defaults reproduce DOMAIN.md's default region network (TVB-multiscale's NetPyNE example).

Input transformer default scale -- how it was chosen: ``coupling/R_e`` for region p is
sum_j w[p, j] * R_e,j over TVB-simulated regions (Hz*weight). ``scale = "row_mean"`` divides by
sum_j w[p, j], so each input neuron fires at the *weight-averaged rate of the region's TVB
sources* (TVB's default RWW sits at R_e ~ 4-9 Hz; tvb-data's 76-region regions 33/71 have ~39
units of incoming weight, so coupling ~ 150-350 Hz*weight -> 4-9 Hz per input neuron). With one
input neuron per E cell at 0.006 uS, the default network then fires at ~5-12 Hz (measured with
``python -m cosim.services.netpyne_node.drive``: input 5/10/20 Hz -> E ~7/11/13 Hz; 0 Hz -> 0 Hz).
A number instead of "row_mean" is used as is: ``rate_hz = scale * signal + offset_hz``.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cosim.sdk.region_params import (SCALE_KEEPS_HELP, ConnSpec, InputTransformer, InterRegion, OutputTransformer,  # noqa: F401
                                  PopMap, RegionConns, ScaleKeeps,
                                  default_conns as _conns)
from cosim.sdk.stimulus import CurrentNA


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CellModel(_S):
    """A single-compartment cell from geometry + mechanisms (poster's NetpyneCellModel)."""
    diam_um: float = Field(18.8, gt=0)
    length_um: float = Field(18.8, gt=0)
    Ra_ohm_cm: float = Field(123.0, gt=0)
    cm_uF_cm2: float = Field(1.0, gt=0)
    mechs: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.003, "el": -70.0}})


class SynapseModel(_S):
    """An Exp2Syn receptor."""
    tau1_ms: float = Field(gt=0)
    tau2_ms: float = Field(gt=0)
    e_mV: float

    @model_validator(mode="after")
    def _order(self) -> SynapseModel:
        if self.tau1_ms >= self.tau2_ms:
            raise ValueError(f"Exp2Syn needs tau1_ms < tau2_ms (got {self.tau1_ms} >= {self.tau2_ms})")
        return self


class RegionNetwork(_S):
    """The default spiking network of one region (E and I populations)."""
    n_exc: int = Field(120, ge=1)
    n_inh: int = Field(40, ge=1)
    scale: float = Field(1.0, gt=0, description="multiplies n_exc and n_inh (rounded, >= 1); see scale_keeps")
    scale_keeps: ScaleKeeps = Field("in_degree", description=SCALE_KEEPS_HELP)
    cell_E: CellModel = Field(default_factory=CellModel)
    cell_I: CellModel = Field(default_factory=CellModel)
    syn_exc: SynapseModel = Field(default_factory=lambda: SynapseModel(tau1_ms=0.8, tau2_ms=5.3, e_mV=0.0))
    syn_inh: SynapseModel = Field(default_factory=lambda: SynapseModel(tau1_ms=0.6, tau2_ms=8.5, e_mV=-75.0))
    conns: RegionConns = Field(default_factory=_conns, description="keys among EE, EI, IE, II")
    v_init_mV: float = -65.0
    wiring: Literal["numpy", "netpyne"] = Field(
        "numpy", description="how fixed-probability rules are drawn: numpy = per post cell a Binomial in-degree and "
                             "that many distinct sources (O(N·k), handed to NetPyNE as connList; wiring.py); "
                             "netpyne = NetPyNE's probability rule, one random number per pair (O(N²) time and "
                             "memory; the network of versions before it; toolbox.fixed_wiring always uses it)")

    def sizes(self) -> tuple[int, int]:
        return max(1, round(self.n_exc * self.scale)), max(1, round(self.n_inh * self.scale))


class ModelDrive(_S):
    """TVB drive attached by cosim in each region where no population of the model has role ``input``.

    Each driven cell (a seeded ``fraction`` of the cells of every population whose role is in
    ``roles``) gets ``sources_per_cell`` independent Poisson trains, each at the input
    transformer's rate ``rate_hz = input.scale * coupling + input.offset_hz`` (Hz per source),
    so a cell receives ``sources_per_cell * rate_hz`` input spikes/s, each of weight ``weight_uS``
    on ``synapse`` (see docs/user_models.md for the arithmetic).
    """
    roles: list[Literal["exc", "inh"]] = Field(default_factory=lambda: ["exc"], min_length=1,  # type: ignore[arg-type]
                                               description="roles of the populations driven")
    synapse: str | None = Field(None, description="a synMechParams label of the model; default: an Exp2Syn "
                                                  "(tau1 0.8, tau2 5.3 ms, e 0 mV) added as 'cosim_drive_syn'")
    weight_uS: float = Field(0.006, ge=0, description="weight of each source's NetCon")
    fraction: float = Field(1.0, gt=0, le=1, description="fraction of each driven population's cells (seeded pick)")
    sources_per_cell: int = Field(1, ge=1, le=1000)
    delay_ms: float = Field(1.0, gt=0)
    sec: str | None = Field(None, description="section of the target cells; default NetPyNE's (soma)")
    loc: float = Field(0.5, ge=0, le=1)


class UserModel(_S):
    """A user's own NetPyNE model instead of the default builder."""
    path: str = Field(description=".py or .json defining netParams (and optionally simConfig), or NetPyNE's "
                                  "model index (index.npjson)")
    populations: dict[str, PopMap] = Field(min_length=1)
    mod_dir: str | None = Field(None, description="folder of .mod files; default: the model's folder, else its "
                                                  "mod/ (or ../mod/, as in src/ + mod/ layouts)")
    mod_exclude: list[str] = Field(default_factory=list, description="file-name globs of .mod files not to compile")
    build_dir: str | None = Field(None, description="cache of compiled mechanisms; default ~/.cache/cosim/nrnmech")
    drive: ModelDrive = Field(default_factory=ModelDrive, description="used in regions without an 'input' population")

    @model_validator(mode="after")
    def _drive_or_input(self) -> UserModel:
        regions = {m.region for m in self.populations.values()}
        fed = {m.region for m in self.populations.values() if m.role == "input"}
        if "drive" in self.model_fields_set and regions <= fed:
            raise ValueError("drive is for regions without an 'input' population, and every region has one; "
                             "remove one or the other")
        return self

    @field_validator("path")
    @classmethod
    def _suffix(cls, v: str) -> str:
        if not (v.endswith(".py") or v.endswith(".json") or v.endswith(".npjson")):
            raise ValueError(f"model file must be .py, .json or NetPyNE's index .npjson, got {v!r}")
        return v


class RxdExample(_S):
    """Intracellular calcium via NetPyNE rxdParams gating a Ca-activated K current."""
    enabled: bool = False
    region: int | None = Field(None, description="spiking region carrying calcium; None = the first one")
    pops: list[Literal["E", "I"]] = Field(default_factory=lambda: ["E"])  # type: ignore[arg-type]
    gcabar: float = Field(2e-4, ge=0, description="Ca channel conductance (S/cm2)")
    gkcabar: float = Field(0.01, ge=0, description="Ca-activated K conductance (S/cm2)")
    kd_mM: float = Field(1e-3, gt=0, description="KCa half-activation [Ca]i")
    cai0_mM: float = Field(5e-5, gt=0, description="resting [Ca]i")
    tau_ca_ms: float = Field(50.0, gt=0, description="extrusion time constant (the molecular parameter)")
    diffusion_um2_ms: float = Field(0.25, ge=0)


class RecordOptions(_S):
    spikes: bool = True
    input_spikes: bool = False
    traces: dict[str, dict] = Field(default_factory=dict, description="NetPyNE recordTraces entries")
    trace_cells: list[str | int] = Field(default_factory=lambda: [0], description="NetPyNE recordCells")  # type: ignore[arg-type]
    trace_step_ms: float = Field(0.1, gt=0)
    flush_every: int = Field(20, ge=1, description="flush the HDF5 file every N windows")
    plot: bool = True


class NetpyneStimulus(CurrentNA):
    """A current device (cosim/sdk/stimulus.py) as a ``CosimPulse`` point process in each cell."""
    sec: str | None = Field(None, description="section of the target cells; default NetPyNE's (soma, else the first)")
    loc: float = Field(0.5, ge=0, le=1)


class ToolboxCompat(_S):
    """What TVB-multiscale's TVB⇄NetPyNE example computes where it differs from its intent
    (services/netpyne_node/toolbox.py; docs/science.md §2). Each switch is off unless set here;
    ``tvb.conventions: tvb-multiscale-compat`` sets all but ``fixed_wiring`` (and ``dt_ms: 0.05``, cause (c))."""
    weight_sd_as_variance: bool = Field(False, description="(a) within-region weights: NEURON's normal() given "
                                                           "sd_frac*w as its variance, as the toolbox does")
    input_skips_last_step: bool = Field(False, description="(b) each window's trains cover W-1 steps: step i's "
                                                           "rate on slot i-1, the last slot silent")
    rate_kernel_per_window: bool = Field(False, description="(d) the rate sent to TVB smoothed per window by a "
                                                            "Gaussian (sigma one TVB step) without border correction")
    input_random_divergence: bool = Field(False, description="(f) each input train onto one E cell drawn at random "
                                                             "(NetPyNE divergence 1), not one to one")
    fixed_wiring: bool = Field(False, description="(g) NetPyNE's default seeds and region-major cell order: the "
                                                  "toolbox's own within-region network, whatever run.seed")


class NetpyneParams(_S):
    dt_ms: float = Field(0.025, gt=0, description="NEURON dt; must divide the TVB dt")
    network: RegionNetwork = Field(default_factory=RegionNetwork)
    input: InputTransformer = Field(default_factory=InputTransformer)
    output: OutputTransformer = Field(default_factory=OutputTransformer)
    inter_region: InterRegion = Field(default_factory=InterRegion)
    model_file: UserModel | None = None
    rxd: RxdExample = Field(default_factory=RxdExample)
    record: RecordOptions = Field(default_factory=RecordOptions)
    celsius: float = 6.3
    mpi_ranks: int = Field(1, ge=1, le=256, description="`cosim run` starts this node under mpiexec -n mpi_ranks")
    stimulus: list[NetpyneStimulus] = Field(default_factory=list, max_length=64,
                                            description="current devices (pulse trains, constant currents) in nA")
    toolbox: ToolboxCompat = Field(default_factory=ToolboxCompat,
                                   description="emulate what TVB-multiscale computes (tvb.conventions: tvb-multiscale-compat)")

    @model_validator(mode="after")
    def _exclusive(self) -> NetpyneParams:
        if self.model_file is not None and self.rxd.enabled:
            raise ValueError("rxd example works on the default network; put rxdParams in your model_file instead")
        from cosim.sdk.stimulus import labels
        labels(self.stimulus)                          # unique names
        t = self.toolbox
        if self.model_file is not None and (t.weight_sd_as_variance or t.fixed_wiring):
            raise ValueError("toolbox.weight_sd_as_variance / fixed_wiring change the default network; "
                             "a model_file builds its own")
        return self

    def cannot_checkpoint(self) -> str | None:
        """Why `run.checkpoint` cannot be honoured with these params (`cosim validate`), or None."""
        if self.mpi_ranks > 1:
            return "mpi_ranks > 1 (checkpoints save one NEURON process)"
        if self.model_file is not None:
            return "model_file (its NetStim/Random123 streams are not saved)"
        if self.record.traces or self.rxd.enabled:
            return "record.traces / rxd (recorded traces and RxD are not saved)"
        return None
