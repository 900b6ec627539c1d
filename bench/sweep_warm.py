"""A sweep of N default-example runs with warm (preloaded, forked) service processes against the
same sweep with fresh (cold) ones, in one call: each run's wall time in its worker minus its own
loop, and where a warm run's remaining overhead goes.

The issue's goal (issue 24): "In a sweep of 20 default-example runs with preloaded workers, the
wall time per run is at most the run's loop + 1 s". Here: `cosim sweep` of examples/default.yaml
(its fixed ports left out: each run picks free ones; NetPyNE regions 33 and 71, 500 ms) over seeds
0..N-1, `--workers 1` (every run in the one worker, so each run after the first reuses that
worker's zygote), the spiking figure off and `--no-plots` (a sweep's default). Per run, `wall_s` is
measured by the worker around the whole `cosim run` it performs (checks, services started, loop,
results, services' exit, the run's measures) and `loop_s` is summary.json's loop; the overhead is
their difference. The first warm run pays the zygote's imports and is reported apart. For the later
runs: the median of each service's start-up phases (summary.json ``startup``) and of the launcher's
own time to the first window and after the last.

    python bench/sweep_warm.py [--size tiny|full] [--runs N] [--cold-runs M | --no-cold] [--out result.json]

(the cold baseline's sweep has `--cold-runs` runs, default as many as the warm one: 20 cold runs of
the default example take about 2-3 minutes here)
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from bench.common import PY, REPO, arg_parser, env, load_avg, median, write_config  # noqa: E402

# tiny (the bench smoke test, CI): the reference backend, 50 ms, 3 runs
SIZES = {"tiny": {"runs": 3, "sets": ["spiking_nodes.0.backend=reference", "run.duration_ms=50"]},
         "full": {"runs": 20, "sets": ["spiking_nodes.0.params={record: {plot: false}}"]}}


def sweep(work: Path, runs: int, sets: list[str], warm: bool) -> dict:
    out = work / ("warm" if warm else "cold")
    cfg = yaml.safe_load((REPO / "examples" / "default.yaml").read_text())
    for k in ("router", "pub"):         # free ports picked per run, as `cosim run` with no config does
        cfg["coordinator"].pop(k)
    path = write_config(cfg, work / "default.yaml")
    argv = PY + ["sweep", str(path), "--seeds", str(runs), "--workers", "1",
                 "--out", str(out)] + [x for s in sets for x in ("--set", s)] + ([] if warm else ["--cold"])
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env())
    total = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"cosim sweep failed: {p.stderr.strip().splitlines()[-3:]}")
    recs = sorted((json.loads(f.read_text()) for f in out.glob("runs/*/sweep_run.json")), key=lambda r: r["index"])
    walls = [r["wall_s"] for r in recs]
    loops = [r["loop_s"] for r in recs]
    over = [w - lp for w, lp in zip(walls, loops)]
    phases: dict[str, list[float]] = {}
    for r, o in zip(recs[1:], over[1:]):
        try:
            s = json.loads((Path(r["folder"]) / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        st = s.get("startup") or {}
        if isinstance(st.get("wall_s"), (int, float)):
            phases.setdefault("to the first window (launch → first window)", []).append(float(st["wall_s"]))
            phases.setdefault("the rest (wall − loop − to the first window)", []).append(o - float(st["wall_s"]))
        for k, v in (r.get("times") or {}).items():
            phases.setdefault(f"worker: {k}", []).append(float(v))
        for name, svc in (st.get("services") or {}).items():
            for k, v in (svc.get("phases") or {}).items():
                phases.setdefault(f"{name}: {k}", []).append(float(v))
    return {"total_s": total, "wall_s": walls, "loop_s": loops, "overhead_s": over,
            "first_run_s": walls[0], "first_overhead_s": over[0],
            "later_wall_median_s": median(walls[1:]), "later_loop_median_s": median(loops[1:]),
            "later_overhead_median_s": median(over[1:]), "later_overhead_max_s": max(over[1:]),
            "phases_median_s": {k: median(v) for k, v in phases.items()}}


def run(size: str, out: Path | None = None, runs: int | None = None, cold_runs: int | None = None) -> dict:
    """cold_runs: runs of the cold baseline (None: as many as warm; 0: none)."""
    p = SIZES[size]
    n = runs or p["runs"]
    nc = n if cold_runs is None else cold_runs
    res: dict = {"size": size, "runs": n, "cold_runs": nc, "sets": p["sets"], "workers": 1, "load_before": load_avg()}
    with tempfile.TemporaryDirectory(prefix="cosim-bench-sweep-warm-") as tmp:
        work = Path(tmp)
        if nc:
            res["cold"] = sweep(work, nc, p["sets"], warm=False)
        res["warm"] = sweep(work, n, p["sets"], warm=True)
    res["load_after"] = load_avg()
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
    return res


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--runs", type=int, help="runs per sweep (default: 20 full, 3 tiny)")
    ap.add_argument("--cold-runs", type=int, help="runs of the cold baseline (default: as many as --runs)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold baseline")
    a = ap.parse_args()
    res = run(a.size, a.out, a.runs, 0 if a.no_cold else a.cold_runs)
    print(f"{res['runs']} warm and {res['cold_runs']} cold runs, 1 worker, sets {res['sets']} (load {res['load_before']:.1f} → "
          f"{res['load_after']:.1f})")
    for kind in ("cold", "warm"):
        s = res.get(kind)
        if not s:
            continue
        print(f"{kind}: {len(s['wall_s'])} runs in {s['total_s']:.1f} s; first run {s['first_run_s']:.2f} s "
              f"(loop + {s['first_overhead_s']:.2f}); later runs: wall median {s['later_wall_median_s']:.2f} s, loop "
              f"median {s['later_loop_median_s']:.2f} s, wall − loop median {s['later_overhead_median_s']:.2f} s "
              f"(max {s['later_overhead_max_s']:.2f})")
        print("  wall − loop per run: " + " ".join(f"{x:.2f}" for x in s["overhead_s"]))
        if kind == "warm":
            for k, v in s["phases_median_s"].items():
                if v >= 0.005:
                    print(f"    {k}: {v:.3f} s")


if __name__ == "__main__":
    main()
