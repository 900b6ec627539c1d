"""crossing_min_delay_steps: the causal-window rule of PROTOCOL.md §3."""
import numpy as np
import pytest

from cosim.config.timing import crossing_min_delay_steps


@pytest.mark.unit
def test_self_connections_excluded_and_zero_weights_ignored():
    w = np.array([[5.0, 1.0, 0.0],
                  [1.0, 5.0, 2.0],
                  [0.0, 2.0, 5.0]])
    d = np.array([[0, 7, 1],
                  [9, 0, 4],
                  [1, 6, 0]])
    # {0} vs rest: 0<-1 (7) and 1<-0 (9); 0<->2 has delay 1 but zero weight; diagonal 0 ignored
    assert crossing_min_delay_steps(w, d, [{0}]) == 7
    # {2} vs rest: 1<-2 (4), 2<-1 (6)
    assert crossing_min_delay_steps(w, d, [{2}]) == 4
    # explicit groups covering everything, and an implicit remainder give the same answer
    assert crossing_min_delay_steps(w, d, [{0}, {1, 2}]) == 7
    # nothing crosses
    assert crossing_min_delay_steps(w, d, [{0, 1, 2}]) is None
    # three nodes: every off-diagonal non-zero connection crosses
    assert crossing_min_delay_steps(w, d, [{0}, {1}, {2}]) == 4


@pytest.mark.unit
def test_bad_groups_rejected():
    w, d = np.ones((3, 3)), np.ones((3, 3), dtype=int)
    with pytest.raises(ValueError, match="region 1 is in group 0 and group 1"):
        crossing_min_delay_steps(w, d, [{0, 1}, {1}])
    with pytest.raises(ValueError, match="out of range"):
        crossing_min_delay_steps(w, d, [{3}])
    with pytest.raises(ValueError, match="shape"):
        crossing_min_delay_steps(w, np.ones((2, 2)), [{0}])


@pytest.mark.tvb
def test_default_connectivity_delays():
    """tvb-data 76 regions, speed 3 mm/ms, dt 0.1 ms: idelays = rint(length / speed / dt).

    The 1.6 ms (16 steps) of the issue is the *global* shortest inter-region delay
    (rCCA <-> lCCA, regions 3 and 41); regions {33, 71} (rTCS, lTCS) cross at 49 steps (1 -> 33).
    """
    from tvb.datatypes.connectivity import Connectivity
    conn = Connectivity.from_file()
    conn.speed = np.array([3.0])
    conn.configure()
    conn.set_idelays(0.1)
    w, d = conn.weights, conn.idelays
    off = (w != 0) & ~np.eye(76, dtype=bool)
    assert d[off].min() == 16
    assert np.count_nonzero(np.diag(w)) == 66 and not np.diag(d).any()
    assert crossing_min_delay_steps(w, d, [{33, 71}]) == 49
    assert crossing_min_delay_steps(w, d, [{3}, {41}]) == 16
    assert crossing_min_delay_steps(w, d, [{3, 41}]) == 95         # their 16-step link is internal
    assert crossing_min_delay_steps(w, d, [{3, 41, 40}]) == 29
