"""compose.yaml for real: build the three images, `up --exit-code-from coordinator`, check the
results in the bind-mounted volume, `down`.

    coordinator ◄── tvb        (service names on the compose network)
         ▲
         └───────── spiking
    ./results/<run>/ ← every container writes here

Uses this machine's `docker compose` (shared/tools/compose: podman-compose, local base image),
found beside the repository. Images are built one after another so that the layers the three
Dockerfiles share are built once; podman's layer cache makes later runs fast.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from harness import free_port

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO.parent / "shared" / "tools" / "compose"

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.compose, pytest.mark.timeout(2400)]


def _compose_available() -> str | None:
    if not COMPOSE.is_file():
        return f"{COMPOSE} not found (this machine's compose wrapper)"
    if os.geteuid() != 0 and shutil.which("podman") is None:
        return "podman not installed"
    return None


def _run(args: list[str], env: dict, timeout: float, log: Path) -> int:
    with open(log, "ab") as out:
        out.write(f"\n$ compose {' '.join(args)}\n".encode())
        out.flush()
        p = subprocess.run([str(COMPOSE), *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Build the images once per test session (one service at a time, so shared layers are reused)."""
    why = _compose_available()
    if why:   # never silently in CI: there the compose test must run
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    log = tmp_path_factory.mktemp("compose_build") / "build.log"
    env = {**os.environ, "COSIM_CONFIG_FILE": str(REPO / "examples" / "default.yaml")}
    for service in ("coordinator", "tvb"):
        code = _run(["-p", "cosimbuild", "build", service], env, 1800, log)
        assert code == 0, f"building {service} failed:\n" + log.read_text()[-4000:]
    return log


_built: set[str] = set()


def _build_spiking(images: Path, backend: str) -> None:
    """The spiking image of one backend (compose picks services/<backend>_node/Dockerfile), once per
    session (each backend's its own tag, cosim-<backend>:latest: a later build of another backend
    leaves it as it was; a rebuild from cache costs ~2 s for nothing)."""
    if backend in _built:
        return
    env = {**os.environ, "COSIM_CONFIG_FILE": str(REPO / "examples" / "default.yaml"), "COSIM_BACKEND": backend}
    code = _run(["-p", "cosimbuild", "build", "spiking"], env, 1800, images)
    assert code == 0, f"building the {backend} spiking image failed:\n" + images.read_text()[-4000:]
    _built.add(backend)



@pytest.mark.parametrize("backend", ["noop", "reference", "nest"])
def test_compose_run(images, tmp_path, backend):
    _build_spiking(images, backend)
    run = f"ct_{backend}"
    cfg = {"run": {"name": run, "duration_ms": 100},
           "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71]}],
           "coordinator": {"heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 10000}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    results.mkdir()
    project = f"cosimtest{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "COSIM_CONFIG_FILE": str(tmp_path / "run.yaml"), "COSIM_RESULTS_DIR": str(results),
           "COSIM_RUN_NAME": run, "COSIM_BACKEND": backend, "COSIM_TVB_BACKEND": "noop" if backend == "noop" else "tvb",
           "COSIM_ROUTER_PORT": str(free_port()), "COSIM_PUB_PORT": str(free_port())}
    log = tmp_path / "compose.log"
    try:
        code = _run(["-p", project, "up", "--exit-code-from", "coordinator"], env, 600, log)
        text = log.read_text()
        assert code == 0, text[-5000:]
        out = results / run
        status = json.loads((out / "status_coordinator.json").read_text())
        assert status.get("completed") is True or status.get("reason") == "completed", status
        summary = json.loads((out / "summary.json").read_text())
        assert summary, summary
        with h5py.File(out / "coordinator.h5") as f:
            K, W = int(f.attrs["n_windows"]), int(f.attrs["steps_per_window"])
            assert K * W * 0.1 >= 100 - 1e-9
            sig = f["signals/spiking/state/S_e"][...]
            assert sig.shape == (K * W, 2) and np.isfinite(sig).all()
        if backend == "reference":
            assert (out / "tvb.h5").is_file() and (out / "spiking.h5").is_file()
            assert (sig > 0).all()                      # a real mean field, not zeros
        if backend == "nest":                           # the NEST image ran NEST
            with h5py.File(out / "spiking.h5") as f:
                assert f.attrs["backend"] == "nest" and f.attrs["status"] == "completed"
                assert f["input/rate_hz"][...].mean() > 0
        # the nodes stayed until the coordinator had finished, then ended cleanly
        assert "cosim: interrupted" not in text, text[-5000:]
    finally:
        # -t 0: the checks above are done; a container still up here gets SIGKILL at once, not after 5 s
        # (a node hung in a DNS lookup of the stopped coordinator let up wait 10 s and down 5 s more, in
        # about half the runs; compose.yaml's RES_OPTIONS for the nodes, docs/deployment.md)
        _run(["-p", project, "down", "-t", "0"], env, 300, log)
        left = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=io.podman.compose.project={project}"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        if left:
            subprocess.run(["podman", "rm", "-f", *left], capture_output=True, timeout=120)
        assert not left, f"containers left behind by compose down: {left}"


def test_the_container_starter_runs_each_service_in_its_image(images, tmp_path):
    """`cosim.launch.run.start(..., starter=Container(...))`: the three services as containers of
    the images compose builds, on the host network, the results folder mounted at its own path;
    the run completes like a local one and no container is left."""
    import argparse

    from cosim.config import parse_config
    from cosim.launch.run import start
    from cosim.launch.starters import Container
    _build_spiking(images, "noop")
    cfg = parse_config({"run": {"duration_ms": 100, "progress": False},
                        "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [33, 71]}],
                        "coordinator": {"heartbeat_interval_ms": 500, "heartbeat_timeout_ms": 10000}})
    out = tmp_path / "out"
    a = argparse.Namespace(config=None, set=[], out=str(out), no_plots=True, log_level="INFO")
    starter = Container(engine="podman", mounts=[str(tmp_path)])
    job = start(a, cfg, starter=starter)
    try:
        summary = job.supervise()
    finally:
        job.reap()
        left = subprocess.run(["podman", "ps", "-aq", "--filter", f"name=cosim-.*-{os.getpid()}"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        if left:
            subprocess.run(["podman", "rm", "-f", *left], capture_output=True, timeout=120)
    assert not left, f"containers left behind: {left}"
    assert summary["windows"] >= 1
    with h5py.File(out / "coordinator.h5") as f:
        assert f.attrs["status"] == "completed" and f.attrs["windows"] == summary["windows"]
    assert "registered" in (out / "logs" / "coordinator.log").read_text()
