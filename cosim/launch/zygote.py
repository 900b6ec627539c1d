"""Warm service processes: a zygote that imports what the services use once, then forks one per service.

Starting a service costs mostly imports (TVB, NEURON and NetPyNE take seconds each, numba and
matplotlib with them) and every run of a sweep would pay them again. A zygote is one process,
started as ``python -P -m cosim.launch.zygote MODULE...`` with the services' environment, that
imports the modules given (cosim's command line, each backend's adapter and simulator) and then
waits on its standard input. For each request it forks a child that becomes an ordinary service:
its own session (process group), tied to the zygote by PR_SET_PDEATHSIG, output to its log file,
its own environment, then exactly what ``python -P -m cosim.cli ARGS`` runs (runpy). Nothing has
run in the zygote but imports, so a forked service computes what a fresh process computes (tested
bit for bit, cosim.launch.starters.Warm).

Requests and answers are JSON lines on the zygote's stdin/stdout:
``{"op": "fork", "argv": [...], "env": {...}, "log": PATH, "append": false, "listen": [ADDRESS, ...]}``
→ ``{"pid": N}`` (optional ``"err": PATH``: standard error to a file of its own instead of the log;
``"cwd": DIR``: the child's working folder; so a whole `cosim` command, e.g. `cosim validate`, runs
forked with its output as a fresh process's: tests/conftest.py run_cli_warm; ``"module": NAME``:
``python -m NAME ARGS`` instead of ``cosim.cli``, a module the zygote can import);
``{"op": "poll", "pid": N}`` → ``{"code": null | int}`` (negative: killed by that signal, as
subprocess says); ``{"op": "import", "modules": [...]}`` → ``{"import_s": ..., "failed":
[...]}`` (more modules, e.g. the run's TVB model, whose module compiles its numba functions when
imported). The first line the zygote writes is ``{"ready": true, "import_s": ..., "failed": [...]}``.

Listening sockets (the coordinator's ports, held by the launcher from the pick on: cosim.launch.run.
HeldPorts) reach a forked service over a Unix socket the zygote inherits (its descriptor in
``COSIM_ZYGOTE_FDS``): the launcher sends the descriptors of a fork's ``listen`` addresses with
SCM_RIGHTS just before the request, the child finds them in ``COSIM_LISTEN_FDS`` as a child of
`cosim run` does, and the zygote closes its copies once it has forked. So the coordinator, too, is
forked warm and binds on the very sockets the launcher picked.
A zygote ends when its standard input closes (the launcher ended): its children, tied to it, get
SIGTERM, the signal that makes a service abort its run and keep its results.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
#: the descriptor of the zygote's end of the Unix socket that carries listening sockets to it
CHANNEL_ENV = "COSIM_ZYGOTE_FDS"
LISTEN_FDS_ENV = "COSIM_LISTEN_FDS"     # (cosim.runtime.transport; not imported here: the zygote imports only what it is told)


def _import(modules: list[str]) -> tuple[float, list[str]]:
    """Import `modules` (``module`` or ``module:attribute``, for a lazily imported attribute such
    as ``tvb.simulator.models:ReducedWongWangExcInh``; those that fail are named, not raised: a
    child imports them again and reports it properly); the seconds it took. What they allocated
    is frozen out of the children's garbage collections (and stays in shared pages)."""
    import gc
    import importlib
    import logging

    from cosim.runtime.logs import keep_tvb_off_logging
    t0 = time.perf_counter()
    failed = []
    keep_tvb_off_logging()          # as every service process does: TVB's import leaves logging alone
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    for m in modules:
        try:
            mod, _, attr = m.partition(":")
            obj = importlib.import_module(mod)
            if attr:
                getattr(obj, attr)
        except Exception as e:  # noqa: BLE001
            failed.append(f"{m}: {type(e).__name__}: {e}")
    # any other import that configured the root logger must not change how a service logs either
    logging.root.handlers[:], logging.root.level = root_handlers, root_level
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0, failed


def _child(req: dict, fds: dict[str, int], chan: socket.socket | None) -> int:
    """In the forked child: become the service; its exit code. The caller then ends the child the
    way any Python process ends (SystemExit: atexit, garbage collection, ZeroMQ's context
    terminated, so a message the service sent last still leaves), never with os._exit."""
    try:
        os.setsid()
        try:
            import ctypes
            import signal
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if req.get("append") else os.O_TRUNC)
        fd = os.open(req["log"], flags, 0o644)
        err = os.open(req["err"], flags, 0o644) if req.get("err") else fd
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(err, 2)
        for d in {fd, err, null}:
            os.close(d)
        if req.get("cwd"):
            os.chdir(req["cwd"])
        if chan is not None:
            chan.close()
        os.environ.clear()
        os.environ.update(req["env"])
        if fds:                        # the launcher's listening sockets: bound on by the service (ZMQ_USE_FD)
            os.environ[LISTEN_FDS_ENV] = json.dumps(fds)
        import faulthandler
        import signal as _signal
        faulthandler.register(_signal.SIGUSR1, all_threads=True)   # `kill -USR1 PID`: its stacks in its log
        import runpy
        module = req.get("module") or "cosim.cli"
        sys.argv = ["cosim" if module == "cosim.cli" else module, *req["argv"]]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            return 0
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  anything escaping the CLI: its traceback in the log
        import traceback
        traceback.print_exc()
        return 1


