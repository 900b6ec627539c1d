"""docs/models.md's gallery: every example under examples/models/ runs briefly with NetPyNE and
with NEST (real processes over ZeroMQ), writes tvb.h5 with every state variable and the rate,
takes the proxies' values from the spiking side, shows plausible activity and writes its plots."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "models").glob("*.yaml"))
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.tvb]


REGIONS = {"netpyne": 33, "nest": 71}


def gallery_config(path: Path) -> dict:
    """One run per model with both backends: region 33 on NetPyNE, region 71 on NEST (two spiking
    services, the example's own node settings on each), so every model is coupled to each backend
    while TVB and the coordinator start once per model, not once per backend."""
    import yaml
    cfg = yaml.safe_load(path.read_text())
    cfg["run"]["duration_ms"] = 30.0
    node = cfg["spiking_nodes"][0]
    cfg["spiking_nodes"] = [{**node, "name": b, "backend": b, "regions": [r]} for b, r in REGIONS.items()]
    # a machine shared by several test runs can starve a process for seconds during set-up
    cfg["coordinator"] = {"heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 20000}
    return cfg


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Every example's run, the services forked from one zygote (conftest.run_warm: TVB, NEURON and
    cosim imported once for the six runs, not in each service of each run)."""
    from conftest import run_warm
    return run_warm({p.stem: gallery_config(p) for p in EXAMPLES}, tmp_path_factory.mktemp("gallery"))


@pytest.mark.netpyne
@pytest.mark.nest
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_model_example_runs(gallery, path):
    regions = REGIONS
    r = gallery[path.stem]
    assert r.code == 0, r.stderr[-2000:]
    with h5py.File(r.out / "tvb.h5", "r") as f:
        raw = f["raw"]
        svars = list(f.attrs["state_variables"])
        flag = raw["proxy_from_spiking"][:].astype(bool)
        assert flag.sum() > 0
        for v in svars + ["R_e"]:
            x = raw[v][:]
            assert x.shape[1] == 76 and np.isfinite(x).all(), v
        R = raw["R_e"][:]
        assert 0 <= R.min() and R[flag][:, [33, 71]].max() < 500      # Hz, from the spiking side
        assert R[:, [i for i in range(76) if i not in (33, 71)]].max() > 0    # TVB's regions active
        if "eeg" in f:
            assert f["eeg"][next(k for k in f["eeg"] if k != "time_ms")].shape[1] == 65
    with h5py.File(r.out / "coordinator.h5", "r") as f:       # each region's rate came from its own backend
        for b, region in regions.items():
            sent = f[f"signals/{b}/state/R_e"]
            assert list(sent.attrs["regions"]) == [region] and np.isfinite(sent[...]).all(), b
    for b in regions:
        with h5py.File(r.out / f"{b}.h5", "r") as f:
            assert f.attrs["status"] == "completed", b
            assert ("neuron_dt_ms" in f.attrs) == (b == "netpyne") and (f.attrs.get("backend") == "nest") == (b == "nest")
    assert (r.out / "tvb_activity.png").is_file()
    if "EEG" in path.read_text():
        assert (r.out / "tvb_eeg.png").is_file()


def test_tvb_models_bench_runs(tmp_path):
    """bench/tvb_models.py at a tiny size: one JSON line per model with a finite, positive ratio."""
    import json
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "bench/tvb_models.py", "--duration-ms", "30", "--repeats", "1"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert [r["model"] for r in rows] == ["JansenRit", "MontbrioPazoRoxin"]
    assert all(0 < r["ratio_median"] < 20 and r["alone_ms_per_window"] > 0 for r in rows)


def test_generic_model_exact_through_real_processes(cosim):
    """`cosim run` (coordinator, TVB node, reference node as processes over ZeroMQ) with
    Generic2dOscillator + Difference coupling: tvb.h5 equals a plain tvb-library run, bit for bit,
    every state variable of every region whose proxy values came from the other process."""
    from test_tvb_generic import tvb_library_alone
    coupling = {"class": "Difference", "params": {"a": 0.1}}
    cfg = {"run": {"name": "g2d_exact", "duration_ms": 60.0, "seed": 4},
           "tvb": {"model": {"class": "Generic2dOscillator"}, "coupling": coupling, "initial_history": "zero"},
           "spiking_nodes": [{"name": "ref", "backend": "reference", "regions": [33, 71], "params": {"model": {"I": 0.5}}}]}
    r = cosim(cfg, "--no-plots")
    assert r.code == 0, r.stderr[-2000:]
    with h5py.File(r.out / "tvb.h5", "r") as f:
        flag = f["raw"]["proxy_from_spiking"][:].astype(bool)
        got = {v: f["raw"][v][:] for v in ("V", "W")}
    n = len(flag)
    svars, alone = tvb_library_alone("Generic2dOscillator", coupling, n, {33: {"I": 0.5}, 71: {"I": 0.5}})
    assert flag.sum() >= n - 50
    for i, v in enumerate(svars):
        np.testing.assert_array_equal(got[v][flag], alone[flag, i], err_msg=v)
