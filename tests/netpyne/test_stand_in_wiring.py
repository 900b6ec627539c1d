"""The stand-ins of another service's E cells are wired exactly as one service wires the real cells
(PROTOCOL.md §4.2): the same connection list and weights, drawn from the rule `E_q->E_p`'s seed,
and the connectome delay shortened by the m windows the spikes take to arrive. NetPyNE specs only
(no NEURON network is built)."""
from __future__ import annotations

import numpy as np
import pytest

from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder, remote_label
from cosim.services.netpyne_node.config import NetpyneParams

pytestmark = [pytest.mark.netpyne]


def connectome():
    w = np.zeros((4, 4))
    w[1, 3], w[3, 1], w[1, 2] = 2.0, 1.5, 3.0
    idel = np.full((4, 4), 40, dtype=np.int64)
    idel[1, 3] = 27
    return {"weights": w, "idelays": idel}


def build(regions, remote=None, shift=0.0, **params):
    p = NetpyneParams.model_validate({"network": {"n_exc": 50, "n_inh": 10}, "inter_region": {"prob": 0.2}, **params})
    b = NetpyneNetworkBuilder(p, regions, connectome(), G=2.0, tvb_dt_ms=0.1, seed=5, remote=remote,
                              remote_shift_ms=shift)
    return b.set_default().build()


def test_stand_ins_get_the_single_service_connections_with_the_delay_shortened():
    one = build([1, 2, 3]).netParams
    split = build([1, 2], remote={3: 50}, shift=1.6).netParams
    whole, part = one.connParams["E_3->E_1"], split.connParams[f"{remote_label(3)}->E_1"]
    assert part["connList"] == whole["connList"] and len(whole["connList"]) > 100
    assert part["weight"] == whole["weight"]
    assert whole["delay"] == pytest.approx(2.7) and part["delay"] == pytest.approx(2.7 - 1.6)
    assert split.popParams[remote_label(3)]["numCells"] == 50
    # the rules between the regions this service keeps are untouched by the split
    assert split.connParams["E_2->E_1"]["connList"] == one.connParams["E_2->E_1"]["connList"]
    assert "E_1->E_3" not in split.connParams          # region 3's own inputs are its service's


def test_a_delay_shorter_than_the_shift_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"delay 2.7 ms from region 3 \(another service\) to 1 is shorter"):
        build([1, 2], remote={3: 50}, shift=3.2)
