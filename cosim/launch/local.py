"""`cosim run`: the embedded default. Starts the coordinator and every node as separate local
processes on loopback, shows progress (as an observer of the coordinator's PUB channel),
and leaves no process behind whatever happens.

Each child's output goes to `<results>/logs/<name>.log`; the terminal gets the progress bar,
the summary, or a one-line reason for failure. `start()` returns a `Launch` (the started run);
`cosim run` (`run_embedded`) and the Python API (`cosim.run`, cosim/api.py) both drive it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml
import zmq
from tqdm import tqdm

from cosim.launch import command_lines
from cosim.config import ConfigError
from cosim.proto import codec

def die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` wrapped so that the child gets SIGTERM when the thread that started it dies
    (PR_SET_PDEATHSIG, set by util-linux's ``setpriv`` before it execs ``argv``; the setting
    survives exec). No Python code runs between fork and exec (``preexec_fn`` is not safe in a
    process with threads, such as a Jupyter kernel). Without ``setpriv`` the child is not tied."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(addr: str) -> bool:
    host, port = addr.rsplit("//", 1)[1].rsplit(":", 1)
    host = "0.0.0.0" if host == "*" else host
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
            return True
        except OSError:
            return False


class Child:
    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None, append: bool = False):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "ab" if append else "wb")
        self.proc = subprocess.Popen(die_with_parent(argv), stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,   # its own process group
                                     env={**(env or command_lines.service_env()), "COSIM_LOG_FILE": str(log_path)})

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def last_error_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            if line.startswith("cosim"):
                return line
        # no line of ours: the last error, never an arbitrary INFO line
        for line in reversed(lines):
            if " ERROR " in line or " CRITICAL " in line or (line and not line[0].isspace() and "Error" in line):
                return line.strip()
        return ""


def run_embedded(a, job: "Launch | None" = None) -> int:
    """`cosim run`: start, follow with a progress bar on stderr, print the summary; the exit code."""
    job = job or start(a)
    try:
        code = job.supervise()
    except KeyboardInterrupt:
        job.stop()
        _reap(job.children, grace_s=10)
        print(f"cosim: interrupted; results up to the last completed window are in {job.out}", file=sys.stderr)
        return 130
    finally:
        job.reap()
    if code == 2 and job.created and not (job.out / "coordinator.h5").exists():
        # refused during setup (e.g. a node rejected the config): no window ran, keep no folder
        import shutil
        shutil.rmtree(job.out, ignore_errors=True)
        print(f"cosim: run refused before its first window; no results folder kept ({job.out})", file=sys.stderr)
        return code
    if code == 0:
        summary = json.loads((job.out / "summary.json").read_text())
        from cosim.results.report import format_summary
        print(format_summary(summary))
    return code


def start(a, cfg=None) -> "Launch":
    """Validate, write `<out>/config.yaml` and start every service; `a` holds the `cosim run`
    arguments (config, set, out, no_plots, log_level); `cfg`, if given, is the config already
    loaded with its overrides. Children are tied to the calling thread (PR_SET_PDEATHSIG): call
    this from a thread that outlives the run (the main thread)."""
    if cfg is None:
        from cosim.config import apply_overrides
        cfg = apply_overrides(a.config, a.set)
    from cosim.launch.preflight import check_run, writable_dir
    from cosim.config import check_nodes
    # everything that can be refused is refused before the results folder exists (the connectome
    # is loaded only to check an explicit window: the default window is causal by construction)
    check_run(cfg, a.config or "<default>", connectome=cfg.run.window_ms is not None)
    _check_installed(cfg)
    # compile + load each model now: the setup clock never sees it
    from cosim.runtime.progress import compile_progress
    check_nodes(cfg, a.config or "<default>", progress=compile_progress)
    out = Path(a.out) if a.out else Path(cfg.run.results_dir) / f"{cfg.run.name}_{datetime.now():%Y%m%d-%H%M%S}"
    cc = cfg.coordinator
    explicit = cc.model_fields_set
    router = cc.router if "router" in explicit else f"tcp://127.0.0.1:{free_port()}"
    pub = cc.pub if "pub" in explicit else f"tcp://127.0.0.1:{free_port()}"
    for addr, what in ((router, "coordinator.router"), (pub, "coordinator.pub")):
        if addr.startswith("tcp://") and not _port_free(addr):
            raise ConfigError(f"{what}: {addr} is already in use")
    _check_rank0_host(cfg, router)
    created = not out.exists()
    writable_dir(out, "--out" if a.out else "run.results_dir")
    (out / "logs").mkdir(exist_ok=True)
    data = cfg.model_dump(mode="json")
    data["coordinator"].update(router=router, pub=pub)
    data["run"]["progress"] = False          # the launcher draws the bar
    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))

    level = a.log_level if hasattr(a, "log_level") else "INFO"
    keys = cc.keys_dir if cc.curve and cc.keys_dir else None
    children = [Child("coordinator", command_lines.coordinator_cmd(str(cfg_path), str(out), plots=not a.no_plots,
                                                            log_level=level), out / "logs" / "coordinator.log")]
    noop = all(n.backend == "noop" for n in cfg.spiking_nodes)
    children.append(Child("tvb", command_lines.tvb_cmd(router, noop=noop, keys=keys, log_level=level), out / "logs" / "tvb.log"))
    for n in cfg.spiking_nodes:
        children.append(Child(n.name, command_lines.spiking_cmd(n, router, keys=keys, log_level=level),
                              out / "logs" / f"{n.name}.log", env=command_lines.spiking_env(n)))
    print(f"cosim: run '{cfg.run.name}' → {out} (logs in {out / 'logs'})", file=sys.stderr)
    job = Launch(children, pub, cfg, out)
    job.created = created
    return job


def resume_embedded(a) -> int:
    """`cosim resume RUN_DIR`: every service started again with `--resume`, on fresh ports."""
    return run_embedded(a, start_resume(a))


def start_resume(a) -> "Launch":
    """Restart the services of the run in `a.run_dir` from its newest good checkpoint (PROTOCOL.md
    §10.1): the coordinator picks the checkpoint and tells every node; logs are appended to."""
    from cosim.runtime import checkpoint
    from cosim.launch.preflight import check_run
    from cosim.config import apply_overrides
    from cosim.config import check_nodes
    cfg_path, out = checkpoint.resume_target(a.run_dir)
    cfg = apply_overrides(cfg_path, [])
    check_run(cfg, cfg_path, connectome=False)
    _check_installed(cfg)
    check_nodes(cfg, cfg_path)
    try:
        k = checkpoint.select(out, checkpoint.config_hash(cfg.model_dump(mode="json")))["window"]
    except checkpoint.CheckpointError as e:
        raise ConfigError(str(e)) from None
    out = Path(out)
    router, pub = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    _check_rank0_host(cfg, router)
    level = getattr(a, "log_level", "INFO")
    cc = cfg.coordinator
    keys = cc.keys_dir if cc.curve and cc.keys_dir else None
    again = ["--resume", str(out)]
    (out / "logs").mkdir(exist_ok=True)
    children = [Child("coordinator", command_lines.coordinator_cmd(cfg_path, str(out), router=router, pub=pub,
                                                            plots=not a.no_plots, log_level=level, extra=again),
                      out / "logs" / "coordinator.log", append=True)]
    noop = all(n.backend == "noop" for n in cfg.spiking_nodes)
    children.append(Child("tvb", command_lines.tvb_cmd(router, noop=noop, keys=keys, log_level=level) + again,
                          out / "logs" / "tvb.log", append=True))
    for n in cfg.spiking_nodes:
        children.append(Child(n.name, command_lines.spiking_cmd(n, router, keys=keys, log_level=level) + again,
                              out / "logs" / f"{n.name}.log", env=command_lines.spiking_env(n), append=True))
    print(f"cosim: resuming run '{cfg.run.name}' in {out} from the checkpoint of window {k}", file=sys.stderr)
    job = Launch(children, pub, cfg, out)
    job.created = False
    return job


def _check_rank0_host(cfg, router: str) -> None:
    """A node spread over machines (``mpi.hosts``) talks to the coordinator from rank 0, on its
    first host: with a coordinator on loopback, that host must be this machine."""
    host = router.split("://", 1)[1].rsplit(":", 1)[0] if router.startswith("tcp://") else None
    if host not in ("127.0.0.1", "localhost", "[::1]"):
        return
    for i, n in enumerate(cfg.spiking_nodes):
        first = n.mpi.hosts[0].split(":")[0] if n.mpi is not None and n.mpi.hosts else None
        if first is not None and not _is_this_machine(first):
            raise ConfigError(f"spiking_nodes[{i}].mpi.hosts: rank 0 runs on the first host, {first!r}, which is "
                              f"not this machine (or does not resolve), and the coordinator listens on {router}: "
                              f"list this machine first, or set coordinator.router to an address {first!r} reaches")


def _is_this_machine(host: str) -> bool:
    """True if ``host`` resolves to an address of this machine (one a socket can bind)."""
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return False
    for addr in addrs:
        with socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET) as s:
            try:
                s.bind((addr, 0))
                return True
            except OSError:
                continue
    return False


def _check_installed(cfg) -> None:
    """Every node runs here: each backend's simulator must be installed (one line if not)."""
    from cosim import plugins
    for i, n in enumerate(cfg.spiking_nodes):
        try:
            plugins.get(n.backend).ensure_installed()
        except plugins.UnknownBackend as e:
            raise ConfigError(f"spiking_nodes[{i}].backend: {e} (installed: {', '.join(plugins.installed())})") from None


