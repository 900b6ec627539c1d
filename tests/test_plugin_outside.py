"""A spiking backend from outside the cosim package: examples/plugins/cosim-brian2 (Brian2).

The plugin is its own distribution (.ci/run pip-installs it after cosim); nothing under cosim/
or services/ names it. These tests see it only as a user would:

- ``cosim backends`` lists it with its distribution and version;
- ``cosim run`` runs it against TVB (real processes): its HDF5 has spikes and rates, and the
  proxy columns of TVB's tvb.h5 are the values it sent;
- in a mixed run (Brian2 owns region 33, NEST the connected region 34) the plugin's drive is
  TVB's coupling plus NEST's rates through the connectome, to the last bit;
- without Brian2 (the plugin still installed) ``cosim run`` says so in one line with the hint;
- its source imports nothing from ``services.`` (it could not: it lives outside);
- the config in its README validates.

Its own conformance tests (examples/plugins/cosim-brian2/tests) are in the suite's testpaths.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, run_cosim

PLUGIN = REPO / "examples" / "plugins" / "cosim-brian2"
DIST = "cosim-brian2"


def _installed() -> bool:
    try:
        md.version(DIST)
        return True
    except md.PackageNotFoundError:
        return False


def brian2_config(duration_ms: float = 100.0) -> dict:
    return {"run": {"name": "brian2", "duration_ms": duration_ms, "seed": 5},
            "spiking_nodes": [{"name": "spiking", "backend": "brian2", "regions": [33, 71],
                               "params": {"network": {"n_exc": 60, "n_inh": 20}}}]}


@pytest.mark.brian2      # the plugin's distribution installed
def test_the_plugin_is_installed_as_its_own_distribution():
    assert _installed(), f"{DIST} is not installed: pip install {PLUGIN.relative_to(REPO)}"
    eps = [ep for ep in md.entry_points(group="cosim.backends") if ep.name == "brian2"]
    assert len(eps) == 1 and eps[0].value == "cosim_brian2.spec:SPEC"
    assert eps[0].dist.name == DIST, "brian2 must come from the plugin's distribution, not from cosim"
    import cosim
    import cosim_brian2
    assert Path(cosim.__file__).parent not in Path(cosim_brian2.__file__).parents


@pytest.mark.system
@pytest.mark.brian2
def test_cosim_backends_lists_it_with_distribution_and_version():
    p = subprocess.run([sys.executable, "-m", "cosim.cli", "backends"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    line = next((ln for ln in p.stdout.splitlines() if ln.split()[:1] == ["brian2"]), None)
    assert line is not None, p.stdout
    assert DIST in line and md.version(DIST) in line and "[ready]" in line, line
    assert f"Brian2 {md.version('brian2')}" in line, line      # the simulator's version too


@pytest.mark.system
@pytest.mark.brian2
@pytest.mark.tvb
def test_cosim_run_with_the_plugin(tmp_path):
    r = run_cosim(brian2_config(), tmp_path, timeout=300)
    assert r.code == 0, r.stderr[-3000:]
    with h5py.File(r.out / "spiking.h5", "r") as f:
        assert f.attrs["backend"] == "brian2" and f.attrs["status"] == "completed"
        assert f["spikes/t_ms"].shape[0] > 0, "the Brian2 regions never fired"
        assert set(np.unique(f["spikes/region"][:])) == {33, 71}
        steps = f["steps"][:]
        r_exc, R_e, S_e = f["rates/exc"][:], f["output/R_e"][:], f["output/S_e"][:]
        assert r_exc.shape == (steps.size, 2) and r_exc.max() > 0
        assert f["input/rate_hz"][:].max() > 0, "no input reached the spiking regions"
    with h5py.File(r.out / "tvb.h5", "r") as t:
        n = np.rint(t["raw/time_ms"][:] / t.attrs["dt_ms"]).astype(np.int64)
        from_spiking = t["raw/proxy_from_spiking"][:].astype(bool)
        tvb_R, tvb_S = t["raw/R_e"][:][:, [33, 71]], t["raw/S_e"][:][:, [33, 71]]
    row = {int(s): i for i, s in enumerate(steps)}
    rows = [i for i in np.flatnonzero(from_spiking) if int(n[i]) in row]
    assert len(rows) > 0.8 * n.size, "TVB's proxy columns did not come from the Brian2 node"
    idx = [row[int(n[i])] for i in rows]
    assert np.array_equal(tvb_R[rows], R_e[idx]) and np.array_equal(tvb_S[rows], S_e[idx])
    assert tvb_R[rows].max() > 0
    assert (r.out / "spiking_spiking.png").exists()


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.brian2
@pytest.mark.nest
@pytest.mark.tvb
def test_mixed_run_with_nest_feeds_the_plugin_the_nest_region_rates(tmp_path):
    cfg = {"run": {"name": "mixed", "duration_ms": 60.0, "seed": 3},
           "spiking_nodes": [
               {"name": "b2", "backend": "brian2", "regions": [33], "params": {"network": {"n_exc": 40, "n_inh": 12}}},
               {"name": "nest", "backend": "nest", "regions": [34],
                "params": {"network": {"n_exc": 40, "n_inh": 12}, "input": {"weight_uS": 0.01}}}]}
    # made as `cosim run --no-plots` makes it, the services forked from one zygote (conftest.run_warm:
    # TVB, Brian2 and cosim imported once; a forked service computes what a fresh one does); the
    # plugin under `cosim run` as processes of their own: test_cosim_run_with_the_plugin
    from conftest import run_warm
    r = run_warm({"mixed": cfg}, tmp_path, "--no-plots")["mixed"]
    assert r.code == 0, r.stderr[-3000:]
    with h5py.File(r.out / "coordinator.h5", "r") as c:
        tvb = c["signals/tvb/coupling/R_e"]
        tvb_c = tvb[:, list(tvb.attrs["regions"]).index(33)]      # TVB's part, sent one window ahead
        nest_R = c["signals/nest/state/R_e"][:, 0]                 # row j: step j + 1
    with h5py.File(r.out / "b2.h5", "r") as f:
        W, steps, drive = int(f.attrs["steps_per_window"]), f["steps"][:], f["input/coupling"][:, 0]
    from cosim.config import parse_config
    from cosim.sdk.conformance import BackendConformance
    con = BackendConformance().connectome(parse_config(cfg).model_dump(mode="json"))   # as the TVB node built it
    w, d = float(con["weights"][33, 34]), int(con["idelays"][33, 34])
    assert w > 0
    from_nest = drive[W:] - tvb_c[:-W]
    src = steps[W:] - 1 - d                                      # TVB's coupling indexing
    expected = np.where(src >= 1, w * nest_R[np.clip(src - 1, 0, None)], 0.0)
    assert from_nest.max() > 0, "the NEST region's rates never reached the Brian2 region"
    np.testing.assert_allclose(from_nest, expected, rtol=0, atol=1e-9)


@pytest.mark.system
@pytest.mark.brian2
def test_missing_brian2_is_one_line_with_the_install_hint(tmp_path):
    # find_spec("brian2") is None when sys.modules holds None for it: Brian2 "not installed"
    # for the cosim process and every node it starts (PYTHONPATH carries this sitecustomize)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['brian2'] = None\n")
    path = os.pathsep.join(p for p in (str(hide), os.environ.get("PYTHONPATH", "")) if p)
    (tmp_path / "run").mkdir()
    r = run_cosim(brian2_config(20.0), tmp_path / "run", timeout=120, env={"PYTHONPATH": path})
    assert r.code != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "brian2" in lines[0] and "not installed" in lines[0] and "pip install ./examples/plugins/cosim-brian2" in lines[0]


@pytest.mark.unit
def test_the_plugin_imports_nothing_from_services():
    sources = sorted(PLUGIN.rglob("*.py"))
    assert any(p.name == "adapter.py" for p in sources)
    bad = []
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                   [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad += [f"{path.relative_to(REPO)}:{node.lineno} {m}" for m in mods if m.split(".")[0] == "services"]
        # and no "services.x:y" reference for importlib (a spec's params/adapter strings)
        bad += [f"{path.relative_to(REPO)}:{i} {ln.strip()}" for i, ln in enumerate(path.read_text().splitlines(), 1)
                if re.search(r"[\"']services\.\w", ln)]
    assert not bad, "the outside plugin reaches into cosim's services: " + "; ".join(bad)


@pytest.mark.brian2      # the plugin installed (its params validate)
def test_the_readme_config_validates():
    import yaml
    from cosim.config import parse_config
    text = (PLUGIN / "README.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = parse_config(yaml.safe_load(block))
    assert cfg.spiking_nodes[0].backend == "brian2"
