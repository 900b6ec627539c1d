"""Parameters of the mean-field reference backend (``spiking_nodes[i].params``).

Light imports only: the coordinator validates these without tvb-library installed.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cosim.config import TVBSection


class ReferenceParams(BaseModel):
    """``spiking_nodes[i].params`` for backend "reference"; nothing is required."""
    model_config = ConfigDict(extra="forbid")
    dt_ms: float | None = Field(None, gt=0, description="if set, must equal tvb.dt_ms (the oracle steps with TVB)")
    record: bool = Field(True, description="write <results_dir>/<node>.h5")
    model: dict[str, float] = Field(default_factory=dict, description=(
        "ReducedWongWangExcInh parameter overrides for this node's own regions only (e.g. {I_ext: 0.05}); "
        "the oracle then differs from TVB's stand-in for them, which exercises the proxy path"))

    @field_validator("model")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        return TVBSection._known_model_params(v)