class Launch:
    """A started embedded run. `supervise()` follows it to its end (progress from PUB, nodes that
    die before registering) and returns the exit code; `stop()` asks it to abort (results are
    kept); `reap()` leaves no child behind. `cosim run` and `cosim.run()` drive this one object."""

    def __init__(self, children: list[Child], pub: str, cfg, out: Path):
        self.children, self.pub, self.cfg, self.out = children, pub, cfg, Path(out)
        self.progress: dict | None = None    # the latest PROGRESS content (PROTOCOL.md §6.1)
        self.lines: list[str] = []           # what supervise() reported (failure reasons)
        self.stopped = False
        self.created = False                 # the results folder did not exist before this run

    def _say(self, line: str, err) -> None:
        self.lines.append(line)
        print(line, file=err)

    def stop(self) -> None:
        """SIGTERM to the coordinator: it aborts the run for every node and keeps the results."""
        self.stopped = True
        self.children[0].signal(signal.SIGTERM)

    def reap(self) -> None:
        _reap(self.children, grace_s=self.cfg.coordinator.heartbeat_timeout_ms / 1000 + 5)

    def supervise(self, bar_cls=tqdm, err=None) -> int:
        """Until the coordinator exits; `bar_cls` draws progress (tqdm or tqdm.auto; None: no bar)."""
        err = err or sys.stderr
        children, cfg, out = self.children, self.cfg, self.out
        coord = children[0]
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"progress")
        if cfg.coordinator.curve:  # the PUB is a CURVE server too: observe with the tvb node's keys
            from cosim.runtime import security
            security.client_from_dir(cfg.coordinator.keys_dir or os.environ.get("COSIM_KEYS"), "tvb").apply_client(sub)
        sub.connect(self.pub)
        bar = None
        node_died_at: float | None = None
        grace = cfg.coordinator.heartbeat_timeout_ms / 1000 + 3
        try:
            while coord.poll() is None:
                if sub.poll(200):
                    try:
                        msg = codec.decode_published(sub.recv_multipart())
                    except codec.ProtocolError:    # PUB carries nothing the run needs: skip it
                        continue
                    p = self.progress = msg.content
                    if bar is None and cfg.run.progress and bar_cls is not None:
                        bar = bar_cls(total=p["windows"], unit="win", file=err, mininterval=0.5, dynamic_ncols=True,
                                      bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
                    if bar is not None:
                        bar.n = p["windows_done"]
                        rtf = p["wall_s"] / (p["t_ms"] / 1000) if p["t_ms"] else 0
                        bar.set_postfix_str(f"t={p['t_ms']:.1f} ms, {bar.n / max(p['wall_s'], 1e-9):.0f} win/s, "
                                            f"{rtf:.2f}× real time", refresh=False)
                        bar.update(0)
                # a node that dies before registering is invisible to heartbeats: stop the coordinator
                dead = [c for c in children[1:] if c.poll() not in (None, 0)]
                if dead and node_died_at is None:
                    node_died_at = time.monotonic()
                if node_died_at is not None and time.monotonic() - node_died_at > grace and coord.poll() is None:
                    _stop(coord)
                    c = dead[0]
                    self._say(f"cosim: run failed: node '{c.name}' exited with code {c.poll()}: "
                              f"{c.last_error_line()}", err)
                    return 1
        finally:
            if bar is not None:
                bar.close()
            sub.close()
        code = coord.poll()
        if code not in (0, 1, 2, 130):
            # killed by a signal (Popen: -N) or crashed: not one of the documented exit codes. Say what
            # happened and what is kept; the run failed (exit 1). The nodes notice the dead coordinator
            # by its heartbeats and exit by themselves (the reaper waits for that).
            self._say(f"cosim: run failed: {_death(code, out)}", err)
            self._say(f"cosim: results up to the last completed window and logs are in {out}", err)
            return 1
        if code != 0:
            status = out / "status_coordinator.json"
            reason = json.loads(status.read_text()).get("reason") if status.exists() else None
            line = coord.last_error_line()
            if "configuration error" in line or not reason or reason == "completed":
                self._say(line or f"cosim: coordinator exited with code {code}", err)
            else:
                self._say(f"cosim: run failed: {reason}", err)
            if code != 2 or (out / "coordinator.h5").exists():
                self._say(f"cosim: results up to the last completed window and logs are in {out}", err)
        return code


def _death(code: int, out: Path) -> str:
    """'the coordinator died (killed by SIGKILL) in window … / during setup' from its exit status and
    its status marker (rewritten after every flush: it says what coordinator.h5 holds)."""
    how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() \
        else f"exit code {code}"
    try:
        st = json.loads((out / "status_coordinator.json").read_text())
    except (OSError, ValueError):
        st = None
    if st is None or not (out / "coordinator.h5").exists():
        return f"the coordinator died ({how}) during setup; no window was simulated"
    return (f"the coordinator died ({how}) while running; coordinator.h5 holds the first "
            f"{st.get('windows_completed', 0)} of {st.get('windows_planned', '?')} windows "
            f"(t = {float(st.get('simulated_ms') or 0):.1f} ms); the nodes keep theirs")


def _stop(child: Child) -> None:
    """Ask a child to abort (SIGTERM: it aborts the run and keeps results), then insist."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        child.signal(sig)
        try:
            child.proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _reap(children: list[Child], grace_s: float) -> None:
    """Wait for every child to exit by itself, then SIGTERM, then SIGKILL: nothing stays behind."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(c.poll() is None for c in children):
        time.sleep(0.05)
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        alive = [c for c in children if c.poll() is None]
        if not alive:
            break
        for c in alive:
            c.signal(sig)
            if sig == signal.SIGTERM:
                c.signal(signal.SIGCONT)   # a stopped (SIGSTOP) child acts on SIGTERM only once continued
        end = time.monotonic() + wait_s
        while time.monotonic() < end and any(c.poll() is None for c in alive):
            time.sleep(0.05)
    for c in children:
        c.log.close()
