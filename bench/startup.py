"""Start-up and tear-down of a run, against the floor of bare imports measured in the same call;
and the wall time per run of a sweep with fresh (cold) and forked (warm) service processes.

1. **Floor**: ``python -P -c "import tvb.simulator.simulator"`` and ``python -P -c "from netpyne
   import sim"`` (NEURON with it), each twice, the faster kept: what any process that uses TVB or
   NetPyNE pays before doing anything.
2. **One `cosim run`** (at full size twice: services ending as before, COSIM_SLOW_EXIT=1, then as
   now) of the default example (NetPyNE regions 33 and 71; shortened): the time
   from the command's start until the coordinator starts the windows (it creates coordinator.h5
   then), the loop (summary.json), and everything after; per service, from the logs: the
   spiking node's imports (its warm-up), its network build, when TVB was configured; and what
   `cosim run` itself reports (summary.json ``startup``, measured inside each service).
   Ratio: (start-up + tear-down) / the slowest service's floor.
3. **A sweep** of N runs (`cosim sweep --seeds N --workers 1`) cold and warm: each run's wall time
   in the worker against its own loop, the first run (which starts the warm worker's zygote) apart.

    python bench/startup.py [--size tiny|full] [--out result.json]
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosim.launch import command_lines  # noqa: E402
from bench.common import PY, arg_parser, env, load_avg, median, write_config  # noqa: E402

# tiny (the bench smoke test): the noop backend (its runs import no simulator and no TVB: what is left is
# cosim's own start-up; the TVB floor is still timed), no NetPyNE floor, floors timed once (full: the best
# of 2), no slow-exit run, 2-run sweeps
SIZES = {"tiny": {"duration_ms": 50, "backend": "noop", "runs": 2, "slow_exit": False, "floor_repeats": 1},
         "full": {"duration_ms": 100, "backend": "netpyne", "runs": 4, "slow_exit": True, "floor_repeats": 2}}
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


TEARDOWN_EXIT = "tear-down: coordinator's results → command exits (services exit, summary)"

def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def floor(code: str, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-P", "-c", code], check=True, env=env(), capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def _stamp(line: str) -> float | None:
    m = STAMP.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None


def _find(log: Path, pattern: str) -> tuple[float | None, re.Match | None]:
    """(time, match) of the first log line matching pattern."""
    if not log.exists():
        return None, None
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(pattern, line)
        if m:
            return _stamp(line), m
    return None, None


def one_run(work: Path, duration_ms: float, backend: str, slow_exit: bool = False) -> dict:
    """`cosim run` of the default example: start-up, loop, tear-down, and the services' phases.
    slow_exit: the services end with the interpreter's full teardown (COSIM_SLOW_EXIT=1, as before)."""
    out = work / f"run_{'slow_exit_' if slow_exit else ''}{time.time_ns()}"
    cfg = write_config({"run": {"duration_ms": duration_ms, "progress": False},
                        "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71]}]},
                       work / "run.yaml")
    t0_wall = time.time()
    t0 = time.perf_counter()
    p = subprocess.Popen(command_lines.cosim_cmd("INFO") + ["run", str(cfg), "--out", str(out), "--no-plots"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**env(), **({"COSIM_SLOW_EXIT": "1"} if slow_exit else {})})
    first = None
    while p.poll() is None:
        if first is None and (out / "coordinator.h5").exists():
            first = time.perf_counter() - t0
        time.sleep(0.01)
    total = time.perf_counter() - t0
    _, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"cosim run failed: {err.strip().splitlines()[-3:]}")
    summary = json.loads((out / "summary.json").read_text())
    loop = float(summary["wall_s"])
    logs = out / "logs"
    phases: dict[str, float | None] = {}
    t_reg, _ = _find(logs / "spiking.log", r"registering with")
    _, warm = _find(logs / "spiking.log", r"warmed up in ([\d.]+) s")
    _, built = _find(logs / "spiking.log", r"built in ([\d.]+) s")
    t_tvb_reg, _ = _find(logs / "tvb.log", r"registering with")
    t_plan, _ = _find(logs / "coordinator.log", r"window \d+ steps")
    t_ready, _ = _find(logs / "coordinator.log", r"all \d+ nodes ready")
    phases["services started and registered (s after the command)"] = (t_tvb_reg - t0_wall) if t_tvb_reg else None
    phases["tvb: registered → configured (imports, connectome)"] = (t_plan - t_tvb_reg) if t_plan and t_tvb_reg else None
    phases["spiking: imports (warm-up, overlapping TVB's)"] = float(warm.group(1)) if warm else None
    phases["spiking: network build"] = float(built.group(1)) if built else None
    phases["planned → every node ready"] = (t_ready - t_plan) if t_ready and t_plan else None
    t_fig, _ = _find(logs / "spiking.log", r"plot written to")
    t_done, _ = _find(logs / "coordinator.log", r"results written to")
    loop_end = t0_wall + (first or 0) + loop
    phases["tear-down: last window → spiking figure drawn"] = (t_fig - loop_end) if t_fig else None
    phases["tear-down: last window → coordinator's results written"] = (t_done - loop_end) if t_done else None
    phases["tear-down: coordinator's results → command exits (services exit, summary)"] = \
        (t0_wall + total - t_done) if t_done else None
    return {"total_s": total, "first_window_s": first, "loop_s": loop, "startup_s": first,
            "teardown_s": total - (first or 0) - loop, "phases": phases, "windows": summary["windows"],
            # what `cosim run` itself measured, per service (summary.json "startup")
            "startup_reported": summary.get("startup")}


