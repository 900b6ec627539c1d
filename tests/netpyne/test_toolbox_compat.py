"""``tvb.conventions: tvb-multiscale-compat`` and ``params.toolbox`` (services/netpyne_node/toolbox.py):
each emulation of what TVB-multiscale computes, checked against an outside restatement of the
toolbox's own code (a plain NetPyNE build of its network, elephant's algorithm written out with
``np.histogram`` and ``scipy.signal.fftconvolve``), and the preset's fill-in."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from np_helpers import run, tiny

from cosim.config import parse_config
from cosim.services.netpyne_node import toolbox

TOOLBOX_ALL = {"weight_sd_as_variance": True, "input_skips_last_step": True, "rate_kernel_per_window": True,
               "input_random_divergence": True}          # the preset; fixed_wiring (g) stays off


# ---- pure -------------------------------------------------------------------------------------
@pytest.mark.unit
def test_weights_given_sd_as_variance_average_148_and_182_percent():
    assert toolbox.weight_expr(0.02, 0.1, False) == f"max(0, normal(0.02, {(0.1 * 0.02) ** 2!r}))"   # the intent
    assert toolbox.weight_expr(0.02, 0.1, True) == "max(0, normal(0.02, 0.002))"                    # the toolbox
    assert toolbox.weight_expr(0.02, 0.0, True) == 0.02
    ee = toolbox.mean_clipped_normal(0.02, np.sqrt(0.002)) / 0.02
    ei = toolbox.mean_clipped_normal(0.01, np.sqrt(0.001)) / 0.01
    assert round(ee, 2) == 1.48 and round(ei, 2) == 1.82
    draws = np.maximum(0, np.random.default_rng(1).normal(0.02, np.sqrt(0.002), 400_000))
    assert abs(draws.mean() / 0.02 - ee) < 0.01


@pytest.mark.unit
def test_trains_cover_w_minus_1_steps_shifted_one_step_early():
    r = np.arange(1.0, 17.0)[:, None] * [1, 10]
    g = toolbox.gap_rates(r)
    assert np.array_equal(g[:-1], r[1:]) and not g[-1].any()


@pytest.mark.unit
def test_window_kernel_is_elephants_instantaneous_rate_per_window():
    """elephant's algorithm (statistics.instantaneous_rate: np.histogram over the window, kernel
    sampled at -5..5 sigma with sigma = sampling period, fftconvolve 'same', no border correction)
    restated here, on random spikes, against toolbox.window_kernel_rates of the per-step counts."""
    from scipy.signal import fftconvolve
    rng = np.random.default_rng(0)
    dt, W, N = 0.1, 16, 120
    t0 = 3.2
    spikes = t0 + rng.random(300) * W * dt
    hist, _ = np.histogram(spikes, bins=W, range=(t0, t0 + W * dt))
    k = np.linspace(-5.0, 5.0, 11)                      # t_arr_kernel in units of the sampling period
    kernel_hz = np.exp(-0.5 * k ** 2) / (np.sqrt(2 * np.pi) * dt * 1e-3)
    elephant = np.clip(fftconvolve(hist.astype(float), kernel_hz, mode="same"), 0, None) / N
    ours = toolbox.window_kernel_rates((hist / (N * dt * 1e-3))[:, None])[:, 0]
    assert np.allclose(ours, elephant, rtol=1e-9, atol=1e-9)
    assert round(toolbox.kept_mass(16), 3) == 0.955 and toolbox.kept_mass(1000) > 0.999


@pytest.mark.unit
def test_compat_preset_fills_dt_and_every_switch_and_explicit_settings_win():
    cfg = parse_config({"tvb": {"conventions": "tvb-multiscale-compat"}})
    p = cfg.spiking_nodes[0].params
    assert p["dt_ms"] == 0.05 and p["toolbox"] == TOOLBOX_ALL and p["input"]["mode"] == "per_source"
    assert cfg.tvb.weights_scaling == "p99" and cfg.tvb.integrator.noise_seed is None
    own = parse_config({"tvb": {"conventions": "tvb-multiscale-compat"},
                        "spiking_nodes": [{"params": {"dt_ms": 0.025, "toolbox": {"fixed_wiring": True,
                                                                                   "rate_kernel_per_window": False}}}]})
    q = own.spiking_nodes[0].params
    assert q["dt_ms"] == 0.025 and q["toolbox"] == {**TOOLBOX_ALL, "fixed_wiring": True, "rate_kernel_per_window": False}
    nest = parse_config({"tvb": {"conventions": "tvb-multiscale-compat"}, "spiking_nodes": [{"backend": "nest"}]})
    assert "toolbox" not in nest.spiking_nodes[0].params                  # NEST has no such block
    assert parse_config({"tvb": {"conventions": "tvb-multiscale"}}).spiking_nodes[0].params.get("toolbox") is None


@pytest.mark.tvb
def test_a_fixed_noise_seed_gives_every_run_the_same_noise():
    from cosim.services.tvb_node.windowed import build_simulator
    def stream(seed, noise_seed=None):
        c = parse_config({"run": {"seed": seed}, "tvb": {"integrator": {"kind": "heun_stochastic",
                                                                        "noise_seed": noise_seed}}})
        return build_simulator(c.tvb, c.run.seed).integrator.noise.random_stream.normal(size=5)
    assert not np.array_equal(stream(1), stream(2))                        # run.seed seeds the noise
    assert np.array_equal(stream(1, 42), stream(2, 42))                    # unless the noise seed is fixed
    assert np.array_equal(stream(42), stream(7, 42))


# ---- NetPyNE ----------------------------------------------------------------------------------
def _conns(sim, below: int) -> list[tuple]:
    return sorted((int(cn["preGid"]), int(c.gid), float(cn["weight"]), float(cn["delay"]))
                  for c in sim.net.cells for cn in c.conns if isinstance(cn["preGid"], int) and cn["preGid"] < below)


def _toolbox_network(sim):
    """The toolbox's two regions as its code builds them (DefaultExcIOInhIBuilder, netpyne_templates,
    NetpyneModule): plain NetPyNE, node by node E then I, weights ``max(0.0, normal(w, w*0.1))``,
    NetPyNE's default seeds."""
    from netpyne import specs
    net, cfg = specs.NetParams(), specs.SimConfig()
    net.synMechParams["exc"] = {"mod": "Exp2Syn", "tau1": 0.8, "tau2": 5.3, "e": 0}
    net.synMechParams["inh"] = {"mod": "Exp2Syn", "tau1": 0.6, "tau2": 8.5, "e": -75}
    net.cellParams["PYR"] = {"secs": {"soma": {"geom": {"diam": 18.8, "L": 18.8, "Ra": 123.0},
                                               "mechs": {"hh": {"gnabar": 0.12, "gkbar": 0.036, "gl": 0.003,
                                                                "el": -70}}}}}
    for node in ("33", "71"):
        net.popParams[f"{node}.E"] = {"cellType": "PYR", "numCells": 120}
        net.popParams[f"{node}.I"] = {"cellType": "PYR", "numCells": 40}
    for src, tgt, w, p, rec in (("E", "E", 0.02, 0.01, "exc"), ("E", "I", 0.01, 0.01, "exc"),
                                ("I", "E", 0.01, 0.03, "inh"), ("I", "I", 0.01, 0.03, "inh")):
        for node in ("33", "71"):
            net.connParams[f"{node}.{src}->{node}.{tgt}"] = {
                "preConds": {"pop": f"{node}.{src}"}, "postConds": {"pop": f"{node}.{tgt}"}, "probability": p,
                "weight": f"max(0.0, normal({w * 1.0}, {w * 1.0 * 0.1}))", "delay": 5, "synMech": rec}
    cfg.verbose, cfg.progressBar = False, 0
    sim.initialize(net, cfg)
    sim.net.createPops()
    sim.net.createCells()
    sim.net.connectCells()


