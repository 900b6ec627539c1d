"""docs/models.md's gallery: every example under examples/models/ runs briefly with NetPyNE and
with NEST (real processes over ZeroMQ), writes tvb.h5 with every state variable and the rate,
takes the proxies' values from the spiking side, shows plausible activity and writes its plots."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples" / "models").glob("*.yaml"))
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.tvb]


def _cases():
    return [pytest.param(p, b, id=f"{p.stem}-{b}", marks=getattr(pytest.mark, b))
            for p in EXAMPLES for b in ("netpyne", "nest")]


def test_every_shipped_interface_has_an_example():
    import yaml
    from cosim.config.interfaces import SHIPPED
    classes = {yaml.safe_load(p.read_text())["tvb"]["model"]["class"] for p in EXAMPLES}
    assert classes == set(SHIPPED)


@pytest.mark.parametrize("path,backend", _cases())
def test_model_example_runs(cosim, path, backend):
    require(backend)
    import yaml
    cfg = yaml.safe_load(path.read_text())
    cfg["run"]["duration_ms"] = 30.0
    cfg["spiking_nodes"][0]["backend"] = backend
    r = cosim(cfg)
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
