"""Per-source input (``input.mode: per_source``) on NetPyNE, in-process with real NEURON: a step
in one source's rate reaches each target exactly ``idelay`` steps later (rates and input spike
times), and silencing a source changes only its targets' trains -- train for train, since every
link has its own seeded Poisson stream."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cosim.runtime.adapter import RunContext, SignalSpec
from harness import tvb_sent
from cosim.services.coordinator import routing
from np_helpers import tiny

pytestmark = [pytest.mark.netpyne]
N, W, DT = 76, 16, 0.1
A, B = 33, 34
S1, S2 = 10, 11                     # S1 -> A (20 steps), S1 -> B (40), S2 -> B only (25)
STEP_AT = 50


def run(tmp_path, tag, s2_hz, K=12):
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    params = tiny(input__mode="per_source", input__scale=1.0, record__input_spikes=True)
    cfg = {"run": {"seed": 3}, "tvb": {"model": {}},
           "spiking_nodes": [{"name": "s", "backend": "netpyne", "regions": [A, B], "params": params}]}
    w = np.zeros((N, N))
    idl = np.full((N, N), 32)
    w[A, S1], idl[A, S1] = 2.0, 20
    w[B, S1], idl[B, S1] = 1.0, 40
    w[B, S2], idl[B, S2] = 0.5, 25
    ctx = RunContext(config=cfg, node_name="s", regions=(A, B), tvb_dt_ms=DT, tick_ms=0.025, steps_per_window=W,
                     n_windows=K, outputs=[SignalSpec("state/R_e", (A, B)), SignalSpec("state/S_e", (A, B))],
                     connectome={"weights": w, "idelays": idl}, results_dir=str(tmp_path / tag))
    a = NetpyneAdapter(params)
    owner = {r: "tvb" for r in range(N)}
    owner[A] = owner[B] = "s"
    ctx.inputs = routing.plan({"s": a.requires(ctx), "tvb": []}, owner, weights=w).inputs["s"]
    a.configure(ctx)
    for k in range(K):
        steps = (k - 1) * W + 1 + np.arange(W)
        a.step(k, {"state/R_e": np.stack([np.where(steps >= STEP_AT, 20000.0, 0.0), np.full(W, s2_hz)], axis=1)})
    a.finish()
    with h5py.File(tmp_path / tag / "s.h5") as f:
        n_in = int(dict(zip([x.decode() if isinstance(x, bytes) else x for x in f["pops/label"][...]],
                            f["pops/n_cells"][...]))[f"in{S1}_{A}"])
        return {"links": [tuple(int(x) for x in row) for row in f.attrs["input_links"]],
                "w_uS": f.attrs["input_link_weight_uS"][...], "steps": f["steps"][...],
                "rate": f["input/source_rate_hz"][...], "t": f["input_spikes/t_ms"][...],
                "region": f["input_spikes/region"][...], "index": f["input_spikes/index"][...], "n_in": n_in}


def link_of(r, l):
    """Input spikes of link l (links of a region are its relay populations, in link order)."""
    p = r["links"][l][0]
    k = [i for i, x in enumerate(r["links"]) if x[0] == p].index(l)
    sel = (r["region"] == p) & (r["index"] // r["n_in"] == k)
    return r["t"][sel], r["index"][sel]


def test_the_delay_of_each_source_shows_in_the_input_rates_and_spike_times(tmp_path):
    r = run(tmp_path, "a", s2_hz=30.0)
    assert r["links"] == [(A, S1, 20), (B, S1, 40), (B, S2, 25)]
    np.testing.assert_allclose(r["w_uS"], 0.006 * np.array([2.0, 1.0, 0.5]))
    for l in (0, 1):
        d = r["links"][l][2]
        assert r["steps"][r["rate"][:, l] > 0][0] == STEP_AT + 1 + d
        t, _ = link_of(r, l)
        t_on = (STEP_AT + d) * DT             # step n's spikes are drawn in [(n-1) dt, n dt)
        assert t.size > 20 and t.min() >= t_on - 1e-9 and t.min() < t_on + 0.1, (l, t.min(), t_on)


def test_silencing_one_source_changes_only_the_trains_of_its_targets(tmp_path):
    base, quiet = run(tmp_path, "base", s2_hz=2000.0), run(tmp_path, "quiet", s2_hz=0.0)
    l_s2 = base["links"].index((B, S2, 25))
    assert link_of(base, l_s2)[0].size > 20 and link_of(quiet, l_s2)[0].size == 0
    for l in range(len(base["links"])):       # every other link (A's and B's): the same trains
        if l != l_s2:
            for x, y in zip(link_of(base, l), link_of(quiet, l)):
                np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(base["rate"][:, [0, 1]], quiet["rate"][:, [0, 1]])


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.tvb
def test_real_run_each_link_carries_tvbs_rate_of_its_source_delayed(tmp_path):
    """TVB and NetPyNE as services: every link's rate is the source's R_e as TVB sent it, delayed.
    The services are forked from one zygote (conftest.run_warm): TVB and NetPyNE imported once."""
    from conftest import run_warm
    cfg = {"run": {"duration_ms": 40},
           "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71],
                              "params": tiny(input__mode="per_source", input__scale="row_mean")}]}
    r = run_warm({"run": cfg}, tmp_path, "--no-plots")["run"]
    assert r.code == 0, r.stderr[-3000:]
    cols, sent = tvb_sent(r.out)
    with h5py.File(r.out / "spiking.h5") as f:
        links, rate, steps = f.attrs["input_links"][...], f["input/source_rate_hz"][...], f["steps"][...]
        labels = {x.decode() if isinstance(x, bytes) else x for x in f["pops/label"][...]}
    assert len(links) > 30 and {f"in{j}_{p}" for p, j, _ in links} <= labels
    for l, (p, j, d) in enumerate(links):
        m = steps - 1 - d
        ok = m >= 1
        np.testing.assert_array_equal(rate[ok, l], sent[m[ok] - 1, cols.index(j)], err_msg=f"{j} -> {p}")


def _summed(tmp_path, tag: str, seed: int) -> dict:
    from np_helpers import run as run_tiny
    out = tmp_path / tag
    run_tiny(tiny(record__input_spikes=True), regions=(33, 71), duration_ms=60.0, level=24000.0, seed=seed,
             results_dir=out)
    with h5py.File(next(out.glob("*.h5"))) as f:
        assert "input/source_rate_hz" not in f and "input_links" not in f.attrs
        return {k: f[k][...] for k in ("spikes/t_ms", "spikes/gid", "input_spikes/t_ms", "input_spikes/index",
                                        "input_spikes/region", "output/S_e", "input/rate_hz", "input/coupling")}


def test_summed_mode_drives_at_the_coupling_rate_and_is_reproducible(tmp_path):
    """The default (summed) mode: each region's trains fire at scale x its one coupling signal,
    as many input spikes as that rate gives (Poisson, within 4 sd), the same seed gives the same
    run bit for bit (two runs in this test) and another seed another one. Replaces a SHA-256
    fingerprint recorded on one CPU (vectorised math differs between machines)."""
    a, b, c = _summed(tmp_path, "a", 5), _summed(tmp_path, "b", 5), _summed(tmp_path, "c", 6)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["input_spikes/t_ms"], c["input_spikes/t_ms"])
    scale = tiny()["input"]["scale"]
    np.testing.assert_allclose(a["input/rate_hz"], scale * a["input/coupling"], rtol=1e-12)
    n_trains = tiny()["network"]["n_exc"]          # one train per E cell (the default drive)
    for col, region in enumerate((33, 71)):        # ~1450 input spikes each: 4 sd is ~10 %
        expected = n_trains * a["input/rate_hz"][:, col].sum() * 0.1e-3     # rate x TVB dt, summed over steps
        got = int((a["input_spikes/region"] == region).sum())
        assert abs(got - expected) < 4 * np.sqrt(expected), (region, got, expected)
    assert len(a["spikes/t_ms"]) > 0
