"""Three "machines" without containers: coordinator, TVB node and spiking node each in its own
network namespace, talking over a private bridge; the exchanged signals must equal those of
the same config run on loopback (`cosim run`).

    h0 10.77.0.1  coordinator  (binds its own address)
    h1 10.77.0.2  tvb-node      ──┐
    h2 10.77.0.3  spiking-node  ──┴── tcp://10.77.0.1:PORT     (own results folder each)

With CURVE, each machine holds only its own secret key and the coordinator's public key.
"""
from __future__ import annotations

import shutil
import subprocess
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from cosim.runtime import security
from cosim.launch.run import free_port

try:
    from tests.netns import Lab, available, leftovers
except ImportError:                      # tests/ is on sys.path, not the repository
    from netns import Lab, available, leftovers

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(600)]
PY = [sys.executable, "-m", "cosim.cli"]


@pytest.fixture
def lab():
    why = available()
    if why:   # never silently in CI: there namespaces must work
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    lab = Lab(3)
    yield lab
    lab.close()
    assert not [ns for ns in leftovers() if lab.id in ns], "namespaces left behind"



def _config(tmp: Path, backend: str, curve_keys: Path | None) -> Path:
    cfg = {"run": {"name": f"netns_{backend}", "duration_ms": 50 if backend == "reference" else 100,
                   "results_dir": str(tmp), "progress": False},
           "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71]}],
           "coordinator": {"heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 10000}}
    if curve_keys:
        cfg["coordinator"].update(curve=True, keys_dir=str(curve_keys))
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _signals(h5: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(h5) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...])
                     if isinstance(obj, h5py.Dataset) and (name.startswith("signals/") or name == "time_ms") else None)
    return out


def _node_keys(keys: Path, name: str, dest: Path) -> Path:
    """What a node's machine holds: its own pair and the coordinator's public key, nothing else."""
    dest.mkdir(parents=True)
    for f in (f"{name}.key", f"{name}.key_secret", "coordinator.key"):
        shutil.copy2(keys / f, dest / f)
    return dest


@pytest.mark.parametrize("backend,curve", [("noop", False), ("noop", True),
                                           pytest.param("reference", False, marks=pytest.mark.tvb)])
