"""Starters: one interface for the ways a service of a run is started (as mosaik's starters share one).

A run is a coordinator, a TVB node and one or more spiking nodes, each described by a
:class:`ServiceSpec`. A :class:`Starter` starts one and returns a :class:`Started` handle that
the run's supervisor (cosim.launch.run.Launch) treats the same whatever started it:

- :class:`LocalProcess`: a child process of this one (`cosim run`, the default): ``python -m
  cosim.cli ...``, under ``mpiexec`` for a node with several MPI ranks, tied to this process by
  PR_SET_PDEATHSIG, its output in ``<results>/logs/<name>.log``;
- :class:`Warm`: the same services, forked from a zygote that imported what they use once
  (cosim.launch.zygote): for many runs from one long-lived process (`cosim sweep`'s workers);
- :class:`Thread`: a thread of this process, around adapters the caller may build itself
  (cosim.launch.inprocess: the exactness tests, notebooks), on ZeroMQ's ``inproc://`` transport;
- :class:`Container`: a container of the service's image (``podman``/``docker run --network
  host``), the results folder mounted at the same path.
"""
from __future__ import annotations

import abc
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from cosim.launch import command_lines


@dataclass
class ServiceSpec:
    """One service of a run, independent of how it is started.

    ``role`` is "coordinator", "tvb" or "spiking"; ``args`` are the `cosim` subcommand and its
    options (``["coordinator", CONFIG, "--out", DIR]``, ``["spiking-node", "--coordinator", ...]``);
    ``entry`` is a spiking node's config entry (its MPI ranks and threads); ``log`` the file that
    receives the service's output (a local process). ``options`` hold the same things as
    keyword arguments for a starter that calls the service in-process (cosim.launch.service)."""
    name: str
    role: str
    args: list[str]
    backend: str = ""
    entry: Any = None
    log: Path | None = None
    append_log: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # address -> descriptor of a listening socket the launcher holds for this service (the
    # coordinator's free loopback ports): a starter that ``passes_listen_fds`` hands them over
    listen_fds: dict[str, int] = field(default_factory=dict)


class Started(abc.ABC):
    """A started service: poll it, signal it, wait for it, and say why it failed."""
    name: str

    @abc.abstractmethod
    def poll(self) -> int | None:
        """Its exit code once it has ended (negative: killed by that signal), else None."""

    @abc.abstractmethod
    def signal(self, sig: int) -> None:
        """SIGTERM asks it to abort the run and keep its results; SIGKILL ends it at once."""

    def wait(self, timeout: float | None = None) -> int | None:
        import time
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None and (end is None or time.monotonic() < end):
            time.sleep(0.05)
        return self.poll()

    def last_error_line(self) -> str:
        """The one-line reason it gave for failing ("" if none)."""
        return ""

    def close(self) -> None:  # noqa: B027 (optional: most starters hold nothing)
        """Release what it holds (log files); after it has ended."""


class Starter(abc.ABC):
    """Starts services. ``prepare(specs)`` sees every service of the run first (e.g. to bind
    in-process addresses); ``start`` is called coordinator first. A starter that
    ``passes_listen_fds`` gives a service the listening sockets of its ``listen_fds`` (the
    coordinator binds its ZeroMQ sockets on them: ZMQ_USE_FD), so a port the launcher picked
    stays held from the pick on and can never be taken by another process meanwhile."""
    passes_listen_fds = False

    def prepare(self, specs: list[ServiceSpec]) -> None:   # noqa: B027  (optional hook)
        pass

    @abc.abstractmethod
    def start(self, spec: ServiceSpec) -> Started:
        ...


