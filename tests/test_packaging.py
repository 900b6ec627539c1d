"""The distribution as a user gets it: `pip wheel .` gives one import package, `cosim`, with its
licence and data files; installed (not editable) in a fresh environment it runs the default
example from a folder that has `services/` and `proto/` packages of its own."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.system]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(d),
                        str(REPO)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (w,) = d.glob("*.whl")
    return w


def test_the_wheel_holds_one_import_package_and_names_its_licence(wheel):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"cosim", next(t for t in tops if t.endswith(".dist-info"))}
    assert f"Name: {project['name']}" in meta and "License-Expression: GPL-3.0-or-later" in meta
    assert any(n.endswith("licenses/LICENSE") for n in names)
    # package data: every file the code reads at run time
    for f in ("cosim/py.typed", "cosim/proto/PROTOCOL.md", "cosim/services/netpyne_node/examples/rxd_calcium/kca.mod",
              "cosim/services/netpyne_node/examples/user_model/myleak.mod", "cosim/services/tvb_node/Dockerfile",
              "cosim/services/nest_node/examples/user_model/model.py"):
        assert f in names, f
    assert not any(n.startswith(("cosim/tests", "services/", "proto/")) for n in names)


def test_an_installed_wheel_runs_the_default_example_beside_packages_of_the_users_own(wheel, tmp_path):
    venv = tmp_path / "venv"
    # without pip of its own (ensurepip took ~3 CPU-s): the system's pip, seen through the system
    # site-packages, installs into the venv it runs in
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    py = venv / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    work = tmp_path / "my_web_project"                  # a folder with packages named like ours were
    for pkg in ("services", "proto"):
        (work / pkg).mkdir(parents=True)
        (work / pkg / "__init__.py").write_text("raise ImportError('the user project package was imported')\n")
    p = subprocess.run([str(venv / "bin" / "cosim"), "run", "--set", "run.duration_ms=30", "--out", str(tmp_path / "out"),
                        "--no-plots"], cwd=work, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    assert "completed" in p.stdout and (tmp_path / "out" / "spiking.h5").is_file()
    # the services ran from the installed wheel, not from this repository
    log = (tmp_path / "out" / "logs" / "coordinator.log").read_text()
    assert str(REPO) not in log or "site-packages" in log
    imported = subprocess.run([str(py), "-P", "-c", "import cosim, cosim.services; print(cosim.__file__)"],
                              cwd=work, capture_output=True, text=True, timeout=60).stdout
    assert "site-packages" in imported and str(REPO) not in imported
