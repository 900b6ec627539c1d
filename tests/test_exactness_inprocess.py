"""TVB node + mean-field reference node in lockstep reproduce TVB alone bit for bit.

"TVB alone" is a plain tvb-library ``Simulator.run()`` with a Raw monitor, built here with
tvb's own API (not through cosim.services.tvb_node), same seed. Where the reference node's regions
get a different ``I_ext`` (params.model), TVB alone gets the same per-region ``I_ext``; TVB's
own stand-in for those regions is then wrong, so only correctly lagged proxy data makes the
TVB node exact.
"""
from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from conftest import require

require("tvb")      # before the imports below (the TVB node needs tvb-library)

from cosim.runtime.adapter import RunContext, SignalSpec  # noqa: E402
from lockstep_inprocess import run_lockstep  # noqa: E402
from cosim.services.reference_node.adapter import ReferenceAdapter  # noqa: E402
from cosim.services.tvb_node.adapter import TVBAdapter  # noqa: E402

pytestmark = [pytest.mark.tvb]
SEED = 42
ALL_PROXY_VARS = ("S_i", "R_e", "R_i")


def tvb_alone(n_steps: int, iext: dict[int, float] | None = None, sigma: float | None = None) -> np.ndarray:
    """(n_steps, 2, 76) raw S_e, S_i of steps 1..n_steps."""
    from tvb.datatypes.connectivity import Connectivity
    from tvb.simulator import coupling, integrators, models, monitors, noise, simulator
    logging.getLogger("tvb").setLevel(logging.ERROR)
    conn = Connectivity.from_file()
    conn.speed = np.array([3.0])
    kw = {}
    if iext:
        arr = np.zeros(76)
        for r, v in iext.items():
            arr[r] = v
        kw["I_ext"] = arr
    if sigma is None:
        integ = integrators.HeunDeterministic(dt=0.1)
    else:
        integ = integrators.HeunStochastic(dt=0.1, noise=noise.Additive(nsig=np.array([sigma, sigma]), noise_seed=SEED))
    sim = simulator.Simulator(model=models.ReducedWongWangExcInh(**kw), connectivity=conn,
                              coupling=coupling.Linear(a=np.array([0.00390625])), integrator=integ,
                              monitors=[monitors.Raw()])
    np.random.seed(SEED)
    sim.configure()
    (t, x), = sim.run(simulation_length=(n_steps - 0.5) * 0.1)   # TVB runs ceil(length / dt) steps
    assert x.shape[0] == n_steps and np.isclose(t[0], 0.1)
    return x[:, :, :, 0]


def run_case(tmp_path, nodes: dict[str, list[int]], duration_ms: float, iext: float | None = None,
             stochastic: bool = False, window_steps: int | None = None, extra_outputs=None, lag: int = 1):
    cfg = {"run": {"duration_ms": duration_ms, "seed": SEED},
           "tvb": {"integrator": {"kind": "heun_stochastic" if stochastic else "heun_deterministic"}},
           "spiking_nodes": [{"name": n, "backend": "reference", "regions": r,
                              "params": {"model": {"I_ext": iext}} if iext else {}} for n, r in nodes.items()]}
    adapters = {"tvb": TVBAdapter(record_proxy_vars=ALL_PROXY_VARS), **{n: ReferenceAdapter() for n in nodes}}
    res = run_lockstep(cfg, adapters, results_dir=str(tmp_path), window_steps=window_steps,
                       extra_outputs=extra_outputs, lag=lag)
    spiking = sorted(r for rs in nodes.values() for r in rs)
    alone = tvb_alone(res.K * res.W, {r: iext for r in spiking} if iext else None,
                      1e-3 if stochastic else None)
    return res, adapters, alone, spiking


def assert_exact(tmp_path, res, nodes, alone, spiking):
    W, K, m = res.W, res.K, res.lag
    with h5py.File(tmp_path / "tvb.h5", "r") as f:
        assert f.attrs["status"] == "completed" and f.attrs["windows"] == K
        raw = f["raw"]
        flag = raw["proxy_from_spiking"][:].astype(bool)
        assert raw["S_e"].shape == (K * W, 76)
        assert flag.sum() == (K - m) * W and flag[:(K - m) * W].all()      # last m windows: no proxy data
        np.testing.assert_array_equal(raw["time_ms"][:], np.arange(1, K * W + 1) * 0.1)
        own = np.setdiff1d(np.arange(76), spiking)
        for i, v in enumerate(("S_e", "S_i")):
            x = raw[v][:]
            # every region, every step whose proxy values came from the spiking side: bitwise
            np.testing.assert_array_equal(x[flag], alone[flag, i], err_msg=f"tvb.h5 raw/{v}")
            # TVB's own regions also in the last window
            np.testing.assert_array_equal(x[:, own], alone[:, i, own], err_msg=f"tvb.h5 raw/{v} own regions")
    for name, regions in nodes.items():
        with h5py.File(tmp_path / f"{name}.h5", "r") as f:
            assert f.attrs["status"] == "completed" and f.attrs["windows"] == K
            for i, v in enumerate(("S_e", "S_i")):
                np.testing.assert_array_equal(f["raw"][v][:], alone[:, i][:, regions], err_msg=f"{name}.h5 {v}")


