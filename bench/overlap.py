"""Overlap: the default example's wall time against TVB alone and the spiking network alone.

Same sizes and simulated time. Baselines, each in a fresh process (bench/alone.py):
- TVB alone: tvb-library's own `Simulator` (Raw + TemporalAverage monitors), no proxies.
- NEURON alone: the spiking node's NetPyNE network with the very input the co-simulation fed it
  (coupling/R_e recorded in coordinator.h5), all input spikes queued up front and ONE psolve.
- Windowed alone (for the breakdown): the node's adapter stepped window by window, no sockets.

`ratio` (aim ≤ 1.10; issue 12 with protocol 3: ≤ 1.3) = co-simulation loop (first window
granted → last STEP_DONE) / max(TVB alone, NEURON alone), medians over repeats, both measured in
this call. The whole run (processes started → exited, building both simulators included) is
reported next to it. With `--lookahead 1,2,4` each repeat runs the co-simulation once per lag m
(`run.lookahead`, PROTOCOL.md §3: windows m times shorter, a node runs up to m windows ahead),
interleaved with the same baselines; `by_lookahead` holds each m's figures (the top-level figures
are those of the first m).

Usage: python bench/overlap.py [--size tiny|full] [--curve] [--repeats N] [--lookahead 1,2,4]
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


def default_config(duration_ms: float, params: dict, curve_dir: str | None = None, lookahead: int = 1) -> dict:
    cfg = {"run": {"name": "bench-overlap", "duration_ms": duration_ms, "lookahead": lookahead},
           "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71], "params": params}]}
    if curve_dir:
        cfg["coordinator"] = {"curve": True, "keys_dir": curve_dir}
    return cfg


def run(size: str = "full", out: Path | None = None, curve: bool = False, repeats: int | None = None,
        lookaheads: tuple[int, ...] = (1,)) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-overlap-"))
    curve_dir = None
    if curve:
        from bench.protocol import make_keys
        curve_dir = make_keys(str(out / "keys"))
    cfg = default_config(sz["duration_ms"], sz["params"], curve_dir)
    runs = []
    extra: dict[int, list] = {m: [] for m in lookaheads[1:]}
    load0 = load_avg()
    for i in range(repeats or sz["repeats"]):
        for m in lookaheads[1:]:        # interleaved with the baselines below
            rm = cosim_run(default_config(sz["duration_ms"], sz["params"], curve_dir, m), out / f"cosim{i}_m{m}")
            extra[m].append({"loop_s": loop_s(rm), "wall_total_s": rm["wall_total_s"], "windows": rm["summary"]["windows"],
                             "window_ms": rm["summary"]["window_ms"], "out": rm["out"]})
        r = cosim_run(default_config(sz["duration_ms"], sz["params"], curve_dir, lookaheads[0]), out / f"cosim{i}")
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
    by_m = {lookaheads[0]: {"loop_s": med["loop_s"], "ratio": med["loop_s"] / slower, "windows": runs[0]["windows"],
                            "window_ms": runs[0]["window_ms"], "loop_runs_s": [r["loop_s"] for r in runs]}}
    for m, rs in extra.items():
        lm = median(r["loop_s"] for r in rs)
        by_m[m] = {"loop_s": lm, "ratio": lm / slower, "windows": rs[0]["windows"], "window_ms": rs[0]["window_ms"],
                   "loop_runs_s": [r["loop_s"] for r in rs], "wall_total_s": median(r["wall_total_s"] for r in rs)}
    return {"benchmark": "overlap", "curve": curve, "size": size, "duration_ms": sz["duration_ms"],
            "lookahead": lookaheads[0], "by_lookahead": by_m, "aim_issue12": 1.3,
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
    ap.add_argument("--lookahead", default="1", help="comma-separated lags m to run (e.g. 1,2,4)")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.curve, a.repeats,
              tuple(int(x) for x in a.lookahead.split(",")))
    print(f"co-simulation loop {res['loop_s']:.2f} s; TVB alone {res['tvb_alone_s']:.2f} s, NEURON alone "
          f"{res['neuron_alone_s']:.2f} s; ratio {res['ratio']:.2f} (aim ≤ 1.3)", file=sys.stderr)
    for m, d in res["by_lookahead"].items():
        print(f"  lookahead {m}: {d['windows']} windows of {d['window_ms']:g} ms, loop {d['loop_s']:.2f} s, "
              f"ratio {d['ratio']:.2f}", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
