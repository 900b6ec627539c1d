"""Fault-injection harness: the coordinator and nodes as separate processes we can kill, stop,
delay or cut, plus the checks "results are a clean prefix of an uninterrupted run".

`Services` starts `cosim coordinator`, `cosim tvb-node` and `cosim spiking-node` on loopback
ports we choose (nodes may be pointed at a proxy instead of the ROUTER), logs each to
`<out>/logs/<name>.log`, and in `close()` (always called: use it as a context manager)
continues and kills every process it started, by pid, and waits for them.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from cosim.launch import command_lines
from cosim.runtime.store import open_h5

PY = command_lines.cosim_cmd()


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range (32768-60999 on Linux). Tests
    hand the port to a process that binds it seconds later; a port from the ephemeral range (what
    cosim.launch.run.free_port's bind(0) gives) can be taken meanwhile by any process's connect or
    bind(0): seen with pytest-xdist and other test runs on the machine ("Address already in use",
    or nodes that reached another test's coordinator through the port)."""
    import random
    import socket
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port in 20000-32767")


def ref_config(duration_ms: float = 200, hb_interval_ms: int = 100, hb_timeout_ms: int = 1000) -> dict:
    """The mean-field reference node as the spiking side: deterministic and exact."""
    return {"run": {"name": "ref", "duration_ms": duration_ms, "progress": False},
            "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}],
            "coordinator": {"heartbeat_interval_ms": hb_interval_ms, "heartbeat_timeout_ms": hb_timeout_ms}}


def noop_cfg(duration_ms: float = 50, hb_interval_ms: int = 100, hb_timeout_ms: int = 1000, **params) -> dict:
    return {"run": {"name": "noop", "duration_ms": duration_ms, "progress": False},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5], "params": params}],
            "coordinator": {"heartbeat_interval_ms": hb_interval_ms, "heartbeat_timeout_ms": hb_timeout_ms}}


class Services:
    def __init__(self, cfg: dict, out: Path, node_address: str | None = None, router_port: int | None = None):
        self.cfg, self.out = cfg, Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "logs").mkdir(exist_ok=True)
        self.router_port = router_port or free_port()
        self.router = f"tcp://127.0.0.1:{self.router_port}"
        self.pub = f"tcp://127.0.0.1:{free_port()}"
        self.node_address = node_address or self.router
        self.node_args: dict[str, list[str]] = {}      # extra command-line arguments per node name
        self.cfg_path = self.out / "config.yaml"
        self.cfg_path.write_text(yaml.safe_dump({**cfg, "run": {**cfg.get("run", {}), "results_dir": str(self.out)}}))
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.noop = all(n["backend"] == "noop" for n in cfg["spiking_nodes"])

    # ---- processes --------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.out / "logs" / f"{name}.log", "ab")
        self._logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=command_lines.service_env(), cwd=self.out)
        self.procs[name] = p
        return p

    def start_coordinator(self) -> subprocess.Popen:
        return self._start("coordinator", command_lines.coordinator_cmd(str(self.cfg_path), str(self.out), router=self.router,
                                                                 pub=self.pub, plots=False))

    def start_node(self, name: str, address: str | None = None, log_name: str | None = None) -> subprocess.Popen:
        addr = address or self.node_address
        entry = next((n for n in self.cfg["spiking_nodes"] if n["name"] == name), None)
        if name == "tvb":
            argv = command_lines.tvb_cmd(addr, noop=self.noop)
        elif entry is not None:
            argv = command_lines.spiking_cmd(entry, addr)
        else:       # a name the config does not know (the coordinator must refuse it)
            argv = command_lines.cosim_cmd() + ["spiking-node", "--coordinator", addr, "--name", name]
        return self._start(log_name or name, argv + self.node_args.get(name, []))

    def start_all(self) -> Services:
        self.start_coordinator()
        self.start_node("tvb")
        for n in self.cfg["spiking_nodes"]:
            self.start_node(n["name"])
        return self

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def wait_running(self, timeout: float = 120) -> None:
        """Until the windows have started (the coordinator creates coordinator.h5 then)."""
        wait_for(lambda: (self.out / "coordinator.h5").exists() or self.any_exited(), timeout, "the run to start")
        assert (self.out / "coordinator.h5").exists(), self.logs_text()

    def any_exited(self) -> bool:
        return any(p.poll() is not None for p in self.procs.values())

    def wait_exit(self, names: list[str] | None = None, timeout: float = 60) -> dict[str, int]:
        names = names or list(self.procs)
        deadline = time.monotonic() + timeout
        for n in names:
            left = max(0.1, deadline - time.monotonic())
            try:
                self.procs[n].wait(timeout=left)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{n} did not exit within {timeout} s\n{self.logs_text()}") from None
        return {n: self.procs[n].returncode for n in names}

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(p.pid, sig)
                    except ProcessLookupError:
                        pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for f in self._logs:
            f.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- logs -------------------------------------------------------------------------
    def log(self, name: str) -> str:
        p = self.out / "logs" / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def logs_text(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.procs)


