"""The package is one import package whose imports only go down its layers, with no cycles
(tests/layers.py reads every import from the syntax tree, function-level ones included)."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

import layers

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.unit


def test_imports_only_go_down_the_layers():
    graph = layers.imports(REPO)
    assert len(graph) > 50, "the checker found the package's modules"
    assert layers.upward_imports(graph) == []


def test_no_import_cycles_function_level_imports_included():
    assert layers.cycles(layers.imports(REPO)) == []


def test_only_the_cli_imports_the_cli():
    assert layers.cli_importers(layers.imports(REPO)) == []


def test_the_checker_sees_a_function_level_upward_import(tmp_path):
    """The check can fail: a function-level import of the CLI from the runtime is caught, and so is
    the cycle it makes with a module-level import back."""
    for _pkg, folder in layers.FOLDERS.items():
        (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / "cosim" / "__init__.py").write_text("")
    (tmp_path / "cosim" / "runtime").mkdir()
    (tmp_path / "cosim" / "runtime" / "__init__.py").write_text("")
    (tmp_path / "cosim" / "runtime" / "node.py").write_text("def f():\n    from cosim.cli import main\n")
    (tmp_path / "cosim" / "cli").mkdir()
    (tmp_path / "cosim" / "cli" / "__init__.py").write_text("from cosim.runtime import node\ndef main(): pass\n")
    graph = layers.imports(tmp_path)
    assert layers.upward_imports(graph) == ["cosim.runtime.node imports cosim.cli (layer cosim.cli is above cosim.runtime)"]
    assert layers.cycles(graph) == [["cosim.cli", "cosim.runtime.node"]]
    assert layers.cli_importers(graph) == ["cosim.runtime.node"]


def test_every_package_folder_is_in_the_wheel():
    """pyproject.toml lists packages by hand (package-dir maps proto/ and services/): every folder
    with an __init__.py is listed, and every listed package exists."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {"cosim": "cosim", "cosim.proto": "proto", "cosim.services": "services"}
    on_disk = {name for name, path in layers.modules(REPO).items() if path.name == "__init__.py"}
    assert set(cfg["packages"]) == on_disk


def test_every_module_has_a_docstring():
    """One concept per module, said at the top (STYLE.md)."""
    missing = [name for name, path in layers.modules(REPO).items()
               if path.name != "__init__.py" and path.stat().st_size and not ast.get_docstring(ast.parse(path.read_text()))]
    assert missing == []
