"""Protocol overhead: lockstep windows with nodes that simulate nothing, against raw pyzmq.

Baseline (same run, same machine): a ROUTER in one process exchanging one message with each
of N DEALER echo processes per iteration (N = the number of nodes, payload of the same size
as a window's signals), i.e. the least any lockstep protocol over ZeroMQ can cost.
Measured: `cosim run` with the noop backend (real coordinator, real node runtime, real
heartbeats and recording); per-window time = the coordinator's window wall time (median).

Usage: python bench/protocol.py [--windows 4000] [--repeats 3] [--curve]
Prints a JSON line with the raw figures and the ratio (aim: ≤ 1.5).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml
import zmq


def _echo(addr: str, ident: bytes) -> None:
    s = zmq.Context().socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.connect(addr)
    s.send(b"hello")
    while True:
        m = s.recv_multipart(copy=False)
        if bytes(m[0]) == b"quit":
            return
        s.send_multipart(m, copy=False)


def raw_round_trip(n_peers: int, payload_bytes: int, iters: int) -> float:
    """Median seconds for one ROUTER → n DEALERs → ROUTER exchange."""
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    port = r.bind_to_random_port("tcp://127.0.0.1")
    ids = [f"peer{i}".encode() for i in range(n_peers)]
    procs = [mp.Process(target=_echo, args=(f"tcp://127.0.0.1:{port}", i)) for i in ids]
    for p in procs:
        p.start()
    for _ in ids:
        r.recv_multipart()
    payload = np.zeros(payload_bytes // 8).tobytes()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        for i in ids:
            r.send_multipart([i, b"x", payload])
        for _ in ids:
            r.recv_multipart(copy=False)
        times.append(time.perf_counter() - t)
    for i in ids:
        r.send_multipart([i, b"quit"])
    for p in procs:
        p.join(10)
    r.close(0)
    ctx.term()
    return statistics.median(times)


def lockstep(windows: int, curve_dir: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"run": {"name": "bench", "duration_ms": windows * 1.6, "results_dir": tmp, "progress": False},
               "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5]}]}
        if curve_dir:
            cfg["coordinator"] = {"curve": True, "keys_dir": curve_dir}
        p = Path(tmp) / "c.yaml"
        p.write_text(yaml.safe_dump(cfg))
        out = Path(tmp) / "out"
        subprocess.run([sys.executable, "-m", "cosim.cli", "--log-level", "WARNING", "run", str(p), "--out", str(out),
                        "--no-plots"], check=True, capture_output=True, timeout=600)
        with h5py.File(out / "coordinator.h5", "r") as f:
            wall = f["timing/window_wall_s"][:, 0]
        summary = json.loads((out / "summary.json").read_text())
    return {"window_median_s": float(np.median(wall[10:])), "window_mean_s": float(np.mean(wall[10:])),
            "windows_per_s": summary["windows_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--curve", action="store_true", help="run the lockstep part with CURVE on")
    a = ap.parse_args()
    curve_dir = None
    if a.curve:
        curve_dir = tempfile.mkdtemp()
        subprocess.run([sys.executable, "-m", "cosim.cli", "keys", curve_dir], check=True, capture_output=True)
    payload = 16 * 2 * 8 + 300          # one window's signal block plus headers
    raws, steps = [], []
    for _ in range(a.repeats):        # interleave so both see the same machine load
        raws.append(raw_round_trip(2, payload, a.windows))
        steps.append(lockstep(a.windows, curve_dir))
    raw = statistics.median(raws)
    win = statistics.median(s["window_median_s"] for s in steps)
    res = {"benchmark": "protocol", "curve": a.curve, "nodes": 2, "windows": a.windows, "repeats": a.repeats,
           "raw_round_trip_us": raw * 1e6, "lockstep_window_us": win * 1e6,
           "lockstep_windows_per_s": statistics.median(s["windows_per_s"] for s in steps),
           "ratio": win / raw, "aim": 1.5, "raw_runs_us": [r * 1e6 for r in raws],
           "window_runs_us": [s["window_median_s"] * 1e6 for s in steps]}
    print(f"raw ROUTER↔2×DEALER round trip {raw * 1e6:.0f} µs; lockstep window {win * 1e6:.0f} µs; "
          f"ratio {win / raw:.2f} (aim ≤ 1.5)", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
