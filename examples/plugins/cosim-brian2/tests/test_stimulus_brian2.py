"""Current devices on the Brian2 plugin (``params.stimulus``: a TimedArray in the membrane equation):
a pulse train drives its population, nothing changes before onset (bit for bit), each cell's
``I_stim`` is the declared waveform step by step, errors are one line."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cosim.runtime.adapter import RunContext, SignalSpec
from cosim.sdk.stimulus import CurrentPA, on_grid
from cosim_brian2.adapter import Brian2Adapter

pytestmark = pytest.mark.brian2

ONSET = 50.0
DBS = {"population": "E", "regions": [33], "frequency_hz": 130, "width_ms": 0.3, "amplitude_pA": 3000.0,
       "phase2_width_ms": 3.0, "phase2_amplitude_pA": -300.0, "onset_ms": ONSET, "label": "dbs"}


def _adapter(tmp_path, tag, stim, K=62, regions=(33, 71)):
    params = {"network": {"n_exc": 40, "n_inh": 12}, "record": {"plot": False}, "input": {"scale": 1.0},
              "stimulus": stim}
    cfg = {"run": {"seed": 3}, "tvb": {"model": {}},
           "spiking_nodes": [{"name": "s", "backend": "brian2", "regions": list(regions), "params": params}]}
    con = {"weights": np.zeros((76, 76)), "idelays": np.full((76, 76), 32)}
    ctx = RunContext(config=cfg, node_name="s", regions=tuple(regions), tvb_dt_ms=0.1, tick_ms=0.05,
                     steps_per_window=16, n_windows=K, outputs=[SignalSpec("state/R_e", tuple(regions))],
                     connectome=con, results_dir=str(tmp_path / tag))
    a = Brian2Adapter()
    ctx.inputs = a.requires(ctx)
    a.configure(ctx)
    return a, ctx


def _step_all(a, ctx):
    for k in range(ctx.n_windows):
        a.step(k, {"coupling/R_e": np.full((16, len(ctx.regions)), 10.0)})
    a.finish(None)
    with h5py.File(f"{ctx.results_dir}/s.h5") as f:
        return {k: f[k][()] for k in ("spikes/t_ms", "spikes/gid", "rates/exc", "steps")} | \
            {"pulses": f["stimulus/pulse_t_ms"][()] if "stimulus/pulse_t_ms" in f else None}


def test_a_pulse_train_drives_its_population_and_nothing_changes_before_onset(tmp_path):
    off = _step_all(*_adapter(tmp_path, "off", []))
    on = _step_all(*_adapter(tmp_path, "on", [DBS]))
    b_off, b_on = off["spikes/t_ms"] < ONSET, on["spikes/t_ms"] < ONSET
    assert b_off.sum() > 10
    assert np.array_equal(off["spikes/t_ms"][b_off], on["spikes/t_ms"][b_on])
    assert np.array_equal(off["spikes/gid"][b_off], on["spikes/gid"][b_on])
    late = off["steps"] * 0.1 > ONSET
    e_off, e_on = off["rates/exc"][late].mean(0), on["rates/exc"][late].mean(0)
    assert e_on[0] > 2 * e_off[0] + 5.0 and e_on[1] == e_off[1], (e_off, e_on)
    g = on_grid(CurrentPA(**DBS), 0.05)
    assert np.allclose(on["pulses"], g.pulse_starts(0, 62 * 32) * 0.05) and on["pulses"].size == 7


def test_cells_get_exactly_the_declared_current(tmp_path):
    from cosim_brian2._compat import import_brian2
    b2 = import_brian2()
    dev = {**DBS, "onset_ms": 2.0, "offset_ms": 40.0, "regions": None}
    a, ctx = _adapter(tmp_path, "rec", [dev], K=30)
    cells = a.built.cells
    mon = b2.StateMonitor(cells, "I_stim", record=[0, 45, 80], dt=0.05 * b2.ms)   # E_33, E_71, I_33
    a.built.net.add(mon)
    _step_all(a, ctx)
    want = on_grid(CurrentPA(**dev), 0.05).samples(0, 30 * 32)
    got = np.asarray(mon.I_stim / b2.pA)
    assert got.shape == (3, 30 * 32)
    assert np.allclose(got[0], want, rtol=1e-12, atol=1e-9) and np.allclose(got[1], want, rtol=1e-12, atol=1e-9)
    assert not got[2].any() and np.abs(want).max() == 3000.0


def test_a_bad_device_is_one_line(tmp_path):
    from cosim.errors import ModelError
    with pytest.raises(ModelError, match=r"^params.stimulus\[0\].population 'GPe' is not a population of this node "
                                         r"\(populations: E, I\)$"):
        _adapter(tmp_path, "bad", [{**DBS, "population": "GPe"}])