def wait_for(cond, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_time(text: str, needle: str) -> float | None:
    """Wall-clock time (epoch s) of the first log line containing `needle`."""
    for line in text.splitlines():
        if needle in line:
            m = _TS.match(line)
            if m:
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


# ---- results checks ---------------------------------------------------------------------
def tvb_sent(out: Path, name: str = "state/R_e") -> tuple[list[int], np.ndarray]:
    """The TVB node's `name` as the coordinator recorded it: (its regions, values (steps, regions))."""
    import h5py
    with h5py.File(Path(out) / "coordinator.h5") as f:
        ds = f[f"signals/tvb/{name}"]
        return [int(c) for c in ds.attrs["regions"]], ds[...]


def read_results(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every dataset of coordinator.h5, tvb.h5 and <spiking>.h5 that is deterministic."""
    res = {}
    for fname in ("coordinator.h5", "tvb.h5", "spiking.h5"):
        p = Path(out) / fname
        if not p.exists():
            continue
        d = {}
        with open_h5(p) as f:
            def visit(name, obj, d=d):
                if hasattr(obj, "shape") and not name.startswith("timing/"):
                    d[name] = obj[()]
            f.visititems(visit)
            d["__attrs__"] = dict(f.attrs)
        res[fname] = d
    return res


def check_prefix(out: Path, clean: dict, W: int, proxies=(33, 71)) -> dict[str, int]:
    """Results in `out` are whole windows and bit-for-bit the first windows of the clean run.

    Returns the number of windows each file holds. For tvb.h5 rows flagged
    proxy_from_spiking = 0 (the last window of an aborted node) are compared without the proxy
    columns (they hold TVB's stand-in values, as documented).
    """
    got = read_results(out)
    windows = {}
    for fname, dsets in got.items():
        ref = clean[fname]
        counts = set()
        for name, arr in dsets.items():
            if name == "__attrs__":
                continue
            r = ref[name]
            n = arr.shape[0]
            assert n <= r.shape[0], f"{fname}:{name} has {n} rows, more than the clean run's {r.shape[0]}"
            if fname == "coordinator.h5" or name.startswith("raw/"):
                assert n % W == 0, f"{fname}:{name}: {n} rows is not a whole number of windows (torn row)"
                counts.add(n // W)
            a, b = arr, r[:n]
            if fname == "tvb.h5" and name.startswith("raw/") and name != "raw/time_ms":
                flag = dsets["raw/proxy_from_spiking"].astype(bool)
                if arr.ndim == 2:
                    keep = np.ones(arr.shape[1], bool)
                    keep[list(proxies)] = False
                    assert np.array_equal(a[:, keep], b[:, keep]), f"{fname}:{name} differs from the clean run"
                a, b = a[flag], b[flag]
            assert np.array_equal(a, b), f"{fname}:{name} differs from the clean run (rows {n})"
        assert len(counts) <= 1, f"{fname}: datasets disagree on the number of windows: {counts}"
        windows[fname] = counts.pop() if counts else -1
    return windows


def record_fault(kind: str, **data) -> None:
    """Append one measurement to $COSIM_FAULT_LOG (JSON lines) when it is set (docs/reliability.md)."""
    path = os.environ.get("COSIM_FAULT_LOG")
    if path:
        import json
        with open(path, "a") as f:
            f.write(json.dumps({"fault": kind, **data}) + "\n")


def spikes_by_population(out: Path, names) -> dict:
    """population label (E_71, I_38, ...) -> sorted (t_ms, cell index within the population), over
    the results files of the spiking nodes `names` of the run in `out`."""
    from cosim.sdk.spiking_file import population_spikes
    return {lab: sp for n in names for lab, sp in population_spikes(out / f"{n}.h5").items()}


def assert_same_network(one, names_one, two, names_two, regions) -> dict:
    """Two runs of one config whose regions are grouped into services differently (issue 25):
    every E and I population fires (> 10 spikes), cell for cell the same spikes, spikes (not rates)
    between the services, and TVB, which sees the spiking regions through their proxies, computes
    the same brain. `one`/`two`: run_cosim results; returns the first run's spikes by population."""
    import h5py
    a, b = spikes_by_population(one.out, names_one), spikes_by_population(two.out, names_two)
    assert sorted(a) == sorted(b) == sorted(f"{p}_{r}" for p in "EI" for r in regions)
    for lab in a:
        assert len(a[lab]) > 10, f"{lab} nearly silent: {len(a[lab])} spikes"
        assert a[lab] == b[lab], f"{lab}: {len(a[lab])} spikes on one grouping, {len(b[lab])} on the other"
    assert "coupled through their rates only" not in two.stderr
    with h5py.File(one.out / "coordinator.h5", "r") as f1, h5py.File(two.out / "coordinator.h5", "r") as f2:
        assert np.array_equal(f1["signals/tvb/coupling/R_e"][:], f2["signals/tvb/coupling/R_e"][:])
    return a
