"""Short `cosim` commands (`cosim validate ...`) as processes forked from a zygote, for the tests
that make dozens of them (tests/test_bad_config.py, tests/test_examples.py).

A `cosim validate` spends ~0.4 CPU-s importing cosim.cli (pydantic, numpy) before it reads its
config, ~1.5 s more when it loads a TVB connectome; the check itself takes milliseconds. The
zygote is a fresh interpreter (not the pytest process: no pytest logging handlers, no threads)
that imports those modules once and nothing else: it reads no config, fills no cache. For each
call it forks a child that does what `python -m cosim.cli ARGS` does after its imports (sys.argv,
the working directory, stdout and stderr to files, stdin from /dev/null, `exit_fast(main())`) and
hands back the exit status and the two streams. The tests that start services, and at least one
test per file, still run `python -m cosim.cli` as a process of its own.

The children's CPU time is counted in the zygote's, which pytest's --slowest sees when the zygote
is waited for: use it as a module fixture (closed after the module's last test), so that the
module's CPU is all counted, in its last test.

conftest.run_cli_warm (the product's zygote, cosim.launch.zygote) does the same with TVB and
NetPyNE/NEURON preloaded: for test_bad_config's noop configs and test_examples it cost 35 CPU-s
for the two files against 24 with this lighter zygote (measured on one machine, same session)."""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import tempfile

_SERVER = r"""
import json, os, sys
for m in sys.argv[1:]:
    __import__(m)
ctl_in, ctl_out = os.fdopen(0, "r"), os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 1)           # the zygote's own prints (none expected) go nowhere, never into a reply
ctl_out.write("ready\n")
ctl_out.flush()
for line in ctl_in:
    req = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.update(req["env"])
            os.dup2(null, 0)
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            os.close(null)
            ctl_out.close()         # (fd 0, the request pipe, was replaced above)
            sys.argv = ["cosim", *req["args"]]
            try:
                from cosim.cli.commands import exit_fast, main
                exit_fast(main())
                code = 0
            except SystemExit as e:          # what the interpreter does with it
                if e.code is None:
                    code = 0
                elif isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            import atexit
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    ctl_out.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
    ctl_out.flush()
"""


class CliZygote:
    """`run(args)` gives what `subprocess.run([python, -m, cosim.cli, *args], capture_output=True,
    text=True)` gives, forked from a zygote that imported `preload` once."""

    def __init__(self, preload: tuple[str, ...] = ("cosim.cli.commands",)):
        self.preload = preload
        self.proc: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="cosim-cli-fork-")

    def _start(self) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", _SERVER, *self.preload], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        line = self._readline(p, 300)
        assert line == "ready\n", f"the zygote did not start: {line!r}"
        self.proc = p
        atexit.register(self.close)
        return p

    @staticmethod
    def _readline(p: subprocess.Popen, timeout: float) -> str:
        assert p.stdout is not None
        if not select.select([p.stdout], [], [], timeout)[0]:
            p.kill()
            p.wait()
            raise AssertionError(f"the zygote gave no answer within {timeout} s")
        return p.stdout.readline()

    def run(self, args: list[str], cwd: str | os.PathLike | None = None, timeout: float = 120,
            env: dict | None = None) -> subprocess.CompletedProcess:
        p = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        assert p.stdin is not None
        out, err = os.path.join(self.dir, "stdout"), os.path.join(self.dir, "stderr")
        p.stdin.write(json.dumps({"args": [str(a) for a in args], "cwd": str(cwd or os.getcwd()),
                                  "env": env or {}, "stdout": out, "stderr": err}) + "\n")
        p.stdin.flush()
        line = self._readline(p, timeout)
        if not line:
            raise AssertionError("the zygote died")
        code = json.loads(line)["code"]
        with open(out) as fo, open(err) as fe:
            return subprocess.CompletedProcess(["cosim", *args], code, fo.read(), fe.read())

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
