"""Lookahead: a lag of m windows (RunContext.lag_windows; cosim/runtime/adapter.py's contract).

Inputs of window k are the producers' outputs of window k-m; causal while m*W <= D + 1.
In-process, no sockets (tests/lockstep_inprocess.py plays the runtime, splitting the m*W-row
initial blocks per window). The exactness cases give the reference node its own I_ext, so TVB's
stand-in for its regions is wrong and only correctly lagged proxy data makes anything exact.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import require

require("tvb")      # before the imports below (the TVB node needs tvb-library)

from cosim.runtime.adapter import NodeAdapter, RunContext, SignalSpec, split_initial_outputs
from cosim.sdk.spiking_input import CouplingInput, PerSourceInput
from lockstep_inprocess import run_lockstep
from cosim.services.reference_node.adapter import ReferenceAdapter
from cosim.services.tvb_node.adapter import CouplingPlan, TVBAdapter
from test_exactness_inprocess import (ALL_PROXY_VARS, SEED, _bypass_causality_guard, assert_exact,
                                      check_coupling_signals, run_case, tvb_alone)

pytestmark = [pytest.mark.tvb]
HET = {"spiking": [3, 41, 40]}      # D = 29: 3 <-> 41 cross to TVB ... and inside the node
TWO = {"a": [3], "b": [41, 33]}     # D = 16: 3 (node a) <-> 41 (node b)


# ---- (1) the reference backend equals TVB alone bit for bit at m = 1, 2, 4 ------------------------
@pytest.fixture(scope="module")
def het_runs(tmp_path_factory):
    """{m: (tmp, res, alone, spiking)} for HET, 100 ms, the largest window the coordinator allows."""
    out = {}
    for m in (1, 2, 4):
        tmp = tmp_path_factory.mktemp(f"het_m{m}")
        res, _, alone, spiking = run_case(tmp, HET, 100.0, iext=0.1, lag=m)
        out[m] = (tmp, res, alone, spiking)
    return out


@pytest.mark.parametrize("m", [1, 2, 4])
def test_reference_equals_tvb_alone_with_lag(het_runs, m):
    tmp, res, alone, spiking = het_runs[m]
    assert (res.lag, res.W) == (m, 29 // m)
    assert_exact(tmp, res, HET, alone, spiking)
    # the reference's regions really differ from TVB's homogeneous stand-in
    hom = tvb_alone(100)
    assert np.abs(hom[:, 0, spiking] - alone[:100, 0, spiking]).max() > 1e-3


@pytest.mark.parametrize("m", [2, 4])
def test_two_reference_nodes_stochastic_with_lag(tmp_path, m):
    """Reference node to reference node (3 <-> 41, 16 steps) and both to TVB, noisy Heun."""
    res, _, alone, spiking = run_case(tmp_path, TWO, 100.0, iext=0.1, stochastic=True, lag=m)
    assert res.W == 16 // m
    assert_exact(tmp_path, res, TWO, alone, spiking)


def test_largest_causal_lag_times_window_is_min_delay_plus_one(tmp_path):
    """m*W = D + 1 (3 x 10 = 30 for HET) is exact and accepted; one step more is refused."""
    res, _, alone, spiking = run_case(tmp_path / "ok", HET, 60.0, iext=0.1, window_steps=10, lag=3)
    assert_exact(tmp_path / "ok", res, HET, alone, spiking)
    with pytest.raises(ValueError, match="not causal"):
        run_case(tmp_path / "bad2", HET, 60.0, iext=0.1, window_steps=8, lag=4)   # 32 > 30


def test_coupling_signals_with_lag(tmp_path):
    """coupling/* for window k+m (initial blocks: windows 0 .. m-1) equal an independent loop."""
    extra = {"tvb": [SignalSpec("coupling/R_e", (33, 71)), SignalSpec("coupling/S_e", (33, 71))]}
    cfg = {"run": {"duration_ms": 150.0, "seed": SEED},
           "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}]}
    adapters = {"tvb": TVBAdapter(), "spiking": ReferenceAdapter()}
    res = run_lockstep(cfg, adapters, results_dir=str(tmp_path), extra_outputs=extra, lag=2)
    assert (res.W, res.lag) == (24, 2)
    assert res.initial["tvb"]["coupling/R_e"].shape == (48, 2)
    check_coupling_signals(tmp_path, res, adapters)


# ---- (2) one step past the causal limit breaks exactness --------------------------------------
@pytest.mark.parametrize("m,W_ok,W_bad", [(2, 8, 9), (3, 5, 6)])
def test_one_step_past_the_causal_limit_is_a_mismatch(tmp_path, monkeypatch, m, W_ok, W_bad):
    """TWO has D = 16, so m*W <= 17 is causal: m*W = 18 = D + 2 makes node a read, at the last step
    of each window, one step of 41's history that has not arrived (its own stand-in of 41, with
    the default I_ext): the results differ from TVB alone. At the limit they are exact."""
    _bypass_causality_guard(monkeypatch)
    assert m * W_bad == 18 and m * W_ok <= 17
    res, _, alone, spiking = run_case(tmp_path / "bad", TWO, 60.0, iext=0.1, window_steps=W_bad, lag=m)
    with pytest.raises(AssertionError, match="raw/S_"):
        assert_exact(tmp_path / "bad", res, TWO, alone, spiking)
    res, _, alone, spiking = run_case(tmp_path / "ok", TWO, 60.0, iext=0.1, window_steps=W_ok, lag=m)
    assert_exact(tmp_path / "ok", res, TWO, alone, spiking)


# ---- (3) TVB's recording waits m windows for the proxies' true values ----------------------
def test_tvb_recording_holds_the_spiking_values_with_lag(het_runs):
    tmp, res, _, spiking = het_runs[2]
    W, K, m = res.W, res.K, res.lag
    with h5py.File(tmp / "tvb.h5", "r") as f, h5py.File(tmp / "spiking.h5", "r") as g:
        assert f.attrs["lag_windows"] == 2
        raw = f["raw"]
        flag = raw["proxy_from_spiking"][:].astype(bool)
        assert flag[:(K - m) * W].all() and not flag[(K - m) * W:].any()     # the last m windows: 0
        cols = [int(r) for r in g.attrs["regions"]]
        assert sorted(cols) == spiking
        for v in ("S_e", "S_i", "R_e", "R_i"):
            tvb_side, ref_side = raw[v][:][:, cols], g["raw"][v][:]
            np.testing.assert_array_equal(tvb_side[flag], ref_side[flag], err_msg=v)
            # the unflagged rows hold TVB's own stand-in, which differs (other I_ext)
            assert np.abs(tvb_side[~flag] - ref_side[~flag]).max() > 0, v
        # the monitors saw the same values at m = 1 and m = 2 (only fewer windows at m = 2)
        with h5py.File(het_runs[1][0] / "tvb.h5", "r") as f1:
            t2, t1 = f["tavg"]["time_ms"][:], f1["tavg"]["time_ms"][:]
            n = min(len(t1), len(t2))
            assert n > 50 and t2[-1] <= (K - m) * W * 0.1 + 1e-9
            np.testing.assert_array_equal(t2[:n], t1[:n])
            for v in ("S_e", "R_e"):
                np.testing.assert_array_equal(f["tavg"][v][:n], f1["tavg"][v][:n], err_msg=f"tavg {v}")


class _CheckpointAndResume(NodeAdapter):
    """Plays a killed and resumed TVB node: after window ``at`` it checkpoints, drops the adapter
    (results file closed, nothing flushed for the waiting windows), builds a fresh one that
    restores from the checkpoint, and carries on with it."""

    role = "tvb"

    def __init__(self, at: int, directory, rewrite=None):
        self.inner, self.at, self.dir = TVBAdapter(record_proxy_vars=ALL_PROXY_VARS), at, directory
        self.rewrite = rewrite            # applied to the checkpoint's arrays before the restore
        self.pending_seen: list[int] = []

    def requires(self, ctx):
        return self.inner.requires(ctx)

    def connectome(self):
        return self.inner.connectome()

    def configure(self, ctx):
        self.ctx = ctx
        self.inner.configure(ctx)

    def initial_outputs(self):
        return self.inner.initial_outputs()

    def step(self, window, inputs):
        out = self.inner.step(window, inputs)
        if window == self.at:
            old = self.inner
            info = old.checkpoint(self.dir)
            self.pending_seen = [p.first_step for p in old._pending]
            if old.out is not None:
                old.out.close(False, "killed by test")
                old.out = None
            if self.rewrite is not None:
                from cosim.runtime.checkpoint import load_arrays, save_arrays
                path = self.dir / info["files"][0]
                save_arrays(path, self.rewrite(load_arrays(path)))
            self.ctx.resume = {"window": window, "dir": str(self.dir), "info": info}
            new = TVBAdapter(record_proxy_vars=ALL_PROXY_VARS)
            new.requires(self.ctx)
            new.configure(self.ctx)
            new.restore(self.dir, info)
            assert [p.first_step for p in new._pending] == self.pending_seen
            for a, b in zip(old._pending, new._pending):
                for v in ("S_e", "S_i", "R_e", "R_i", "coupling"):
                    np.testing.assert_array_equal(getattr(a, v), getattr(b, v))
            self.inner = new
        return out

    def finish(self, aborted=None):
        return self.inner.finish(aborted)


def test_checkpoint_restores_the_whole_pending_queue(tmp_path):
    """At m = 2 a checkpoint holds two windows waiting for the proxies' values; a resumed TVB node
    records them when their values arrive, and the run stays exact."""
    ck = tmp_path / "ck"
    ck.mkdir()
    tvb_node = _CheckpointAndResume(at=5, directory=ck)
    res = run_lockstep(_het_config(60.0), {"tvb": tvb_node, "spiking": ReferenceAdapter()}, results_dir=str(tmp_path), lag=2)
    W = res.W
    assert tvb_node.pending_seen == [4 * W + 1, 5 * W + 1]
    alone = tvb_alone(res.K * W, {r: 0.1 for r in HET["spiking"]})
    assert_exact(tmp_path, res, HET, alone, sorted(HET["spiking"]))


def _het_config(duration_ms: float) -> dict:
    return {"run": {"duration_ms": duration_ms, "seed": SEED},
            "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": HET["spiking"],
                               "params": {"model": {"I_ext": 0.1}}}]}


def test_checkpoint_of_another_lag_is_refused(tmp_path):
    def as_lag_1(d):
        return {**d, "lag_windows": np.int64(1)}
    tvb_node = _CheckpointAndResume(at=3, directory=tmp_path, rewrite=as_lag_1)
    with pytest.raises(ValueError, match="lag of 1 windows; this run has 2"):
        run_lockstep(_het_config(10.0), {"tvb": tvb_node, "spiking": ReferenceAdapter()}, lag=2)


def test_one_window_checkpoint_format_still_restores(tmp_path):
    """A checkpoint written before the lag existed (scalar ``pending_first_step``, (W, N) arrays, no
    ``lag_windows``) restores at m = 1, and the resumed run is exact."""
    def old_format(d):
        old = {k: v for k, v in d.items() if not k.startswith("pending_") and k != "lag_windows"}
        assert d["pending_first_steps"].shape == (1,)
        old["pending_first_step"] = d["pending_first_steps"][0]
        for v in ("S_e", "S_i", "R_e", "R_i", "coupling"):
            old[f"pending_{v}"] = d[f"pending_{v}"][0]
        return old
    ck = tmp_path / "ck"
    ck.mkdir()
    tvb_node = _CheckpointAndResume(at=1, directory=ck, rewrite=old_format)
    res = run_lockstep(_het_config(60.0), {"tvb": tvb_node, "spiking": ReferenceAdapter()},
                       results_dir=str(tmp_path))
    assert tvb_node.pending_seen == [res.W + 1]
    alone = tvb_alone(res.K * res.W, {r: 0.1 for r in HET["spiking"]})
    assert_exact(tmp_path, res, HET, alone, sorted(HET["spiking"]))


# ---- (4) spiking inputs: the same drive at m = 2 as at m = 1 for the same rate history ---------
def _ctx(config, regions, W, m, n=6, inputs=()):
    rng = np.random.default_rng(1)
    w = rng.uniform(0.1, 1.0, (n, n))
    np.fill_diagonal(w, 0.0)
    d = rng.integers(9, 15, (n, n))
    np.fill_diagonal(d, 0)
    return RunContext(config=config, node_name="me", regions=tuple(regions), tvb_dt_ms=0.1, tick_ms=0.1,
                      steps_per_window=W, n_windows=12, lag_windows=m, inputs=list(inputs),
                      connectome={"weights": w, "idelays": d})


def _feed(m, W, K, R, initial_rows=None):
    """Per-window state/R_e inputs at lag m from a per-step history ``R(step)``: window k gets the
    rows of window k-m; for k < m, rows of the initial block (steps -m*W+1 .. 0) or nothing."""
    out = []
    for k in range(K):
        steps = (k - m) * W + 1 + np.arange(W)
        if k >= m:
            out.append(R(steps))
        elif initial_rows is not None:
            block = initial_rows(np.arange(-m * W + 1, 1))
            out.append(split_initial_outputs({"x": block}, W, m)[k]["x"])
        else:
            out.append(None)
    return out


def test_coupling_input_same_drive_at_lag_2(tmp_path):
    """CouplingInput: other services' rates arrive m windows late; the drive per step is the same
    (services coupled by rates: two NetPyNE services would exchange spikes under the default
    run.inter_service)."""
    config = {"run": {"inter_service": "rates"},
              "spiking_nodes": [{"name": "me", "regions": [0, 1]}, {"name": "other", "regions": [2, 3]}]}
    W, K = 4, 12
    rng = np.random.default_rng(7)
    table = rng.uniform(0, 50, (K * W + 1, 2))          # R_e of regions 2, 3 at steps 1 .. K*W
    R = lambda steps: table[steps]                     # noqa: E731
    tvb_part = rng.uniform(0, 5, (K, W, 2))
    drives = {}
    for m in (1, 2):
        ctx = _ctx(config, [0, 1], W, m)
        ci = CouplingInput(ctx, [0, 1])
        ci.configure(ctx, initial_rate_hz=3.0)
        feeds = _feed(m, W, K, R)
        cs = []
        for k in range(K):
            inp = {"coupling/R_e": tvb_part[k]}
            if feeds[k] is not None:
                inp["state/R_e"] = feeds[k]
            cs.append(ci.signal(k, inp, ci.requires()))
        drives[m] = np.concatenate(cs)
    np.testing.assert_array_equal(drives[2], drives[1])
    # and both are the formula: TVB's part + sum_q w[p, q] R_q(n - 1 - d[p, q]), 3 Hz before step 1
    w, d = ctx.connectome["weights"], ctx.connectome["idelays"]
    n = np.arange(1, K * W + 1)
    want = tvb_part.reshape(K * W, 2).copy()
    for i, p in enumerate((0, 1)):
        for j, q in enumerate((2, 3)):
            s = n - 1 - d[p, q]
            want[:, i] += w[p, q] * np.where(s >= 1, table[np.maximum(s, 0), j], 3.0)
    np.testing.assert_allclose(drives[2], want, rtol=1e-13)
    # a delay shorter than m*W is refused
    with pytest.raises(ValueError, match="lag of 4 windows"):
        c4 = _ctx(config, [0, 1], W, 4)
        CouplingInput(c4, [0, 1]).configure(c4)


def test_per_source_input_same_drive_at_lag_2():
    """PerSourceInput: same rates per link at m = 1 and 2 for the same per-step history (constant
    before step 1, as both hold the oldest row sent); with any history, each lag holds from the
    oldest step it was sent (-m*W + 1)."""
    W, K = 4, 12
    sources = (2, 3, 4, 5)
    spec = SignalSpec("state/R_e", sources)
    rng = np.random.default_rng(3)
    table = rng.uniform(0, 50, (K * W + 20, len(sources)))   # row s + 19 is step s
    off = 19
    results = {}
    for history in ("constant_before_1", "random"):
        def R(steps, history=history):
            s = np.asarray(steps)
            return table[np.maximum(s, 1) + off] if history == "constant_before_1" else table[s + off]
        for m in (1, 2):
            ctx = _ctx({"spiking_nodes": [{"name": "me", "regions": [0, 1]}]}, [0, 1], W, m, inputs=[spec])
            ps = PerSourceInput(ctx, [0, 1])
            ps.configure(ctx)
            feeds = _feed(m, W, K, R, initial_rows=R)
            rates = np.concatenate([ps.rates(k, {"state/R_e": feeds[k]}, [spec]) for k in range(K)])
            # formula: link (p, j) at step n reads R_j(max(n - 1 - d, -m*W + 1))
            n = np.arange(1, K * W + 1)
            src = np.maximum(n[:, None] - 1 - ps.dly[None, :], -m * W + 1)
            want = np.stack([R(src[:, l])[:, ps.s_idx[l]] for l in range(ps.n_links)], axis=1)
            np.testing.assert_array_equal(rates, want, err_msg=f"{history} m={m}")
            results[history, m] = rates
    np.testing.assert_array_equal(results["constant_before_1", 2], results["constant_before_1", 1])
    assert not np.array_equal(results["random", 2], results["random", 1])   # the held steps differ
    # a delay shorter than m*W - 1 is refused
    ctx = _ctx({"spiking_nodes": [{"name": "me", "regions": [0, 1]}]}, [0, 1], W, 4, inputs=[spec])
    with pytest.raises(ValueError, match="lag of 4 windows"):
        PerSourceInput(ctx, [0, 1]).configure(ctx)


def test_coupling_plan_delay_check_is_lag_times_window():
    w = np.array([[0.0, 1.0], [1.0, 0.0]])
    d = np.array([[0, 9], [9, 0]])
    ok = np.array([False, True])
    CouplingPlan(np.array([0]), ok, w, d, 5, "coupling/R_e", lag=2)           # 9 >= 2*5 - 1
    with pytest.raises(ValueError, match="too short to be known 2 windows of 6 steps ahead"):
        CouplingPlan(np.array([0]), ok, w, d, 6, "coupling/R_e", lag=2)


# ---- (5) initial outputs are m*W rows, split per window ------------------------------------
def test_split_initial_outputs():
    block = np.arange(12.0).reshape(6, 2)
    parts = split_initial_outputs({"state/S_e": block}, 2, 3)
    assert [p["state/S_e"][:, 0].tolist() for p in parts] == [[0, 2], [4, 6], [8, 10]]
    with pytest.raises(ValueError, match="expected 6 rows"):
        split_initial_outputs({"state/S_e": block[:4]}, 2, 3)


def test_tvb_initial_outputs_are_m_windows(het_runs, monkeypatch):
    """TVB's initial blocks are m*W rows (state: the last m*W steps of its initial history;
    coupling: windows 0 .. m-1), the reference node's too."""
    for m in (1, 2, 4):
        _, res, _, _ = het_runs[m]
        assert set(res.initial["tvb"]) == {"state/S_e"}
        assert res.initial["tvb"]["state/S_e"].shape == (m * res.W, 73)
        assert {k: v.shape for k, v in res.initial["spiking"].items()} == \
            {f"state/{v}": (m * res.W, 3) for v in ("S_e", "S_i", "R_e", "R_i")}


def test_no_initial_state_when_m_windows_exceed_the_history(monkeypatch):
    """With m*W longer than TVB's history (only possible when nothing crosses; the guard is bypassed
    here) the TVB and reference nodes send no state: the other side keeps its own history."""
    _bypass_causality_guard(monkeypatch)
    cfg = {"run": {"duration_ms": 1.0, "seed": SEED},
           "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}]}
    a, ref = TVBAdapter(), ReferenceAdapter()
    res = run_lockstep(cfg, {"tvb": a, "spiking": ref}, lag=300, window_steps=2)
    assert a.tvb.n_time < 600 and res.K == 5
    assert res.initial == {"tvb": {}, "spiking": {}}
