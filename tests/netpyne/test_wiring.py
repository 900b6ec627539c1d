"""Fixed-probability connections drawn by NumPy in O(N·k) (services/netpyne_node/wiring.py) give
the statistics of NetPyNE's probability rule: in-degree Binomial(n_candidates, p), no self- or
double connections, weights max(0, N(w, sd)); seeded and reproducible; ``scale`` keeps the
in-degree; and the adapter says "compiling" (the setup clock's pause, PROTOCOL.md §8) while it builds.

Tolerances: means within 4 standard errors of the binomial's, variances within 4 standard errors
of a sample variance (var·sqrt(2/(n−1)); the binomial's excess kurtosis at these p adds < 10 %).
"""
from __future__ import annotations

import numpy as np
import pytest

from cosim.services.netpyne_node import wiring


def _close(x: float, expected: float, se: float, k: float = 4.0) -> bool:
    return abs(x - expected) <= k * se


@pytest.mark.unit
@pytest.mark.parametrize("n_pre,n_post,p,same", [(2000, 2000, 0.05, True), (300, 5000, 0.01, False),
                                                 (300, 300, 0.5, True)])
def test_in_degree_is_binomial_without_self_or_double_connections(n_pre, n_post, p, same):
    pre, post = wiring.fixed_probability(n_pre, n_post, p, wiring.rule_rng(7, "x"), same_pop=same)
    n_cand = n_pre - 1 if same else n_pre
    k = np.bincount(post, minlength=n_post)
    mean, var = n_cand * p, n_cand * p * (1 - p)
    assert _close(k.mean(), mean, np.sqrt(var / n_post))
    assert _close(k.var(ddof=1), var, var * np.sqrt(2 / (n_post - 1)))
    assert pre.min() >= 0 and pre.max() < n_pre and np.all(np.diff(post) >= 0)
    if same:
        assert not np.any(pre == post)
    assert np.unique(post * n_pre + pre).size == pre.size          # no pair twice
    # every candidate source equally likely: out-degrees Binomial(n_post (− 1), p) as well
    out = np.bincount(pre, minlength=n_pre)
    n_out = n_post - 1 if same else n_post
    o_var = n_out * p * (1 - p)
    assert _close(out.var(ddof=1), o_var, o_var * np.sqrt(2 / (n_pre - 1)))


