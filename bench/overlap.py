"""Overlap: the default example's wall time against TVB alone and the spiking network alone.

Same sizes and simulated time. Baselines, each in a fresh process (bench/alone.py):
- TVB alone: tvb-library's own `Simulator` (Raw + TemporalAverage monitors), no proxies.
- NEURON alone: the spiking node's NetPyNE network with the very input the co-simulation fed it
  (coupling/R_e recorded in coordinator.h5), all input spikes queued up front and ONE psolve.
- Windowed alone (for the breakdown): the node's adapter stepped window by window, no sockets.

`ratio` (aim ≤ 1.10) = co-simulation loop (first STEP → last STEP_DONE) / max(TVB alone,
NEURON alone), medians over repeats, both measured in this call. The whole run (processes
started → exited, building both simulators included) is reported next to it.

Usage: python bench/overlap.py [--size tiny|full] [--curve]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import alone, cosim_run, load_avg, loop_s, median, save_coupling, arg_parser  # noqa: E402

SIZES = {"tiny": {"duration_ms": 20.0, "repeats": 1, "params": {"network": {"scale": 0.25}}},
         "full": {"duration_ms": 500.0, "repeats": 3, "params": {}}}


def default_config(duration_ms: float, params: dict, curve_dir: str | None = None) -> dict:
    cfg = {"run": {"name": "bench-overlap", "duration_ms": duration_ms},
           "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71], "params": params}]}
    if curve_dir:
        cfg["coordinator"] = {"curve": True, "keys_dir": curve_dir}
    return cfg


def run(size: str = "full", out: Path | None = None, curve: bool = False, repeats: int | None = None) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-overlap-"))
    curve_dir = None
    if curve:
        from bench.protocol import make_keys
        curve_dir = make_keys(str(out / "keys"))
    cfg = default_config(sz["duration_ms"], sz["params"], curve_dir)
    runs = []
    load0 = load_avg()
    for i in range(repeats or sz["repeats"]):
        r = cosim_run(cfg, out / f"cosim{i}")
        s = r["summary"]
        W = int(s["steps_per_window"])
        coupling = save_coupling(Path(r["out"]))
        base = {"tvb": alone("tvb", cfg, out / f"alone{i}", W),
                "neuron": alone("neuron", cfg, out / f"alone{i}", W, coupling),
                "windowed": alone("windowed", cfg, out / f"alone{i}", W, coupling)}
        runs.append({"loop_s": loop_s(r), "wall_total_s": r["wall_total_s"], "windows": s["windows"],
                     "window_ms": s["window_ms"], "real_time_factor": s["real_time_factor"],
                     "build_s": {n: v.get("build_s") for n, v in s["nodes"].items()},
                     "tvb_alone_s": base["tvb"]["run_s"], "neuron_alone_s": base["neuron"]["run_s"],
                     "windowed_alone_s": base["windowed"]["run_s"],
                     "tvb_alone_process_s": base["tvb"]["process_s"],
                     "neuron_alone_process_s": base["neuron"]["process_s"], "out": r["out"]})
    med = {k: median(r[k] for r in runs) for k in ("loop_s", "wall_total_s", "tvb_alone_s", "neuron_alone_s",
                                                  "windowed_alone_s", "tvb_alone_process_s",
                                                  "neuron_alone_process_s", "real_time_factor")}
    slower = max(med["tvb_alone_s"], med["neuron_alone_s"])
    return {"benchmark": "overlap", "curve": curve, "size": size, "duration_ms": sz["duration_ms"],
            "repeats": len(runs), "load_avg_start": load0, "load_avg_end": load_avg(),
            "windows": runs[0]["windows"], "window_ms": runs[0]["window_ms"], **med,
            "slower_alone": "tvb" if med["tvb_alone_s"] >= med["neuron_alone_s"] else "neuron",
            "ratio": med["loop_s"] / slower, "aim": 1.10,
            "ratio_vs_sum": med["loop_s"] / (med["tvb_alone_s"] + med["neuron_alone_s"]),
            "ratio_whole_vs_slower_process": med["wall_total_s"] / max(med["tvb_alone_process_s"],
                                                                       med["neuron_alone_process_s"]),
            "runs": runs, "example_run": runs[-1]["out"]}


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--curve", action="store_true")
    ap.add_argument("--repeats", type=int)
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.curve, a.repeats)
    print(f"co-simulation loop {res['loop_s']:.2f} s; TVB alone {res['tvb_alone_s']:.2f} s, NEURON alone "
          f"{res['neuron_alone_s']:.2f} s; ratio {res['ratio']:.2f} (aim ≤ 1.10)", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
