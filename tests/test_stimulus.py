"""Current devices (cosim/sdk/stimulus.py): one-line validation, the waveform on a simulator's grid
against an exact rational reference, edges and pulse tables consistent with the samples, and the
results figure drawing them."""
from __future__ import annotations

import json
from fractions import Fraction

import h5py
import numpy as np
import pytest

from cosim.sdk.stimulus import CurrentNA, CurrentPA, describe, grid_of, labels, on_grid, targets, window_pulses


DBS = dict(population="E", frequency_hz=130, width_ms=0.3, amplitude_nA=2.0, phase2_width_ms=3.0,
           phase2_amplitude_nA=-0.2, onset_ms=4.0, offset_ms=60.0)


def reference(dev, dt: str, n: int) -> np.ndarray:
    """The waveform by exact arithmetic: pulse k starts ceil(k * (1000/f) / dt) steps after the first
    grid step at or after onset; off from the first grid step at or after offset."""
    dt_ = Fraction(dt)
    n_on = -(-Fraction(str(dev.onset_ms)) // dt_)
    n_off = n + 1 if dev.offset_ms is None else -(-Fraction(str(dev.offset_ms)) // dt_)
    out = np.zeros(n)
    if dev.kind == "constant":
        out[int(n_on):int(min(n_off, n))] = dev.amplitude()
        return out
    P = Fraction(1000) / Fraction(str(dev.frequency_hz)) / dt_
    w1 = Fraction(str(dev.width_ms)) / dt_
    w2 = Fraction(str(dev.phase2_width_ms or 0)) / dt_
    k = 0
    while True:
        s = n_on + (-(-(k * P) // 1))
        if s >= min(n_off, n):
            break
        for m in range(int(s), int(min(s + w1 + w2, n_off, n))):
            out[m] = dev.amplitude() if m < s + w1 else (dev.amplitude2() or 0.0)
        k += 1
    return out


@pytest.mark.unit
@pytest.mark.parametrize("freq,dt,onset", [(130, "0.025", 4.0), (130, "0.05", 0.0), (155, "0.025", 1.3),
                                           (100, "0.025", 2.0), (7, "0.1", 0.35), (1000, "0.05", 0.0)])
def test_samples_equal_the_exact_waveform(freq, dt, onset):
    dev = CurrentNA(**{**DBS, "frequency_hz": freq, "onset_ms": onset, "offset_ms": 300.0,
                       "phase2_width_ms": 0.4 if freq == 1000 else 3.0})
    g = on_grid(dev, float(dt))
    n = int(round(320 / float(dt)))
    x = g.samples(0, n)
    assert np.array_equal(x, reference(dev, dt, n))
    assert np.array_equal(np.concatenate([g.samples(0, 1000), g.samples(1000, n)]), x)     # any split
    starts = np.flatnonzero(np.diff(np.concatenate([[0.0], (x > 0).astype(float)])) == 1)
    assert np.array_equal(g.pulse_starts(0, n), starts)
    assert len(starts) == int(np.ceil((300 - onset) * freq / 1000 - 1e-9))            # pulse count
    st, v = g.edges(n)                                                                  # a generator's schedule
    y = np.zeros(n)
    for i in range(len(st)):
        y[st[i]:(st[i + 1] if i + 1 < len(st) else n)] = v[i]
    assert np.array_equal(y, x) and (np.diff(st) > 0).all()


@pytest.mark.unit
def test_constant_and_monophasic_and_the_pulse_table():
    c = on_grid(CurrentPA(population="I", kind="constant", amplitude_pA=-30.0, onset_ms=2.0, offset_ms=3.0), 0.1)
    assert c.samples(0, 40).tolist() == [0.0] * 20 + [-30.0] * 10 + [0.0] * 10
    assert c.edges(40)[0].tolist() == [20, 30] and c.pulse_starts(0, 40).tolist() == [20]
    m = on_grid(CurrentNA(population="E", frequency_hz=100, width_ms=1.0, amplitude_nA=1.0), 0.5)
    assert np.flatnonzero(m.samples(0, 45)).tolist() == [0, 1, 20, 21, 40, 41]
    cols = window_pulses([m, c], 0, 45)
    assert cols["pulse_t_ms"].tolist() == [0.0, 2.0, 10.0, 20.0] and cols["pulse_device"].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize("bad,msg", [
    ({"frequency_hz": None}, "a pulse_train needs frequency_hz and width_ms"),
    ({"phase2_amplitude_nA": None}, "a biphasic pulse needs both phase2_width_ms and phase2_amplitude_nA"),
    ({"width_ms": 5.0}, "pulse width 8 ms (both phases) is longer than the period 7.69231 ms of 130 Hz"),
    ({"offset_ms": 4.0}, "offset_ms (4) must be after onset_ms (4)"),
    ({"kind": "constant"}, "a constant current takes no frequency_hz, width_ms, phase2_width_ms, phase2_amplitude_nA"),
    ({"amplitude_nA": 5000.0}, "less than or equal to 1000"),
    ({"frequency_hz": -1.0}, "greater than 0"),
    ({"amplitude_pA": 1.0}, "Extra inputs are not permitted"),
])
@pytest.mark.unit
def test_bad_devices_are_one_line_errors(bad, msg):
    from pydantic import ValidationError
    with pytest.raises(ValidationError) as e:
        CurrentNA(**{**DBS, **bad})
    assert msg in str(e.value)


@pytest.mark.unit
def test_grid_errors_name_the_device():
    with pytest.raises(ValueError, match=r"^params.stimulus\[0\].width_ms = 0.06 ms is not a whole number \(>= 1\) "
                                         r"of steps of 0.025 ms$"):
        on_grid(CurrentNA(**{**DBS, "width_ms": 0.06}), 0.025, "params.stimulus[0]")
    pops = {"E_33": (33, "exc"), "I_33": (33, "inh"), "E_71": (71, "exc"), "in_33": (33, "input"), "STN": (5, "other")}
    assert targets(CurrentNA(**DBS), pops, [33, 71], "s") == ["E_33", "E_71"]
    assert targets(CurrentNA(**{**DBS, "regions": [71]}), pops, [33, 71], "s") == ["E_71"]
    assert targets(CurrentNA(**{**DBS, "population": "STN"}), pops, [33, 71, 5], "s") == ["STN"]
    with pytest.raises(ValueError, match=r"^s.population 'X' is not a population of this node \(populations: E, I, STN\)$"):
        targets(CurrentNA(**{**DBS, "population": "X"}), pops, [33, 71], "s")
    with pytest.raises(ValueError, match=r"s.regions \[5\] are not regions of this node"):
        targets(CurrentNA(**{**DBS, "regions": [5]}), pops, [33, 71], "s")
    with pytest.raises(ValueError, match="unique"):
        labels([CurrentNA(**DBS, label="a"), CurrentNA(**DBS, label="a")])


@pytest.mark.unit
def test_the_figure_shows_what_was_delivered(tmp_path):
    """A results file with one device: the figure gets its extra row (the plot runs end to end)."""
    from cosim.sdk.spiking_figure import plot_results
    from cosim.sdk.spiking_file import ResultsWriter
    dev = CurrentNA(**DBS)
    g = on_grid(dev, 0.025)
    w = ResultsWriter(tmp_path / "s.h5", {"node": "s", "regions": np.array([33]), "tvb_dt_ms": 0.1,
                                          "stimulus_json": json.dumps([describe("dbs", dev, g, [("E_33", 33, 20)])])},
                      [("E_33", 33, "exc", 20)], 1)
    for k in range(40):
        cols = {f"stimulus/{c}": v for c, v in window_pulses([g], k * 64, (k + 1) * 64).items()}
        w.window(np.arange(k * 16 + 1, k * 16 + 17), {"rates/exc": np.zeros((16, 1))}, columns=cols)
    w.close(None)
    with h5py.File(tmp_path / "s.h5") as f:
        t = f["stimulus/pulse_t_ms"][:]
        d = json.loads(f.attrs["stimulus_json"])[0]
    assert np.allclose(t, g.pulse_starts(0, 40 * 64) * 0.025) and t.size == 8 and grid_of(d) == g
    png = plot_results(tmp_path / "s.h5")
    assert png.stat().st_size > 10_000


@pytest.mark.system
@pytest.mark.parametrize("backend,device,msg", [
    ("netpyne", {"population": "STN", "frequency_hz": 130, "width_ms": 0.3, "amplitude_nA": 1.0},
     "params.stimulus[0].population 'STN' is not a population of this node (populations: E, I)"),
    ("nest", {"population": "E", "frequency_hz": 130, "width_ms": 0.33, "amplitude_pA": 1.0, "onset_ms": 5.0},
     "params.stimulus[0].width_ms = 0.33 ms is not a whole number (>= 1) of steps of 0.05 ms"),
])
def test_validate_refuses_a_device_in_one_line(tmp_path, backend, device, msg):
    """`cosim validate` checks devices before any service starts: exit 2, one line naming the device."""
    import subprocess
    import yaml
    from cosim.launch import command_lines
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": {"duration_ms": 50}, "spiking_nodes": [
        {"name": "spiking", "backend": backend, "regions": [33], "params": {"stimulus": [device]}}]}))
    p = subprocess.run(command_lines.cosim_cmd() + ["validate", str(path)], capture_output=True, text=True, timeout=180)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.startswith("cosim:")]
    assert p.returncode == 2 and lines == [f"cosim: configuration error: {path}: spiking_nodes[0] (spiking): {msg}"]