@pytest.mark.unit
def test_draw_is_seeded_and_each_rule_has_its_own_stream():
    a = wiring.fixed_probability(200, 200, 0.1, wiring.rule_rng(42, "E_33->E_33"), True)
    b = wiring.fixed_probability(200, 200, 0.1, wiring.rule_rng(42, "E_33->E_33"), True)
    c = wiring.fixed_probability(200, 200, 0.1, wiring.rule_rng(43, "E_33->E_33"), True)
    d = wiring.fixed_probability(200, 200, 0.1, wiring.rule_rng(42, "E_71->E_71"), True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    empty = wiring.fixed_probability(1, 10, 0.5, wiring.rule_rng(1, "x"), True)       # no candidate
    assert empty[0].size == 0 and wiring.fixed_probability(10, 10, 0.0, wiring.rule_rng(1, "x"))[0].size == 0


@pytest.mark.unit
@pytest.mark.parametrize("as_variance", [False, True])
def test_weights_are_the_rules_clipped_normal(as_variance):
    from cosim.services.netpyne_node.toolbox import mean_clipped_normal
    w, frac = 0.02, 0.1
    sd = wiring.weight_sd(w, frac, as_variance)
    assert sd == pytest.approx(np.sqrt(w * frac) if as_variance else w * frac)
    x = wiring.clipped_normal(w, sd, 200_000, np.random.default_rng(3))
    assert x.min() >= 0 and _close(x.mean(), mean_clipped_normal(w, sd), x.std() / np.sqrt(x.size))
    assert wiring.weight_sd(w, 0.0, as_variance) == 0.0 and np.all(wiring.clipped_normal(w, 0.0, 3, None) == w)


def _spec(**network):
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    p = NetpyneParams.model_validate({"network": network, "record": {"plot": False}})
    w = np.zeros((76, 76))
    w[33, 71] = w[71, 33] = 1.0
    b = NetpyneNetworkBuilder(p, [33, 71], {"weights": w, "idelays": np.full((76, 76), 20)}).set_default()
    return b, b.build().netParams.connParams


@pytest.mark.netpyne
def test_builder_hands_netpyne_conn_lists_or_its_own_rule_by_switch():
    b, rules = _spec()
    assert all("connList" in r and "probability" not in r for k, r in rules.items() if not k.startswith("in"))
    assert {"E_33->E_33", "I_71->E_71", "E_71->E_33", "E_33->E_71"} <= set(rules)
    _, old = _spec(wiring="netpyne")
    assert old["E_33->E_33"]["probability"] == 0.01 and old["E_71->E_33"]["probability"] == 0.01
    assert old["E_33->E_33"]["weight"] == "max(0, normal(0.02, 4e-06))"
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    fixed = NetpyneNetworkBuilder(NetpyneParams.model_validate({"toolbox": {"fixed_wiring": True}}), [33])
    assert "probability" in fixed.set_default().build().netParams.connParams["E_33->E_33"]   # the toolbox's draw
    # scale keeps the in-degree (prob / scale) unless told to keep the probability
    b4, _ = _spec(scale=4.0)
    assert {c["prob"] for c in b4.connections} == {0.0025, 0.0075} and b4.node_connections[0]["prob"] == 0.0025
    bp, _ = _spec(scale=4.0, scale_keeps="probability")
    assert {c["prob"] for c in bp.connections} == {0.01, 0.03} and bp.node_connections[0]["prob"] == 0.01


def _in_degrees(params: dict, seed: int) -> dict[str, np.ndarray]:
    """Build the network in NetPyNE and count each cell's inputs per rule."""
    from netpyne import sim
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    from cosim.services.netpyne_node.engine import SpikingEngine
    p = NetpyneParams.model_validate(params)
    SpikingEngine(NetpyneNetworkBuilder(p, [33], None, seed=seed).set_default().build(), p.dt_ms)
    pop = {c.gid: c.tags["pop"] for c in sim.net.cells}
    out: dict[str, list] = {}
    weights: dict[str, list] = {}
    for c in sim.net.cells:
        if c.tags["pop"].startswith("in"):
            continue
        per: dict[str, int] = {}
        for cn in c.conns:
            rule = f"{pop[cn['preGid']]}->{c.tags['pop']}"
            per[rule] = per.get(rule, 0) + 1
            weights.setdefault(rule, []).append(cn["weight"])
        for src in ("E_33", "I_33"):
            out.setdefault(f"{src}->{c.tags['pop']}", []).append(per.get(f"{src}->{c.tags['pop']}", 0))
        assert all(cn["preGid"] != c.gid for cn in c.conns)
    sim.clearAll()
    return {k: np.array(v) for k, v in out.items()}, {k: np.array(v) for k, v in weights.items()}


@pytest.mark.netpyne
@pytest.mark.slow        # 400 cells wired three times; the quick loop keeps the numpy wiring's own unit tests above
def test_numpy_wiring_matches_netpynes_probability_rule_in_distribution():
    """300 E + 100 I cells, probabilities raised for statistical power: per rule, both wirings'
    in-degree mean and variance within binomial error of n_candidates·p and n_candidates·p(1−p),
    and their weights' means within error of E[max(0, N(w, 0.1 w))]."""
    from cosim.services.netpyne_node.toolbox import mean_clipped_normal
    conns = {"EE": {"prob": 0.05}, "EI": {"prob": 0.1}, "IE": {"prob": 0.1}, "II": {"prob": 0.2}}
    base = {"network": {"n_exc": 300, "n_inh": 100, "conns": conns}, "record": {"plot": False}}
    new, w_new = _in_degrees({**base, "network": {**base["network"], "wiring": "numpy"}}, 42)
    old, w_old = _in_degrees({**base, "network": {**base["network"], "wiring": "netpyne"}}, 42)
    size = {"E_33": 300, "I_33": 100}
    prob = {"E_33->E_33": 0.05, "E_33->I_33": 0.1, "I_33->E_33": 0.1, "I_33->I_33": 0.2}
    weight = {"E_33->E_33": 0.02, "E_33->I_33": 0.01, "I_33->E_33": 0.01, "I_33->I_33": 0.01}
    for rule, p in prob.items():
        src, tgt = rule.split("->")
        n_cand = size[src] - (src == tgt)
        mean, var = n_cand * p, n_cand * p * (1 - p)
        for k in (new[rule], old[rule]):
            assert k.size == size[tgt]
            assert _close(k.mean(), mean, np.sqrt(var / k.size)), (rule, k.mean(), mean)
            assert _close(k.var(ddof=1), var, var * np.sqrt(2 / (k.size - 1))), (rule, k.var(ddof=1), var)
        assert not np.array_equal(new[rule], old[rule])                    # two different draws
        m = mean_clipped_normal(weight[rule], 0.1 * weight[rule])
        for w in (w_new[rule], w_old[rule]):
            assert _close(w.mean(), m, 0.1 * weight[rule] / np.sqrt(w.size)), (rule, w.mean(), m)
    again, _ = _in_degrees({**base, "network": {**base["network"], "wiring": "numpy"}}, 42)
    assert all(np.array_equal(again[r], new[r]) for r in prob)             # seeded: the same network


@pytest.mark.unit
def test_adapter_pauses_the_setup_clock_while_it_builds(monkeypatch):
    from cosim.services.netpyne_node import adapter as mod
    ad = mod.NetpyneAdapter.__new__(mod.NetpyneAdapter)
    ad.setup_status = {}
    seen = []
    with ad._setup_work():
        seen.append(dict(ad.setup_status))
        monkeypatch.setattr("cosim.services.netpyne_node.checks.needs_build", lambda p: True)
        with ad._compiling(None):                     # compiling inside the build keeps the pause
            pass
        seen.append(dict(ad.setup_status))
    assert seen == [{"setup": "compiling"}] * 2 and ad.setup_status == {}


@pytest.mark.unit
def test_the_pause_ends_when_the_build_outlasts_its_budget(monkeypatch):
    """A build that hangs must not hold the setup clock forever: after its budget the heartbeats
    stop saying "compiling" and setup_timeout_ms counts again."""
    import time
    from cosim.services.netpyne_node import adapter as mod
    monkeypatch.setattr(mod, "BUILD_BUDGET_BASE_S", 0.3)
    ad = mod.NetpyneAdapter.__new__(mod.NetpyneAdapter)
    ad.setup_status = {}
    with ad._setup_work():
        assert ad.setup_status == {"setup": "compiling"}
        time.sleep(1.5)
        assert ad.setup_status == {}


@pytest.mark.unit
def test_build_budget_grows_with_connections_and_pairs():
    from types import SimpleNamespace
    from cosim.services.netpyne_node.adapter import BUILD_BUDGET_BASE_S, build_budget_s
    pops = {"E": {"numCells": 1000}, "I": {"numCells": 1000}}
    lst = SimpleNamespace(popParams=pops, connParams={"E->I": {"preConds": {"pop": "E"}, "postConds": {"pop": "I"},
                                                               "connList": [[0, 1]] * 10_000}})
    prob = SimpleNamespace(popParams=pops, connParams={"E->I": {"preConds": {"pop": "E"}, "postConds": {"pop": "I"},
                                                                "probability": 0.01}})
    assert build_budget_s(lst) == pytest.approx(BUILD_BUDGET_BASE_S + 10 * (2.0 + 0.5))
    assert build_budget_s(prob) == pytest.approx(BUILD_BUDGET_BASE_S + 10 * (2.0 + 0.5 + 3.0))


@pytest.mark.system
@pytest.mark.slow
@pytest.mark.netpyne
def test_the_build_bench_runs_tiny_and_reports_both_wirings(tmp_path):
    """bench/netpyne_build.py at 160 cells: both wirings build in their own process, with times,
    memory, connections and per-rule in-degree statistics."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "b.json"
    p = subprocess.run([sys.executable, "bench/netpyne_build.py", "--size", "tiny", "--cells", "160", "--no-large",
                        "--out", str(out)], cwd=repo, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    pair = json.loads(out.read_text())["compare"][0]
    for w in ("numpy", "netpyne"):
        r = pair[w]
        assert r["wiring"] == w and r["build_cpu_s"] > 0 and r["connections"] > 0
        assert set(r["rules"]) == {"E_33->E_33", "E_33->I_33", "I_33->E_33", "I_33->I_33"}
    assert pair["time_ratio_old_new"] > 0 and pair["mem_ratio_old_new"] > 0
