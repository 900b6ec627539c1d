"""Long runs: 10,000 windows of ONE TVB step each (window = dt), real TVB + NetPyNE.

Checks (aims): the run completes with window = dt; input reaches the spiking network (input
spikes delivered, spiking rates > 0); resident memory of every process flat (growth < 5 %
between window 1,000 and the last window); time per window flat (median of windows
1,000-2,000 against the last 1,000).

RSS is sampled from /proc every 0.25 s for every cosim process and tagged with the window the
coordinator last published on its PUB channel.

Usage: python bench/longrun.py [--size tiny|full]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import TreeSampler, cosim_run, free_port, load_avg, timing, arg_parser  # noqa: E402

SIZES = {"tiny": {"windows": 300, "backend": "noop", "mark": 100},
         "full": {"windows": 10_000, "backend": "netpyne", "mark": 1_000}}


def config(windows: int, backend: str, pub: str) -> dict:
    params = {"dt_ms": 0.05, "record": {"input_spikes": True}} if backend == "netpyne" else {}
    return {"run": {"name": "bench-longrun", "duration_ms": windows * 0.1, "window_ms": 0.1},
            "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71] if backend == "netpyne"
                               else [3, 5], "params": params}],
            "coordinator": {"pub": pub}}


def _rss_at(samples: list[dict], window: int) -> dict[str, int]:
    """RSS per service at the first sample at or after `window` (kB)."""
    for s in samples:
        if s["window"] >= window:
            return s["rss_kb"]
    return samples[-1]["rss_kb"] if samples else {}


def run(size: str = "full", out: Path | None = None) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-longrun-"))
    pub = f"tcp://127.0.0.1:{free_port()}"
    sampler = TreeSampler(0.25, pub)
    load0 = load_avg()
    r = cosim_run(config(sz["windows"], sz["backend"], pub), out / "run", timeout=1800, sampler=sampler)
    K, mark = r["summary"]["windows"], sz["mark"]
    wall = timing(out / "run")["window_wall_s"][:, 0]
    early, late = wall[mark:2 * mark], wall[-mark:]
    samples = sampler.samples
    last_window = max((s["window"] for s in samples), default=-1)
    at_mark = _rss_at(samples, mark)
    # the last sample taken while windows still ran (files are closed and plots drawn after)
    running = [s for s in samples if 0 <= s["window"] < K - 1] or samples
    at_end = running[-1]["rss_kb"] if running else {}
    growth = {k: (at_end[k] - v) / v for k, v in at_mark.items() if k in at_end and v}
    res = {"benchmark": "longrun", "size": size, "backend": sz["backend"], "windows": K,
           "steps_per_window": r["summary"]["steps_per_window"], "load_avg_start": load0, "load_avg_end": load_avg(),
           "loop_s": r["summary"]["wall_s"], "wall_total_s": r["wall_total_s"],
           "window_us_early": float(np.median(early) * 1e6), "window_us_late": float(np.median(late) * 1e6),
           "window_time_growth": float(np.median(late) / np.median(early) - 1),
           "rss_kb_at_mark": at_mark, "rss_kb_at_end": at_end, "rss_mark_window": mark,
           "rss_end_window": running[-1]["window"] if running else None, "rss_growth": growth,
           "rss_growth_max": max(growth.values()) if growth else None, "aim_rss_growth": 0.05,
           "last_window_seen": last_window,
           "rss_trace": [{"window": s["window"], **s["rss_kb"]} for s in samples[:: max(1, len(samples) // 200)]],
           "out": str(out / "run")}
    if sz["backend"] == "netpyne":
        import h5py
        with h5py.File(out / "run" / "spiking.h5", "r") as f:
            res["input_spikes"] = int(f["input_spikes/t_ms"].shape[0]) if "input_spikes/t_ms" in f else 0
            res["input_rate_hz_mean"] = float(np.mean(f["input/rate_hz"][:]))
            res["exc_rate_hz_mean"] = float(np.mean(f["rates/exc"][:]))
            res["spikes"] = int(f["spikes/t_ms"].shape[0]) if "spikes/t_ms" in f else 0
        res["input_delivered"] = res["input_spikes"] > 0 and res["exc_rate_hz_mean"] > 0
    return res


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None)
    print(f"{res['windows']} windows; per window {res['window_us_early']:.0f} → {res['window_us_late']:.0f} µs; "
          f"RSS growth {res['rss_growth']}", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
