"""Every test says what it is (pyproject.toml's markers, read from the syntax tree): ``unit`` or
``system``, or only the simulators it runs in-process; never ``unit`` together with a process or
a simulator. The README's test section names every marker pyproject.toml registers."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.unit]

CATEGORY = {"unit", "system"}


def registered() -> set[str]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return {m.split(":", 1)[0].strip() for m in cfg["markers"]}


def _test_files() -> list[Path]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return sorted(p for root in cfg["testpaths"] for p in (REPO / root).rglob("test_*.py"))


def _marks(node: ast.AST) -> set[str]:
    """Names X of every ``pytest.mark.X`` in an expression or a list of decorators."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"}


def _decorator_marks(fn: ast.FunctionDef | ast.ClassDef) -> set[str]:
    """Marks of the decorators, leaving out those given to single parameters (pytest.param marks)."""
    out: set[str] = set()
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and target.attr != "parametrize":
            out |= _marks(target)
    return out


def _tests_and_marks(path: Path) -> dict[str, set[str]]:
    """test name -> the markers it carries from the module, its class and itself."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            module |= _marks(node.value)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            out[node.name] = module | _decorator_marks(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            cls = module | _decorator_marks(node)
            methods = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
            for m in methods:
                out[f"{node.name}.{m.name}"] = cls | _decorator_marks(m)
            if not methods:                  # inherits its tests (the conformance kit)
                out[node.name] = cls
    return out


def test_every_test_is_marked_unit_system_or_with_its_simulators():
    simulators = registered() - CATEGORY - {"slow", "alone"}
    bad = []
    for path in _test_files():
        for name, marks in _tests_and_marks(path).items():
            where = f"{path.relative_to(REPO)}::{name}"
            if not marks & (CATEGORY | simulators):
                bad.append(f"{where}: no unit/system/simulator marker")
            if "unit" in marks and marks & (simulators | {"system", "slow", "alone"}):
                bad.append(f"{where}: unit, yet {sorted(marks & (simulators | {'system', 'slow', 'alone'}))}")
    assert len(_test_files()) > 40
    assert not bad, "\n".join(bad)


def test_the_checker_sees_marks_where_pytest_does(tmp_path):
    f = tmp_path / "test_x.py"
    f.write_text("import pytest\npytestmark = [pytest.mark.system]\n\n"
                 "@pytest.mark.nest\n@pytest.mark.parametrize('a', [pytest.param(1, marks=pytest.mark.tvb)])\n"
                 "def test_a(a): pass\n\ndef test_b(): pass\n\n"
                 "@pytest.mark.netpyne\nclass TestK(Base):\n    pass\n")
    assert _tests_and_marks(f) == {"test_a": {"system", "nest"}, "test_b": {"system"}, "TestK": {"system", "netpyne"}}


def test_the_readme_names_every_marker():
    text = (REPO / "README.md").read_text()
    section = text.split("## Tests and benchmarks", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(\w+)`", section))
    assert registered() <= named, f"README's test section does not name {sorted(registered() - named)}"
