"""Spikes between spiking services (issue 25, PROTOCOL.md §4.2), through the real system: the same
four connected regions on one NetPyNE service and split over two give the same network, so the same
spikes, cell for cell and time for time; coupling the two services by rates instead
(``run.inter_service: rates``) is a different network, and ``cosim run`` says so.

Seeding: ``run.seed`` seeds each connection rule by its populations' labels (``E_59->E_71``: the
region pair, whichever service draws it; services/netpyne_node/wiring.py) and each region's Poisson
input by its region index, so nothing random depends on how regions are grouped. The regions
(71, 38, 59, 39 of tvb-data's 76) are all connected to each other, 6.6-24.7 ms apart.
"""
import h5py
import pytest

from harness import assert_same_network, spikes_by_population

pytestmark = [pytest.mark.system, pytest.mark.netpyne, pytest.mark.tvb, pytest.mark.slow]

REGIONS = [71, 38, 59, 39]


def config(groups, **run):
    return {"run": {"name": "split", "duration_ms": 100.0, "seed": 7, **run},
            "spiking_nodes": [{"name": f"s{i}", "backend": "netpyne", "regions": g,
                               "params": {"record": {"plot": False}}} for i, g in enumerate(groups)]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The five runs, their services forked from one zygote (conftest.run_warm): the imports once."""
    from conftest import run_warm
    plan = {"one": ([REGIONS], {}), "two": ([REGIONS[:2], REGIONS[2:]], {}),
            "rates": ([REGIONS[:2], REGIONS[2:]], {"inter_service": "rates"}),
            "one_m3": ([REGIONS], {"lookahead": 3}),
            "two_m3": ([REGIONS[:2], REGIONS[2:]], {"lookahead": 3})}
    done = run_warm({k: config(g, **run) for k, (g, run) in plan.items()}, tmp_path_factory.mktemp("split"),
                    "--no-plots")
    out = {}
    for key, (groups, _) in plan.items():
        r = done[key]
        assert r.code == 0, r.stderr[-2000:]
        out[key] = (r, [f"s{i}" for i in range(len(groups))])
    return out


@pytest.mark.parametrize("lag", ["", "_m3"])
def test_one_service_and_two_give_the_same_spikes(runs, lag):
    """lag _m3: windows a third as long, spikes replayed 3 windows late (delays 3 windows shorter)."""
    (one, n1), (two, n2) = runs["one" + lag], runs["two" + lag]
    assert_same_network(one, n1, two, n2, REGIONS)      # and TVB computes the same brain


def test_rates_between_services_is_another_network_and_is_named(runs):
    (one, n1), (rates, n3) = runs["one"], runs["rates"]
    a, c = spikes_by_population(one.out, n1), spikes_by_population(rates.out, n3)
    total_a, total_c = sum(map(len, a.values())), sum(map(len, c.values()))
    assert total_a != total_c and any(a[lab] != c[lab] for lab in a)
    assert "coupled through their rates only" in rates.stderr and "'rates'" in rates.stderr


def test_lookahead_does_not_change_the_spikes(runs):
    """Windows a third as long (lookahead 3) give the same spikes on one service: the Poisson input
    is drawn in model-time order, not window by window (before: 2,255 vs 1,858 spikes in 200 ms,
    docs/performance.md "Windows and the Poisson drive"). The runs end with their last windows, at
    different times past 100 ms: compared up to 100 ms."""
    (one, n1), (one_m3, n3) = runs["one"], runs["one_m3"]
    with h5py.File(one.out / "coordinator.h5", "r") as f1, h5py.File(one_m3.out / "coordinator.h5", "r") as f3:
        assert int(f1.attrs["steps_per_window"]) != int(f3.attrs["steps_per_window"])
    a, b = spikes_by_population(one.out, n1), spikes_by_population(one_m3.out, n3)
    for lab in a:
        x, y = [s for s in a[lab] if s[0] <= 100.0], [s for s in b[lab] if s[0] <= 100.0]
        assert len(x) > 10 and x == y, f"{lab}: {len(x)} spikes with lookahead 1, {len(y)} with 3"
