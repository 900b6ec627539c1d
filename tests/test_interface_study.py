"""The interface sensitivity study's small version (CI): one command writes the table, the JSON and
the figure, and they agree with each other (examples/interface_study.py, docs/science.md)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.netpyne, pytest.mark.tvb, pytest.mark.dask]

REPO = Path(__file__).resolve().parents[1]


def test_small_study_writes_a_consistent_table_and_figure(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "examples" / "interface_study.py"), "--small", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    md, js, png = tmp_path / "study.md", tmp_path / "study.json", tmp_path / "study.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(js.read_text())
    runs, cols = data["runs"], data["columns"]
    assert len(runs) == 3 and all(len(v) == 2 for v in runs.values()) and data["seeds"] == [42, 43]
    assert cols == ["E 33 (Hz)", "E 71 (Hz)", "I 33 (Hz)", "I 71 (Hz)", "TVB R_e (Hz)"]
    rows = [ln for ln in md.read_text().splitlines() if ln.startswith("| ") and not ln.startswith("| choice")]
    assert len(rows) == 3
    for row, (name, rs) in zip(rows, runs.items()):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == name
        for cell, col in zip(cells[1:], cols):
            m, sd = map(float, re.fullmatch(r"(-?[\d.]+) ± ([\d.]+)", cell).groups())
            v = np.array([r[col] for r in rs])
            assert abs(m - v.mean()) <= 0.006 and abs(sd - v.std(ddof=1)) <= 0.006, (name, col, cell, v)
            assert np.isfinite(v).all() and (v >= 0).all()
    tvb = {n: np.mean([r["TVB R_e (Hz)"] for r in rs]) for n, rs in runs.items()}
    names = list(runs)
    assert tvb[names[0]] > 0 and tvb[names[2]] != tvb[names[0]], "zero vs random initial history must show in TVB"
