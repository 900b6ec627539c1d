"""The package's layers, and the check that imports only go down (``python tests/layers.py``).

One import package, ``cosim``, whose folders on disk are mapped by setuptools' package-dir
(``proto/`` → ``cosim.proto``, ``services/`` → ``cosim.services``). Every import of every
module is read from its syntax tree, function-level imports included (an import hidden in a
function still ties two modules together), and checked against two rules:

- a module imports only from its own layer or the layers below it;
- no two modules import each other, directly or around a longer loop (module-level cycles).

Import-linter cannot read a package whose folders are mapped, hence this small checker; it runs
in the test suite (tests/test_layers.py) and from the command line.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

#: top to bottom; a module may import from its own layer and every layer below it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cosim.cli",),
    ("cosim.api",),
    ("cosim.launch",),
    ("cosim.results",),
    ("cosim.services",),
    ("cosim.sdk",),
    ("cosim.runtime",),
    ("cosim.config",),
    ("cosim.plugins",),
    ("cosim.proto",),
    ("cosim.errors",),
)
#: where each import name lives in the repository (pyproject.toml's package-dir)
FOLDERS = {"cosim": "cosim", "cosim.proto": "proto", "cosim.services": "services"}


def modules(root: Path) -> dict[str, Path]:
    """Import name → file, for every module of the package in the repository at ``root``."""
    out: dict[str, Path] = {}
    for pkg, folder in FOLDERS.items():
        base = root / folder
        for f in sorted(base.rglob("*.py")):
            rel = f.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg, *parts])
            if pkg == "cosim" and parts and parts[0] in ("proto", "services"):
                continue                      # never on disk here, but keep the mapping authoritative
            out[name] = f
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join(base + ([node.module] if node.module else []))


def imports(root: Path) -> dict[str, set[str]]:
    """Module → the package modules it imports (anywhere in the file)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(mod, is_pkg, node)
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            for n in names:
                while n and n not in mods:            # `import cosim.x.y` names a module or its parent
                    n = n.rpartition(".")[0]
                if n and n != mod and n.startswith("cosim"):
                    graph[mod].add(n)
    return graph


def layer_of(mod: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in layer):
            return i
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a imports b' for every import from a higher layer than a's."""
    bad = []
    for mod, targets in sorted(graph.items()):
        la = layer_of(mod)
        for t in sorted(targets):
            lt = layer_of(t)
            if la is not None and lt is not None and lt < la:
                bad.append(f"{mod} imports {t} (layer {LAYERS[lt][0]} is above {LAYERS[la][0]})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def cli_importers(graph: dict[str, set[str]]) -> list[str]:
    """Modules outside the CLI that import it (only the CLI imports the CLI)."""
    return sorted(m for m, ts in graph.items() if not m.startswith("cosim.cli")
                  and any(t == "cosim.cli" or t.startswith("cosim.cli.") for t in ts))


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parents[1])
    graph = imports(root)
    problems = upward_imports(graph) + [f"cycle: {' -> '.join(c)}" for c in cycles(graph)] \
        + [f"{m} imports the CLI" for m in cli_importers(graph)]
    for p in problems:
        print(p)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports: "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
