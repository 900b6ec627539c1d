"""RxD example: intracellular calcium (rxdParams) gates a KCa current; one molecular parameter
(the extrusion time constant) measurably changes the region's rate. Runs in subprocesses (RxD
state is process-global) with results, hence RxD's compiled reactions, in a temp folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.netpyne]      # the node's driver in subprocesses


def _run(tmp: Path, tau: float, seed: int) -> tuple[float, float]:
    out = tmp / f"tau{tau:g}_seed{seed}"
    cmd = [sys.executable, "-m", "cosim.services.netpyne_node.drive", "--regions", "33", "--duration", "200",
           "--level", "300", "--seed", str(seed), "--out", str(out), "--set", "rxd.enabled=true",
           "--set", f"rxd.tau_ca_ms={tau}", "--set", "record.plot=false"]
    env = dict(os.environ, PYTHONPATH=str(REPO), COSIM_NO_MPI="1")
    p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    with h5py.File(out / "spiking.h5") as f:
        rate = float(f["rates/exc"][:].mean())
        cai = float(np.mean([v[:].mean() for v in f["traces/cai"].values()]))
    return rate, cai


def test_calcium_extrusion_changes_region_rate(tmp_path):
    # two seeds (network and input draws): one 200 ms run of ~100 spiking cells is noisy. Measured
    # per seed with the input drawn in model-time order (issue 25; seeds 1-5): rate 1.14-1.93x
    # higher with fast extrusion, [Ca]i 1.26-1.84x higher with slow; the seeds 2-3 means 1.3x and
    # 1.4x. Each pair shares its seed, so without an effect of tau both ratios are exactly 1
    fast = [_run(tmp_path, 20.0, seed) for seed in (2, 3)]
    slow = [_run(tmp_path, 400.0, seed) for seed in (2, 3)]
    fast_rate, fast_cai = np.mean(fast, axis=0)
    slow_rate, slow_cai = np.mean(slow, axis=0)
    print(fast, slow)
    assert slow_cai > 1.2 * fast_cai, (fast, slow)     # slower extrusion -> more [Ca]i (recorded, saved)
    assert fast_rate > 1.1 * slow_rate, (fast, slow)    # -> more KCa -> lower rate
