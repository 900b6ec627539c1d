"""`cosim watch [ADDRESS]`: a live terminal view of a running co-simulation, from the
coordinator's PUB channel (PROTOCOL.md §6.1), local or remote, CURVE included.

A watcher is a SUB socket and nothing else: it sends nothing to the run, and the coordinator
never waits for it (PUB drops what a slow or absent subscriber does not take), so attaching and
detaching cannot change a run. ADDRESS is a PUB address (`tcp://HOST:PORT`, or `HOST:PORT`), or a
run directory (its `config.yaml` names the PUB address `cosim run` chose); without one, the
newest running run under `./results` (else the default `tcp://127.0.0.1:5556`).
"""
from __future__ import annotations

import math
import shutil
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import yaml
import zmq

from cosim.config import ConfigError
from cosim.proto import codec
from cosim.proto.messages import MessageType as T
from cosim.runtime.transport import printable   # a peer's strings: escape codes escaped, bounded

DEFAULT_PUB = "tcp://127.0.0.1:5556"
SPARK = "▁▂▃▄▅▆▇█"


def resolve_address(arg: str | None, results: str | Path = "results") -> tuple[str, dict | None]:
    """(PUB address, the run's config as data if known) for the ADDRESS argument."""
    if arg and "://" in arg:
        return arg, None
    if arg and Path(arg).is_dir():
        return _from_run_dir(Path(arg))
    if arg:
        if ":" in arg and arg.rsplit(":", 1)[1].isdigit():
            return f"tcp://{arg}", None
        raise ConfigError(f"cosim watch: {arg!r} is neither a PUB address (tcp://HOST:PORT) nor a run directory")
    running = sorted((p.parent for p in Path(results).glob("*/status_coordinator.json")
                      if '"running": true' in p.read_text(errors="replace")),
                     key=lambda d: d.stat().st_mtime)
    if running:
        return _from_run_dir(running[-1])
    return DEFAULT_PUB, None


def _from_run_dir(d: Path) -> tuple[str, dict]:
    p = d / "config.yaml"
    if not p.is_file():
        raise ConfigError(f"cosim watch: {d} has no config.yaml (is it a run directory?)")
    cfg = yaml.safe_load(p.read_text()) or {}
    pub = (cfg.get("coordinator") or {}).get("pub") or DEFAULT_PUB
    return pub, cfg


