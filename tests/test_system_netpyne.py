"""TVB ⇄ NetPyNE through the real system (three processes over ZeroMQ), small networks.

- a run completes and leaves spikes, rates, exchanged signals and plots;
- the same seed gives identical spikes and identical exchanged signals twice;
- the node under mpiexec with 2 ranks gives the same exchange as 1 rank;
- silencing the spiking region's input lowers the proxy R_e that TVB receives.
"""
import h5py
import numpy as np
import pytest

from psutil_free import cosim_processes

pytestmark = [pytest.mark.system, pytest.mark.netpyne, pytest.mark.tvb]


def cfg(**params):
    base = {"network": {"n_exc": 40, "n_inh": 12}}
    for k, v in params.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return {"run": {"name": "np", "duration_ms": 120.0, "seed": 11},
            "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71], "params": base}]}


def exchanged(out):
    with h5py.File(out / "coordinator.h5", "r") as f:
        return {k: f[f"signals/spiking/state/{k}"][:] for k in ("S_e", "R_e")} | \
               {"coupling": f["signals/tvb/coupling/R_e"][:]}


def spikes(out):
    with h5py.File(out / "spiking.h5", "r") as f:
        grp = f["spikes"]
        return {k: grp[k][:] for k in grp}


@pytest.fixture(scope="module")
def warm(request, tmp_path_factory):
    """The runs of cfg() without plots (and, when the silencing test is selected, of its silenced
    config), the services forked from one zygote (conftest.run_warm: TVB, NEURON and NetPyNE
    imported once, not in each service of each run; a forked service computes what a fresh one
    does). The run of the reproducibility check and the MPI run stay fresh processes."""
    from conftest import run_warm
    cfgs = {"plain": cfg()}
    if any(getattr(i, "module", None) is request.module and i.originalname == "test_silencing_the_input_lowers_the_proxy_rate"
           for i in request.session.items):
        cfgs["off"] = cfg(input={"weight_uS": 0.0})
    return run_warm(cfgs, tmp_path_factory.mktemp("warm"), "--no-plots")


@pytest.fixture(scope="module")
def plain(warm):
    """One run of cfg() without plots, shared: the second run of the reproducibility check, the
    one-rank run of the MPI check and the driven run of the silencing check (the same config and
    seed each time, so one run serves all three)."""
    r = warm["plain"]
    assert r.code == 0, r.stderr[-2000:]
    return r


def test_run_completes_with_results_and_plots_and_is_reproducible(cosim, plain):
    a = cosim(cfg())
    assert a.code == 0, a.stderr[-2000:]
    for f in ("coordinator.h5", "tvb.h5", "spiking.h5", "tvb_activity.png", "spiking_spiking.png", "exchange.png"):
        assert (a.out / f).exists(), f
    ea = exchanged(a.out)
    assert ea["R_e"].max() > 0, "the spiking regions never fired"
    b = plain
    eb = exchanged(b.out)
    for k in ea:
        assert np.array_equal(ea[k], eb[k]), k
    sa, sb = spikes(a.out), spikes(b.out)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not cosim_processes(str(a.out)) and not cosim_processes(str(b.out))


@pytest.mark.slow
@pytest.mark.mpi
def test_two_mpi_ranks_exchange_the_same_as_one(tmp_path, plain):
    from conftest import run_cosim
    (tmp_path / "two").mkdir()
    one = plain
    two = run_cosim(cfg(mpi_ranks=2), tmp_path / "two", "--no-plots")
    assert two.code == 0, two.stderr[-1500:]
    assert "rank 1/2" in (two.out / "logs" / "spiking.log").read_text()
    e1, e2 = exchanged(one.out), exchanged(two.out)
    for k in e1:
        assert np.array_equal(e1[k], e2[k]), k


@pytest.mark.slow
def test_silencing_the_input_lowers_the_proxy_rate(warm, plain):
    on, off = plain, warm["off"]
    assert off.code == 0, off.stderr[-1500:]
    r_on, r_off = exchanged(on.out)["R_e"], exchanged(off.out)["R_e"]
    assert r_off.mean() < 0.5 * r_on.mean(), (r_on.mean(), r_off.mean())