@pytest.mark.netpyne
@pytest.mark.slow        # builds the toolbox's network and ours three times; a check of the compat preset alone
def test_fixed_wiring_with_variance_weights_is_the_toolboxs_own_network():
    """Every within-region connection (pre, post, weight, delay) equals the toolbox's, for any run
    seed; without fixed_wiring the network changes with the seed."""
    from netpyne import sim
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams

    def ours(seed, **tb):
        p = NetpyneParams.model_validate({"toolbox": tb})
        built = NetpyneNetworkBuilder(p, [33, 71], None, seed=seed).set_default().build()
        sim.clearAll() if getattr(sim, "net", None) is not None else None
        sim.initialize(built.netParams, built.simConfig)
        sim.net.createPops()
        sim.net.createCells()
        sim.net.connectCells()
        return _conns(sim, 320)

    _toolbox_network(sim)
    theirs = _conns(sim, 320)
    sim.clearAll()
    assert len(theirs) > 700
    assert ours(42, fixed_wiring=True, weight_sd_as_variance=True) == theirs
    assert ours(7, fixed_wiring=True, weight_sd_as_variance=True) == theirs
    free = ours(42, weight_sd_as_variance=True)
    assert free != theirs and free != ours(7, weight_sd_as_variance=True)
    sim.clearAll()


