"""A run: its services started by a starter (cosim.launch.starters), followed to their end.

`start()` checks everything that can be refused before the results folder exists, writes
`<results>/config.yaml` and starts the coordinator, the TVB node and every spiking node (as
local processes unless another starter is given); `start_resume()` restarts a broken run's
services from its newest good checkpoint. Both return a :class:`Launch`, which `cosim run`,
`cosim resume` and `cosim.run()` drive: `supervise()` follows the run (progress from the
coordinator's PUB channel, nodes that die before registering) and raises what ended it early
(cosim.errors: RunFailed, RunInterrupted, ConfigError, each with its exit code and `out`);
`stop()` asks it to abort, keeping results; `reap()` leaves nothing running.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
import zmq

from cosim.config import ConfigError
from cosim.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, RunFailed, RunInterrupted, RunRefused
from cosim.launch import command_lines
from cosim.launch.starters import LocalProcess, ServiceSpec, Started, Starter
from cosim.proto import codec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HeldPorts:
    """Free loopback ports picked by binding port 0 and kept bound and listening until the
    coordinator, started with their descriptors, binds its ZeroMQ sockets on them (ZMQ_USE_FD): no
    other process can take a port between the pick and the coordinator's bind, so a clash never
    becomes a configuration error. A starter that cannot pass descriptors (containers) gets the
    ports released just before it starts the coordinator, as before."""

    def __init__(self) -> None:
        self.socks: dict[str, socket.socket] = {}

    def pick(self) -> str:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        addr = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        self.socks[addr] = s
        return addr

    def fds(self, *addrs: str) -> dict[str, int]:
        return {a: self.socks[a].fileno() for a in addrs if a in self.socks}

    def release(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()


def _port_free(addr: str) -> bool:
    host, port = addr.rsplit("//", 1)[1].rsplit(":", 1)
    host = "0.0.0.0" if host == "*" else host
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
            return True
        except OSError:
            return False


def _say(line: str, err=None) -> None:
    print(line, file=err or sys.stderr)


def services_of(cfg: Any, cfg_path: str, out: Path, router: str, pub: str, *, plots: bool = True,
                extra: list[str] | None = None, append_logs: bool = False) -> list[ServiceSpec]:
    """The services of run ``cfg`` (coordinator first), for any starter."""
    from cosim.launch.preflight import whole_brain_side
    cc = cfg.coordinator
    keys = cc.keys_dir if cc.curve and cc.keys_dir else None
    side = whole_brain_side(cfg)
    again = list(extra or [])
    logs = out / "logs"
    resume = "--resume" in again
    specs = [ServiceSpec("coordinator", "coordinator",
                         command_lines.coordinator_args(cfg_path, str(out), router=router if resume else None,
                                                        pub=pub if resume else None, plots=plots,
                                                        extra=again + ["--launched-by", str(os.getpid())]),
                         log=logs / "coordinator.log", append_log=append_logs,
                         options={"cfg": cfg, "out": out, "resume": resume, "plots": plots}),
             ServiceSpec("tvb", "tvb", command_lines.tvb_args(router, side=side, keys=keys) + again, backend=side,
                         log=logs / "tvb.log", append_log=append_logs,
                         options={"coordinator": router, "backend": side, "keys": keys, "results_dir": str(out),
                                  "resume": resume})]
    for n in cfg.spiking_nodes:
        specs.append(ServiceSpec(n.name, "spiking", command_lines.spiking_args(n, router, keys=keys) + again,
                                 backend=n.backend, entry=n, log=logs / f"{n.name}.log", append_log=append_logs,
                                 options={"coordinator": router, "backend": n.backend, "keys": keys,
                                          "results_dir": str(out), "resume": resume}))
    return specs


def start(a: Any, cfg: Any = None, starter: Starter | None = None) -> Launch:
    """Validate, write `<out>/config.yaml` and start every service; `a` holds the `cosim run`
    arguments (config, set, out, no_plots, log_level); `cfg`, if given, is the config already
    loaded with its overrides. Local processes are tied to the calling thread (PR_SET_PDEATHSIG):
    call this from a thread that outlives the run (the main thread). ``a.launched_at`` (epoch,
    optional; default now) is when the user started the run: the origin of its start-up figure."""
    launched_at = getattr(a, "launched_at", None) or time.time()
    if cfg is None:
        from cosim.config import apply_overrides
        cfg = apply_overrides(a.config, a.set)
    from cosim.config import check_nodes
    from cosim.launch.preflight import check_run
    from cosim.runtime.progress import compile_progress
    source = a.config or "<default>"
    # everything that can be refused is refused before the results folder exists (the connectome
    # is loaded only to check an explicit window or lookahead: the defaults are causal by construction)
    from cosim.launch.preflight import needs_connectome
    check_run(cfg, source, connectome=needs_connectome(cfg))
    from cosim.launch.preflight import split_coupling_note
    note = split_coupling_note(cfg)
    if note:
        print(f"cosim: note: {note}", file=sys.stderr)
    _check_installed(cfg)
    # compile + load each model now: the setup clock never sees it
    check_nodes(cfg, source, progress=compile_progress)
    auto = not a.out
    out = Path(a.out) if a.out else Path(cfg.run.results_dir) / f"{cfg.run.name}_{datetime.now():%Y%m%d-%H%M%S}"
    cc = cfg.coordinator
    explicit = cc.model_fields_set
    held = HeldPorts()
    router = cc.router if "router" in explicit else held.pick()
    pub = cc.pub if "pub" in explicit else held.pick()
    try:
        for addr, what in ((router, "coordinator.router"), (pub, "coordinator.pub")):
            if addr not in held.socks and addr.startswith("tcp://") and not _port_free(addr):
                raise ConfigError(f"{what}: {addr} is already in use")
        _check_rank0_host(cfg, router)
        job = _start_new(a, cfg, out, router, pub, held, starter, auto)
        job.launched_at = launched_at
        return job
    finally:
        held.release()                        # the coordinator holds its own copies by now


def _start_new(a: Any, cfg: Any, out: Path, router: str, pub: str, held: HeldPorts,
               starter: Starter | None, auto: bool = False) -> Launch:
    from cosim.launch.preflight import claim_dir
    created = auto or not out.exists()
    # the folder is this run's (a lock held for its life) before anything in it is written
    out, lock = claim_dir(out, "--out" if a.out else "run.results_dir", auto=auto)
    try:
        return _write_and_start(a, cfg, out, router, pub, held, starter, created, lock)
    except BaseException:
        lock.close()
        raise


def _write_and_start(a: Any, cfg: Any, out: Path, router: str, pub: str, held: HeldPorts,
                     starter: Starter | None, created: bool, lock: Any) -> Launch:
    (out / "logs").mkdir(exist_ok=True)
    data = cfg.model_dump(mode="json")
    data["coordinator"].update(router=router, pub=pub)
    data["run"]["progress"] = False          # the launcher draws the bar
    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))
    from cosim.config import parse_config
    run_cfg = parse_config(data, str(cfg_path))
    specs = services_of(run_cfg, str(cfg_path), out, router, pub, plots=not a.no_plots)
    starter = starter or LocalProcess(getattr(a, "log_level", "INFO"))
    _hand_over(held, specs[0], starter, router, pub)
    print(f"cosim: run '{cfg.run.name}' → {out} (logs in {out / 'logs'})", file=sys.stderr)
    job = Launch(_start_all(starter, specs), pub, cfg, out)
    job.created = created
    job.lock = lock
    return job


def start_resume(a: Any, starter: Starter | None = None) -> Launch:
    """Restart the services of the run in `a.run_dir` from its newest good checkpoint (PROTOCOL.md
    §10.1): the coordinator picks the checkpoint and tells every node; logs are appended to."""
    from cosim.config import apply_overrides, check_nodes
    from cosim.launch.preflight import check_run
    from cosim.runtime import checkpoint
    cfg_path, out_dir = checkpoint.resume_target(a.run_dir)
    cfg = apply_overrides(cfg_path, [])
    check_run(cfg, cfg_path, connectome=False)
    _check_installed(cfg)
    check_nodes(cfg, cfg_path)
    dumped = cfg.model_dump(mode="json")
    inputs = checkpoint.input_hashes(dumped)
    manifest = checkpoint.select(out_dir, checkpoint.config_hash(dumped, inputs), inputs)
    checkpoint.check_resume(out_dir, manifest, cfg.coordinator.watch_regions)
    k = manifest["window"]
    from cosim.launch.preflight import claim_dir
    out, lock = claim_dir(Path(out_dir), "run_dir")
    held = HeldPorts()
    try:
        router, pub = held.pick(), held.pick()
        _check_rank0_host(cfg, router)
        (out / "logs").mkdir(exist_ok=True)
        specs = services_of(cfg, cfg_path, out, router, pub, plots=not a.no_plots, extra=["--resume", str(out)],
                            append_logs=True)
        starter = starter or LocalProcess(getattr(a, "log_level", "INFO"))
        _hand_over(held, specs[0], starter, router, pub)
        print(f"cosim: resuming run '{cfg.run.name}' in {out} from the checkpoint of window {k}", file=sys.stderr)
        job = Launch(_start_all(starter, specs), pub, cfg, out)
    except BaseException:
        lock.close()
        raise
    finally:
        held.release()
    job.created = False
    job.lock = lock
    return job


def _hand_over(held: HeldPorts, coordinator: ServiceSpec, starter: Starter, router: str, pub: str) -> None:
    """The coordinator binds on the ports held for it (a starter that passes descriptors), or
    they are released now for it to bind them itself."""
    if starter.passes_listen_fds:
        coordinator.listen_fds = held.fds(router, pub)
    else:
        held.release()


def _start_all(starter: Starter, specs: list[ServiceSpec]) -> list[Started]:
    starter.prepare(specs)
    started: list[Started] = []
    try:
        for spec in specs:
            started.append(starter.start(spec))
    except BaseException:
        _reap(started, grace_s=0)
        raise
    return started


def _check_rank0_host(cfg: Any, router: str) -> None:
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
        addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
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


def _check_installed(cfg: Any) -> None:
    """Every node runs here: each backend's simulator must be installed (one line if not)."""
    from cosim import plugins
    for i, n in enumerate(cfg.spiking_nodes):
        try:
            plugins.get(n.backend).ensure_installed()
        except plugins.UnknownBackend as e:
            raise ConfigError(f"spiking_nodes[{i}].backend: {e} (installed: {', '.join(plugins.installed())})") from None


