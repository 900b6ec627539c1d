"""Spikes between spiking services on NEST (issue 25, PROTOCOL.md §4.2), through the real system.

- NEST alone: four connected regions on one NEST service and split over two give the same network
  (stand-in ``spike_generator``s wired by the same seeded draw, delays shortened by the lag). With
  ``input.generator: numpy`` (TVB's trains drawn per region from the run seed, as NetPyNE's) nothing
  random depends on the grouping, so the spikes are identical cell for cell; NEST's own generators
  draw from the kernel's RNG, whose stream depends on what else the process simulates, so there
  only the statistics match (measured in docs/performance.md, not asserted here).
- Across backends: a NetPyNE service and a NEST service exchange ``spikes/E`` under ``auto``;
  ``rates`` is another network and ``cosim run`` names it.
The regions (71, 38, 59, 39 of tvb-data's 76) are all connected to each other, 6.6-24.7 ms apart.
"""
import h5py
import pytest

from harness import assert_same_network, spikes_by_population

pytestmark = [pytest.mark.system, pytest.mark.nest, pytest.mark.netpyne, pytest.mark.tvb, pytest.mark.slow]

REGIONS = [71, 38, 59, 39]
#: two regions 1.6 ms apart whose other connections are all >= 9.5 ms long: split, their mutual
#: delay is the shortest crossing, so spikes into NEST set the window (one step of slack, §4.2)
NEAR = [3, 41]
NUMPY = {"input": {"generator": "numpy"}}


def config(groups, backends=None, params=NUMPY, **run):
    backends = backends or ["nest"] * len(groups)
    return {"run": {"name": "split", "duration_ms": 100.0, "seed": 7, **run},
            "spiking_nodes": [{"name": f"s{i}", "backend": b, "regions": g,
                               "params": {"record": {"plot": False}, **(params if b == "nest" else {})}}
                              for i, (g, b) in enumerate(zip(groups, backends))]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The seven runs, their services forked from one zygote (conftest.run_warm): the imports once."""
    from conftest import run_warm
    halves = [REGIONS[:2], REGIONS[2:]]
    cfgs = {"one": config([REGIONS]), "two": config(halves),
            "rates": config(halves, inter_service="rates"),
            "mixed": config(halves, ["netpyne", "nest"]),
            "mixed_rates": config(halves, ["netpyne", "nest"], inter_service="rates"),
            "near_one": config([NEAR], duration_ms=90.0),
            "near_two": config([[NEAR[0]], [NEAR[1]]], duration_ms=90.0)}
    done = run_warm(cfgs, tmp_path_factory.mktemp("split"), "--no-plots")
    out = {}
    for key, cfg in cfgs.items():
        r = done[key]
        assert r.code == 0, r.stderr[-2000:]
        out[key] = (r, [n["name"] for n in cfg["spiking_nodes"]])
    return out


def _log(r, name):
    return (r.out / "logs" / f"{name}.log").read_text()


def test_one_nest_service_and_two_give_the_same_spikes(runs):
    (one, n1), (two, n2) = runs["one"], runs["two"]
    assert_same_network(one, n1, two, n2, REGIONS)
    assert "in on stand-ins" in _log(two, "s0") and "in on stand-ins" in _log(two, "s1")


def test_rates_between_nest_services_is_another_network_and_is_named(runs):
    (one, n1), (rates, n3) = runs["one"], runs["rates"]
    a, c = spikes_by_population(one.out, n1), spikes_by_population(rates.out, n3)
    assert any(a[lab] != c[lab] for lab in a)
    assert "coupled through their rates only" in rates.stderr and "'rates'" in rates.stderr


def test_netpyne_and_nest_services_exchange_spikes(runs):
    """auto between a NetPyNE and a NEST service: spikes both ways (each side's stand-ins take the
    other's E cells), no rates note; rates named is another network."""
    (mixed, names), (mixed_rates, names_r) = runs["mixed"], runs["mixed_rates"]
    assert "coupled through their rates only" not in mixed.stderr
    assert "in on stand-ins" in _log(mixed, "s1")               # NEST takes NetPyNE's spikes
    a, c = spikes_by_population(mixed.out, names), spikes_by_population(mixed_rates.out, names_r)
    for lab in a:
        assert len(a[lab]) > 10, f"{lab} nearly silent: {len(a[lab])} spikes"
    assert any(a[lab] != c[lab] for lab in a)
    assert "coupled through their rates only" in mixed_rates.stderr


def test_spikes_into_nest_take_one_step_of_slack_and_stay_exact(runs):
    """Split, regions 3 and 41 exchange spikes across their 16-step (1.6 ms) delay: the window is
    15 steps (not 16: NEST has no zero-delay synapse), the stand-ins' synapses 0.1 ms long, and the
    spikes are those of one service, whose window is 95 steps."""
    (one, n1), (two, n2) = runs["near_one"], runs["near_two"]
    with h5py.File(one.out / "coordinator.h5", "r") as f1, h5py.File(two.out / "coordinator.h5", "r") as f2:
        assert (int(f1.attrs["steps_per_window"]), int(f2.attrs["steps_per_window"])) == (95, 15)
    a, b = spikes_by_population(one.out, n1), spikes_by_population(two.out, n2)
    end = 90.0                  # (the runs end with their last windows, at 95 and 90 ms)
    for lab in a:
        x, y = [s for s in a[lab] if s[0] <= end], [s for s in b[lab] if s[0] <= end]
        assert len(x) > 10, f"{lab} nearly silent: {len(x)} spikes"
        assert x == y, f"{lab}: {len(x)} spikes on one service, {len(y)} on two"
