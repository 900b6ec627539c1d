"""Edges of the window arithmetic (issue "Reliability II" §2): a run where nothing crosses between
nodes, the smallest delay of 0 steps, and a duration that is not a whole number of windows
(windows stay whole: the run ends with its last window, and says so)."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from conftest import noop_config
import pytest

pytestmark = [pytest.mark.system]

PY = [sys.executable, "-m", "cosim.cli"]


def test_nothing_crossing_runs_in_ordinary_windows(cosim):
    """No connection between the spiking regions and the rest: any window is causal. Before, the
    whole run became one window (no progress, no temporal average) and the coordinator's log line
    raised a TypeError ('%d' with None)."""
    cfg = noop_config(duration_ms=50, connected=False)
    r = cosim(cfg, "--no-plots", timeout=120)
    assert r.code == 0, r.stderr
    s = json.loads((r.out / "summary.json").read_text())
    assert s["windows"] == 5 and s["steps_per_window"] == 100, s      # 10 ms windows (the cap)
    log = (r.out / "logs" / "coordinator.log").read_text()
    assert "Logging error" not in log and "TypeError" not in log, log
    assert "nothing crosses between nodes" in log, log


@pytest.mark.tvb
def test_smallest_delay_of_zero_steps_is_named_as_such(tmp_path):
    """Conduction so fast that every delay rounds to 0 steps: the largest causal window is 1 step;
    the refusal says the delay is 0 steps (it said '1 steps')."""
    cfg = {"run": {"duration_ms": 20, "window_ms": 0.2},
           "tvb": {"conduction_speed_mm_per_ms": 1e6},
           "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}]}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(PY + ["validate", str(p)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    line = [l for l in r.stderr.splitlines() if l.startswith("cosim")][0]
    assert "0 steps" in line and "1 step " in line and "1 steps" not in line, line


def test_duration_not_a_whole_number_of_windows_is_said(cosim):
    """3.3 ms with 1.6 ms windows (noop: 16 steps). Windows stay whole (every adapter steps W at a
    time; a shorter last window is not implemented), so the run ends at 4.8 ms: the summary
    carries both numbers, the printed summary and the coordinator's log say so."""
    r = cosim(noop_config(duration_ms=3.3), "--no-plots", timeout=120)
    assert r.code == 0, r.stderr
    s = json.loads((r.out / "summary.json").read_text())
    assert s["duration_ms"] == 3.3 and abs(s["simulated_ms"] - 4.8) < 1e-9, s
    assert "run.duration_ms 3.3 ms is not a whole number of windows" in r.stdout, r.stdout
    assert "simulating 4.8 ms (3 windows)" in (r.out / "logs" / "coordinator.log").read_text()