class Launch:
    """A started run (module docstring). ``services[0]`` is the coordinator."""

    def __init__(self, services: list[Started], pub: str, cfg: Any, out: Path):
        self.services, self.pub, self.cfg, self.out = services, pub, cfg, Path(out)
        self.progress: dict | None = None    # the latest PROGRESS content (PROTOCOL.md §6.1)
        self.stopped = False
        self.created = False                 # the results folder did not exist before this run
        self.summary: dict | None = None
        self.lock: Any = None                # the results folder's lock file (preflight.claim_dir), held till reap()
        self.launched_at: float | None = None   # when the run was started (epoch): see _add_launch

    def stop(self) -> None:
        """SIGTERM to the coordinator: it aborts the run for every node and keeps the results."""
        self.stopped = True
        self.services[0].signal(signal.SIGTERM)

    def reap(self) -> None:
        _reap(self.services, grace_s=self.cfg.coordinator.heartbeat_timeout_ms / 1000 + 5)
        if self.lock is not None:            # every service has exited: the folder is free again
            self.lock.close()
            self.lock = None

    def supervise(self, bar_cls: Any = None, err: Any = None) -> dict:
        """Until the coordinator ends: its summary, or the error that ended the run (cosim.errors,
        with `out` set). ``bar_cls`` draws progress (tqdm, tqdm.auto; None: no bar)."""
        from cosim.runtime.progress import ProgressBar
        err = err or sys.stderr
        services, cfg, out = self.services, self.cfg, self.out
        coord = services[0]
        sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"progress")
        if cfg.coordinator.curve:  # the PUB is a CURVE server too: observe with the tvb node's keys
            from cosim.runtime import security
            security.client_from_dir(cfg.coordinator.keys_dir or os.environ.get("COSIM_KEYS", ""), "tvb").apply_client(sub)
        sub.connect(self.pub)
        bar = ProgressBar(bool(cfg.run.progress and bar_cls is not None), bar_cls=bar_cls, file=err)
        node_died_at: float | None = None
        grace = cfg.coordinator.heartbeat_timeout_ms / 1000 + 3
        try:
            while coord.poll() is None:
                if sub.poll(50):        # also how soon the coordinator's exit is seen (a warm sweep pays it per run)
                    try:
                        msg = codec.decode_published(sub.recv_multipart())
                    except codec.ProtocolError:    # PUB carries nothing the run needs: skip it
                        continue
                    p = self.progress = msg.content
                    bar.update(p["windows_done"], p["windows"], p["t_ms"], p["wall_s"])
                # a node that dies before registering is invisible to heartbeats: stop the coordinator
                dead = [c for c in services[1:] if c.poll() not in (None, 0)]
                if dead and node_died_at is None:
                    node_died_at = time.monotonic()
                if node_died_at is not None and time.monotonic() - node_died_at > grace and coord.poll() is None:
                    _stop(coord)
                    c = dead[0]
                    raise RunFailed(f"node '{c.name}' exited with code {c.poll()}: {c.last_error_line()}",
                                    EXIT_FAILED, out=out)
        finally:
            bar.close()
            sub.close()
        return self._outcome(coord.poll())

    def _outcome(self, code: int | None) -> dict:
        out = self.out
        if code == 0:
            try:
                self.summary = json.loads((out / "summary.json").read_text())
            except (OSError, ValueError):
                self.summary = getattr(self.services[0], "result", None) or {}
            self._add_launch(self.summary)
            return self.summary
        if code not in (1, 2, 130):
            # killed by a signal (Popen: -N) or crashed: not one of the documented exit codes. Say what
            # happened and what is kept; the run failed (exit 1). The nodes notice the dead coordinator
            # by its heartbeats and exit by themselves (the reaper waits for that).
            raise RunFailed(_death(code, out), EXIT_FAILED, out=out)
        status = out / "status_coordinator.json"
        try:
            st = json.loads(status.read_text()) if status.exists() else {}
        except (OSError, ValueError):
            st = {}
        reason = st.get("reason") if isinstance(st, dict) else None
        # the coordinator's last word: it ended before its first window (and is no resumed run)
        none_ran = (isinstance(st, dict) and st.get("windows_completed") == 0 and st.get("running") is not True
                    and "resumed_from_window" not in st)
        line = self.services[0].last_error_line()
        if code == EXIT_INTERRUPTED or self.stopped:
            raise RunInterrupted(reason if reason and reason != "completed" else "interrupted", EXIT_INTERRUPTED, out=out,
                                 no_window_ran=none_ran)
        if code == EXIT_CONFIG:    # a node or the coordinator refused the configuration during setup
            told = reason if reason and reason != "completed" and not reason.startswith("running") else _strip(line)
            e = RunRefused(told or "the run was refused during setup", out=out)
            if self.created and not (out / "coordinator.h5").exists():   # no window ran: keep no folder
                import shutil
                shutil.rmtree(out, ignore_errors=True)
                e.removed = True
            raise e
        if not reason or reason == "completed":
            raise RunFailed(_strip(line) or f"coordinator exited with code {code}", code, out=out)
        raise RunFailed(reason, code, out=out, no_window_ran=none_ran)


    def _add_launch(self, summary: dict) -> None:
        """The start-up as the user sees it: from the launch (``launched_at``) to the first window, and
        the launcher's own part (its checks and starting the services: launch to the coordinator's
        start), into summary.json ``startup`` (``from``: "command")."""
        st = summary.get("startup")
        if self.launched_at is None or not isinstance(st, dict) or not st.get("first_window_at"):
            return
        coord = (st.get("services") or {}).get("coordinator")
        if not isinstance(coord, dict):
            return
        own = max(0.0, float(coord["started_at"]) - self.launched_at)
        st.update(wall_s=float(st["first_window_at"]) - self.launched_at, **{"from": "command"})
        st["services"] = {"launcher": {"started_at": self.launched_at, "total_s": own,
                                       "phases": {"checks, services started": own}}, **st["services"]}
        try:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        except OSError:
            pass


