"""Who produces and receives which signal (PROTOCOL.md §4)."""
import numpy as np
import pytest

from cosim.runtime.adapter import SignalSpec as S
from cosim.services.coordinator.routing import PlanError, check_outputs, plan, route

pytestmark = [pytest.mark.unit]


def owners():
    o = {r: "tvb" for r in range(6)}
    o.update({1: "spk", 4: "spk", 3: "ref"})
    return o


def test_plan_derives_outputs_from_what_consumers_require():
    p = plan({"tvb": [S("state/S_e", (1, 3, 4))], "spk": [S("coupling/R_e", (1, 4))],
              "ref": [S("state/S_e", (0, 1, 2, 4, 5))]}, owners())
    assert p.outputs["tvb"] == [S("coupling/R_e", (1, 4)), S("state/S_e", (0, 2, 5))]
    assert p.outputs["spk"] == [S("state/S_e", (1, 4))]
    assert p.outputs["ref"] == [S("state/S_e", (3,))]


def test_route_assembles_columns_from_several_producers_in_the_consumers_order():
    p = plan({"tvb": [S("state/S_e", (4, 3, 1))], "spk": [], "ref": [S("state/S_e", (5, 1, 0))]}, owners())
    produced = {"spk": {"state/S_e": np.array([[10.0, 40.0]])}, "ref": {"state/S_e": np.array([[30.0]])},
                "tvb": {"state/S_e": np.array([[0.0, 5.0]])}}  # tvb produces regions (0, 5)
    assert route(p, "tvb", produced, 1)["state/S_e"].tolist() == [[40.0, 30.0, 10.0]]
    assert route(p, "ref", produced, 1)["state/S_e"].tolist() == [[5.0, 10.0, 0.0]]


def test_missing_initial_signal_is_left_out():
    p = plan({"tvb": [S("state/S_e", (1,))], "spk": [S("coupling/R_e", (1,))]}, {0: "tvb", 1: "spk"})
    assert route(p, "tvb", {"tvb": {"coupling/R_e": np.zeros((2, 1))}}, 2) == {}


@pytest.mark.parametrize("requires, why", [
    ({"spk": [S("state/S_e", (9,))]}, "does not exist"),
    ({"spk": [S("state/S_e", (1,))]}, "its own"),
    ({"spk": [S("banana/S_e", (0,))]}, "unknown signal kind"),
])
def test_impossible_plans_are_refused(requires, why):
    with pytest.raises(PlanError, match=why):
        plan({"tvb": [], **requires}, {0: "tvb", 1: "spk"})


def test_check_outputs_names_the_problem():
    specs = [S("state/S_e", (1, 2))]
    assert check_outputs(specs, {"state/S_e": np.zeros((4, 2))}, 4) is None
    assert "missing" in check_outputs(specs, {}, 4)
    assert "shape" in check_outputs(specs, {"state/S_e": np.zeros((4, 3))}, 4)
    assert check_outputs(specs, {}, 4, allow_missing=True) is None


def test_sources_expand_to_the_state_of_every_region_outside_the_node_that_projects_to_it():
    """Per-source mode (PROTOCOL.md §4): `sources/R_e` of (1, 4) -> `state/R_e` of the regions j
    with w[1, j] or w[4, j] != 0 that the node does not simulate, from their owners."""
    w = np.zeros((6, 6))
    w[1, [0, 3, 4]] = 1.0          # 4 is the node's own region: not a source
    w[4, [1, 2]] = 0.5
    p = plan({"tvb": [S("state/S_e", (1, 3, 4))], "spk": [S("sources/R_e", (1, 4))],
              "ref": [S("state/S_e", (0, 1, 2, 4, 5))]}, owners(), weights=w)
    assert p.inputs["spk"] == [S("state/R_e", (0, 2, 3))]        # 5 does not project: not sent
    assert S("state/R_e", (0, 2)) in p.outputs["tvb"] and S("state/R_e", (3,)) in p.outputs["ref"]
    produced = {"tvb": {"state/R_e": np.array([[7.0, 8.0]])}, "ref": {"state/R_e": np.array([[9.0]])}}
    assert route(p, "spk", produced, 1)["state/R_e"].tolist() == [[7.0, 8.0, 9.0]]
    with pytest.raises(PlanError, match="no connectome"):
        plan({"tvb": [], "spk": [S("sources/R_e", (1,))]}, owners())
