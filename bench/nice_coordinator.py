"""Experiment for the per-message trace's finding (docs/performance.md, protocol 3): does the
coordinator's handling of STEP_DONE copies delay the nodes on a 2-core machine? Runs the toolbox
configuration (1.6 ms windows) alternately as is and with the coordinator process (every thread)
at nice 19, and compares `cosim.results.breakdown`'s time beyond the slower simulator.

Usage: python bench/nice_coordinator.py [--repeats 3] [--duration-ms 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import children, cmdline, cosim_run, load_avg, median, service_of  # noqa: E402
from bench.toolbox import config  # noqa: E402


def _renice_coordinator(stop: threading.Event, niceness: int) -> None:
    """Find the coordinator under this process and set every one of its threads to `niceness`."""
    done = set()
    while not stop.is_set():
        for c in children(os.getpid()):
            if service_of(cmdline(c)) == "coordinator":
                try:
                    for t in os.listdir(f"/proc/{c}/task"):
                        if int(t) not in done:
                            os.setpriority(os.PRIO_PROCESS, int(t), niceness)
                            done.add(int(t))
                except (OSError, ValueError):
                    pass
        stop.wait(0.05)


def one(cfg: dict, out: Path, nice: bool) -> dict:
    from cosim.results.breakdown import breakdown
    stop = threading.Event()
    th = threading.Thread(target=_renice_coordinator, args=(stop, 19), daemon=True) if nice else None
    if th:
        th.start()
    try:
        r = cosim_run(cfg, out)
    finally:
        stop.set()
    b = breakdown(r["out"])
    return {"nice": nice, "beyond_slowest_ms": b["overhead_ms_per_window"], "loop_ms_per_window": b["loop_ms_per_window"],
            "slowest_simulate_ms": b["slowest_simulate_ms"], "out": r["out"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration-ms", type=float, default=1000.0)
    a = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-nice-"))
    cfg = config(a.duration_ms)
    load0 = load_avg()
    runs = []
    for i in range(a.repeats):
        runs.append(one(cfg, out / f"plain{i}", False))
        runs.append(one(cfg, out / f"nice{i}", True))
    res = {"benchmark": "nice_coordinator", "repeats": a.repeats, "duration_ms": a.duration_ms,
           "load_avg_start": load0, "load_avg_end": load_avg(), "runs": runs}
    for k in (False, True):
        sel = [r for r in runs if r["nice"] is k]
        res["nice" if k else "plain"] = {f: median(r[f] for r in sel) for f in ("beyond_slowest_ms", "loop_ms_per_window",
                                                                             "slowest_simulate_ms")}
    print(f"beyond the slower simulator: plain {res['plain']['beyond_slowest_ms']:.3f} ms, coordinator at nice 19 "
          f"{res['nice']['beyond_slowest_ms']:.3f} ms per window (loop {res['plain']['loop_ms_per_window']:.3f} → "
          f"{res['nice']['loop_ms_per_window']:.3f})", file=sys.stderr)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
