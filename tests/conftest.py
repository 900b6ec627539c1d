"""Shared fixtures (run `cosim` as a real subprocess with a config written from a dict) and the
test markers' meaning: a test marked with a simulator (or tool) that this machine lacks is skipped
with the reason, before it imports anything (pyproject.toml registers the markers; README, "Tests
and benchmarks", lists them). In CI (``CI`` set) nothing is skipped for a missing simulator: the
test runs and fails on the import, so a green CI never hides a missing install step.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO.parent / "shared" / "tools" / "compose"     # this machine's compose wrapper (podman)


def _missing_modules(*names: str) -> str | None:
    """None if every module can be found (found, not imported: importing TVB takes seconds).
    A namespace package does not count: tests/nest and tests/netpyne are folders on sys.path, so
    without NEST ``import nest`` finds tests/nest (an installed package always wins over them)."""
    gone = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
            found = spec is not None and spec.origin is not None
        except (ImportError, ValueError):        # a parent package missing, or hidden
            found = False
        if not found:
            gone.append(name)
    return f"{', '.join(gone)} not installed" if gone else None


def _missing_programs(*names: str) -> str | None:
    gone = [n for n in names if shutil.which(n) is None]
    return f"{', '.join(gone)} not on PATH" if gone else None


def _netns() -> str | None:
    try:
        from netns import available
    except ImportError:
        from tests.netns import available
    return available()          # root, iproute2, and a namespace can be made


def _compose() -> str | None:
    if not COMPOSE.is_file():
        return f"{COMPOSE} not found (this machine's compose wrapper)"
    return _missing_programs("podman")


#: marker -> what it needs: a function giving None when present, else the reason it is missing
NEEDS = {
    "tvb": lambda: _missing_modules("tvb.simulator", "tvb_data"),
    "netpyne": lambda: _missing_modules("netpyne", "neuron"),
    "nest": lambda: _missing_modules("nest"),
    "brian2": lambda: _missing_modules("brian2", "cosim_brian2"),
    "mpi": lambda: _missing_programs("mpiexec") or _missing_modules("mpi4py"),
    "dask": lambda: _missing_modules("distributed", "h5netcdf"),
    "netns": _netns,
    "compose": _compose,
}


def _cpu_s() -> float:
    """CPU seconds of this process and of every child it has waited for (services, mpiexec ranks),
    and of the live zygotes of run_cli_warm with the commands they forked and waited for (a zygote
    is waited for only after its test module: its CPU goes to the tests it works for)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN))) \
        + sum(_proc_cpu_s(z.proc.pid) for z in _cli_zygotes.values())   # type: ignore[attr-defined]


def _proc_cpu_s(pid: int) -> float:
    """utime + stime + cutime + cstime of a live process (/proc/PID/stat), 0 if it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def require(marker: str) -> None:
    """For a test module that imports a simulator (or a module importing one) at import time,
    called before those imports: skips the whole module, with the reason, where the simulator is
    missing. In CI it does nothing, so the import fails loudly."""
    why = None if os.environ.get("CI") else NEEDS[marker]()
    if why:
        pytest.skip(f"needs {marker}: {why}", allow_module_level=True)


class _Durations:
    """Each test's CPU seconds (setup, call, teardown) go into the JUnit XML beside its wall time
    (property ``cpu_s``), and ``--slowest N`` prints the N slowest tests with both: on a shared
    machine the wall time says how busy the machine was, the CPU time what the test costs. A
    plugin object, so that it sees every test, the brian2 plugin's outside tests/ too."""

    def __init__(self):
        self.start: dict[str, float] = {}
        self.rows: dict[str, list] = {}          # nodeid -> [wall s, CPU s, outcome]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        self.start[item.nodeid] = _cpu_s()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        if call.when == "teardown" and item.nodeid in self.start:
            cpu = _cpu_s() - self.start.pop(item.nodeid)
            item.user_properties.append(("cpu_s", f"{cpu:.2f}"))
            self.rows.setdefault(item.nodeid, [0.0, 0.0, "passed"])[1] = cpu
        yield

    def pytest_runtest_logreport(self, report):
        row = self.rows.setdefault(report.nodeid, [0.0, 0.0, "passed"])
        row[0] += report.duration
        if report.when == "teardown":     # under pytest-xdist the worker measured it: it comes with the report
            row[1] = next((float(v) for k, v in report.user_properties if k == "cpu_s"), row[1])
        if report.outcome != "passed" and row[2] == "passed":
            row[2] = report.outcome

    def pytest_terminal_summary(self, terminalreporter, config):
        n = config.getoption("slowest")
        if not n or not self.rows:
            return
        wall, cpu = (sum(r[i] for r in self.rows.values()) for i in (0, 1))
        tr = terminalreporter
        tr.section(f"slowest {min(n, len(self.rows))} tests (wall and CPU seconds; CPU counts child processes)")
        tr.write_line(f"all {len(self.rows)} tests: {wall:.0f} s wall, {cpu:.0f} s CPU")
        for nodeid, (w, c, outcome) in sorted(self.rows.items(), key=lambda kv: -kv[1][0])[:n]:
            tr.write_line(f"{w:8.1f} {c:8.1f}  {nodeid}{'' if outcome == 'passed' else f'  ({outcome})'}")