@pytest.fixture(scope="module")
def case_33_71(tmp_path_factory):
    """Deterministic Heun, 500 ms, spiking {33, 71} (W = 49), homogeneous model, coupling outputs."""
    tmp = tmp_path_factory.mktemp("c3371")
    extra = {"tvb": [SignalSpec("coupling/R_e", (33, 71)), SignalSpec("coupling/S_e", (33, 71))]}
    res, adapters, alone, spiking = run_case(tmp, {"spiking": [33, 71]}, 500.0, extra_outputs=extra)
    return tmp, res, adapters, alone, spiking


def test_exact_33_71_deterministic(case_33_71):
    tmp, res, adapters, alone, spiking = case_33_71
    assert res.W == 49
    assert_exact(tmp, res, {"spiking": [33, 71]}, alone, spiking)


def test_exact_3_41_40_heterogeneous(tmp_path):
    """3 <-> 41 are linked with a 16-step delay inside the spiking node; W = 29 crosses to TVB."""
    nodes = {"spiking": [3, 41, 40]}
    res, _, alone, spiking = run_case(tmp_path, nodes, 500.0, iext=0.1)
    assert res.W == 29
    assert_exact(tmp_path, res, nodes, alone, spiking)
    # the reference's regions really differ from TVB's homogeneous stand-in
    hom = tvb_alone(200)
    assert np.abs(hom[:, 0, spiking] - alone[:200, 0, spiking]).max() > 1e-3


def test_exact_two_spiking_nodes_stochastic(tmp_path):
    """Two reference nodes whose regions 3 and 41 couple across nodes at 16 steps; noisy Heun."""
    nodes = {"a": [3], "b": [41, 33]}
    res, _, alone, spiking = run_case(tmp_path, nodes, 150.0, iext=0.1, stochastic=True)
    assert res.W == 16
    assert_exact(tmp_path, res, nodes, alone, spiking)


def test_largest_causal_window_is_min_delay_plus_one(tmp_path):
    nodes = {"spiking": [3, 41, 40]}
    res, _, alone, spiking = run_case(tmp_path, nodes, 60.0, iext=0.1, window_steps=30)
    assert_exact(tmp_path, res, nodes, alone, spiking)
    with pytest.raises(ValueError, match="not causal"):
        run_case(tmp_path / "w31", nodes, 60.0, iext=0.1, window_steps=31)


def test_coupling_signals_match_numpy(case_33_71):
    """coupling/R_e and coupling/S_e equal an independent loop over the recorded history."""
    check_coupling_signals(*case_33_71[:3])


def check_coupling_signals(tmp, res, adapters):
    """The TVB node's coupling/{R_e,S_e} for targets 33, 71 (initial blocks: windows 0 .. m-1; window
    k's outputs: window k+m) equal an independent loop over tvb.h5's raw history."""
    W, K, m = res.W, res.K, res.lag
    con = res.contexts["tvb"].connectome
    w, d = con["weights"], con["idelays"]
    init = adapters["tvb"].tvb.initial                    # steps -512 .. 0
    with h5py.File(tmp / "tvb.h5", "r") as f:
        R = np.concatenate([init.R_e, f["raw"]["R_e"][:]])
        S = np.concatenate([init.S_e, f["raw"]["S_e"][:]]).astype(np.float32).astype(np.float64)
    z = -init.first_step                                  # row of step 0
    spiking = {33, 71}
    steps = np.arange(1, (K + m) * W + 1)                 # windows 0 .. K-1+m
    for name, X in (("coupling/R_e", R), ("coupling/S_e", S)):
        got = np.concatenate([res.initial["tvb"][name]] + [o["tvb"][name] for o in res.outputs])
        assert got.shape == (steps.size, 2)
        for col, p in enumerate((33, 71)):
            acc = np.zeros(steps.size)
            for j in range(76):
                if j != p and j not in spiking and w[p, j] != 0:
                    assert d[p, j] >= m * W - 1
                    acc += w[p, j] * X[z + steps - 1 - d[p, j], j]
            np.testing.assert_array_equal(got[:, col], acc, err_msg=f"{name} target {p}")
            assert np.abs(acc).max() > 0


