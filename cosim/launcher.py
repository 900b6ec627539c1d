"""`cosim run`: the embedded default. Starts the coordinator and every node as separate local
processes on loopback, shows progress (as an observer of the coordinator's PUB channel),
and leaves no process behind whatever happens.

Each child's output goes to `<results>/logs/<name>.log`; the terminal gets the progress bar,
the summary, or a one-line reason for failure.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import msgpack
import yaml
import zmq
from tqdm import tqdm

from cosim.config import ConfigError

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Child side of Popen: get SIGTERM if the launcher dies, and own a process group."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


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
    def __init__(self, name: str, argv: list[str], log_path: Path):
        self.name, self.log_path = name, log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", "COSIM_LOG_FILE": str(log_path)})

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
        return lines[-1] if lines else ""


def run_embedded(a) -> int:
    from cosim.cli import _overrides
    cfg = _overrides(a.config, a.set)
    from cosim.config import check_files
    check_files(cfg, a.config or "<default>")
    from cosim.cli import backend_checks
    backend_checks(cfg, a.config or "<default>")   # compile + load each model now: the setup clock never sees it
    out = Path(a.out) if a.out else Path(cfg.run.results_dir) / f"{cfg.run.name}_{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    cc = cfg.coordinator
    explicit = cc.model_fields_set
    router = cc.router if "router" in explicit else f"tcp://127.0.0.1:{free_port()}"
    pub = cc.pub if "pub" in explicit else f"tcp://127.0.0.1:{free_port()}"
    for addr, what in ((router, "coordinator.router"), (pub, "coordinator.pub")):
        if addr.startswith("tcp://") and not _port_free(addr):
            raise ConfigError(f"{what}: {addr} is already in use")
    data = cfg.model_dump(mode="json")
    data["coordinator"].update(router=router, pub=pub)
    data["run"]["progress"] = False          # the launcher draws the bar
    cfg_path = out / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(data, sort_keys=False))

    py = [sys.executable, "-m", "cosim.cli", "--log-level", a.log_level if hasattr(a, "log_level") else "INFO"]
    keys = ["--keys", cc.keys_dir] if cc.curve and cc.keys_dir else []
    children = [Child("coordinator", py + ["coordinator", str(cfg_path), "--out", str(out)]
                      + (["--no-plots"] if a.no_plots else []), out / "logs" / "coordinator.log")]
    tvb_backend = ["--backend", "noop"] if all(n.backend == "noop" for n in cfg.spiking_nodes) else []
    children.append(Child("tvb", py + ["tvb-node", "--coordinator", router, "--name", "tvb"] + tvb_backend + keys,
                          out / "logs" / "tvb.log"))
    for n in cfg.spiking_nodes:
        argv = py + ["spiking-node", "--coordinator", router, "--name", n.name, "--backend", n.backend] + keys
        ranks = int(n.params.get("mpi_ranks", 1) or 1)
        if ranks > 1:
            argv = ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", str(ranks),
                    "-x", "OMP_NUM_THREADS=1"] + argv
        children.append(Child(n.name, argv, out / "logs" / f"{n.name}.log"))
    print(f"cosim: run '{cfg.run.name}' → {out} (logs in {out / 'logs'})", file=sys.stderr)
    try:
        code = _supervise(children, pub, cfg, out)
    except KeyboardInterrupt:
        children[0].signal(signal.SIGTERM)
        _reap(children, grace_s=10)
        print(f"cosim: interrupted; results up to the last completed window are in {out}", file=sys.stderr)
        return 130
    finally:
        _reap(children, grace_s=cc.heartbeat_timeout_ms / 1000 + 5)
    if code == 0:
        summary = json.loads((out / "summary.json").read_text())
        from cosim.report import format_summary
        print(format_summary(summary))
    return code


def _supervise(children: list[Child], pub: str, cfg, out: Path) -> int:
    coord = children[0]
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"progress")
    if cfg.coordinator.curve:  # the PUB is a CURVE server too: observe with the tvb node's keys
        from cosim import security
        security.client_from_dir(cfg.coordinator.keys_dir or os.environ.get("COSIM_KEYS"), "tvb").apply_client(sub)
    sub.connect(pub)
    bar = None
    node_died_at: float | None = None
    grace = cfg.coordinator.heartbeat_timeout_ms / 1000 + 3
    try:
        while coord.poll() is None:
            if sub.poll(200):
                _, data = sub.recv_multipart()
                p = msgpack.unpackb(data)
                if bar is None and cfg.run.progress:
                    bar = tqdm(total=p["windows"], unit="win", file=sys.stderr, mininterval=0.5, dynamic_ncols=True,
                               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
                if bar is not None:
                    bar.n = p["window"] + 1
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
                print(f"cosim: run failed: node '{c.name}' exited with code {c.poll()}: {c.last_error_line()}",
                      file=sys.stderr)
                return 1
    finally:
        if bar is not None:
            bar.close()
        sub.close()
    code = coord.poll()
    if code != 0:
        status = out / "status_coordinator.json"
        reason = json.loads(status.read_text()).get("reason") if status.exists() else None
        line = coord.last_error_line()
        if "configuration error" in line or not reason or reason == "completed":
            print(line or f"cosim: coordinator exited with code {code}", file=sys.stderr)
        else:
            print(f"cosim: run failed: {reason}", file=sys.stderr)
        print(f"cosim: results up to the last completed window and logs are in {out}", file=sys.stderr)
    return code


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