def pytest_addoption(parser):
    parser.addoption("--slowest", type=int, default=0, metavar="N",
                     help="print the N slowest tests with their wall and CPU seconds")
    parser.addoption("--alone", choices=("with-others", "skip", "only"), default="with-others",
                     help="tests marked `alone` (timing-sensitive): run them with the others (default), leave "
                          "them out, or run only them. .ci/run runs the others two test files at a time "
                          "(pytest-xdist) with --alone=skip, then --alone=only in one process")


def pytest_configure(config):
    config.pluginmanager.register(_Durations(), "cosim-durations")


@pytest.hookimpl(trylast=True)      # after -m/-k deselection: probe only what the selected tests need
def pytest_collection_modifyitems(config, items):
    alone = config.getoption("alone")
    if alone != "with-others":       # deselected, as -m does: they are not skipped, they run in the other call
        keep = [i for i in items if (i.get_closest_marker("alone") is not None) == (alone == "only")]
        if len(keep) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in keep])
            items[:] = keep
    if os.environ.get("CI"):
        return
    why: dict[str, str | None] = {}
    for item in items:
        for name in NEEDS:
            if item.get_closest_marker(name) is not None:
                if name not in why:
                    why[name] = NEEDS[name]()
                if why[name]:
                    item.add_marker(pytest.mark.skip(reason=f"needs {name}: {why[name]}"))


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


def run_warm(cfgs: dict[str, dict], tmp: Path, *args: str, timeout: float = 300,
             env: dict | None = None) -> dict[str, Result]:
    """Several `cosim run`s made as `run_cosim` makes one (results in tmp/KEY/out), but with every
    service forked from one zygote (cosim.launch.starters.Warm, what a warm sweep uses), so TVB,
    NEURON and cosim are imported once for all the runs instead of once per service per run. The
    runs are the ordinary ones (cosim.launch.run.start, as `cosim run`; a forked service computes
    what a fresh process computes: tests/test_starters.py); the test CPU goes to the simulations.
    Only `--no-plots` of `cosim run`'s options is understood. Runs one after the other; the zygotes
    they started are closed (and waited for) before returning. A run still going after `timeout` s
    is stopped (SIGTERM to its coordinator: it aborts, exit non-zero).

    The launcher is this process, except for a config with a `model_file` node: `cosim run` checks
    a model file before any service starts by loading it in the launcher (NEURON, the model's
    mechanisms), so those runs are launched by a process forked from run_cli_warm's zygote
    (tests/warmlaunch/warm_run.py, the same launch), working folder tmp/KEY, this process's
    environment plus `env` (`env` only there)."""
    import io

    from cosim.launch import starters
    if str(REPO / "tests" / "warmlaunch") not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "warmlaunch"))
    import warm_run
    assert set(args) <= {"--no-plots"}, args
    forked = any("model_file" in (n.get("params") or {}) for c in cfgs.values() for n in c.get("spiking_nodes", []))
    assert forked or not env, "run_warm: env is for the runs launched by a forked process (model_file nodes)"
    results = {}
    try:
        for key, cfg in cfgs.items():
            d = tmp / key
            d.mkdir(parents=True, exist_ok=True)
            cfg = {**cfg, "run": {"results_dir": str(d), "progress": False, **cfg.get("run", {})}}
            path = d / "config.yaml"
            path.write_text(yaml.safe_dump(cfg))
            if forked:
                p = _fork_warm([str(timeout), str(path), str(d / "out"), *args], d, env, timeout + 60,
                               module="warm_run")
                results[key] = Result(p.returncode, p.stdout, p.stderr, d / "out")
                continue
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = warm_run.run(str(path), str(d / "out"), "--no-plots" in args, timeout)
            results[key] = Result(code, out.getvalue(), err.getvalue(), d / "out")
    finally:
        with starters._zygotes_lock:
            zygotes = list(starters._zygotes.values())
            starters._zygotes.clear()
        for z in zygotes:
            z.close()
    return results


