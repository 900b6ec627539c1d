"""The real Coordinator and NodeRuntime over ZeroMQ's in-process transport (cosim.launch.inprocess):
TVB node + mean-field reference node reproduce TVB alone bit for bit under protocol 3 at lag
m = 1, 2, 4. The reference node's regions get their own I_ext, so TVB's stand-in for them is
wrong and only correctly lagged data from the reference node makes TVB exact (a timing error
cannot hide); at m > 1 each node really runs ahead of the other while data is in flight.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cosim.launch.inprocess import run_inprocess

IEXT = 0.1


def _nodes(**tvb):
    """The TVB node and the reference node (imported here: the TVB node needs tvb-library)."""
    from cosim.services.reference_node.adapter import ReferenceAdapter
    from cosim.services.tvb_node.adapter import TVBAdapter
    return {"tvb": TVBAdapter(**tvb), "spiking": ReferenceAdapter()}


def _config(regions, duration_ms, lag):
    from test_exactness_inprocess import SEED       # tvb_alone's seed (that module needs tvb-library)
    return {"run": {"duration_ms": duration_ms, "seed": SEED, "lookahead": lag, "progress": False},
            "tvb": {"integrator": {"kind": "heun_deterministic"}},
            "coordinator": {"heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 10_000},
            "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": regions,
                               "params": {"model": {"I_ext": IEXT}}}]}


@pytest.mark.system      # the real coordinator and runtime, over ZeroMQ's in-process transport
@pytest.mark.tvb
@pytest.mark.parametrize("lag", [1, 2, 4])
def test_reference_equals_tvb_alone_through_the_real_runtime(tmp_path, lag):
    from test_exactness_inprocess import ALL_PROXY_VARS, tvb_alone
    regions = [3, 41, 40]                     # smallest crossing delay 29 steps
    summary = run_inprocess(_config(regions, 120.0, lag), _nodes(record_proxy_vars=ALL_PROXY_VARS), tmp_path)
    W, K = summary["steps_per_window"], summary["windows"]
    assert W == 29 // lag and K * W >= 1200
    alone = tvb_alone(K * W, {r: IEXT for r in regions})
    with h5py.File(tmp_path / "tvb.h5", "r") as f:
        raw = f["raw"]
        flag = raw["proxy_from_spiking"][:].astype(bool)
        assert flag.sum() == (K - lag) * W                 # the last m windows never get proxy data
        for i, v in enumerate(("S_e", "S_i")):
            np.testing.assert_array_equal(raw[v][:][flag], alone[flag, i], err_msg=f"tvb.h5 {v}, lag {lag}")
    with h5py.File(tmp_path / "spiking.h5", "r") as f:
        np.testing.assert_array_equal(f["raw"]["S_e"][:], alone[:, 0][:, regions])
    # the reference node's regions really differ from TVB's homogeneous stand-in
    assert np.abs(tvb_alone(200)[:, 0, regions] - alone[:200, 0, regions]).max() > 1e-3


@pytest.mark.system
@pytest.mark.tvb
def test_a_lookahead_that_does_not_fit_is_refused(tmp_path):
    from cosim.errors import RunFailed
    with pytest.raises(RunFailed, match="run.lookahead: 30 windows"):
        run_inprocess(_config([3, 41, 40], 20.0, 30), _nodes(), tmp_path)


@pytest.mark.unit
def test_lookahead_auto_model():
    """run.lookahead: auto (cosim.services.coordinator.setup.choose_lag): no latency → plain lockstep;
    latency comparable to the compute of D steps → look ahead; the chosen lag's modelled time
    never exceeds lockstep's, and hiding is complete when the latency fits in m-1 windows."""
    from cosim.services.coordinator.setup import WINDOW_OVERHEAD_S as o, choose_lag, lag_cost
    assert choose_lag(0.0, 8e-3, 49) == 1 and choose_lag(5e-3, 0.0, 49) == 1     # nothing to hide / no compute known
    m = choose_lag(5e-3, 8e-3, 49)
    assert m > 1 and lag_cost(m, 5e-3, 8e-3) < lag_cost(1, 5e-3, 8e-3) == pytest.approx(13e-3 + o)
    assert lag_cost(m, 5e-3, 8e-3) <= 8e-3 + m * o + 1e-12                      # latency hidden entirely
    assert choose_lag(5e-3, 8e-3, 2) <= 2                                        # never beyond the delay


@pytest.mark.system
@pytest.mark.tvb
def test_lookahead_auto_in_process_is_lockstep(tmp_path):
    """In one process the round trip is microseconds: auto picks m = 1 and says why. On a loaded
    machine a heartbeat's round trip can take milliseconds; then the lag must be the one the
    cost model gives for the latency and compute the reason reports (rounded to 0.01 ms)."""
    import re

    from cosim.services.coordinator.setup import choose_lag
    cfg = _config([3, 41, 40], 20.0, "auto")
    summary = run_inprocess(cfg, _nodes(), tmp_path)
    # m windows fit in the smallest crossing delay, 29 steps (a loaded machine's round trip can make
    # auto pick m > 1: then the windows are 29 // m steps; seen in CI with xdist: m = 7, 4 steps)
    assert summary["steps_per_window"] == 29 // summary["lookahead"]
    m = re.fullmatch(r"auto: one-way latency ~([\d.]+) ms, compute ~([\d.]+) ms per 29 steps \(slowest estimate\)",
                     summary["lookahead_reason"])
    assert m, summary["lookahead_reason"]
    one_way, compute = float(m[1]) / 1e3, float(m[2]) / 1e3
    if one_way < 0.1e-3:                         # the usual case: nothing worth hiding
        assert summary["lookahead"] == 1
    h = 0.005e-3                                 # the reason's rounding
    allowed = {choose_lag(max(one_way + a, 0.0), max(compute + b, 0.0), 29) for a in (-h, 0, h) for b in (-h, 0, h)}
    assert summary["lookahead"] in allowed, (summary["lookahead"], allowed)


@pytest.mark.system
@pytest.mark.tvb
def test_a_window_too_long_for_the_lookahead_is_refused(tmp_path):
    """run.window_ms with run.lookahead: m windows of it must fit in the smallest crossing delay."""
    from cosim.errors import RunFailed
    cfg = _config([3, 41, 40], 20.0, 2)
    cfg["run"]["window_ms"] = 2.0                   # 2 × 20 steps > 29
    with pytest.raises(RunFailed, match=r"run.window_ms: 2 ms windows with run.lookahead 2 need 40 steps") as e:
        run_inprocess(cfg, _nodes(), tmp_path)
    assert e.value.exit_code == 2
    cfg["run"]["window_ms"] = 1.4                   # 2 × 14 steps ≤ 29: runs
    assert run_inprocess(cfg, _nodes(), tmp_path / "ok")["steps_per_window"] == 14
