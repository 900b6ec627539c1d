"""Backends as plugins (cosim/plugins.py): discovery through entry points, `cosim backends`, the
one-line errors for a backend that is unknown or whose simulator is missing, and the core
naming no backend."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cosim import plugins


from cosim.launch import command_lines
REPO = Path(__file__).resolve().parents[1]
BUILTIN = ("nest", "netpyne", "noop", "reference")


def _cli(*args, env=None, cwd=None, timeout=120):
    return subprocess.run(command_lines.cosim_cmd() + list(args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.mark.unit
def test_builtin_backends_are_entry_points_of_cosim():
    reg = plugins.registry()
    for name in BUILTIN:
        assert name in reg, f"{name} not discovered through the cosim.backends entry points"
        assert reg[name].distribution == "brain-cosim" and reg[name].version


@pytest.mark.system
@pytest.mark.nest
@pytest.mark.netpyne
@pytest.mark.tvb
def test_cosim_backends_lists_them_with_versions():
    p = _cli("backends")
    assert p.returncode == 0, p.stderr
    for name in BUILTIN:
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, p.stdout
        assert "brain-cosim 0." in line and "[ready]" in line, line
    nest_line = next(ln for ln in p.stdout.splitlines() if ln.startswith("nest "))
    assert re.search(r"nest-simulator 3\.\d+", nest_line) and "threads" in nest_line, nest_line


@pytest.fixture
def ghost_plugin(tmp_path):
    """A plugin installed the way pip installs one (a .dist-info with entry_points.txt on the path)
    whose simulator is not installed."""
    site = tmp_path / "site"
    dist = site / "cosim_ghost-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cosim-ghost\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[cosim.backends]\nghost = cosim_ghost_spec:SPEC\n")
    (site / "cosim_ghost_spec.py").write_text(textwrap.dedent('''
        from cosim.plugins import BackendSpec
        SPEC = BackendSpec(name="ghost", params="cosim.services.noop_node.adapter:NullParams",
                           adapter="cosim.services.noop_node.adapter:NullSpiking",
                           requires=("ghost_simulator_not_installed",), install="pip install cosim-ghost[sim]")
    '''))
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.mark.system
def test_a_plugin_appears_once_installed(ghost_plugin):
    p = _cli("backends", env=ghost_plugin)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("ghost "))
    assert "cosim-ghost 0.3" in line and "not installed: ghost_simulator_not_installed" in line, line
    assert "pip install cosim-ghost[sim]" in line


@pytest.mark.system
@pytest.mark.nest      # the line lists every installed backend: all four must be
@pytest.mark.netpyne
@pytest.mark.tvb
def test_missing_simulator_is_one_line_naming_the_extra(ghost_plugin, tmp_path):
    p = _cli("run", "--set", "spiking_nodes.0.backend=ghost", "--set", "run.duration_ms=10",
             "--out", str(tmp_path / "out"), env=ghost_plugin, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert "spiking_nodes[0].backend" in lines[0] and "ghost_simulator_not_installed" in lines[0]
    assert "pip install cosim-ghost[sim]" in lines[0]
    assert all(n in lines[0] for n in BUILTIN), "the line lists the installed backends"
    assert not (tmp_path / "out").exists(), "a refused run leaves no results folder"


@pytest.mark.system
@pytest.mark.nest      # the line lists every installed backend: all four must be
@pytest.mark.netpyne
@pytest.mark.tvb
def test_unknown_backend_is_one_line_listing_the_installed(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"spiking_nodes": [{"backend": "neuronn", "regions": [1]}]}))
    p = _cli("validate", str(cfg))
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "spiking_nodes[0].backend" in lines[0] and "'neuronn'" in lines[0], p.stderr
    assert all(n in lines[0] for n in BUILTIN)


@pytest.mark.unit
def test_missing_module_check():
    spec = plugins.BackendSpec(name="x", params="a:b", adapter="a:c", requires=("json", "no_such_mod_xyz"),
                                install="pip install x")
    assert spec.missing() == ["no_such_mod_xyz"]
    with pytest.raises(plugins.UnknownBackend, match="no_such_mod_xyz.*pip install x"):
        spec.ensure_installed()


@pytest.mark.system
@pytest.mark.parametrize("name", BUILTIN)
def test_params_validate_without_the_simulator(name):
    """The coordinator validates every node's params; its image has no simulator."""
    block = "import sys\nfor m in ('neuron', 'netpyne', 'nest', 'tvb'):\n    sys.modules[m] = None\n"
    code = block + f"from cosim import plugins\nprint(plugins.validate_params({name!r}, {{}}))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.unit
@pytest.mark.parametrize("name", BUILTIN)
def test_container_image_follows_compose(name):
    """compose.yaml builds services/<backend>_node/Dockerfile as cosim-<backend>:latest."""
    spec = plugins.get(name)
    assert spec.dockerfile == f"services/{name}_node/Dockerfile" and (REPO / spec.dockerfile).is_file()
    assert spec.image == f"cosim-{name}:latest"
    compose = (REPO / "compose.yaml").read_text()
    assert "dockerfile: services/${COSIM_BACKEND:-netpyne}_node/Dockerfile" in compose
    assert "image: cosim-${COSIM_BACKEND:-netpyne}:latest" in compose


@pytest.mark.unit
def test_core_names_no_backend():
    """cosim/ imports no spiking backend and uses no backend's name as a value in code (docstrings
    and comments may mention them); the one name is the documented default of the config."""
    import ast
    hits = []
    for f in sorted((REPO / "cosim").glob("*.py")):
        tree = ast.parse(f.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mod = node.module if isinstance(node, ast.ImportFrom) else ",".join(a.name for a in node.names)
                names = {a.name for a in node.names}
                if re.search(r"services\.(netpyne|nest|reference)_node", mod or "") or \
                        (re.search(r"services\.noop_node", mod or "") and names != {"NullTVB"}):
                    hits.append(f"{f.name}:{node.lineno}: import {mod}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if node.value in ("netpyne", "nest", "reference") and f.name != "config.py":
                    hits.append(f"{f.name}:{node.lineno}: {node.value!r}")
    assert not hits, "\n".join(hits)
