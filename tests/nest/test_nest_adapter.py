"""The NEST adapter in-process (no sockets): stepping contract, exact spike reading per window,
the window length not changing the spikes, the input driving the region, and user models."""
from __future__ import annotations

import numpy as np
import pytest

from cosim.runtime.adapter import RunContext, SignalSpec
from cosim.services.nest_node import adapter as nest_adapter
from cosim.services.nest_node.adapter import NestAdapter
from cosim.services.nest_node.network import ModelError

pytestmark = [pytest.mark.nest]      # in-process, a synthetic connectome
SMALL = {"network": {"n_exc": 40, "n_inh": 12}, "record": {"plot": False}, "input": {"scale": 1.0}}


def make(tmp_path, W=16, params=None, regions=(33,), name="s", K=20, tag="a"):
    params = {**SMALL, **(params or {})}
    cfg = {"run": {"seed": 3}, "tvb": {"model": {}},
           "spiking_nodes": [{"name": name, "backend": "nest", "regions": list(regions), "params": params}]}
    n = 76
    con = {"weights": np.zeros((n, n)), "idelays": np.full((n, n), 32)}
    ctx = RunContext(config=cfg, node_name=name, regions=tuple(regions), tvb_dt_ms=0.1, tick_ms=0.05,
                     steps_per_window=W, n_windows=K, outputs=[SignalSpec("state/R_e", tuple(regions)),
                                                               SignalSpec("state/S_e", tuple(regions))],
                     connectome=con, results_dir=str(tmp_path / tag))
    a = NestAdapter()
    ctx.inputs = a.requires(ctx)
    return a, ctx


def drive(a, ctx, rate_hz=30.0, windows=None):
    a.configure(ctx)
    W = ctx.steps_per_window
    outs = [a.step(k, {"coupling/R_e": np.full((W, len(ctx.regions)), rate_hz)})
            for k in range(windows or ctx.n_windows)]
    return outs


class _Spy:
    """The nest module, with its kernel-stepping calls logged."""
    def __init__(self, module, calls):
        self._m, self._calls = module, calls

    def __getattr__(self, name):
        attr = getattr(self._m, name)
        if name in ("Prepare", "Run", "Cleanup", "Simulate"):
            return lambda *a, **k: (self._calls.append(name), attr(*a, **k))[1]
        return attr


def test_prepare_once_run_per_window_cleanup_at_end(tmp_path, monkeypatch):
    calls = []
    real = nest_adapter.import_nest
    monkeypatch.setattr(nest_adapter, "import_nest", lambda: _Spy(real(), calls))
    a, ctx = make(tmp_path, K=5)
    drive(a, ctx)
    a.finish(None)
    assert calls == ["Prepare"] + ["Run"] * 5 + ["Cleanup"]


def test_each_window_reads_exactly_its_own_spikes(tmp_path, monkeypatch):
    got = []
    orig = nest_adapter.SpikeFileReader.read
    monkeypatch.setattr(nest_adapter.SpikeFileReader, "read", lambda self: got.append(orig(self)) or got[-1])
    a, ctx = make(tmp_path, K=40)
    drive(a, ctx, rate_hz=60.0)
    a.finish(None)
    W = ctx.steps_per_window
    n = 0
    for k, (_gid, t) in enumerate(got):
        n += t.size
        assert np.all((t > k * W * 0.1 - 1e-9) & (t <= (k + 1) * W * 0.1 + 1e-9)), f"window {k}: {t}"
    assert n > 20, "the region should spike at this input"
    import h5py
    with h5py.File(tmp_path / "a" / "s.h5") as f:
        assert f["spikes/t_ms"].shape[0] == n and f.attrs["status"] == "completed"


