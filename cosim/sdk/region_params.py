"""Parameter blocks every spiking backend shares (pydantic; no simulator imports).

- :class:`ConnSpec`: a random within-region connection rule (probability, weight, delay).
- :class:`InputTransformer`: TVB coupling -> Poisson trains (``rate_hz = scale*signal + offset``).
- :class:`OutputTransformer`: spikes -> rates -> the proxy state TVB sees.
- :class:`InterRegion`: E->E between spiking regions of one node (weight from G*C, delay from the connectome),
  and from other services' regions whose spikes reach the node (``run.inter_service``, PROTOCOL.md §4.2).
- :class:`PopMap`: where a user-model population sits in the brain and what it does.

Weights are in µS (NEURON's unit); a backend with other units converts (NEST: nS = 1000 µS).
Input scale default -- how it was chosen: ``coupling/R_e`` for region p is sum_j w[p, j] * R_e,j
over the regions outside this node (Hz*weight). ``scale = "row_mean"`` divides by sum_j w[p, j],
so each input train fires at the *weight-averaged rate of the region's sources*.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnSpec(_S):
    """Random connection rule within a region: probability, weight ~ max(0, N(w, sd_frac*w))."""
    prob: float = Field(ge=0, le=1)
    weight_uS: float = Field(ge=0)
    weight_sd_frac: float = Field(0.1, ge=0)
    delay_ms: float = Field(5.0, gt=0)


def default_conns() -> dict[str, ConnSpec]:
    """The within-region rules of the default region network (DOMAIN.md)."""
    return {"EE": ConnSpec(prob=0.01, weight_uS=0.02), "EI": ConnSpec(prob=0.01, weight_uS=0.01),
            "IE": ConnSpec(prob=0.03, weight_uS=0.01), "II": ConnSpec(prob=0.03, weight_uS=0.01)}


#: what a region network's ``scale`` keeps of each fixed-probability rule (issue 25)
ScaleKeeps = Literal["in_degree", "probability"]
SCALE_KEEPS_HELP = ("what `scale` keeps of each fixed-probability rule (within the region and E->E between this "
                    "node's regions): in_degree = prob / scale, so every cell keeps its expected number of inputs "
                    "and the network its regime; probability = prob as given (in-degree grows with scale)")


def scaled_prob(prob: float, scale: float, keeps: str) -> float:
    """A rule's probability in a network ``scale`` times the size it was written for: ``prob / scale``
    keeps each cell's expected in-degree (``keeps == "in_degree"``), else ``prob`` as given."""
    return min(1.0, prob / scale) if keeps == "in_degree" else prob


def _merge_conns(v):
    """Changing EE alone keeps EI, IE and II at their defaults (set prob 0 to drop one)."""
    if isinstance(v, dict):
        merged = {k: c.model_dump() for k, c in default_conns().items()}
        for k, c in v.items():
            merged[k] = {**merged.get(k, {}), **c} if isinstance(c, dict) else c
        return merged
    return v


def _known_conns(v: dict) -> dict:
    bad = sorted(set(v) - {"EE", "EI", "IE", "II"})
    if bad:
        raise ValueError(f"unknown connection(s) {bad}; use EE, EI, IE, II")
    return v


#: a region network's within-region rules: partial blocks keep the other rules' defaults
RegionConns = Annotated[dict[str, ConnSpec], BeforeValidator(_merge_conns), AfterValidator(_known_conns)]


class InputTransformer(_S):
    """TVB coupling -> Poisson trains: rate_hz = scale * signal + offset (clipped at 0).

    ``mode: per_source`` (cosim.sdk.spiking_input.PerSourceInput): every region j outside the node that
    projects to region p drives p's targets through its own trains at ``R_e,j(t - d_pj)`` Hz
    (the source's own rate, delayed on the spiking side), with weight ``weight_uS * s_p * w[p, j]``
    (``s_p`` = ``scale``, "row_mean" = 1 / sum_j w[p, j]); ``offset_hz`` is one more train at weight
    ``weight_uS``. The expected synaptic drive ``weight * rate`` summed over sources is then the same
    as in summed mode; the spike statistics differ (more, smaller events; per-source delays).
    """
    mode: Literal["summed", "per_source"] = Field(
        "summed", description="summed: one train per target cell at the weighted-mean rate (TVB sums the "
                              "coupling); per_source: one train per target cell and source region")
    n_input: int | None = Field(None, ge=1, description="input neurons per region; None = number of E cells")
    scale: float | Literal["row_mean"] = Field(
        "row_mean", description="Hz per (Hz*weight) of coupling/R_e, or 'row_mean' = 1 / (region's total incoming "
                                "weight from TVB-simulated regions); see module docstring")
    offset_hz: float = Field(0.0, description="baseline rate added to every input neuron")
    process: Literal["poisson", "regular"] = Field(
        "poisson", description="poisson: independent Poisson trains; regular: rate-matched regular trains from a "
                               "random phase (NetPyNE only; cosim.sdk.transformers.RegularInput)")
    weight_uS: float = Field(0.006, ge=0, description="input -> E synaptic weight (one-to-one, exc receptor)")

    @field_validator("scale")
    @classmethod
    def _nonneg(cls, v):
        if not isinstance(v, str) and v < 0:
            raise ValueError("scale must be >= 0 or 'row_mean'")
        return v
    delay_ms: float = Field(1.0, gt=0, description="input -> E delay (also bounds the MPI exchange interval)")


class OutputTransformer(_S):
    """Spikes -> rates -> proxy state (R_e, S_e, R_i, S_i) sent to TVB."""
    tau_r_ms: float = Field(10.0, gt=0)
    integrator: Literal["exact", "euler"] = Field(
        "exact", description="exact: R decays exactly over a step, S takes Heun steps; euler: forward Euler on "
                             "(S, R) with S driven by the previous step's R (tvb-multiscale)")
    exc_pops: list[str] = Field(default_factory=lambda: ["E"], description="default network roles reported as R_e")
    inh_pops: list[str] = Field(default_factory=lambda: ["I"], description="reported as R_i")
    R_e0_hz: float = Field(0.0, ge=0, description="initial proxy rate")
    R_i0_hz: float = Field(0.0, ge=0)


class InterRegion(_S):
    """E->E connections between spiking regions of this node (weight = factor * G * C_kj); with spikes
    between services (``run.inter_service``), the receiving node's block also wires the other services'
    regions, so every region's incoming E->E synapses follow its own node's block."""
    enabled: bool = True
    prob: float = Field(0.01, ge=0, le=1)
    weight_factor_uS: float = Field(0.01, ge=0, description="uS per unit of G*C_kj")
    min_delay_ms: float = Field(0.1, gt=0, description="floor for a zero connectome delay")


class PopMap(_S):
    """Where a user-model population sits in the brain and what it does."""
    region: int = Field(ge=0)
    role: Literal["input", "exc", "inh", "other"]
