"""The docs say what the code does: where a document lists what code defines (commands, message
types, exit codes, environment variables, the package's layers, files), it is checked here
against the code, and the claims once found false are tied to the code facts they depend on."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import layers

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
PROTOCOL = (REPO / "proto" / "PROTOCOL.md").read_text()
DOCS = {p.relative_to(REPO).as_posix(): p.read_text() for p in [REPO / "README.md", REPO / "proto" / "PROTOCOL.md",
                                                                 *sorted((REPO / "docs").glob("*.md"))]}

pytestmark = pytest.mark.unit


def _subcommands() -> dict[str, set[str]]:
    """CLI subcommand -> its option strings."""
    import argparse

    from cosim.cli import build_parser
    top = build_parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    common = {o for act in top._actions for o in act.option_strings}      # `cosim --log-level L <command>`
    return {name: common | {o for act in p._actions for o in act.option_strings} for name, p in sub.choices.items()}


def test_readme_lists_every_command_and_only_those():
    block = README.split("## Commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    listed = {m.group(1) for m in re.finditer(r"^cosim ([a-z-]+)", block, re.M)}
    assert listed == set(_subcommands())


def test_exit_codes_in_the_readme_are_the_codes_of_cosim_errors():
    from cosim import errors
    line = re.search(r"Exit codes: (.*?)Nothing is left running", README, re.S).group(1)
    codes = {int(c) for c in re.findall(r"(?<![\w.])(\d{1,3}) (?:completed|the run failed|bad\s+configuration|interrupted)",
                                        line)}
    assert codes == {errors.EXIT_OK, errors.EXIT_FAILED, errors.EXIT_CONFIG, errors.EXIT_INTERRUPTED}


def test_the_error_tree_in_cosim_errors_gives_each_class_its_code():
    from cosim import errors
    rows = re.findall(r"^\s*[│├└─ ]*(\w+)\s+(\d+(?: or \d+)?)\s", errors.__doc__, re.M)
    assert len(rows) >= 15, rows
    for name, code in rows:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.CosimError), name
        if " or " not in code:
            assert cls.exit_code == int(code), (name, cls.exit_code, code)
    documented = {name for name, _ in rows}
    defined = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.CosimError)}
    assert documented == defined


def test_protocol_message_table_lists_every_message_type():
    from cosim.proto.messages import MessageType
    table = PROTOCOL.split("## 6. Messages", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M))
    broadcast = {MessageType.PROGRESS.value, MessageType.EVENT.value}     # PUB only: §6.1
    assert listed == {t.value for t in MessageType} - broadcast
    assert all(f"`{b}`" in PROTOCOL.split("### 6.1", 1)[1] for b in broadcast)


def test_every_environment_variable_in_deployment_md_is_a_flag_the_code_reads():
    doc = (REPO / "docs" / "deployment.md").read_text()
    table = doc.split("Every flag has an environment variable", 1)[1].split("\n|", 1)[1].split("\n\n", 1)[0]
    table = "|" + table
    rows = [r for r in table.splitlines() if r.startswith("| `COSIM_")]
    assert len(rows) >= 10, rows
    subs = _subcommands()
    source = "\n".join(p.read_text() for p in (REPO / "cosim").rglob("*.py"))
    who = {"nodes": ["tvb-node", "spiking-node"], "spiking node": ["spiking-node"], "TVB node": ["tvb-node"],
           "coordinator": ["coordinator"], "all": ["coordinator", "tvb-node", "spiking-node"]}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        variables = re.findall(r"`(COSIM_\w+)`", cells[0])
        flags = re.findall(r"`(--[\w-]+)`", cells[1])
        for v in variables:
            assert f'"{v}"' in source, f"{v} is documented but no code reads it"
        for cmd in who[cells[2]]:
            for f in flags:
                assert f in subs[cmd], f"docs/deployment.md: `cosim {cmd}` has no {f} ({row})"


def test_the_readme_layout_table_is_the_package_layers():
    table = README.split("| import name | path | what |", 1)[1].split("\n\n", 1)[0]
    listed = [m.group(1) for m in re.finditer(r"^\| `(cosim[\w.]*)` \|", table, re.M)]
    assert listed == [layer[0] for layer in layers.LAYERS]


def test_every_file_the_docs_name_exists():
    missing = []
    for doc, text in DOCS.items():
        for m in re.finditer(r"`((?:cosim|services|proto|tests|bench|examples|docs|deploy)/[\w./-]+\.(?:py|md|yaml|toml|mod|ipynb|json|sh))`",  # noqa: E501
                             text):
            if not (REPO / m.group(1)).exists():
                missing.append(f"{doc}: {m.group(1)}")
    assert missing == []


# ---- claims once false, tied to the code facts they depend on ------------------------------
def _classes() -> dict[str, tuple[str, list[str]]]:
    """Class name -> (module, base names) for every class of the package."""
    out = {}
    for mod, path in layers.modules(REPO).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                out[f"{mod}.{node.name}"] = (mod, [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases])
    return out


def test_every_exception_of_the_package_is_in_the_one_hierarchy():
    """'Every anticipated way a service or run ends early is one exception of cosim.errors'."""
    from cosim import errors
    ours = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}
    import builtins
    builtin = {n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
               and issubclass(getattr(builtins, n), BaseException)}
    classes = _classes()
    by_name: dict[str, list[str]] = {}
    for full, (_, bases) in classes.items():
        by_name.setdefault(full.rsplit(".", 1)[1], bases)

    def roots(name: str, seen=()) -> set[str]:
        if name in ours:
            return {"cosim.errors"}
        if name in builtin:
            return {name}
        if name in seen or name not in by_name:
            return set()
        return set().union(*(roots(b, seen + (name,)) for b in by_name[name])) if by_name[name] else set()

    outside = [full for full, (mod, bases) in classes.items()
               if mod != "cosim.errors" and (r := roots(full.rsplit(".", 1)[1])) and "cosim.errors" not in r]
    assert outside == []


def test_only_the_cli_turns_errors_into_exit_codes():
    """No module but the CLI exits or returns an exit code (cosim.errors carries it)."""
    bad = []
    for mod, path in layers.modules(REPO).items():
        if mod.startswith("cosim.cli") or mod == "cosim.errors":
            continue
        tree = ast.parse(path.read_text())
        main_guard = {id(n) for top in tree.body if isinstance(top, ast.If) and "__main__" in ast.unparse(top.test)
                      for n in ast.walk(top)}
        for node in ast.walk(tree):
            if id(node) in main_guard:        # a module's own `python -m` entry point
                continue
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "os._exit", "exit", "SystemExit"):
                bad.append(f"{mod}:{node.lineno}: {ast.unparse(node)}")
            if isinstance(node, ast.Return) and node.value is not None:
                v = ast.unparse(node.value)
                if v in ("130", "EXIT_INTERRUPTED", "EXIT_CONFIG", "EXIT_FAILED") or v.startswith("errors.EXIT_"):
                    bad.append(f"{mod}:{node.lineno}: return {v}")
    assert bad == []


def test_swmr_is_claimed_for_the_file_that_is_swmr():
    """README: 'coordinator.h5 is in SWMR mode' -- and only the coordinator's record asks for it."""
    assert "coordinator.h5 is in SWMR mode" in README
    users = sorted({mod for mod, path in layers.modules(REPO).items() for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("Appender")
                    and any(k.arg == "swmr" and ast.unparse(k.value) == "True" for k in node.keywords)})
    assert users == ["cosim.services.coordinator.record"]


def test_heartbeat_claims_match_how_heartbeats_run():
    """A heartbeat served from a Python thread can be starved by a call holding the GIL; the
    protocol document must say so, and must not promise it never waits for a step."""
    from cosim.runtime import transport
    src = Path(transport.__file__).read_text()
    if "threading.Thread" in src and "zmq.proxy" not in src and "zmq.device" not in src:
        assert "never wait for a simulation step" not in PROTOCOL
        assert "GIL" in PROTOCOL.split("## 8. Heartbeats", 1)[1].split("\n## ", 1)[0]


def test_the_run_diagram_shows_no_fixed_ports():
    """`cosim run` picks free ports (cosim.launch.run.start, held until the coordinator binds them):
    its diagram shows none."""
    block = README.split("## What runs", 1)[1].split("```", 2)[1]
    assert not re.search(r":\d{4}", block), block
    src = (REPO / "cosim" / "launch" / "run.py").read_text()
    assert "held.pick()" in src.split("def start(", 1)[1].split("\ndef ", 1)[0]
