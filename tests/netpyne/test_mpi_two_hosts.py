"""A NetPyNE node whose two MPI ranks run on two "machines" (network namespaces) gives the same
spikes as one rank on one machine (runs in CI, as root).

    h0 10.77.0.1   cosim run: coordinator, tvb-node, mpiexec + rank 0 ──┐ MPI over TCP (eth0)
    h1 10.77.0.2   orted + rank 1   (started by tests/netns_rsh.sh)  ◄──┘

The two-host run is an ordinary `cosim run` of a config whose node has
``mpi: {hosts: [10.77.0.1, 10.77.0.2], args: [--mca, plm_rsh_agent, tests/netns_rsh.sh, ...]}``;
the agent stands in for ssh. While it runs, the test looks into each namespace for the rank
processes (`ip netns pids`, their ``OMPI_COMM_WORLD_RANK``): rank 0 must be in h0, rank 1 in h1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

try:
    from tests.netns import Lab, available, leftovers
except ImportError:                      # tests/ is on sys.path, not the repository
    from netns import Lab, available, leftovers

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "tests" / "netns_rsh.sh"
PY = [sys.executable, "-m", "cosim.cli"]
pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.mpi, pytest.mark.netns, pytest.mark.netpyne,
              pytest.mark.tvb, pytest.mark.timeout(300)]


@pytest.fixture
def lab():
    why = available()
    if why:   # never silently in CI: there namespaces must work
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    if shutil.which("mpiexec") is None:
        pytest.fail("mpiexec not found: install openmpi-bin (the MPI test must run in CI)")
    lab = Lab(2)
    yield lab
    lab.close()
    assert not [ns for ns in leftovers() if lab.id in ns], "namespaces left behind"


def _config(tmp: Path, name: str, **node) -> Path:
    params = {"network": {"n_exc": 40, "n_inh": 12}, "input": {"offset_hz": 20.0}, "record": {"plot": False}}
    cfg = {"run": {"name": name, "duration_ms": 98.0, "seed": 11, "results_dir": str(tmp), "progress": False},
           "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71],
                              "params": {**params, **node.pop("params", {})}, **node}]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _spikes(out: Path) -> dict[str, np.ndarray]:
    with h5py.File(out / "spiking.h5", "r") as f:
        return {k: f["spikes"][k][:] for k in f["spikes"]}


def _ranks_in(lab: Lab) -> set[tuple[int, int]]:
    """(host index, MPI rank) of every spiking-node rank process living in the lab's namespaces."""
    seen = set()
    for h in lab.hosts:
        r = subprocess.run(["ip", "netns", "pids", h.ns], capture_output=True, text=True, timeout=10)
        for pid in r.stdout.split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:                     # gone meanwhile
                continue
            rank = next((e.split(b"=", 1)[1] for e in env if e.startswith(b"OMPI_COMM_WORLD_RANK=")), None)
            if b"spiking-node" in cmd and rank is not None:
                seen.add((h.index, int(rank)))
    return seen


def test_two_hosts_give_the_spikes_of_one_rank(lab, tmp_path):
    h0, h1 = lab.hosts

    # 1. one rank, one machine
    one = _config(tmp_path, "one")
    p = subprocess.run(PY + ["run", str(one), "--out", str(tmp_path / "one"), "--no-plots"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]

    # 2. two ranks on two machines: `cosim run` in h0, rank 1 started in h1 through the agent;
    #    MPI between the ranks over TCP on eth0 only (namespaces share memory and files: without
    #    `btl self,tcp` Open MPI could take a shared-memory path that real machines do not have)
    mpi = {"hosts": [h0.ip, h1.ip],
           "args": ["--mca", "plm_rsh_agent", str(AGENT), "--mca", "btl", "self,tcp",
                    "--mca", "btl_tcp_if_include", "eth0", "--mca", "oob_tcp_if_include", "eth0"]}
    two = _config(tmp_path, "two", params={"mpi_ranks": 2}, mpi=mpi)
    log = tmp_path / "two.log"
    run = h0.popen(PY + ["run", str(two), "--out", str(tmp_path / "two"), "--no-plots"], log,
                   env={"COSIM_NETNS_HOSTS": f"{h0.ip}={h0.ns},{h1.ip}={h1.ns}"})
    seen: set[tuple[int, int]] = set()
    while run.poll() is None:           # where the ranks live, sampled while they do
        seen |= _ranks_in(lab)
        time.sleep(0.1)
    node_log = tmp_path / "two" / "logs" / "spiking.log"
    logs = log.read_text()[-2500:] + (f"\n--- spiking.log\n{node_log.read_text()[-2500:]}" if node_log.exists() else "")
    assert run.returncode == 0, logs
    assert "rank 1/2" in node_log.read_text(), logs                 # NEURON really ran on 2 ranks
    assert (0, 0) in seen and (1, 1) in seen, f"ranks seen (host, rank): {sorted(seen)}\n{logs}"
    assert (0, 1) not in seen and (1, 0) not in seen, sorted(seen)  # rank 1 never ran beside rank 0

    # 3. identical spike trains, and identical exchange
    a, b = _spikes(tmp_path / "one"), _spikes(tmp_path / "two")
    assert a.keys() == b.keys() and {"t_ms", "gid"} <= a.keys()
    assert a["t_ms"].size > 10, "too few spikes to compare"
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with h5py.File(tmp_path / "one" / "coordinator.h5") as fa, h5py.File(tmp_path / "two" / "coordinator.h5") as fb:
        np.testing.assert_array_equal(fa["signals/spiking/state/R_e"][:], fb["signals/spiking/state/R_e"][:])