_cli_zygotes: dict[tuple, object] = {}


def run_cli_warm(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300,
                 preload: tuple[str, ...] | None = None) -> subprocess.CompletedProcess:
    """`python -m cosim.cli ARGS` as a subprocess runs it (working folder `cwd`, this process's
    environment plus `env`, stdout and stderr apart, the exit code; after `timeout` s it is killed
    and subprocess.TimeoutExpired raised, as subprocess.run does), but forked from a zygote
    (cosim.launch.zygote) that imported cosim's command line, TVB and NetPyNE/NEURON once per test
    module: the child runs cosim.cli as `__main__` (runpy), the command a user types, and nothing
    but imports ran before it, so it prints and exits as a fresh process does. For commands that
    load a model file in the launcher (`cosim validate`, `build`, `run`'s check): each fresh one
    paid 2-3 CPU-s importing NetPyNE and NEURON. `cosim run`'s services are still its own child
    processes (LocalProcess), fresh as ever. `preload`: the zygote's modules instead (e.g.
    ``("cosim.cli.commands",)`` for dozens of `cosim validate` refusals of noop configs: a lighter
    zygote costs less than the imports it saves there)."""
    return _fork_warm(list(args), cwd, env, timeout, preload=preload)


def _fork_warm(args: list[str], cwd: Path, env: dict | None, timeout: float,
               module: str | None = None, preload: tuple[str, ...] | None = None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` (default cosim.cli) forked from this process's warm zygote (started
    on first use, closed after the test module's last test; tests/warmlaunch on its path, not on
    its children's environment)."""
    import signal
    import tempfile
    import time

    from cosim.launch import starters
    from cosim.launch.zygote import Zygote
    modules = list(preload) if preload else starters.preload_modules({"netpyne"}, {"tvb"}) + ["cosim.launch.run", "warm_run"]
    key = tuple(modules)
    z = _cli_zygotes.get(key)
    if z is None or not z.alive():      # type: ignore[attr-defined]
        path = os.pathsep.join(x for x in (str(REPO / "tests" / "warmlaunch"), os.environ.get("PYTHONPATH")) if x)
        z = _cli_zygotes[key] = Zygote(modules, {**os.environ, "PYTHONPATH": path}, starters.die_with_parent([]))
    argv = ["cosim", *args] if module is None else [module, *args]
    with tempfile.TemporaryDirectory(prefix="cosim-cli-") as d:
        out, err = Path(d) / "stdout", Path(d) / "stderr"
        pid = z.fork(list(args), {**os.environ, **(env or {})}, out, err=err, cwd=cwd,   # type: ignore[attr-defined]
                     module=module)
        end = time.monotonic() + timeout
        while (code := z.poll(pid)) is None:     # type: ignore[attr-defined]
            if time.monotonic() > end:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while z.poll(pid) is None:       # type: ignore[attr-defined]
                    time.sleep(0.05)
                raise subprocess.TimeoutExpired(argv, timeout, out.read_text(), err.read_text())
            time.sleep(0.02)
        return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"), err.read_text(errors="replace"))


def _close_cli_zygotes() -> None:
    for z in _cli_zygotes.values():
        z.close()                        # type: ignore[attr-defined]
    _cli_zygotes.clear()


def pytest_runtest_teardown(item, nextitem):
    """A test module's warm zygote ends with the module (a few hundred MB of TVB and NetPyNE not
    held for the rest of the session; its CPU goes to the module's tests)."""
    if _cli_zygotes and (nextitem is None or nextitem.module is not item.module):
        _close_cli_zygotes()


def pytest_sessionfinish(session, exitstatus):
    _close_cli_zygotes()


@pytest.fixture
def cosim(tmp_path):
    def _run(cfg: dict, *args: str, **kw) -> Result:
        return run_cosim(cfg, tmp_path, *args, **kw)
    return _run


def noop_config(duration_ms: float = 50, regions=(3, 5), **params) -> dict:
    return {"run": {"name": "noop", "duration_ms": duration_ms},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": list(regions), "params": params}],
            "coordinator": {"heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 2000}}