def subscribe(address: str, keys: str | None = None, key_name: str = "watch") -> zmq.Socket:
    """A SUB socket on `address` for every broadcast (PROGRESS and EVENT)."""
    sub: zmq.Socket = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100)
    for topic in (b"progress", b"event"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    if keys:
        from cosim.runtime import security
        security.client_from_dir(keys, key_name).apply_client(sub)
    try:
        sub.connect(address)
    except zmq.ZMQError as e:
        sub.close()
        raise ConfigError(f"cosim watch: cannot connect to {address}: {e}") from None
    return sub


class View:
    """What the watcher knows: the latest PROGRESS, a short history per region, the events."""

    def __init__(self, regions: list[int] | None = None, history: int = 30):
        self.regions = set(regions) if regions else None    # None: every region published
        self.progress: dict | None = None
        self.window: int | None = None
        self.events: list[dict] = []
        self.history: dict[tuple, deque] = defaultdict(lambda: deque(maxlen=history))
        self.speed: deque = deque(maxlen=5)                   # (wall_s, windows_done) for the current speed
        self.received = time.monotonic()

    def add(self, msg) -> None:
        """Take one broadcast. Whatever it holds (wrong types, NaN, missing keys, escape codes in
        names) it is drawn as far as it makes sense, never a crash (tolerate, never trust, §5)."""
        self.received = time.monotonic()
        c = msg.content if isinstance(msg.content, dict) else {}
        if msg.type == T.EVENT:
            self.events.append({k: printable(v, 400) if isinstance(v, str) else v for k, v in c.items()})
            return
        if msg.type != T.PROGRESS:
            return
        p = self.progress = {**{k: _num(c.get(k)) for k in ("windows_done", "windows", "window_ms", "t_ms", "wall_s")},
                             "timing": c.get("timing")}
        self.window = msg.window if isinstance(msg.window, int) else None
        self.speed.append((p["wall_s"], p["windows_done"]))
        rates = c.get("rates")
        for r in rates if isinstance(rates, list) else []:
            if not _rate_ok(r):
                continue
            for region, hz in zip(r["regions"], r["hz"]):
                self.history[(printable(r["node"]), printable(r["name"]), int(region))].append(float(hz))

    @property
    def ended(self) -> dict | None:
        """The end of the run: a `completed`/`aborted` EVENT, or the PROGRESS of the last window
        (the EVENT may be lost: PUB is lossy and the coordinator exits right after it)."""
        end = next((e for e in self.events if e.get("event") in ("completed", "aborted")), None)
        if end is None and self.progress and self.progress["windows_done"] == self.progress["windows"] \
                and math.isfinite(self.progress["windows"]):
            end = {"event": "completed"}
        return end

    def render(self, width: int | None = None) -> str:
        p = self.progress
        if p is None:
            end = self.ended
            return f"cosim watch: run {end.get('event')}" if end else "cosim watch: waiting for progress…"
        done, total, wall, t = p["windows_done"], p["windows"], p["wall_s"], p["t_ms"]
        (w0, d0), (w1, d1) = self.speed[0], self.speed[-1]
        rate = (d1 - d0) / (w1 - w0) if w1 > w0 else (done / wall if wall else 0.0)
        rtf = wall / (t / 1000) if t else 0.0
        pct = 100 * done / total if total >= 1 else math.nan
        lines = [f"window {self.window} ({_count(done)}/{_count(total)}, {pct:.0f} %)  t = {t:.1f} ms  "
                 f"wall {wall:.1f} s  speed {rate:.0f} windows/s = {rate * p['window_ms']:.0f} ms/s simulated  "
                 f"real-time factor {rtf:.2f}"]
        timing: dict = p["timing"] if isinstance(p.get("timing"), dict) else {}
        raw = timing.get("nodes")
        nodes = {printable(str(n)): v for n, v in (raw.items() if isinstance(raw, dict) else ()) if isinstance(v, dict)}
        if timing:
            parts = [f"window {1e3 * _num(timing.get('window_wall_s')):.2f} ms"]
            parts += [f"{n} compute {1e3 * _num(v.get('compute_s')):.2f} ms, wait {1e3 * _num(v.get('wait_s')):.2f} ms"
                      for n, v in sorted(nodes.items())]
            lines.append("timing (last window): " + " | ".join(parts))
        rows = [(k, h) for k, h in sorted(self.history.items())
                if self.regions is None or k[2] in self.regions]
        if rows:
            lines.append(f"{'node':>10} {'signal':>10} {'region':>6} {'rate Hz':>9}  recent")
            for (node, name, region), h in rows[:40]:
                lines.append(f"{node:>10} {name:>10} {region:>6} {h[-1]:>9.3f}  {sparkline(h)}")
            if len(rows) > 40:
                lines.append(f"… {len(rows) - 40} more regions (choose with --regions)")
        end = self.ended
        if end:
            lines.append(f"run {end.get('event')}" + (f": {end['reason']}" if end.get("reason") else ""))
        return "\n".join(line[:width] if width else line for line in lines)


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def _count(v: float) -> str:
    return str(int(v)) if math.isfinite(v) and v == int(v) else str(v)


def _rate_ok(r) -> bool:
    return (isinstance(r, dict) and isinstance(r.get("node"), str) and isinstance(r.get("name"), str)
            and isinstance(r.get("regions"), list) and all(isinstance(x, int) and not isinstance(x, bool)
                                                           for x in r["regions"])
            and isinstance(r.get("hz"), np.ndarray) and r["hz"].dtype.kind in "fiu"
            and r["hz"].shape == (len(r["regions"]),))


def sparkline(values) -> str:
    """One bar per value; a value that is not finite (NaN, Inf) is a space."""
    v = list(values)
    ok = [x for x in v if math.isfinite(x)]
    if not ok:
        return " " * len(v)
    lo, hi = min(ok), max(ok)
    if hi - lo < 1e-12:
        return "".join(SPARK[0] if math.isfinite(x) else " " for x in v)
    return "".join(SPARK[min(len(SPARK) - 1, int((x - lo) / (hi - lo) * len(SPARK)))] if math.isfinite(x) else " "
                   for x in v)


def watch(address: str, once: bool = False, timeout_s: float = 30.0, regions: list[int] | None = None,
          keys: str | None = None, key_name: str = "watch", out=None, interval_s: float = 0.5) -> int:
    """Follow the run at `address`. `once`: print one snapshot of the first PROGRESS and return.
    Returns 0 (snapshot printed / run completed), 1 (nothing heard for `timeout_s`, or the run aborted)."""
    out = out or sys.stdout
    sub = subscribe(address, keys, key_name)
    view = View(regions)
    tty = hasattr(out, "isatty") and out.isatty()
    shown_lines, last_draw = 0, 0.0
    try:
        while True:
            if sub.poll(100):
                try:
                    view.add(codec.decode_published(sub.recv_multipart()))
                except codec.ProtocolError:
                    continue
                if once and view.progress is not None:
                    print(view.render(), file=out)
                    return 0
            now = time.monotonic()
            if view.ended is None and now - view.received > timeout_s:
                print(f"cosim watch: nothing heard from {address} for {timeout_s:g} s "
                      + ("(the run ended or the network is down)" if view.progress else
                         "(is a run going, and is this its PUB address?)"), file=sys.stderr)
                return 1
            if once:
                continue
            if now - last_draw >= interval_s or view.ended:
                text = view.render(shutil.get_terminal_size().columns if tty else None)
                if tty and shown_lines:
                    out.write(f"\x1b[{shown_lines}F\x1b[J")     # back to the top of the last frame, clear
                out.write(text + "\n")
                out.flush()
                shown_lines, last_draw = text.count("\n") + 1, now
                if view.ended:
                    return 0 if view.ended.get("event") == "completed" else 1
    finally:
        sub.close()