@pytest.mark.netpyne
def test_input_switches_on_a_running_network(tmp_path):
    """(b): no input spike in the last TVB step of any window (there are some without it); (d): the
    same spikes, but the R_e sent to TVB integrates the kernel-smoothed rate, ~0.95 of the counted."""
    def go(tag, **tb):
        run(tiny(record__input_spikes=True, input__scale=0.5, toolbox=tb), regions=(33,), duration_ms=80.0,
            results_dir=tmp_path / tag, seed=5)
        with h5py.File(tmp_path / tag / "spiking.h5") as f:
            return f["input_spikes/t_ms"][:], f["rates/exc"][:, 0], f["output/R_e"][:, 0]
    W, dt = 16, 0.1
    slot = lambda t: np.floor(t / dt + 1e-9).astype(int) % W               # noqa: E731
    t_gap, exc_gap, R_gap = go("gap", input_skips_last_step=True)
    t_k, exc_k, R_k = go("kernel", input_skips_last_step=True, rate_kernel_per_window=True)
    t_0, _, _ = go("plain")
    assert t_gap.size > 100 and slot(t_gap).max() == W - 2 and (slot(t_0) == W - 1).sum() > 0
    assert np.array_equal(t_k, t_gap) and np.array_equal(exc_k, exc_gap) and exc_k.sum() > 0
    assert 0.85 < R_k.sum() / R_gap.sum() < 0.99


@pytest.mark.netpyne
def test_random_divergence_gives_a_binomial_number_of_trains_per_cell():
    from netpyne import sim
    from cosim.services.netpyne_node.builder import NetpyneNetworkBuilder
    from cosim.services.netpyne_node.config import NetpyneParams
    p = NetpyneParams.model_validate({"toolbox": {"input_random_divergence": True}})
    built = NetpyneNetworkBuilder(p, [33], None, seed=3).set_default().build()
    if getattr(sim, "net", None) is not None:
        sim.clearAll()
    sim.initialize(built.netParams, built.simConfig)
    sim.net.createPops()
    sim.net.createCells()
    sim.net.connectCells()
    relays = set(sim.net.pops["in_33"].cellGids)
    per_cell = np.array([sum(cn["preGid"] in relays for cn in c.conns) for c in sim.net.cells
                         if c.tags["pop"] == "E_33"])
    sim.clearAll()
    assert per_cell.sum() == len(relays) == 120                            # every train lands once
    assert (per_cell == 0).sum() > 20 and per_cell.max() >= 3              # binomial(120, 1/120): ~37% get none


@pytest.mark.system
@pytest.mark.slow
def test_the_bench_runs_tiny_and_reads_every_figure(tmp_path):
    """bench/toolbox_compat.py --size tiny: the intent and compat presets, one seed, 40 ms, through
    `cosim run` (TVB, NetPyNE, coordinator as processes); every column read from the run's files."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    out = tmp_path / "runs"
    p = subprocess.run([sys.executable, "bench/toolbox_compat.py", "--size", "tiny", "--jobs", "1", "--out", str(out)],
                       cwd=repo, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert list(res["table"]) == ["intent (tvb-multiscale)", "compat (tvb-multiscale-compat: (a)-(d), (f))"]
    for row in res["table"].values():
        assert row["n"] == 1 and all(row[c]["mean"] >= 0 for c in ("E33", "I33", "E71", "I71", "R_e proxy 33",
                                                                    "R_e proxy 71", "TVB R_e"))
    configs = sorted(out.glob("v*_s1.yaml"))
    assert len(configs) == 2 and all("window_ms: 1.6" in c.read_text() for c in configs)
    assert "| **toolbox** (issue 20) | 21.0 ± 0.5 |" in res["markdown"]
