"""The Python API (cosim.run / cosim.load) on real services (reference backend: fast and exact).

  cosim.run(block=True)  → Results equal to what the files hold (TVB monitors, rates, signals)
  cosim.run(block=False) → handle.progress advances → handle.stop() → RunInterrupted, results kept
  a bad override         → ConfigError naming the field, nothing started
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import cosim
from harness import wait_for
from psutil_free import cosim_processes

REF = {"spiking_nodes.0.backend": "reference", "run.progress": False}


@pytest.mark.system
def test_import_is_cheap_and_lazy():
    code = ("import sys, cosim; assert cosim.run and cosim.load; "
            "heavy = [m for m in ('neuron', 'tvb', 'xarray', 'pandas', 'netpyne') if m in sys.modules]; "
            "print(heavy)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stderr + p.stdout


@pytest.mark.system
@pytest.mark.tvb
def test_run_blocking_returns_labelled_results(tmp_path):
    r = cosim.run(duration_ms=100, out=tmp_path / "ref", set=REF, run__seed=7)
    assert isinstance(r, cosim.Results) and r.completed and r.summary["windows"] == 21
    assert r.config["run"]["seed"] == 7
    tvb = r.tvb
    assert tvb.dims == ("time", "region", "variable") and tvb.sizes["region"] == 76
    assert str(tvb.sel(region=33).label.values) == "rTCS" and list(tvb["variable"].values) == ["R_e", "R_i", "S_e", "S_i"]
    with h5py.File(tmp_path / "ref" / "tvb.h5") as f:
        assert np.array_equal(tvb.sel(variable="R_e").values, f["raw/R_e"][()])
        assert np.array_equal(tvb.time.values, f["raw/time_ms"][()])
    rates = r.rates
    assert rates.dims == ("time", "region", "population") and list(rates.region.values) == [33, 71]
    # the spiking side's rates are what TVB received for its proxies (state/R_e on the wire)
    sent = r.signals["spiking:state/R_e"]
    assert np.array_equal(rates.sel(population="R_e").values, sent.values)
    assert r.timings.shape[0] == 21 and ("tvb", "compute_s") in r.timings.columns
    assert r.spikes.empty and list(r.spikes.columns) == ["time_ms", "gid", "population", "region", "node"]
    again = cosim.load(tmp_path / "ref")
    assert np.array_equal(again.tvb.values, tvb.values)
    assert not cosim_processes(str(tmp_path / "ref"))


@pytest.mark.system
@pytest.mark.tvb
def test_run_in_background_reports_progress_and_stops(tmp_path):
    h = cosim.run(duration_ms=20000, out=tmp_path / "bg", set=REF, block=False)
    try:
        wait_for(lambda: h.progress["windows_done"] > 5 or h.done(), 120, "progress from the run")
        p = h.progress
        assert not h.done() and p["windows"] == 4082 and 0 < p["fraction"] < 1 and p["t_ms"] > 0, p
    finally:
        h.stop()
    assert h.done()
    with pytest.raises(cosim.RunInterrupted) as e:
        h.wait()
    assert e.value.out == tmp_path / "bg"
    partial = cosim.load(tmp_path / "bg")
    assert not partial.completed and partial.tvb.sizes["time"] > 0
    assert not cosim_processes(str(tmp_path / "bg"))


@pytest.mark.system
@pytest.mark.tvb
def test_a_failed_run_raises_run_failed_with_the_reason(tmp_path):
    with pytest.raises(cosim.RunFailed) as e:
        cosim.run(duration_ms=50, out=tmp_path / "fail", progress=False,
                  set={"spiking_nodes.0.backend": "reference", "spiking_nodes.0.regions": [33, 500]})
    assert e.value.exit_code == 2 and "out of range" in str(e.value) and "500" in str(e.value)   # whichever node says it first
    assert not isinstance(e.value, cosim.RunInterrupted)
    assert not cosim_processes(str(tmp_path / "fail"))


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.tvb
def test_interrupting_a_blocking_run_stops_it_and_keeps_results(tmp_path):
    """Ctrl-C (or a Jupyter kernel interrupt: SIGINT) in cosim.run → RunInterrupted, nothing left running."""
    out = tmp_path / "int"
    script = (f"import cosim\ntry:\n    cosim.run(duration_ms=20000, out={str(out)!r}, set={REF!r})\n"
              f"except cosim.RunInterrupted as e:\n    print('interrupted', e.exit_code)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "coordinator.h5").exists() or p.poll() is not None, 120, "the run to start")
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and "interrupted 130" in stdout, (stdout, stderr[-2000:])
    r = cosim.load(out)
    assert not r.completed and 0 < r.tvb.sizes["time"]
    assert not cosim_processes(str(out))


@pytest.mark.unit
def test_bad_override_raises_config_error(tmp_path):
    with pytest.raises(cosim.ConfigError, match="duration_ms"):
        cosim.run(duration_ms=-5, out=tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.unit
def test_load_refuses_a_directory_without_results(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results"):
        cosim.load(tmp_path)
