"""`cosim.results.breakdown`: "beyond the slowest simulator" stays true with long windows (issue 25).

With lag 1 the TVB node ends window k as soon as it holds the spiking node's window k−1, so the
recorded window wall (TVB's own cycle) can be shorter than the spiking simulator's window: over a
few windows of seconds, "loop − slowest simulate" went negative (−49 to −186 ms measured). The
figure is now taken against the slowest node's own cycle (its simulate + transform + serialize +
wait), which no simulator's share can exceed."""
from __future__ import annotations

import numpy as np
import pytest

from cosim.results import breakdown as bd

pytestmark = [pytest.mark.unit]


def _timings(monkeypatch, K=4):
    ones = np.ones(K)
    fake = {"window_wall_s": 1.0 * ones, "coordinator_s": None, "window_ms": 2000.0,
            "nodes": {"tvb": {"compute_s": 0.30 * ones, "simulate_s": 0.25 * ones, "wait_s": 0.70 * ones},
                      "spiking": {"compute_s": 1.20 * ones, "simulate_s": 1.15 * ones, "wait_s": 0.0 * ones}}}
    monkeypatch.setattr(bd, "_read", lambda out: fake)


def test_beyond_the_slowest_simulator_is_never_negative(monkeypatch):
    _timings(monkeypatch)
    b = bd.breakdown("unused")
    assert b["loop_ms_per_window"] == pytest.approx(1000.0)              # TVB's cycle
    assert b["slowest_simulate_ms"] == pytest.approx(1150.0)              # more than that cycle
    assert b["cycle_ms_per_window"] == pytest.approx(1200.0)              # the spiking node's own cycle
    assert b["overhead_ms_per_window"] == pytest.approx(50.0)             # was 1000 - 1150 = -150
    assert b["overhead_fraction"] == pytest.approx(50.0 / 1200.0)
    assert "beyond the slowest simulator: 50.000 ms per window" in bd.format_breakdown(b)


def test_short_windows_keep_the_loop_as_the_pace(monkeypatch):
    """When the window wall is the longest cycle (the usual case), nothing changes."""
    K = 5
    ones = np.ones(K)
    monkeypatch.setattr(bd, "_read", lambda out: {
        "window_wall_s": 0.010 * ones, "coordinator_s": 0.001 * ones, "window_ms": 4.9,
        "nodes": {"tvb": {"compute_s": 0.004 * ones, "simulate_s": 0.003 * ones, "wait_s": 0.005 * ones},
                  "spiking": {"compute_s": 0.007 * ones, "simulate_s": 0.006 * ones, "wait_s": 0.002 * ones}}})
    b = bd.breakdown("unused")
    assert b["cycle_ms_per_window"] == pytest.approx(b["loop_ms_per_window"]) == pytest.approx(11.0)
    assert b["overhead_ms_per_window"] == pytest.approx(5.0)
