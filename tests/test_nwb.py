"""`cosim export RUN_DIR --nwb FILE` (cosim/results/nwb.py).

  the default example (NetPyNE, short) → NWB → pynwb's validator: no errors;
  reopened: spike counts per population = spiking.h5's, rates and TVB series equal, labels kept
  the reference backend (no spikes) exports too; a directory without results is one line, exit 2
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

import h5py
import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

PY = [sys.executable, "-m", "cosim.cli"]


def _export(run_dir, path):
    p = subprocess.run(PY + ["export", str(run_dir), "--nwb", str(path)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert pynwb.validate(path=str(path)) == [], "pynwb's validator found errors"
    return path


# the config of each test's run: the default example shortened; the reference backend
RUNS = {"test_default_example_exports_valid_nwb_with_the_same_spikes": {"run": {"duration_ms": 100.0}},
        "test_reference_run_exports_without_units": {"run": {"duration_ms": 50.0}, "spiking_nodes": [
            {"name": "spiking", "backend": "reference", "regions": [33, 71]}]}}


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    """The runs the selected tests export, made as `cosim run --no-plots` makes them, their services
    forked from one zygote (conftest.run_warm: TVB and NEURON imported once, not in each service of
    each run; a forked service computes what a fresh one does). What is tested is the export."""
    from conftest import run_warm
    wanted = {i.originalname for i in request.session.items if getattr(i, "module", None) is request.module}
    return run_warm({k: v for k, v in RUNS.items() if k in wanted}, tmp_path_factory.mktemp("runs"), "--no-plots")


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.netpyne
@pytest.mark.tvb
def test_default_example_exports_valid_nwb_with_the_same_spikes(runs, tmp_path):
    run = runs["test_default_example_exports_valid_nwb_with_the_same_spikes"]
    assert run.code == 0, run.stderr[-2000:]
    path = _export(run.out, tmp_path / "default.nwb")
    with h5py.File(run.out / "spiking.h5", "r") as f:
        labels = [x.decode() for x in f["pops/label"][()]]
        expected = Counter({lab: int((f["spikes/pop"][()] == i).sum()) for i, lab in enumerate(labels)})
        rate_exc = f["rates/exc"][()]
    with h5py.File(run.out / "tvb.h5", "r") as f:
        tvb_re, tvb_labels = f["raw/R_e"][()], [x.decode() if isinstance(x, bytes) else x for x in f.attrs["region_labels"]]
    assert sum(expected.values()) > 0, "the default example fired no spikes"
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        got = Counter()
        for pop, times in zip(units["population"], units["spike_times"]):
            got[pop] += len(times)
        assert all(got[p] == expected[p] for p in set(expected) | set(got)), (got, expected)
        assert set(units["region"]) == {33, 71} and set(units["region_label"]) == {tvb_labels[33], tvb_labels[71]}
        rates = nwb.processing["spiking"]["rate_spiking_exc"]
        assert np.array_equal(rates.data[()], rate_exc) and rates.unit == "Hz"
        raw = nwb.processing["tvb"]["raw_R_e"]
        assert np.array_equal(raw.data[()], tvb_re) and raw.rate == pytest.approx(10000.0)
        assert list(nwb.processing["tvb"]["regions"]["label"][:]) == tvb_labels
        assert nwb.processing["tvb"]["regions"]["simulated_by"][33] == "spiking"


@pytest.mark.system
@pytest.mark.tvb
def test_reference_run_exports_without_units(runs, tmp_path):
    run = runs["test_reference_run_exports_without_units"]
    assert run.code == 0, run.stderr[-2000:]
    path = _export(run.out, tmp_path / "ref.nwb")
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.units is None
        assert set(nwb.processing["spiking"].data_interfaces) == {"rate_spiking_R_e", "rate_spiking_R_i"}
        assert "spiking_state_R_e" in nwb.processing["exchange"].data_interfaces


@pytest.mark.system
def test_export_of_a_directory_without_results_is_one_line(tmp_path):
    p = subprocess.run(PY + ["export", str(tmp_path), "--nwb", str(tmp_path / "x.nwb")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "no results" in p.stderr, p.stderr