@pytest.mark.parametrize("generator", ["nest", "numpy"])
def test_window_length_does_not_change_the_spikes(tmp_path, generator):
    """Run() in 16-step windows and in 4-step windows: the same NEST steps, the same spikes (with
    NEST's generators and with input.generator numpy, whose trains follow model time too)."""
    spikes = {}
    for W in (16, 4):
        a, ctx = make(tmp_path, W=W, K=int(48 / W) * 10, tag=f"w{W}",
                      params={"input": {"scale": 1.0, "generator": generator}})
        drive(a, ctx, rate_hz=60.0)
        a.finish(None)
        import h5py
        with h5py.File(tmp_path / f"w{W}" / "s.h5") as f:
            spikes[W] = (f["spikes/t_ms"][...], f["spikes/gid"][...])
    assert spikes[16][0].size > 20
    assert np.array_equal(spikes[16][0], spikes[4][0]) and np.array_equal(spikes[16][1], spikes[4][1])


def test_numpy_drive_does_not_depend_on_the_other_regions_of_the_node(tmp_path):
    """input.generator numpy: region 33's trains come from (seed, 33) alone, so with no synapse
    between the regions it fires the same spikes whether the node also simulates region 34 or not
    (what makes a NEST split spike for spike the same, PROTOCOL.md §4.2)."""
    out = {}
    for regions in ((33,), (34, 33)):
        tag = "r" + "_".join(map(str, regions))
        a, ctx = make(tmp_path, regions=regions, K=30, tag=tag, params={"input": {"scale": 1.0, "generator": "numpy"}})
        drive(a, ctx, rate_hz=60.0)
        a.finish(None)
        import h5py
        with h5py.File(tmp_path / tag / "s.h5") as f:
            keep = f["spikes/region"][...] == 33
            shift = 52 if regions[0] == 34 else 0          # region 34's 40 E + 12 I cells come first
            out[regions] = (f["spikes/t_ms"][...][keep], f["spikes/gid"][...][keep] - shift)
    assert out[(33,)][0].size > 20
    assert np.array_equal(out[(33,)][0], out[(34, 33)][0]) and np.array_equal(out[(33,)][1], out[(34, 33)][1])


def test_input_drives_the_region(tmp_path):
    rates = {}
    for level in (0.0, 60.0):
        a, ctx = make(tmp_path, K=40, tag=f"l{level}")
        outs = drive(a, ctx, rate_hz=level)
        a.finish(None)
        rates[level] = np.mean([o["state/R_e"].mean() for o in outs])
    assert rates[0.0] == 0.0 and rates[60.0] > 1.0, rates


def test_dt_must_divide_tvb_dt(tmp_path):
    a, ctx = make(tmp_path, params={"dt_ms": 0.03})
    ctx.tick_ms = 0.01
    with pytest.raises(ModelError, match="does not divide the TVB dt"):
        a.configure(ctx)


MODEL = """
import nest
E = nest.Create("iaf_cond_alpha", 30)
I = nest.Create("iaf_cond_alpha", 10)
nest.Connect(E, I, {"rule": "pairwise_bernoulli", "p": 0.2}, {"weight": 2.0})
"""