def main(modules: list[str]) -> int:
    """The zygote: import `modules`, then serve fork/poll requests until stdin closes (0). In a
    forked child it returns the service's exit code, which the `__main__` guard exits with."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                      # whatever an import prints goes to stderr, not into the answers
    chan = os.environ.pop(CHANNEL_ENV, "")
    sock = socket.socket(fileno=int(chan)) if chan else None
    import_s, failed = _import(modules)
    out.write(json.dumps({"ready": True, "import_s": import_s, "failed": failed}) + "\n")
    codes: dict[int, int] = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "fork":
            listen = list(req.get("listen") or [])
            fds: list[int] = []
            if listen:
                if sock is None:
                    raise RuntimeError("listening sockets asked for, but the zygote has no channel for them")
                _, fds, _, _ = socket.recv_fds(sock, 1, len(listen))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                out.close()
                # leaves the zygote's loop: the child ends as a process does
                return _child(req, dict(zip(listen, fds)), sock)
            for fd in fds:
                os.close(fd)
            out.write(json.dumps({"pid": pid}) + "\n")
        elif req["op"] == "import":
            import_s, failed = _import(list(req["modules"]))
            out.write(json.dumps({"import_s": import_s, "failed": failed}) + "\n")
        elif req["op"] == "poll":
            pid = int(req["pid"])
            if pid not in codes:
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = pid, 255 << 8
                if got:
                    codes[pid] = os.waitstatus_to_exitcode(status)
            out.write(json.dumps({"code": codes.get(pid)}) + "\n")
    return 0


class Zygote:
    """The launcher's side of a zygote: start it, fork services from it, poll them (thread-safe)."""

    def __init__(self, modules: list[str], env: dict[str, str], argv_prefix: list[str]):
        self.modules = list(modules)
        self.preloaded = set(self.modules)      # and what preload() imported since
        self.lock = threading.Lock()
        self.chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen([*argv_prefix, sys.executable, "-P", "-m", "cosim.launch.zygote", *self.modules],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         env={**env, CHANNEL_ENV: str(theirs.fileno())}, text=True, bufsize=1,
                                         pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        assert self.proc.stdin is not None and self.proc.stdout is not None      # both are PIPEs
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        hello = self.stdout.readline()
        if not hello:
            raise OSError(f"the zygote exited during its imports (code {self.proc.wait()})")
        self.hello = json.loads(hello)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _ask(self, req: dict, fds: list[int] | None = None) -> dict:
        with self.lock:
            if fds:
                socket.send_fds(self.chan, [b"f"], fds)
            self.stdin.write(json.dumps(req) + "\n")
            self.stdin.flush()
            line = self.stdout.readline()
        if not line:
            raise OSError("the zygote has ended")
        return json.loads(line)

    def fork(self, argv: list[str], env: dict[str, str], log: Path, append: bool = False,
             listen_fds: dict[str, int] | None = None, err: Path | None = None, cwd: Path | None = None,
             module: str | None = None) -> int:
        """Fork a service; `listen_fds` ({address: descriptor}) are listening sockets it gets as
        COSIM_LISTEN_FDS (the zygote receives copies; the caller keeps and closes its own); `err`
        takes its standard error apart from `log`; `cwd` is its working folder; `module` is run
        instead of cosim.cli."""
        listen = dict(listen_fds or {})
        req = {"op": "fork", "argv": list(argv), "env": dict(env), "log": str(log), "append": append,
               "listen": list(listen)}
        if err is not None:
            req["err"] = str(err)
        if cwd is not None:
            req["cwd"] = str(cwd)
        if module is not None:
            req["module"] = module
        return int(self._ask(req, list(listen.values()))["pid"])

    def preload(self, modules: list[str]) -> dict:
        """Import more modules in the zygote (before the next fork): {"import_s", "failed"}."""
        got = self._ask({"op": "import", "modules": list(modules)})
        self.preloaded.update(modules)
        return got

    def poll(self, pid: int) -> int | None:
        return self._ask({"op": "poll", "pid": pid})["code"]

    def close(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass
        self.chan.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