# --------------------------------------------------------------------------- local processes
def die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the child gets SIGTERM when the thread that started it dies
    (PR_SET_PDEATHSIG, set by util-linux's ``setpriv`` before it execs ``argv``; the setting
    survives exec). No Python code runs between fork and exec (``preexec_fn`` is not safe in a
    process with threads, such as a Jupyter kernel). Without ``setpriv`` the child is not tied."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def last_error_line(log_path: Path) -> str:
    """The one-line reason a service gave for failing, from its log ("" if none)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # the service's own one-line reason, not where its results are nor that there are none (a line
    # printed after the reason: when the status marker could not be written, e.g. a full disk, this
    # line is the reason a launcher reports)
    for line in reversed(lines):
        if line.startswith("cosim") and not line.split(": ", 1)[-1].startswith(("results ", "run '",
                                                                               "no window completed")):
            return line
    # no line of ours: the last error, never an arbitrary INFO line
    for line in reversed(lines):
        if " ERROR " in line or " CRITICAL " in line or (line and not line[0].isspace() and "Error" in line):
            return line.strip()
    return ""


class Process(Started):
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None, append: bool = False,
                 pass_fds: tuple[int, ...] = ()):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "ab" if append else "wb")
        self.proc = subprocess.Popen(die_with_parent(argv), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,   # its own process group
                                     env={**(env or command_lines.service_env()), "COSIM_LOG_FILE": str(log_path)},
                                     pass_fds=pass_fds)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def last_error_line(self) -> str:
        return last_error_line(self.log_path)

    def close(self) -> None:
        self.log.close()


class LocalProcess(Starter):
    """Every service as a child process of this one (`cosim run`)."""
    passes_listen_fds = True

    def __init__(self, log_level: str | None = None):
        self.log_level = log_level

    def argv(self, spec: ServiceSpec) -> list[str]:
        argv = command_lines.cosim_cmd(self.log_level) + list(spec.args)
        if spec.role == "spiking" and spec.entry is not None:
            argv = command_lines.mpi_prefix(spec.entry) + argv
        return argv

    def start(self, spec: ServiceSpec) -> Started:
        env = command_lines.spiking_env(spec.entry) if spec.role == "spiking" and spec.entry is not None else None
        assert spec.log is not None, "a local process writes its output to a log file"
        if spec.listen_fds:                # the child binds on the very sockets the launcher holds
            import json
            env = {**(env or command_lines.service_env()), command_lines.LISTEN_FDS_ENV: json.dumps(spec.listen_fds)}
        return Process(spec.name, self.argv(spec), spec.log, env=env, append=spec.append_log,
                       pass_fds=tuple(spec.listen_fds.values()))


# --------------------------------------------------------------------------- warm processes
#: what a backend's ``requires`` names, the module that actually costs the import time
HEAVY = {"tvb": "tvb.simulator.simulator", "netpyne": "netpyne.sim"}
#: never imported before a fork: NEST starts its OpenMP threads on import
NOT_BEFORE_FORK = frozenset({"nest", "pynest"})
_zygotes: dict[tuple, Any] = {}
_zygotes_lock = threading.Lock()


def preload_modules(backends: set[str], whole_brain: set[str]) -> list[str]:
    """cosim's command line, and each backend's adapter and simulator (cosim.plugins specs)."""
    from cosim import plugins
    mods = ["cosim.cli.commands", "cosim.launch.service", "cosim.launch.preflight", "cosim.runtime.node",
            "cosim.runtime.progress", "cosim.services.coordinator.coordinator", "cosim.results.report", "h5py", "zmq"]
    specs = [plugins.whole_brain(b) for b in sorted(whole_brain)] + [plugins.get(b) for b in sorted(backends)]
    for spec in specs:
        if spec.missing():
            continue
        for r in getattr(spec, "requires", ()):
            if r not in NOT_BEFORE_FORK:
                mods.append(HEAVY.get(r, r))
        if not set(getattr(spec, "requires", ())) & NOT_BEFORE_FORK:
            mods.append(spec.adapter.split(":", 1)[0])
    return list(dict.fromkeys(mods))


def zygote(modules: list[str], env: dict[str, str]):
    """This process's zygote for these modules and thread settings, started on first use (and again
    if it ended, e.g. with the thread that started it)."""
    from cosim.launch.zygote import Zygote
    key = (tuple(modules), tuple(env.get(v) for v in command_lines.THREAD_VARS))
    with _zygotes_lock:
        z = _zygotes.get(key)
        if z is None or not z.alive():
            z = _zygotes[key] = Zygote(modules, env, die_with_parent([]))
        return z


class Forked(Started):
    """A service forked by a zygote: its own process group, its output in a log file."""

    def __init__(self, name: str, zyg, pid: int, log_path: Path):
        self.name, self.zygote, self.pid, self.log_path = name, zyg, pid, log_path
        self.code: int | None = None

    def poll(self) -> int | None:
        if self.code is None:
            try:
                self.code = self.zygote.poll(self.pid)
            except OSError:             # the zygote ended, and its children with it
                self.code = -15
        return self.code

    def signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def last_error_line(self) -> str:
        return last_error_line(self.log_path)


class Warm(LocalProcess):
    """Like LocalProcess, but every service (except one under mpiexec or one whose thread settings
    differ) is forked from a zygote that has imported cosim and the run's simulators once: the
    second run of a sweep worker starts without paying the imports again. The coordinator gets
    the ports the launcher holds through the zygote (cosim.launch.zygote: SCM_RIGHTS); before the
    run's services are forked, the zygote imports the run's TVB model too (its module compiles
    numba functions on import). A forked spiking node that is not under mpiexec is one rank:
    it is told so (COSIM_NO_MPI) instead of starting MPI to find out (0.5 s per run)."""

    def prepare(self, specs: list[ServiceSpec]) -> None:
        self.modules = preload_modules({s.backend for s in specs if s.role == "spiking"},
                                       {s.backend for s in specs if s.role == "tvb"})
        self.extra = run_preloads(specs, self.modules)
        self.forked: dict[str, bool] = {}

    def start(self, spec: ServiceSpec) -> Started:
        started = self._start(spec)
        getattr(self, "forked", {})[spec.name] = isinstance(started, Forked)
        return started

    def _start(self, spec: ServiceSpec) -> Started:
        if spec.role == "spiking" and spec.entry is not None and command_lines.mpi_prefix(spec.entry):
            return super().start(spec)
        env = command_lines.spiking_env(spec.entry) if spec.role == "spiking" and spec.entry is not None \
            else command_lines.service_env()
        assert spec.log is not None, "a warm process writes its output to a log file"
        try:
            zyg = zygote(getattr(self, "modules", None) or preload_modules(set(), set()), command_lines.service_env())
            extra = [m for m in getattr(self, "extra", []) if m not in zyg.preloaded]
            if extra:
                zyg.preload(extra)
        except OSError:                          # no zygote (it died importing): a fresh process, as cold
            return super().start(spec)
        if any(env.get(v) != zyg_env for v, zyg_env in zip(command_lines.THREAD_VARS, _thread_values())):
            return super().start(spec)          # e.g. NEST threads: its own process, its own settings
        if spec.role == "spiking":
            env = {**env, "COSIM_NO_MPI": "1"}   # one rank (not under mpiexec): no MPI_Init to learn that
        argv = (["--log-level", self.log_level] if self.log_level else []) + list(spec.args)
        pid = zyg.fork(argv, {**env, "COSIM_LOG_FILE": str(spec.log)}, spec.log, append=spec.append_log,
                       listen_fds=spec.listen_fds)
        return Forked(spec.name, zyg, pid, spec.log)


def run_preloads(specs: list[ServiceSpec], modules: list[str]) -> list[str]:
    """What a zygote imports for this run beyond its backends: the run's TVB model class, if it
    is one of tvb-library's (``tvb.simulator.models:Class``: tvb-library imports a model's module,
    and compiles its numba functions, only when the class is first used). A user's own model
    module is left to the service that uses it: its import runs the user's code, once per run as
    in a fresh process."""
    if HEAVY["tvb"] not in modules:
        return []
    cfg = next((s.options.get("cfg") for s in specs if s.role == "coordinator"), None)
    name = getattr(getattr(cfg, "tvb", None), "model_class", None)
    if not name or "." in name:
        return []
    return [f"tvb.simulator.models:{name}"]


def _thread_values() -> tuple:
    env = command_lines.service_env()
    return tuple(env.get(v) for v in command_lines.THREAD_VARS)


# --------------------------------------------------------------------------- containers
class Container(Starter):
    """Every service in a container of its image, on the host's network, the results folder
    mounted at the same path (``podman`` or ``docker``; images built by ``docker compose build``:
    cosim-coordinator, cosim-tvb, and each backend's own, ``cosim backends --json``)."""

    def __init__(self, engine: str | None = None, images: dict[str, str] | None = None, mounts: list[str] | None = None,
                 log_level: str | None = None):
        self.engine = engine or shutil.which("podman") or shutil.which("docker") or "docker"
        self.images = images or {}
        self.mounts = list(mounts or [])
        self.log_level = log_level

    def image(self, spec: ServiceSpec) -> str:
        if spec.name in self.images:
            return self.images[spec.name]
        if spec.role == "coordinator":
            return "cosim-coordinator:latest"
        if spec.role == "tvb":
            return "cosim-tvb:latest" if spec.backend in ("", "tvb") else "cosim-noop:latest"
        from cosim import plugins
        return plugins.get(spec.backend).image or f"cosim-{spec.backend}:latest"

    def argv(self, spec: ServiceSpec) -> list[str]:
        if spec.role == "spiking" and spec.entry is not None and command_lines.mpi_prefix(spec.entry):
            from cosim.errors import ConfigError
            raise ConfigError(f"spiking_nodes: {spec.name!r} runs on several MPI ranks, which the container "
                              "starter does not start; run it as a local process or under compose")
        vols = [x for m in self.mounts for x in ("-v", f"{m}:{m}")]
        env = [x for k, v in command_lines.service_env({}).items() for x in ("-e", f"{k}={v}")]
        level = ["--log-level", self.log_level] if self.log_level else []
        return [self.engine, "run", "--rm", "--network", "host", "--name", f"cosim-{spec.name}-{os.getpid()}",
                *vols, *env, self.image(spec), *level, *spec.args]

    def start(self, spec: ServiceSpec) -> Started:
        assert spec.log is not None
        return Process(spec.name, self.argv(spec), spec.log, append=spec.append_log)


# --------------------------------------------------------------------------- threads
class ThreadService(Started):
    """A service running in a thread of this process; its exit code is 0, or its error's."""

    def __init__(self, name: str, target: Callable[[], Any], on_signal: Callable[[int], None] | None = None):
        self.name = name
        self.error: BaseException | None = None
        self.result: Any = None
        self._on_signal = on_signal
        self.thread = threading.Thread(target=self._run, args=(target,), name=f"cosim-{name}", daemon=True)

    def _run(self, target: Callable[[], Any]) -> None:
        try:
            self.result = target()
        except BaseException as e:   # noqa: BLE001  (kept: the supervisor reports it)
            self.error = e

    def start(self) -> ThreadService:
        self.thread.start()
        return self

    def poll(self) -> int | None:
        if self.thread.is_alive():
            return None
        if self.error is None:
            return 0
        return int(getattr(self.error, "exit_code", 1))

    def signal(self, sig: int) -> None:
        if self._on_signal is not None:
            self._on_signal(sig)

    def wait(self, timeout: float | None = None) -> int | None:
        self.thread.join(timeout)
        return self.poll()

    def last_error_line(self) -> str:
        if self.error is None:
            return ""
        text = str(self.error).splitlines()[0] if str(self.error) else type(self.error).__name__
        return text


class Thread(Starter):
    """Every service as a thread of this process (cosim.launch.inprocess). ``adapters`` maps a
    node name to an adapter, or to a factory taking the run config, built by the caller; a
    node without one gets its backend's adapter."""

    def __init__(self, adapters: dict[str, Any] | None = None):
        self.adapters = adapters or {}
        self.coordinator: Any = None
        self._bound = threading.Event()

    def _factory(self, name: str) -> Callable[[dict], Any] | None:
        from cosim.runtime.adapter import NodeAdapter
        a = self.adapters.get(name)
        if a is None:
            return None
        if callable(a) and not isinstance(a, NodeAdapter):
            return a
        return lambda _cfg: a

    def start(self, spec: ServiceSpec) -> Started:
        from cosim.launch import service
        o = dict(spec.options)
        if spec.role == "coordinator":
            o.setdefault("echo", False)
            def bound(coord: Any) -> None:
                self.coordinator = coord
                self._bound.set()
            svc = ThreadService(spec.name, lambda: service.run_coordinator(started=bound, **o),
                                on_signal=lambda sig: self.coordinator and self.coordinator.request_stop())
            svc.start()
            # inproc: the ROUTER must exist before anyone connects
            if not self._bound.wait(60) and svc.poll() is None:
                raise RuntimeError("the in-process coordinator did not bind within 60 s")
            return svc
        factory = self._factory(spec.name)
        return ThreadService(spec.name, lambda: service.run_node(spec.name, spec.role, make_adapter=factory,
                                                                 **o)).start()
