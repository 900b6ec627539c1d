"""Shared fixtures: run `cosim` as a real subprocess with a config written from a dict."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str
    out: Path


def run_cosim(cfg: dict, tmp: Path, *args: str, timeout: float = 300, env: dict | None = None) -> Result:
    """`cosim run` on `cfg` with results in tmp/out; never leaves a process behind."""
    path = tmp / "config.yaml"
    cfg = {**cfg, "run": {"results_dir": str(tmp), "progress": False, **cfg.get("run", {})}}
    path.write_text(yaml.safe_dump(cfg))
    out = tmp / "out"
    p = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(path), "--out", str(out), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=tmp,
                       env={**os.environ, **(env or {})})
    return Result(p.returncode, p.stdout, p.stderr, out)


@pytest.fixture
def cosim(tmp_path):
    def _run(cfg: dict, *args: str, **kw) -> Result:
        return run_cosim(cfg, tmp_path, *args, **kw)
    return _run


def noop_config(duration_ms: float = 50, regions=(3, 5), **params) -> dict:
    return {"run": {"name": "noop", "duration_ms": duration_ms},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": list(regions), "params": params}],
            "coordinator": {"heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 2000}}
