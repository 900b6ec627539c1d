"""Protocol overhead: lockstep windows with nodes that simulate nothing, against raw pyzmq.

Baseline (same run, same machine, interleaved with the measurement): a ROUTER in one process
exchanging one message with each of N DEALER echo processes per iteration (N = the number of
nodes, payload of the same size as a window's signals): the least any lockstep protocol over
ZeroMQ can cost. Measured: `cosim run` with the noop backend (real coordinator, real node
runtime, real heartbeats and recording). Figures:

- `ratio` (the aim, ≤ 1.5): time per window of the whole lockstep loop (loop wall / windows,
  i.e. 1 / windows per second, everything the coordinator does between windows included) over
  time per raw round trip (total / iterations).
- `ratio_window_median`: the coordinator's median per-window wall (STEP sent → last STEP_DONE
  received; excludes recording and routing between windows) over the raw median round trip.

Usage: python bench/protocol.py [--windows 4000] [--repeats 3] [--curve]
"""
from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import PY, cosim_run, load_avg, median, timing, arg_parser  # noqa: E402

SIZES = {"tiny": {"windows": 300, "repeats": 1}, "full": {"windows": 4000, "repeats": 5}}
REGIONS = [3, 5]
W_STEPS = 16            # the noop connectome's delay: one window = 16 TVB steps


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


def raw_round_trip(n_peers: int, payload_bytes: int, iters: int, curve: bool = False) -> dict:
    """ROUTER → n DEALERs → ROUTER exchanges: median and mean seconds per exchange."""
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
    times = np.empty(iters)
    t_all = time.perf_counter()
    for k in range(iters):
        t = time.perf_counter()
        for i in ids:
            r.send_multipart([i, b"x", payload])
        for _ in ids:
            r.recv_multipart(copy=False)
        times[k] = time.perf_counter() - t
    t_all = time.perf_counter() - t_all
    for i in ids:
        r.send_multipart([i, b"quit"])
    for p in procs:
        p.join(10)
    r.close(0)
    ctx.term()
    return {"median_s": float(np.median(times)), "mean_s": t_all / iters}


def lockstep(windows: int, out: Path, curve_dir: str | None) -> dict:
    cfg = {"run": {"name": "bench-protocol", "duration_ms": windows * W_STEPS * 0.1},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": REGIONS}]}
    if curve_dir:
        cfg["coordinator"] = {"curve": True, "keys_dir": curve_dir}
    r = cosim_run(cfg, out, timeout=600)
    t = timing(out)
    wall = t["window_wall_s"][:, 0]
    s = r["summary"]
    return {"window_median_s": float(np.median(wall[10:])), "loop_per_window_s": s["wall_s"] / s["windows"],
            "windows_per_s": s["windows_per_s"], "windows": s["windows"], "wall_total_s": r["wall_total_s"],
            "out": str(out)}


def make_keys(d: str) -> str:
    subprocess.run(PY + ["keys", d], check=True, capture_output=True)
    return d


def run(size: str = "full", out: Path | None = None, curve: bool = False, windows: int | None = None,
        repeats: int | None = None) -> dict:
    sz = SIZES[size]
    windows, repeats = windows or sz["windows"], repeats or sz["repeats"]
    out = Path(out or tempfile.mkdtemp(prefix="bench-protocol-"))
    curve_dir = make_keys(str(out / "keys")) if curve else None
    payload = W_STEPS * len(REGIONS) * 8 + 300          # one window's signal block plus headers
    raws, steps = [], []
    load0 = load_avg()
    for i in range(repeats):        # interleaved, so both see the same machine load
        raws.append(raw_round_trip(2, payload, windows))
        steps.append(lockstep(windows, out / f"{'curve' if curve else 'plain'}{i}", curve_dir))
    raw_mean = median(r["mean_s"] for r in raws)
    raw_med = median(r["median_s"] for r in raws)
    per_win = median(s["loop_per_window_s"] for s in steps)
    win_med = median(s["window_median_s"] for s in steps)
    return {"benchmark": "protocol", "curve": curve, "nodes": 2, "windows": windows, "repeats": repeats,
            "payload_bytes": payload, "load_avg_start": load0, "load_avg_end": load_avg(),
            "raw_round_trip_us": raw_mean * 1e6, "raw_round_trip_median_us": raw_med * 1e6,
            "lockstep_per_window_us": per_win * 1e6, "lockstep_window_median_us": win_med * 1e6,
            "lockstep_windows_per_s": median(s["windows_per_s"] for s in steps),
            "raw_exchanges_per_s": 1 / raw_mean,
            "ratio": per_win / raw_mean, "ratio_window_median": win_med / raw_med, "aim": 1.5,
            "raw_runs_us": [r["mean_s"] * 1e6 for r in raws],
            "lockstep_runs_us": [s["loop_per_window_s"] * 1e6 for s in steps],
            "lockstep_window_median_runs_us": [s["window_median_s"] * 1e6 for s in steps],
            "example_run": steps[-1]["out"]}


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--windows", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--curve", action="store_true", help="run the lockstep part with CURVE on")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.curve, a.windows, a.repeats)
    print(f"raw ROUTER↔2×DEALER round trip {res['raw_round_trip_us']:.0f} µs; lockstep {res['lockstep_per_window_us']:.0f} µs "
          f"per window; ratio {res['ratio']:.2f} (aim ≤ 1.5); coordinator window median ratio "
          f"{res['ratio_window_median']:.2f}", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
