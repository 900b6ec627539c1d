"""STEP_DONE copies in batches (PROTOCOL.md §4.1): a node sends the coordinator one STEP_DONE for
several consecutive windows; the coordinator records each window's rows where they belong."""
from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from cosim.launch.inprocess import run_inprocess
from cosim.runtime.step_copies import StepCopies
from cosim.proto import codec
from cosim.proto.messages import MessageType as T
from cosim.services.noop_node.adapter import NullSpiking, NullTVB


@pytest.mark.unit
def test_a_batch_stacks_windows_in_order_and_survives_the_codec():
    c = StepCopies("spiking", max_windows=3, max_age_s=60.0)
    assert c.take() is None and not c.due()
    for k in (7, 8):
        c.add(k, {"state/S_e": np.full((4, 2), float(k))}, {"compute_s": k / 1000})
    assert not c.due()                               # 2 of 3 windows, and young
    c.add(9, {"state/S_e": np.full((4, 2), 9.0)}, {"compute_s": 0.009})
    assert c.due()
    msg = codec.decode(codec.encode(c.take()))
    assert len(c) == 0 and msg.type == T.STEP_DONE and msg.window == 9 and msg.content["first"] == 7
    np.testing.assert_array_equal(msg.content["outputs"]["state/S_e"][:, 0], np.repeat([7.0, 8.0, 9.0], 4))
    assert [t["compute_s"] for t in msg.content["timing"]] == [0.007, 0.008, 0.009]


@pytest.mark.unit
def test_an_adapter_may_overwrite_its_outputs_while_the_copy_waits():
    c = StepCopies("spiking", max_windows=2, max_age_s=60.0)
    out = {"state/S_e": np.zeros((4, 2))}
    for k in (0, 1):
        out["state/S_e"][:] = k                 # the same array, overwritten in place each window
        c.add(k, out, {})
    np.testing.assert_array_equal(c.take().content["outputs"]["state/S_e"][:, 0], np.repeat([0.0, 1.0], 4))


@pytest.mark.unit
def test_a_single_window_is_a_plain_step_done_and_age_makes_it_due():
    c = StepCopies("spiking", max_windows=100, max_age_s=0.01)
    c.add(0, {"state/S_e": np.zeros((4, 2))}, {})
    assert not c.due() and 0 < c.seconds_left() <= 0.01
    time.sleep(0.02)
    assert c.due() and c.seconds_left() == 0
    msg = c.take()
    assert msg.window == 0 and "first" not in msg.content and isinstance(msg.content["timing"], dict)


@pytest.mark.system      # the real coordinator and runtime over ZeroMQ (in-process transport)
def test_the_coordinator_records_every_window_of_every_batch(tmp_path):
    """Null nodes output the window number in every row: the coordinator's record of each
    window must hold exactly its own number, for windows sent in batches of every size
    (16 at a time, plus the short batches at the grant's end)."""
    cfg = {"run": {"duration_ms": 16 * 0.1 * 75, "progress": False},     # 75 windows: 4 batches + 11
           "coordinator": {"heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 10_000},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5]}]}
    summary = run_inprocess(cfg, {"tvb": NullTVB(), "spiking": NullSpiking()}, tmp_path)
    K, W = summary["windows"], summary["steps_per_window"]
    assert K == 75
    want = np.repeat(np.arange(K, dtype=float), W)
    with h5py.File(tmp_path / "coordinator.h5", "r") as f:
        for key in ("signals/spiking/state/S_e", "signals/tvb/coupling/R_e"):
            got = f[key][:]
            assert got.shape[0] == K * W, key
            np.testing.assert_array_equal(got[:, 0], want, err_msg=key)
        wall = f["timing/window_wall_s"][:, 0]
        # the window's wall time is the TVB node's cycle, not the (bursty) arrival of batches
        assert np.all(np.isfinite(wall)) and np.all(wall > 0)
        tvb_timing = f["timing/tvb"][:]
        assert np.all(wall >= tvb_timing[:, 0])       # a cycle holds at least the window's compute
