"""Current devices on NEST (``params.stimulus``: one step_current_generator each): a pulse train drives
its population, nothing changes before onset (bit for bit: the generators must not lower NEST's
min_delay), the neurons get exactly the declared waveform step by step, errors are one line."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from test_nest_adapter import drive, make

from cosim.sdk.stimulus import CurrentPA, on_grid
from cosim.services.nest_node.adapter import current_generator, import_nest, stimulus_lead_steps
from cosim.services.nest_node.config import NestParams

pytestmark = pytest.mark.nest

ONSET = 50.0
DBS = {"population": "E", "regions": [33], "frequency_hz": 130, "width_ms": 0.3, "amplitude_pA": 1000.0,
       "phase2_width_ms": 3.0, "phase2_amplitude_pA": -100.0, "onset_ms": ONSET, "label": "dbs"}


def _run(tmp_path, tag, stim, K=94):
    a, ctx = make(tmp_path, params={"stimulus": stim}, regions=(33, 71), K=K, tag=tag)
    drive(a, ctx, rate_hz=30.0)
    sched = [(g.get("amplitude_times"), g.get("amplitude_values")) for g in a.stim_gens]
    a.finish(None)
    with h5py.File(tmp_path / tag / "s.h5") as f:
        res = {k: f[k][()] for k in ("spikes/t_ms", "spikes/gid", "rates/exc", "steps")}
        res["pulses"] = f["stimulus/pulse_t_ms"][()] if "stimulus/pulse_t_ms" in f else None
    return res, sched


def test_a_pulse_train_drives_its_population_and_nothing_changes_before_onset(tmp_path):
    off, _ = _run(tmp_path, "off", [])
    on, sched = _run(tmp_path, "on", [DBS])
    b_off, b_on = off["spikes/t_ms"] < ONSET, on["spikes/t_ms"] < ONSET
    assert b_off.sum() > 10
    assert np.array_equal(off["spikes/t_ms"][b_off], on["spikes/t_ms"][b_on])
    assert np.array_equal(off["spikes/gid"][b_off], on["spikes/gid"][b_on])
    late = off["steps"] * 0.1 > ONSET
    e_off, e_on = off["rates/exc"][late].mean(0), on["rates/exc"][late].mean(0)
    assert e_on[0] > 3 * e_off[0] + 5.0, (e_off, e_on)
    g = on_grid(CurrentPA(**DBS), 0.05)
    assert np.allclose(on["pulses"], g.pulse_starts(0, 94 * 32) * 0.05) and on["pulses"].size == 14
    steps, values = g.edges(94 * 32)                       # the generator's schedule: each edge D early
    lead = stimulus_lead_steps(NestParams())
    assert lead == 19 and np.allclose(sched[0][0], (steps - lead) * 0.05) and np.array_equal(sched[0][1], values)


def test_neurons_get_exactly_the_declared_current():
    """A linear membrane (iaf_psc_delta, C 1 pF, tau_m 1e9 ms, no threshold) integrates the current it
    gets: (V[n+1] - V[n]) * C / h is the current during step n, which must be GridStimulus.samples."""
    nest = import_nest()
    nest.ResetKernel()
    nest.resolution = 0.05
    dev = CurrentPA(**{**DBS, "onset_ms": 2.0, "offset_ms": 40.0})
    g = on_grid(dev, 0.05)
    n = 1000
    neuron = nest.Create("iaf_psc_delta", params={"C_m": 1.0, "tau_m": 1e9, "V_th": 1e12, "E_L": 0.0, "V_m": 0.0,
                                                  "V_reset": 0.0, "t_ref": 0.0})
    current_generator(nest, g, n, 19, [neuron])
    mm = nest.Create("multimeter", params={"record_from": ["V_m"], "interval": 0.05})
    nest.Connect(mm, neuron)
    nest.Simulate((n + 60) * 0.05)             # the multimeter hands over whole min_delay slices
    ev = mm.get("events")
    v = np.concatenate([[0.0], ev["V_m"][np.argsort(ev["times"])]])[: n + 1]       # V at t = 0, h, 2h, ...
    got = np.diff(v) * 1.0 / 0.05
    want = g.samples(0, n)
    assert np.abs(want).max() == 1000.0
    assert np.allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.array_equal(np.flatnonzero(np.abs(got) > 1e-3), np.flatnonzero(want))


def test_an_onset_before_the_input_delay_is_one_line():
    from pydantic import ValidationError
    with pytest.raises(ValidationError, match=r"stimulus\[0\].onset_ms \(0.5\) must be at least 0.95 ms"):
        NestParams.model_validate({"stimulus": [{**DBS, "onset_ms": 0.5}]})
