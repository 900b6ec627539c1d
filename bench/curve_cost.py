"""Cost of CURVE encryption per window: the same noop run with and without `coordinator.curve`.

Measured (noop backend: no simulation, so the figure is the protocol's own cost): the lockstep
loop's time per window (loop wall / windows) and the coordinator's median window wall
(STEP sent → last STEP_DONE received), for a small payload (2 spiking regions) and a larger one
(64 spiking regions: each signal is 16 × 64 float64 per window). Plain and CURVE runs
are interleaved, repeated (default 3×), and medians are compared: `ratio` = CURVE / plain,
`extra_us` = CURVE − plain per window.

Usage: python bench/curve_cost.py [--windows 2000] [--repeats 3] [--out DIR]
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import PY, cosim_run, load_avg, median, timing, arg_parser  # noqa: E402

SIZES = {"tiny": {"windows": 300, "repeats": 1}, "full": {"windows": 2000, "repeats": 3}}
PAYLOADS = {"2 regions": list(range(3, 5)), "64 regions": list(range(4, 68))}
W_STEPS = 16            # the noop connectome's delay: one window = 16 TVB steps of 0.1 ms


def one(windows: int, regions: list[int], out: Path, keys: str | None) -> dict:
    cfg = {"run": {"name": "bench-curve", "duration_ms": windows * W_STEPS * 0.1},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": regions}]}
    if keys:
        cfg["coordinator"] = {"curve": True, "keys_dir": keys}
    r = cosim_run(cfg, out, timeout=600)
    wall = timing(out)["window_wall_s"][:, 0]
    s = r["summary"]
    return {"per_window_us": s["wall_s"] / s["windows"] * 1e6, "window_median_us": float(np.median(wall[10:])) * 1e6}


def run(size: str = "full", out: Path | None = None, windows: int | None = None, repeats: int | None = None) -> dict:
    sz = SIZES[size]
    windows, repeats = windows or sz["windows"], repeats or sz["repeats"]
    out = Path(out or tempfile.mkdtemp(prefix="bench-curve-"))
    out.mkdir(parents=True, exist_ok=True)
    keys = str(out / "keys")
    subprocess.run(PY + ["keys", keys], check=True, capture_output=True, timeout=60)
    load0 = load_avg()
    res: dict = {"benchmark": "curve_cost", "windows": windows, "repeats": repeats, "steps_per_window": W_STEPS,
                 "load_avg_start": load0, "payloads": {}}
    for label, regions in PAYLOADS.items():
        plain, curve = [], []
        for i in range(repeats):          # interleaved: both see the same machine load
            tag = label.split()[0]
            plain.append(one(windows, regions, out / f"plain_{tag}_{i}", None))
            curve.append(one(windows, regions, out / f"curve_{tag}_{i}", keys))
        p, c = median(x["per_window_us"] for x in plain), median(x["per_window_us"] for x in curve)
        pm, cm = median(x["window_median_us"] for x in plain), median(x["window_median_us"] for x in curve)
        res["payloads"][label] = {
            "signal_bytes": W_STEPS * len(regions) * 8,
            "plain_per_window_us": p, "curve_per_window_us": c, "ratio": c / p, "extra_us": c - p,
            "plain_window_median_us": pm, "curve_window_median_us": cm, "ratio_window_median": cm / pm,
            "plain_runs_us": [x["per_window_us"] for x in plain], "curve_runs_us": [x["per_window_us"] for x in curve]}
    res["load_avg_end"] = load_avg()
    return res


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--windows", type=int)
    ap.add_argument("--repeats", type=int)
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.windows, a.repeats)
    print(f"CURVE cost, noop backend, {res['windows']} windows × {res['repeats']} runs each (medians); "
          f"load {res['load_avg_start']:.2f} → {res['load_avg_end']:.2f}")
    for label, r in res["payloads"].items():
        print(f"  {label:>10} ({r['signal_bytes']:>5} B per signal): plain {r['plain_per_window_us']:.0f} µs, "
              f"CURVE {r['curve_per_window_us']:.0f} µs per window → ratio {r['ratio']:.2f} (+{r['extra_us']:.0f} µs); "
              f"coordinator window median ratio {r['ratio_window_median']:.2f}")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
