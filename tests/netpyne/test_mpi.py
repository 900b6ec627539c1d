"""MPI: 1 rank and 2 ranks give identical spikes and rates for the same seed (runs in CI)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.system, pytest.mark.mpi, pytest.mark.netpyne]


def _drive(n: int, tmp: Path, tag: str, *extra: str) -> dict:
    if shutil.which("mpiexec") is None:
        pytest.fail("mpiexec not found: install openmpi-bin (the MPI test must run in CI)")
    out, dump = tmp / tag, tmp / f"{tag}.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = ["mpiexec", "--oversubscribe", "-n", str(n)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [sys.executable, "-m", "cosim.services.netpyne_node.drive", "--regions", "33", "71", "--duration", "80",
            "--level", "900", "--seed", "11", "--out", str(out), "--dump", str(dump),
            "--set", "network.n_exc=20", "--set", "network.n_inh=8", "--set", "input.scale=0.05",
            "--set", "record.plot=false", *extra]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return dict(np.load(dump))


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory) -> dict:
    """The one-rank run with spikes recorded: the reference of both tests below."""
    return _drive(1, tmp_path_factory.mktemp("one_rank"), "n1")


def test_one_vs_two_ranks_identical_spikes(tmp_path, one_rank):
    a = one_rank
    b = _drive(2, tmp_path, "n2")
    assert int(a["n_ranks"]) == 1 and int(b["n_ranks"]) == 2      # MPI really started
    assert a["t_ms"].size > 10
    assert np.array_equal(a["t_ms"], b["t_ms"]) and np.array_equal(a["gid"], b["gid"])
    assert np.array_equal(a["R_e"], b["R_e"])


@pytest.mark.slow
def test_two_ranks_counts_only_matches(tmp_path, one_rank):
    """Without spike recording only per-step counts are reduced to rank 0: the rates of one rank
    (which records the spikes: recording does not change the network, and its rates are the same)."""
    a = one_rank
    b = _drive(2, tmp_path, "c2", "--set", "record.spikes=false")
    assert "t_ms" not in b and a["R_e"].max() > 0
    assert np.array_equal(a["R_e"], b["R_e"])


@pytest.mark.slow
def test_user_model_with_templates_and_mechanisms_on_two_ranks(tmp_path):
    """A user model (hoc/Python/SWC templates, own mechanisms, drive attached by cosim) under MPI:
    rank 0 compiles alone without starting NEURON (that would deadlock), then every rank loads it;
    spikes identical to one rank."""
    import yaml
    model = REPO / "tests" / "netpyne" / "models" / "templates"
    params = {"model_file": {"path": str(model / "model.py"), "build_dir": str(tmp_path / "build"),
                             "drive": {"weight_uS": 0.01},
                             "populations": {"BS": {"region": 33, "role": "exc"}, "FS": {"region": 33, "role": "inh"},
                                             "ST": {"region": 33, "role": "other"}}},
              "record": {"plot": False}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    res = {}
    for n in (2, 1):      # 2 first: the mechanisms are not compiled yet
        out, dump = tmp_path / f"u{n}", tmp_path / f"u{n}.npz"
        cmd = ["mpiexec", "--oversubscribe", "-n", str(n)] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
        cmd += [sys.executable, "-m", "cosim.services.netpyne_node.drive", "--regions", "33", "--duration", "50",
                "--params", str(tmp_path / "p.yaml"), "--out", str(out), "--dump", str(dump)]
        p = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)),
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        res[n] = dict(np.load(dump))
    assert int(res[2]["n_ranks"]) == 2 and res[1]["t_ms"].size > 5
    assert np.array_equal(res[1]["t_ms"], res[2]["t_ms"]) and np.array_equal(res[1]["gid"], res[2]["gid"])
