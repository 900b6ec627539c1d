"""``tvb.conventions: tvb-multiscale`` (docs/science.md §2): what the preset fills in, that explicit
settings win, and that the TVB side stays exact under it (reference backend vs TVB alone, with the
zero history given to tvb-library as its own full-length initial conditions)."""
import h5py
import numpy as np
import pytest

from cosim.config import parse_config


@pytest.mark.unit
def test_preset_fills_the_toolboxs_conventions_and_explicit_settings_win():
    cfg = parse_config({"tvb": {"conventions": "tvb-multiscale", "model": {"G": 3.0}}})
    t = cfg.tvb
    assert (t.remove_self_connections, t.weights_scaling, t.initial_history) == (True, "p99", "zero")
    assert (t.integrator.kind, t.integrator.noise_sigma) == ("heun_stochastic", 1e-3)
    p = cfg.spiking_nodes[0].params
    assert p["input"] == {"mode": "per_source", "scale": 1.0, "weight_uS": 0.00390625 * 3.0, "delay_ms": 0.1}
    assert p["inter_region"] == {"weight_factor_uS": 0.00390625} and p["output"] == {"integrator": "euler"}
    assert parse_config(cfg.model_dump(mode="json")) == cfg             # nodes re-validate the dump
    own = parse_config({"tvb": {"conventions": "tvb-multiscale", "initial_history": "random",
                                "integrator": {"noise_sigma": 0.0}},
                        "spiking_nodes": [{"backend": "nest", "params": {"input": {"mode": "summed"}}}]})
    assert own.tvb.initial_history == "random" and own.tvb.integrator.kind == "heun_stochastic"
    assert own.tvb.integrator.noise_sigma == 0.0 and own.spiking_nodes[0].params["input"]["mode"] == "summed"
    assert parse_config({}).tvb.weights_scaling == "none"                  # the default is untouched


@pytest.mark.tvb
def test_tvb_side_under_the_preset():
    from cosim.services.tvb_node.windowed import WindowedTVB
    w = WindowedTVB({"conventions": "tvb-multiscale"}, 42)
    assert w.weights.max() == 1.0 and not np.diag(w.weights).any()
    assert not w.initial.S_e.any() and not w.initial.S_i.any()
    assert np.ptp(w.initial.R_e, axis=0).max() == 0          # a constant history: PerSourceInput's hold is exact
    assert type(w.sim.integrator).__name__ == "HeunStochastic"


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.tvb
def test_reference_cosimulation_equals_tvb_alone_under_the_preset(cosim):
    from cosim.services.tvb_node.windowed import build_simulator
    duration = 300.0
    cfg = {"run": {"name": "exact", "duration_ms": duration, "seed": 3}, "tvb": {"conventions": "tvb-multiscale"},
           "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}]}
    r = cosim(cfg, "--no-plots")
    assert r.code == 0, r.stderr[-2000:]
    c = parse_config(cfg)
    probe = build_simulator(c.tvb, c.run.seed)
    probe.configure()                                 # to learn the horizon, then again with zero ICs
    sim = build_simulator(c.tvb, c.run.seed)
    sim.initial_conditions = np.zeros((int(probe.connectivity.horizon), 2, 76, 1))
    sim.configure()
    (t, y), = sim.run(simulation_length=duration)
    with h5py.File(r.out / "tvb.h5") as f:
        got_t, rows = f["raw/time_ms"][:], f["raw/proxy_from_spiking"][:].astype(bool)
        S_e = f["raw/S_e"][:]
    m = min(len(t), len(got_t))
    t = t - t[0] + t[1] - t[0]          # full-length ICs start TVB's clock at the horizon (DOMAIN.md)
    assert np.allclose(got_t[:m], t[:m]) and rows[:m].sum() >= m - 100
    assert np.array_equal(S_e[:m][rows[:m]], y[:m, 0, :, 0][rows[:m]])
    assert S_e[:m].std(axis=0).min() > 0                         # the noise is on (stochastic Heun)


@pytest.mark.unit
def test_the_toolbox_example_config_says_what_docs_science_says():
    from pathlib import Path
    from cosim.config import load_config
    cfg = load_config(Path(__file__).resolve().parents[1] / "examples" / "tvb_multiscale_conventions.yaml")
    assert cfg.run.duration_ms == 1000.0 and cfg.tvb.conventions == "tvb-multiscale"
    assert cfg.tvb.remove_self_connections and cfg.tvb.weights_scaling == "p99" and cfg.tvb.initial_history == "zero"
    (node,) = cfg.spiking_nodes
    assert node.backend == "netpyne" and node.regions == [33, 71]
    assert node.params["network"] == {"n_exc": 120, "n_inh": 40} and node.params["input"]["mode"] == "per_source"
