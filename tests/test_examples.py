"""Every shipped example config validates (`cosim validate` runs each backend's own checks too:
NEST model files are executed and their populations looked up)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cosim.launch import command_lines

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.system]        # `cosim validate` as a process


def _examples() -> list:
    """Each example, marked with what its validation needs: its backends' simulators, and TVB
    (the connectome) unless every node is noop."""
    from cosim.config import load_config
    out = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        backends = {n.backend for n in load_config(path).spiking_nodes}
        needs = [getattr(pytest.mark, b) for b in sorted(backends & {"netpyne", "nest", "brian2"})]
        needs += [] if backends == {"noop"} else [pytest.mark.tvb]
        out.append(pytest.param(path, id=path.name, marks=needs))
    return out


@pytest.fixture(scope="module")
def cli():
    """`cosim validate` forked from a zygote that imported cosim.cli and TVB's connectivity once
    (conftest.run_cli_warm): ~1.5 CPU-s of imports less per example. default.yaml is validated by
    `python -m cosim.cli validate` as a process of its own, as a user does."""
    from conftest import run_cli_warm
    yield lambda args, cwd, timeout=180: run_cli_warm(args, cwd, timeout=timeout,
                                                      preload=("cosim.cli.commands", "tvb.datatypes.connectivity"))


@pytest.mark.parametrize("path", _examples())
def test_example_validates(path, tmp_path, request):
    if path.name == "default.yaml":
        p = subprocess.run(command_lines.cosim_cmd() + ["validate", str(path)], capture_output=True, text=True,
                           timeout=180, cwd=tmp_path)
    else:
        p = request.getfixturevalue("cli")(["validate", str(path)], cwd=tmp_path, timeout=180)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().endswith(")") and ": ok (" in p.stdout
