"""Parameters of the mean-field reference backend (``spiking_nodes[i].params``).

Light imports only: the coordinator validates these without tvb-library installed.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReferenceParams(BaseModel):
    """``spiking_nodes[i].params`` for backend "reference"; nothing is required."""
    model_config = ConfigDict(extra="forbid")
    dt_ms: float | None = Field(None, gt=0, description="if set, must equal tvb.dt_ms (the oracle steps with TVB)")
    record: bool = Field(True, description="write <results_dir>/<node>.h5")
    model: dict[str, float] = Field(default_factory=dict, description=(
        "parameter overrides of tvb.model's class for this node's own regions only (e.g. {I_ext: 0.05}); "
        "the oracle then differs from TVB's stand-in for them, which exercises the proxy path"))

    # names are checked against tvb.model's class when the node builds its simulator (the
    # config's tvb section is not known here)