def test_user_model_maps_populations(tmp_path):
    f = tmp_path / "net.py"
    f.write_text(MODEL)
    mf = {"path": str(f), "populations": {"E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}}
    a, ctx = make(tmp_path, params={"model_file": mf, "input": {"scale": 1.0, "weight_uS": 0.2}}, K=30)
    outs = drive(a, ctx, rate_hz=80.0)
    assert [(p.label, p.role, p.size) for p in a.pops] == [("E", "exc", 30), ("I", "inh", 10)]
    assert list(a.n_exc) == [30] and list(a.n_inh) == [10]
    assert np.mean([o["state/R_e"].mean() for o in outs]) > 0
    a.finish(None)


def test_user_model_missing_population_names_it(tmp_path):
    f = tmp_path / "net.py"
    f.write_text(MODEL)
    mf = {"path": str(f), "populations": {"Exc": {"region": 33, "role": "exc"}}}
    a, ctx = make(tmp_path, params={"model_file": mf})
    with pytest.raises(ModelError, match=r"populations\.Exc: net\.py defines no population 'Exc' \(its populations: E, I\)"):
        a.configure(ctx)


STANDALONE = """
import nest
import nest.raster_plot
nest.ResetKernel()
nest.SetKernelStatus({"resolution": RES, "print_time": True, "overwrite_files": True, "data_path": DATA})
E = nest.Create("iaf_psc_alpha", 30)
I = nest.Create("iaf_psc_alpha", 10)
noise = nest.Create("poisson_generator", params={"rate": 9000.0})
rec = nest.Create("spike_recorder")
nest.Connect(noise, E + I, syn_spec={"weight": 30.0})
nest.Connect(E, rec)
nest.Simulate(1000.0)
print("rate", rec.get("n_events"))
nest.raster_plot.from_device(rec, hist=True)      # raises 'No events recorded' if it ran for real
"""


def test_a_standalone_nest_script_loads_without_simulating(tmp_path):
    """Scripts written to run on their own, as NEST's examples are (reset the kernel, set its
    resolution, build, nest.Simulate(1000), plot), load unchanged: nothing is simulated while the
    file runs (before: the whole 1000 ms ran, then cosim failed on NEST's 'BadDelay: minimum and
    maximum delay cannot be changed after Simulate'), the kernel settings cosim made stay, and
    cosim then runs the network from t = 0."""
    f = tmp_path / "standalone.py"
    (tmp_path / "elsewhere").mkdir()
    f.write_text(STANDALONE.replace("RES", "0.05").replace("DATA", repr(str(tmp_path / "elsewhere"))))
    mf = {"path": str(f), "populations": {"E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}}
    a, ctx = make(tmp_path, params={"model_file": mf, "dt_ms": 0.05, "input": {"scale": 1.0, "weight_pA": 6.0}}, K=10)
    outs = drive(a, ctx, rate_hz=80.0)
    assert [(p.label, p.size) for p in a.pops] == [("E", 30), ("I", 10)]
    assert a.nest.GetKernelStatus("biological_time") == pytest.approx(10 * 16 * 0.1)   # only cosim's windows ran
    assert a.nest.GetKernelStatus("print_time") is False and ".s_nest" in a.nest.GetKernelStatus("data_path")
    assert np.mean([o["state/R_e"].mean() for o in outs]) > 0
    a.finish(None)


def test_a_script_with_another_resolution_is_refused_in_one_line(tmp_path):
    f = tmp_path / "standalone.py"
    f.write_text(STANDALONE.replace("RES", "0.1").replace("DATA", repr(str(tmp_path))))
    mf = {"path": str(f), "populations": {"E": {"region": 33, "role": "exc"}}}
    a, ctx = make(tmp_path, params={"model_file": mf, "dt_ms": 0.05})
    with pytest.raises(ModelError, match=r"standalone\.py sets the kernel resolution to 0\.1 ms, but params\.dt_ms "
                                         r"is 0\.05: set params\.dt_ms: 0\.1"):
        a.configure(ctx)


def test_scale_keeps_each_cells_in_degree_unless_told_to_keep_the_probability(tmp_path):
    """Issue 25: ``network.scale`` multiplies the cells; by default each rule's probability is
    divided by it, so a cell keeps its expected number of inputs (and the network its regime)."""
    import nest
    counts = {}
    for keeps in ("in_degree", "probability"):
        a, ctx = make(tmp_path, params={"network": {"n_exc": 40, "n_inh": 12, "scale": 5.0, "scale_keeps": keeps,
                                                    "conns": {"EE": {"prob": 0.1}}}}, tag=keeps)
        a.configure(ctx)
        E = next(p.nodes for p in a.pops if p.label == "E_33")
        assert len(E) == 200
        counts[keeps] = len(nest.GetConnections(source=E, target=E))
        a.finish()
    # 200 E cells, pairs (autapses allowed) 40,000: in_degree keeps 40 * 0.1 = 4 inputs per cell (800 in
    # all, sd 28), probability 0.1 gives 20 per cell (4,000, sd 60); 5 sd either way
    assert abs(counts["in_degree"] - 800) < 5 * 28 and abs(counts["probability"] - 4000) < 5 * 60