def test_three_namespaces_match_loopback(lab, tmp_path, backend, curve):
    keys = None
    if curve:
        keys = tmp_path / "keys"
        security.generate(keys, ["coordinator", "tvb", "spiking"])
    cfg = _config(tmp_path, backend, keys)
    tvb_backend = ["--backend", "noop"] if backend == "noop" else []

    # 1. loopback reference run
    loop = subprocess.run(PY + ["run", str(cfg), "--out", str(tmp_path / "loopback"), "--no-plots"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert loop.returncode == 0, loop.stderr[-3000:]

    # 2. the same config, one namespace per service
    h0, h1, h2 = lab.hosts
    router, pub = f"tcp://{h0.ip}:{free_port()}", f"tcp://{h0.ip}:{free_port()}"
    out = {h.index: tmp_path / f"machine{h.index}" for h in lab.hosts}
    coord = h0.popen(PY + ["coordinator", str(cfg), "--router", router, "--pub", pub, "--out", str(out[0]),
                           "--no-plots"], tmp_path / "coordinator.log")
    node_keys = {n: ["--keys", str(_node_keys(keys, n, tmp_path / f"keys_{n}"))] if keys else []
                 for n in ("tvb", "spiking")}
    tvb = h1.popen(PY + ["tvb-node", "--coordinator", router, "--out", str(out[1])] + tvb_backend + node_keys["tvb"],
                   tmp_path / "tvb.log")
    spiking = h2.popen(PY + ["spiking-node", "--coordinator", router, "--out", str(out[2]), "--backend", backend]
                       + node_keys["spiking"], tmp_path / "spiking.log")
    logs = lambda: "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-2500:]  # noqa: E731
                             for n in ("coordinator", "tvb", "spiking"))
    assert coord.wait(timeout=300) == 0, logs()
    assert tvb.wait(timeout=60) == 0 and spiking.wait(timeout=60) == 0, logs()
    coord_log = (tmp_path / "coordinator.log").read_text()
    assert router.removeprefix("tcp://") in coord_log          # bound the namespace's own address
    if curve:
        assert "CURVE on" in coord_log and "refused" not in coord_log

    # 3. what was exchanged is identical
    a, b = _signals(tmp_path / "loopback" / "coordinator.h5"), _signals(out[0] / "coordinator.h5")
    assert a.keys() == b.keys() and any(k.startswith("signals/") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    if backend == "reference":       # each machine wrote its own results
        assert (out[1] / "tvb.h5").is_file() and (out[2] / "spiking.h5").is_file()


def test_a_10_s_link_cut_is_reported_as_a_network_loss(lab, tmp_path):
    """Issue 23: the spiking node's cable is unplugged for up to 10 s (10 heartbeat timeouts) mid-run. Both
    sides see silence; each asks the other's machine for a TCP connection (a frozen process's kernel
    still accepts one, a cut network does not answer) and says it is the network, naming the
    address: the coordinator in the run's failure line, the node in its own. Before: `no heartbeat
    for 1.0 s …: node died or hung` and `coordinator at … stopped answering heartbeats`."""
    import re
    import time
    cfg = {"run": {"name": "netns_cut", "duration_ms": 60000, "results_dir": str(tmp_path), "progress": False},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5], "params": {"step_sleep_ms": 2.0}}],
           "coordinator": {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 1000}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    h0, h1, h2 = lab.hosts
    port = free_port()
    router, pub = f"tcp://{h0.ip}:{port}", f"tcp://{h0.ip}:{free_port()}"
    coord = h0.popen(PY + ["coordinator", str(path), "--router", router, "--pub", pub, "--out", str(tmp_path / "m0"),
                           "--no-plots"], tmp_path / "coordinator.log")
    tvb = h1.popen(PY + ["tvb-node", "--coordinator", router, "--out", str(tmp_path / "m1"), "--backend", "noop"],
                   tmp_path / "tvb.log")
    spiking = h2.popen(PY + ["spiking-node", "--coordinator", router, "--out", str(tmp_path / "m2"), "--backend", "noop"],
                       tmp_path / "spiking.log")
    logs = lambda: "\n".join(f"--- {n}\n" + (tmp_path / f"{n}.log").read_text()[-2500:]  # noqa: E731
                             for n in ("coordinator", "tvb", "spiking"))
    deadline = time.monotonic() + 120
    while "all 2 nodes ready" not in (tmp_path / "coordinator.log").read_text():
        assert time.monotonic() < deadline and coord.poll() is None, logs()
        time.sleep(0.1)
    time.sleep(1.0)
    lab.link_down(2)
    t_cut = time.monotonic()
    try:
        assert coord.wait(timeout=10) == 1, logs()       # the coordinator ends the run while the cable is out
        t_coord = time.monotonic() - t_cut
        assert spiking.wait(timeout=max(0.5, 10 - (time.monotonic() - t_cut))) == 1, logs()
    finally:
        # plugged back in once both sides have given up (each must within the 10 s, the waits above);
        # the rest of the 10 s was an idle sleep that nothing observed: both ends had exited
        lab.link_up(2)
    assert tvb.wait(timeout=30) == 1, logs()
    line = next((l for l in (tmp_path / "coordinator.log").read_text().splitlines() if "run failed" in l), "")
    assert "node 'spiking' failed in window" in line, logs()
    assert re.search(rf"the network to node 'spiking' at {re.escape(h2.ip)}:\d+ is cut", line) and "network loss" in line, line
    assert "died or hung" not in line, line
    node = (tmp_path / "spiking.log").read_text()
    assert f"the network to the coordinator at {h0.ip}:{port} is cut" in node, node[-2500:]
    assert "stopped answering heartbeats" in node and "network loss" in node, node[-2500:]
    from harness import record_fault
    record_fault("10 s link cut (netns)", coordinator_detect_s=round(t_coord, 2), heartbeat_timeout_ms=1000)
    assert t_coord < 6, t_coord           # 1 s timeout + 1 s probe, with room for a loaded machine
