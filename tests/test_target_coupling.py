"""Couplings that cannot be pre-summed (issue 20, item 3): Difference and Kuramoto read the
target's own state. For spiking targets the TVB node sends ``coupling/R_e`` = the interface's
``coupling_rate`` of TVB's own ``pre``/``post`` coupling (services/tvb_node/adapter.py
``TargetCoupling``), the target's state being what its history holds at the last step received
from the spiking side.

The oracle is tvb-library's own ``SparseCoupling.__call__`` on a ``SparseHistory`` built in the
test from the TVB node's history buffer of the same run, with the weights of TVB's own regions
only (spiking regions and self-connections are the spiking side's) and the targets' current
state set to that received state: equal bit for bit.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from conftest import require

require("tvb")

pytestmark = [pytest.mark.tvb]

REGIONS = (33, 71)
W = 10

CASES = {
    "g2d-difference": ({"model": {"class": "Generic2dOscillator"}, "coupling": {"class": "Difference", "params": {"a": 0.1}}},
                       (5.0, 30.0)),
    # Kuramoto's post divides by gx.shape[0]: the test catches a wrong array layout handed to post
    "kuramoto-kuramoto": ({"model": {"class": "Kuramoto"}, "coupling": {"class": "Kuramoto", "params": {"a": 0.5}},
                           "interface": {"rate": {"var": "theta", "scale": 1.0, "offset": 10.0},
                                         "proxy": {"theta": {"from": "R_e", "scale": 0.2, "offset": -2.0}},
                                         "coupling_rate": {"scale": 20.0}}},
                          (1.0, 20.0)),
}


def _node(tvb: dict, lag: int = 1, regions=REGIONS):
    from cosim.config import parse_config
    from cosim.runtime.adapter import RunContext, SignalSpec
    from cosim.services.tvb_node.adapter import TVBAdapter
    c = parse_config({"run": {"duration_ms": 100.0, "seed": 5}, "tvb": tvb,
                      "spiking_nodes": [{"name": "sp", "backend": "nest", "regions": list(regions)}]})
    ctx = RunContext(config=c.model_dump(mode="json"), node_name="tvb", regions=regions, tvb_dt_ms=0.1, tick_ms=0.1,
                     lag_windows=lag)
    a = TVBAdapter()
    req = a.requires(ctx)
    ctx.steps_per_window, ctx.n_windows, ctx.connectome, ctx.inputs = W, 10, a.connectome(), req
    ctx.outputs = [SignalSpec("coupling/R_e", regions), SignalSpec("state/R_e", (1, 2, 3))]
    a.configure(ctx)
    return a, req


def _tvb_own_coupling(a, first_step: int, n_steps: int) -> np.ndarray:
    """tvb-library's SparseCoupling.__call__ for the targets on a copy of the node's history:
    weights of TVB's own regions only, the targets' state at n - 1 set to the node's x_target."""
    from tvb.simulator.history import SparseHistory
    w = a.tvb
    targets = np.array(REGIONS)
    wts = np.array(w.weights, copy=True)
    wts[:, a.is_proxy] = 0.0                  # spiking regions (and so self-connections) are not TVB's terms
    h = SparseHistory(wts, w.idelays, w.sim.model.cvar, 1)
    buf = np.array(w.sim.history.buffer, copy=True)
    coup = copy.deepcopy(w.sim.coupling)
    coup.__dict__.pop("_cached_lri", None)    # SparseCoupling caches the row layout of the full weights
    coup.__dict__.pop("_cached_nzr", None)
    out = np.empty((n_steps, len(targets)))
    for i, n in enumerate(range(first_step, first_step + n_steps)):
        b = buf.copy()
        b[w.slot(n - 1), :, targets, 0] = a._x_target[:, targets].T
        h.initialize(b)
        out[i] = coup(w.offset + n, h)[0, targets, 0]
    return out


@pytest.mark.parametrize("case,per_step,lag", [(c, p, 1) for c in CASES for p in (False, True)]
                         + [("g2d-difference", False, 2)])