def sweep(work: Path, duration_ms: float, backend: str, runs: int, warm: bool) -> dict:
    out = work / ("warm" if warm else "cold")
    cfg = write_config({"run": {"duration_ms": duration_ms, "progress": False},
                        "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": [33, 71],
                                           **({"params": {"record": {"plot": False}}} if backend == "netpyne" else {})}]},
                       work / "sweep.yaml")
    t0 = time.perf_counter()
    p = subprocess.run(PY + ["sweep", str(cfg), "--seeds", str(runs), "--workers", "1", "--out", str(out)]
                       + ([] if warm else ["--cold"]), capture_output=True, text=True, env=env())
    total = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"cosim sweep failed: {p.stderr.strip().splitlines()[-3:]}")
    recs = [json.loads(f.read_text()) for f in out.glob("runs/*/sweep_run.json")]
    recs.sort(key=lambda r: r["index"])
    walls = [r["wall_s"] for r in recs]
    loops = [r["loop_s"] for r in recs]
    return {"total_s": total, "wall_s": walls, "loop_s": loops, "first_run_s": walls[0],
            "later_runs_median_s": median(walls[1:]), "later_overhead_median_s": median(
                [w - lp for w, lp in zip(walls[1:], loops[1:])])}


def run(size: str, out: Path | None = None) -> dict:
    p = SIZES[size]
    res: dict = {"size": size, **p, "load_before": load_avg()}
    k = p["floor_repeats"]
    res["floor_tvb_s"] = floor("import tvb.simulator.simulator", k)
    res["floor_netpyne_s"] = floor("from netpyne import sim", k) if p["backend"] == "netpyne" else None
    res["floor_cosim_cli_s"] = floor("import cosim.cli.commands", k)
    slowest = res["floor_netpyne_s"] if p["backend"] == "netpyne" else res["floor_tvb_s"]
    with tempfile.TemporaryDirectory(prefix="cosim-bench-startup-") as tmp:
        work = Path(tmp)
        if p["slow_exit"]:
            res["run_slow_exit"] = one_run(work, p["duration_ms"], p["backend"], slow_exit=True)
        r = one_run(work, p["duration_ms"], p["backend"])
        res["run"] = r
        res["run"]["startup_plus_teardown_over_floor"] = (r["startup_s"] + r["teardown_s"]) / max(
            res["floor_tvb_s"], slowest)
        res["sweep_cold"] = sweep(work, p["duration_ms"], p["backend"], p["runs"], warm=False)
        res["sweep_warm"] = sweep(work, p["duration_ms"], p["backend"], p["runs"], warm=True)
    res["warm_over_cold_later_runs"] = res["sweep_warm"]["later_runs_median_s"] / res["sweep_cold"]["later_runs_median_s"]
    res["load_after"] = load_avg()
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
    return res


def main() -> None:
    a = arg_parser(__doc__, SIZES).parse_args()
    res = run(a.size, a.out)
    r = res["run"]
    print(f"floors: tvb {res['floor_tvb_s']:.2f} s, netpyne {_f(res['floor_netpyne_s'])} s, "
          f"cosim.cli {res['floor_cosim_cli_s']:.2f} s (load {res['load_before']:.1f})")
    print(f"cosim run ({res['backend']}, {res['duration_ms']} ms): {r['total_s']:.2f} s = start-up {r['startup_s']:.2f} "
          f"+ loop {r['loop_s']:.2f} + tear-down {r['teardown_s']:.2f}; (start-up + tear-down) / floor "
          f"{r['startup_plus_teardown_over_floor']:.2f}")
    for k, v in r["phases"].items():
        print(f"  {k}: {v:.2f} s" if v is not None else f"  {k}: -")
    from cosim.results.report import format_startup
    print("\n".join(format_startup(r["startup_reported"])))
    b = res.get("run_slow_exit")
    if b:
        print(f"the same with the services' full interpreter teardown (COSIM_SLOW_EXIT=1, as before): {b['total_s']:.2f} s "
              f"= start-up {b['startup_s']:.2f} + loop {b['loop_s']:.2f} + tear-down {b['teardown_s']:.2f} (coordinator's "
              f"results → exit {b['phases'][TEARDOWN_EXIT] or float('nan'):.2f} s)")
    for kind in ("sweep_cold", "sweep_warm"):
        s = res[kind]
        print(f"{kind}: {len(s['wall_s'])} runs in {s['total_s']:.1f} s; first run {s['first_run_s']:.2f} s, later runs "
              f"median {s['later_runs_median_s']:.2f} s (loop + {s['later_overhead_median_s']:.2f} s)")
    print(f"warm / cold, later runs: {res['warm_over_cold_later_runs']:.2f}")


if __name__ == "__main__":
    main()
