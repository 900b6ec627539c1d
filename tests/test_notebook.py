"""examples/cosim_tour.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel).

Any cell that raises (including the notebook's own asserts) fails this test with the cell's
source and traceback. Runs are shortened through COSIM_NOTEBOOK_DURATION_MS.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.netpyne, pytest.mark.tvb]

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "cosim_tour.ipynb"


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    # the kernel is a child process: it inherits this environment (and this checkout, first on its path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("COSIM_NOTEBOOK_DURATION_MS", "150")
    monkeypatch.setenv("COSIM_NOTEBOOK_OUT", str(tmp_path / "results"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"a notebook cell failed:\n{e}", pytrace=False)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5, f"expected the comparison plots and the run's figures inline, got {len(images)} images"
    assert (tmp_path / "results" / "netpyne.nwb").exists()
    assert (tmp_path / "results" / "reference" / "tvb.h5").exists()