def _strip(line: str) -> str:
    """A service's one-line reason without its own prefix ("cosim: run failed: ", ...)."""
    for prefix in ("cosim: configuration error: ", "cosim: run failed: ", "cosim: "):
        if line.startswith(prefix):
            return line[len(prefix):]
    return line


def _death(code: int | None, out: Path) -> str:
    """'the coordinator died (killed by SIGKILL) in window … / during setup' from its exit status and
    its status marker (rewritten after every flush: it says what coordinator.h5 holds)."""
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 and -code in signal.valid_signals() \
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


def _stop(svc: Started) -> None:
    """Ask a service to abort (SIGTERM: it aborts the run and keeps results), then insist."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        svc.signal(sig)
        if svc.wait(wait_s) is not None:
            return


def _reap(services: list[Started], grace_s: float) -> None:
    """Wait for every service to exit by itself, then SIGTERM, then SIGKILL: nothing stays behind."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(c.poll() is None for c in services):
        time.sleep(0.05)
    for sig, wait_s in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        alive = [c for c in services if c.poll() is None]
        if not alive:
            break
        for c in alive:
            c.signal(sig)
            if sig == signal.SIGTERM:
                c.signal(signal.SIGCONT)   # a stopped (SIGSTOP) child acts on SIGTERM only once continued
        end = time.monotonic() + wait_s
        while time.monotonic() < end and any(c.poll() is None for c in alive):
            time.sleep(0.05)
    for c in services:
        c.close()