def test_rates_are_the_dfun_rates(case_33_71):
    """R from the numba kernel is the h inside TVB's numba dfun: dS/dt rebuilt from R is bitwise equal.

    R(n) uses the state at the end of step n and the coupling TVB computes right after step n
    (the one that step n + 1 integrates with), so dfun(S(n), c(n)) is Heun's first stage of n + 1.
    """
    _, _, adapters, _, _ = case_33_71
    tvb = adapters["tvb"].tvb                      # finished run; the simulator can still step
    m = tvb.sim.model
    rec = tvb.run_window(10)
    for i in range(10):
        dX = m.dfun(np.stack([rec.S_e[i], rec.S_i[i]])[:, :, None], rec.coupling[i][None, :, None])[:, :, 0]
        dSe = -(rec.S_e[i] / m.tau_e) + (1.0 - rec.S_e[i]) * rec.R_e[i] * m.gamma_e
        dSi = -(rec.S_i[i] / m.tau_i) + rec.R_i[i] * m.gamma_i
        np.testing.assert_array_equal(dX[0], dSe)
        np.testing.assert_array_equal(dX[1], dSi)
    assert 0 < rec.R_e.min() and rec.R_e.max() < 200


def test_results_file_and_plot(case_33_71):
    from cosim.services.tvb_node.figure import incomplete_note, plot
    tmp = case_33_71[0]
    with h5py.File(tmp / "tvb.h5", "r") as f:
        assert incomplete_note(f.attrs) == ""          # a completed run's plot says nothing more
        assert "did not complete (stopped: x)" in incomplete_note({"status": "stopped: x"})
        assert list(f.attrs["spiking_regions"]) == [33, 71]
        assert len(f.attrs["region_labels"]) == 76
        assert f["tavg"]["S_e"].shape[1] == 76 and f["tavg"]["time_ms"].shape[0] > 0
        assert np.isclose(f["tavg"].attrs["period_ms"], 1.0)
    png = plot(tmp)
    assert png.name == "tvb_activity.png" and png.stat().st_size > 10_000


def test_config_errors(tmp_path):
    from cosim.config import TVBSection
    from cosim.services.tvb_node.windowed import build_connectivity
    with pytest.raises(ValueError, match="file not found"):
        build_connectivity(TVBSection(connectivity=str(tmp_path / "nope.zip")))
    a = TVBAdapter()
    ctx = RunContext(config={"tvb": {"dt_ms": 0.1}}, node_name="tvb", regions=(33, 71), tvb_dt_ms=0.05, tick_ms=0.05)
    with pytest.raises(ValueError, match="differs from tvb.dt_ms"):
        a.requires(ctx)


def _bypass_causality_guard(monkeypatch):
    """Let the adapters run a window longer than causal (they refuse it otherwise), to see what
    the exactness check makes of it."""
    import cosim.services.reference_node.adapter as ref_mod
    import cosim.services.tvb_node.adapter as tvb_mod
    for mod in (ref_mod, tvb_mod):
        monkeypatch.setattr(mod, "crossing_min_delay_steps", lambda *a, **k: None)


def test_too_long_window_is_a_mismatch_when_dynamics_differ(tmp_path, monkeypatch):
    """Issue "Reliability II" §3: with the reference node's own I_ext on its regions, TVB's stand-in
    for them is wrong, so only correctly timed exchange keeps TVB's regions exact. A window one
    step past the largest causal one (31 > D + 1 = 30 for {3, 41, 40}) makes TVB read proxy
    history that has not arrived (its stand-in): the results differ from TVB alone.
    With identical dynamics on both sides the same too-long window still matches bit for bit,
    which is why such a test cannot catch a timing error."""
    _bypass_causality_guard(monkeypatch)
    nodes = {"spiking": [3, 41, 40]}
    # identical dynamics: the timing error goes unnoticed
    res, _, alone, spiking = run_case(tmp_path / "hom", nodes, 60.0, window_steps=31)
    assert res.W == 31
    assert_exact(tmp_path / "hom", res, nodes, alone, spiking)
    # different dynamics on the reference's regions: the same error is a mismatch
    res, _, alone, spiking = run_case(tmp_path / "het", nodes, 60.0, iext=0.1, window_steps=31)
    with pytest.raises(AssertionError, match="raw/S_"):
        assert_exact(tmp_path / "het", res, nodes, alone, spiking)
    with h5py.File(tmp_path / "het" / "tvb.h5", "r") as f:
        own = np.setdiff1d(np.arange(76), spiking)
        diff = np.abs(f["raw"]["S_e"][:][:, own] - alone[:, 0, own]).max()
    assert diff > 1e-12, diff
    # and at the largest causal window (30) the heterogeneous case is exact
    res, _, alone, spiking = run_case(tmp_path / "ok", nodes, 60.0, iext=0.1, window_steps=30)
    assert_exact(tmp_path / "ok", res, nodes, alone, spiking)
