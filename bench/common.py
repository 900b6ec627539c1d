"""Shared helpers of the benchmark suite: run `cosim` as the user does, read what a run recorded,
sample memory of a process tree, take medians.

Every benchmark module exposes `run(size: str, out: Path) -> dict` (size "tiny" for CI, "full"
for the report) and returns raw figures, medians and ratios against a baseline measured in the
same call; `bench/run_all.py` collects them into `bench/results/*.json` and docs/performance.md.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from cosim.launch import command_lines

REPO = Path(__file__).resolve().parents[1]
PY = command_lines.cosim_cmd("WARNING")


def median(xs) -> float:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else float("nan")


def load_avg() -> float:
    return os.getloadavg()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict:
    return command_lines.service_env()


def write_config(cfg: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ---------------------------------------------------------------- running cosim
class RunError(RuntimeError):
    pass


def cosim_run(cfg: dict, out: Path, timeout: float = 900, sampler: TreeSampler | None = None,
              extra_env: dict | None = None) -> dict:
    """`cosim run CONFIG --out OUT --no-plots` as a subprocess; returns summary + whole wall time.

    `wall_total_s` is what the user waits for (imports, building both simulators, the loop,
    closing files); `summary["wall_s"]` is the co-simulation loop (first STEP to last STEP_DONE).
    """
    out = Path(out)
    cfg = {**cfg, "run": {"progress": False, "results_dir": str(out.parent), **cfg.get("run", {})}}
    path = write_config(cfg, out.parent / f"{out.name}.yaml")
    t0 = time.perf_counter()
    p = subprocess.Popen(PY + ["run", str(path), "--out", str(out), "--no-plots"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**env(), **(extra_env or {})}, cwd=out.parent,
                         start_new_session=True)
    if sampler is not None:
        sampler.start(p.pid)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGINT)      # the launcher reaps its children
        try:
            p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        raise RunError(f"cosim run timed out after {timeout} s ({out})") from None
    finally:
        if sampler is not None:
            sampler.stop()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RunError(f"cosim run failed ({p.returncode}) in {out}: {stderr.strip().splitlines()[-3:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_total_s": wall, "summary": summary, "out": str(out)}


def timing(out: Path) -> dict[str, np.ndarray]:
    """coordinator.h5 timing/*: per node an array (K, n_fields) and its field names; window wall."""
    from cosim.runtime.store import open_h5
    res = {}
    with open_h5(Path(out) / "coordinator.h5") as f:
        for k, d in f["timing"].items():
            res[k] = d[:]
            if "fields" in d.attrs:
                res[k + ":fields"] = [str(x) for x in d.attrs["fields"]]
    return res


def loop_s(r: dict) -> float:
    return float(r["summary"]["wall_s"])


# ---------------------------------------------------------------- processes and memory
def children(pid: int) -> list[int]:
    """Every descendant of pid (from /proc; no psutil needed)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def service_of(cmd: str) -> str | None:
    """Which cosim service a command line runs (None for launchers, mpiexec, shells)."""
    if "cosim.cli" not in cmd:
        return None
    for key in ("coordinator", "tvb-node", "spiking-node"):
        if f" {key} " in f" {cmd} ":
            if key == "spiking-node":
                parts = cmd.split()
                return parts[parts.index("--name") + 1] if "--name" in parts else "spiking"
            return {"tvb-node": "tvb"}.get(key, key)
    return None


class TreeSampler:
    """Samples RSS of every cosim service under a pid every `period_s`, tagging each sample with
    the window the coordinator last published (PUB 'progress', optional)."""

    def __init__(self, period_s: float = 0.25, pub: str | None = None):
        self.period_s, self.pub = period_s, pub
        self.samples: list[dict] = []      # {t, window, rss_kb: {service: kB}}
        self._stop = threading.Event()
        self._window = -1

    def start(self, pid: int) -> None:
        self.pid = pid
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()
        if self.pub:
            self._sub_th = threading.Thread(target=self._listen, daemon=True)
            self._sub_th.start()

    def _listen(self) -> None:
        import zmq
        from cosim.proto import codec
        s = zmq.Context.instance().socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"progress")
        s.connect(self.pub)
        while not self._stop.is_set():
            if s.poll(100):
                try:
                    self._window = int(codec.decode_published(s.recv_multipart()).window)
                except codec.ProtocolError:
                    continue
        s.close()

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            rss = {}
            for c in children(self.pid):
                svc = service_of(cmdline(c))
                if svc:
                    v = rss_kb(c)
                    if v:
                        # MPI: several processes per service; keep each rank
                        key = svc if svc not in rss else f"{svc}#{sum(k.startswith(svc) for k in rss)}"
                        rss[key] = v
            if rss:
                self.samples.append({"t": time.monotonic() - t0, "window": self._window, "rss_kb": rss})
            self._stop.wait(self.period_s)

    def stop(self) -> None:
        self._stop.set()
        self._th.join(5)

    def peak_kb(self) -> dict[str, int]:
        peak: dict[str, int] = {}
        for s in self.samples:
            for k, v in s["rss_kb"].items():
                peak[k] = max(peak.get(k, 0), v)
        return peak


def result_line(name: str, res: dict) -> str:
    return f"[{name}] " + json.dumps({k: v for k, v in res.items() if not isinstance(v, (list, dict))}, default=str)


def alone(what: str, cfg: dict, out: Path, W: int = 16, coupling: str | None = None, timeout: float = 900) -> dict:
    """`python -m bench.alone WHAT` in a fresh process (see bench/alone.py); returns its JSON."""
    out = Path(out)
    cfg_path = write_config(cfg, out / f"alone_{what}.yaml")
    argv = [sys.executable, "-m", "bench.alone", what, str(cfg_path), str(W)] + ([coupling] if coupling else [])
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env(), cwd=REPO, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RunError(f"bench.alone {what} failed: {p.stderr.strip().splitlines()[-3:]}")
    res = json.loads(lines[-1][7:])
    res["process_s"] = time.perf_counter() - t0
    return res


def save_coupling(out: Path) -> str | None:
    """The coupling/R_e the TVB node sent in a run, as .npy (input for the spiking baselines)."""
    from cosim.runtime.store import open_h5
    with open_h5(Path(out) / "coordinator.h5") as f:
        key = "signals/tvb/coupling/R_e"
        if key not in f:
            return None
        p = Path(out) / "coupling_R_e.npy"
        np.save(p, f[key][:])
    return str(p)


def launch_services(cfg: dict, out: Path, node_router: dict[str, str] | None = None, timeout: float = 900,
                    router_port: int | None = None, pub_port: int | None = None,
                    node_args: dict[str, list[str]] | None = None, node_env: dict[str, str] | None = None) -> dict:
    """Coordinator and nodes as separate processes (as on separate hosts), each node pointed at the
    router address given in `node_router[name]` (e.g. a delay proxy) or at the coordinator itself.
    `node_args[name]`: more command-line arguments of that node (e.g. `--data-bind`,
    `--data-advertise`); `node_env`: more environment for every process (e.g. COSIM_TRACE).
    Returns the summary and the whole wall time. Kills only the processes it started."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    router = f"tcp://127.0.0.1:{router_port or free_port()}"
    cfg = {**cfg, "run": {"progress": False, "results_dir": str(out.parent), **cfg.get("run", {})},
           "coordinator": {**cfg.get("coordinator", {}), "router": router, "pub": f"tcp://127.0.0.1:{pub_port or free_port()}"}}
    path = write_config(cfg, out / "config.in.yaml")
    node_router, node_args = node_router or {}, node_args or {}
    procs = []

    def start(name: str, argv: list[str], environ: dict | None = None):
        log = open(out / "logs" / f"{name}.log", "wb")
        environ = {**(environ or env()), **(node_env or {})}
        procs.append((name, subprocess.Popen(argv + node_args.get(name, []), stdout=log, stderr=subprocess.STDOUT,
                                             env=environ, start_new_session=True), log))

    t0 = time.perf_counter()
    start("coordinator", command_lines.coordinator_cmd(str(path), str(out), plots=False, log_level="WARNING"))
    nodes = cfg["spiking_nodes"]
    noop = all(n.get("backend") == "noop" for n in nodes)
    start("tvb", command_lines.tvb_cmd(node_router.get("tvb", router), noop=noop, log_level="WARNING"))
    for n in nodes:
        start(n["name"], command_lines.spiking_cmd(n, node_router.get(n["name"], router), log_level="WARNING"),
              command_lines.spiking_env(n, env()))
    coord = procs[0][1]
    try:
        code = coord.wait(timeout=timeout)
        for _, p, _ in procs[1:]:
            p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        for _, p, log in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            log.close()
    wall = time.perf_counter() - t0
    if code != 0:
        tail = (out / "logs" / "coordinator.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RunError(f"services run failed ({code}) in {out}: {tail}")
    return {"wall_total_s": wall, "summary": json.loads((out / "summary.json").read_text()), "out": str(out)}


def arg_parser(doc: str, sizes: dict):
    """The options every benchmark shares: --size (tiny for CI, full for the report) and --out."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--size", choices=sizes, default="full")
    ap.add_argument("--out", help="write the result JSON here")
    return ap