def test_sent_coupling_is_tvb_own_pre_post_on_the_same_history(case, per_step, lag):
    """Both of TargetCoupling's paths: a whole window in one call (tvb-library's elementwise
    Difference, Kuramoto) and one TVB-shaped call per step (any other coupling)."""
    tvb, (lo, hi) = CASES[case]
    a, req = _node({**tvb, "initial_history": "zero"}, lag=lag)
    w = a.tvb
    assert a._target is not None and a._target.elementwise
    a._target.elementwise = not per_step
    scale = {"g2d-difference": 10.0, "kuramoto-kuramoto": 20.0}[case]
    rng = np.random.default_rng(2)
    plan = a.plans["coupling/R_e"]
    n_checked = 0
    to_state = {"g2d-difference": lambda r: r / 10.0 - 2.0, "kuramoto-kuramoto": lambda r: 0.2 * r - 2.0}[case]
    for k in range(8):
        blocks = {s.name: rng.uniform(lo, hi, (W, len(s.regions))) for s in req} if k else {}
        out = a.step(k, blocks if k >= lag else {})
        a.after_window()
        sent = out["coupling/R_e"]
        first = (k + lag) * W + 1            # the coupling of window k + m
        if k >= lag:                         # the targets' state came from the spiking side (window k - m)
            # the targets' state is the one received last: window k - 1's last row, as TVB's float32 history holds it
            np.testing.assert_array_equal(a._x_target[0, list(REGIONS)],
                                          to_state(blocks["state/R_e"][-1]).astype(np.float32))
            want = scale * _tvb_own_coupling(a, first, W)
            np.testing.assert_array_equal(sent, want, err_msg=f"window {k}")
            # the old path's value: the rate sum over the same sources, which ignores the target
            x = w.sim.history.buffer[:, 0, :, 0].astype(np.float64)
            R = {"g2d-difference": np.maximum(0.0, 10.0 * (x + 2.0)), "kuramoto-kuramoto": np.maximum(0.0, x + 10.0)}[case]
            old = plan.compute(first, W, lambda src, J, R=R: R[w.slot(src), J])
            assert np.abs(sent - old).max() > 1.0, f"window {k}: the sent value is the old rate sum"
            n_checked += 1
    assert n_checked == 8 - lag


def test_pre_summable_couplings_keep_the_rate_sum():
    from tvb.simulator import coupling
    from cosim.services.tvb_node.adapter import target_dependent

    class MyDiff(coupling.SparseCoupling):
        def pre(self, x_i, x_j):
            return x_j - 0.5 * x_i

    assert target_dependent(coupling.Difference(), 1) and target_dependent(coupling.Kuramoto(), 1)
    assert target_dependent(MyDiff(), 1)
    for c in (coupling.Linear(), coupling.Scaling(), coupling.HyperbolicTangent(), coupling.Sigmoidal(),
              coupling.SigmoidalJansenRit(), coupling.PreSigmoidal()):
        assert not target_dependent(c, 2 if isinstance(c, coupling.SigmoidalJansenRit) else 1), type(c).__name__
    a, _ = _node({"model": {"class": "Generic2dOscillator"}, "coupling": {"class": "Linear", "params": {"a": 0.1}}})
    assert a._target is None and a._R_ring is not None


def test_checkpoint_restores_the_targets_state(tmp_path):
    tvb, _ = CASES["g2d-difference"]
    rng = np.random.default_rng(1)
    a, req = _node(dict(tvb))
    blocks = [{s.name: rng.uniform(5, 30, (W, len(s.regions))) for s in req} for _ in range(8)]
    outs = []
    for k in range(8):
        outs.append(a.step(k, blocks[k] if k else {}))
        a.after_window()
        if k == 3:
            info = a.checkpoint(tmp_path)
    b, _ = _node(dict(tvb))
    b.restore(tmp_path, info)
    for k in range(4, 8):
        np.testing.assert_array_equal(b.step(k, blocks[k])["coupling/R_e"], outs[k]["coupling/R_e"])


@pytest.mark.parametrize("tvb,fragment", [
    ({"coupling": {"class": "Difference"}}, "ReducedWongWangExcInh interface declares no coupling_rate"),
    ({"model": {"class": "JansenRit"}, "coupling": {"class": "Kuramoto"}}, "JansenRit interface declares no coupling_rate"),
])
def test_target_dependent_coupling_without_coupling_rate_is_one_line(tvb, fragment):
    from cosim.config import parse_config
    with pytest.raises(ValueError) as e:
        parse_config({"tvb": tvb, "spiking_nodes": [{"name": "sp", "backend": "netpyne", "regions": [33]}]})
    assert fragment in str(e.value)
    # the reference backend needs no interface: it runs TVB's own coupling for every region
    parse_config({"tvb": tvb, "spiking_nodes": [{"name": "sp", "backend": "reference", "regions": [33]}]})


def test_per_source_input_with_a_target_dependent_coupling_is_one_line():
    from cosim.config import parse_config
    with pytest.raises(ValueError) as e:
        parse_config({"tvb": {"model": {"class": "Generic2dOscillator"}, "coupling": {"class": "Difference"}},
                      "spiking_nodes": [{"name": "sp", "backend": "netpyne", "regions": [33],
                                         "params": {"input": {"mode": "per_source"}}}]})
    assert "input.mode per_source" in str(e.value) and "Difference" in str(e.value)
