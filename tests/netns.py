"""Network namespaces as throw-away "machines" for system and fault-injection tests (root, Linux).

    with Lab(3) as lab:                      # hosts h0, h1, h2 on one private switch
        lab.hosts[0].ip                      # "10.77.0.1"
        p = lab.hosts[0].popen([...], log)   # a process inside h0 (own session, killed on exit)
        lab.link_down(1); lab.link_up(1)     # cut / restore h1's cable
        lab.add_delay(1, 50)                 # 50 ms one-way on h1's cable: needs the sch_netem
                                             # kernel module, absent on this project's machines
                                             # (RuntimeError; use tests/tcp_proxy.py instead)

Layout: a switch namespace holding a bridge, and one namespace per host joined to it by a veth
pair (`eth0` in the host, `p<i>` on the switch). Nothing is created in the caller's namespace
(no route, no address, no interface), so traffic can only go between these hosts. Every name
carries a random suffix; `close()` (also run at interpreter exit) kills every process left in
the namespaces and deletes them, which removes the veths and the bridge with them.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.77.0"          # private, and only ever inside these namespaces


def available() -> str | None:
    """None if namespaces can be used here, else the reason (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    name = f"cosimprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


@dataclass
class Host:
    ns: str                 # namespace name
    ip: str                 # address of eth0
    index: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    def cmd(self, argv: list[str]) -> list[str]:
        """`argv` prefixed to run inside this host."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(argv), timeout=timeout, capture_output=True, text=True, **kw)

    def popen(self, argv: list[str], log: str | Path | None = None, env: dict | None = None) -> subprocess.Popen:
        """Start `argv` in this host in its own session (so its whole group can be signalled)."""
        out = open(log, "wb") if log else subprocess.DEVNULL
        p = subprocess.Popen(self.cmd(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        if log:
            out.close()
        self.procs.append(p)
        return p


class Lab:
    """`n` hosts on one switch; a context manager (or call close())."""

    def __init__(self, n: int, prefix: str = "cosim"):
        if not 1 <= n <= 200:
            raise ValueError("1..200 hosts")
        self.id = uuid.uuid4().hex[:6]
        self.switch = f"{prefix}-{self.id}-sw"
        self.hosts = [Host(f"{prefix}-{self.id}-h{i}", f"{SUBNET}.{i + 1}", i) for i in range(n)]
        self._closed = False
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        sw = self.switch
        _ip("netns", "add", sw)
        _ip("-n", sw, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for h in self.hosts:
            _ip("netns", "add", h.ns)
            _ip("-n", h.ns, "link", "set", "lo", "up")
            # both ends are created directly in their namespaces: the caller's namespace never sees them
            _ip("-n", sw, "link", "add", f"p{h.index}", "type", "veth", "peer", "name", "eth0", "netns", h.ns)
            _ip("-n", sw, "link", "set", f"p{h.index}", "master", "br0")
            _ip("-n", sw, "link", "set", f"p{h.index}", "up")
            _ip("-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            _ip("-n", h.ns, "link", "set", "eth0", "up")

    # ---- faults ------------------------------------------------------------------------
    def link_down(self, i: int) -> None:
        """Unplug host i's cable (switch side): packets to and from it are dropped."""
        _ip("-n", self.switch, "link", "set", f"p{i}", "down")

    def link_up(self, i: int) -> None:
        _ip("-n", self.switch, "link", "set", f"p{i}", "up")

    def add_delay(self, i: int, delay_ms: float, loss_pct: float = 0.0) -> None:
        """One-way delay (and loss) on packets leaving host i (tc netem; needs the sch_netem module)."""
        args = ["netem", "delay", f"{delay_ms}ms"] + (["loss", f"{loss_pct}%"] if loss_pct else [])
        r = subprocess.run(["ip", "netns", "exec", self.hosts[i].ns, "tc", "qdisc", "replace", "dev", "eth0",
                            "root", *args], capture_output=True, text=True, timeout=15)
        if r.returncode != 0:
            raise RuntimeError(f"tc netem on {self.hosts[i].ns}: {r.stderr.strip()}")

    # ---- teardown ----------------------------------------------------------------------
    def kill_all(self, grace_s: float = 3.0) -> None:
        """SIGTERM, then SIGKILL, every process started here or still living in a namespace."""
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
            pids = self._pids()
            for p in (p for h in self.hosts for p in h.procs if p.poll() is None):
                _signal_group(p.pid, sig)
            for pid in pids:
                _signal(pid, sig)
            end = time.monotonic() + wait
            while time.monotonic() < end and (self._pids() or any(p.poll() is None for h in self.hosts for p in h.procs)):
                time.sleep(0.05)
        for p in (p for h in self.hosts for p in h.procs):
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass

    def _pids(self) -> list[int]:
        out = []
        for ns in [self.switch] + [h.ns for h in self.hosts]:
            r = _ip("netns", "pids", ns, check=False)
            out += [int(x) for x in r.stdout.split()] if r.returncode == 0 else []
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.kill_all()
        finally:
            for ns in [h.ns for h in self.hosts] + [self.switch]:
                _ip("netns", "del", ns, check=False)
            atexit.unregister(self.close)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        _signal(pid, sig)


def leftovers(prefix: str = "cosim") -> list[str]:
    """Namespaces whose name starts with `prefix-` (to check that a test cleaned up)."""
    r = _ip("netns", "list", check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(f"{prefix}-")]
