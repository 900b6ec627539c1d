"""Every shipped example config validates (`cosim validate` runs each backend's own checks too:
NEST model files are executed and their populations looked up)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cosim.launch import command_lines

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_validates(path, tmp_path):
    p = subprocess.run(command_lines.cosim_cmd() + ["validate", str(path)], capture_output=True, text=True,
                       timeout=180, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().endswith(")") and ": ok (" in p.stdout
