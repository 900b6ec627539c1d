"""The benchmark suite in one command: runs every benchmark, keeps raw figures, writes the report.

    python bench/run_all.py                       # full sizes (~15-25 min on 2 cores); writes
                                                  # docs/performance.md, docs/perf_*.png,
                                                  # bench/results/*.json
    python bench/run_all.py --size tiny --only protocol,distance --docs /tmp/d --results /tmp/r

Every benchmark measures its own baseline in the same run (raw pyzmq, simulators alone, the
local run for distance) and reports ratios against it; see each module's docstring. The report
ends with bench/notes.md (the hand-written reading of the figures).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import distance, longrun, overlap, protocol, scaling, security, startup, toolbox  # noqa: E402
from bench.common import REPO, load_avg  # noqa: E402

ORDER = ["protocol", "overlap", "toolbox", "longrun", "scaling", "distance", "security", "startup"]
NEEDS_NETPYNE = {"overlap", "toolbox", "scaling"}
TINY_DEFAULT = ["protocol", "longrun", "distance", "security", "startup"]     # CI: no NEURON builds, ~25 s


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib import metadata
    vers = {}
    for dist in ("pyzmq", "numpy", "NEURON", "netpyne", "tvb-library", "msgpack"):
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            vers[dist] = "n/a"
    try:
        import zmq
        vers["libzmq"] = zmq.zmq_version()
    except Exception:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "versions": vers, "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M")}


def run_one(name: str, size: str, work: Path, results: dict) -> dict:
    out = work / name
    if name == "protocol":
        return protocol.run(size, out)
    if name == "overlap":
        return overlap.run(size, out)
    if name == "toolbox":
        return toolbox.run(size, out)
    if name == "longrun":
        return longrun.run(size, out)
    if name == "scaling":
        return scaling.run(size, out)
    if name == "distance":
        return distance.run(size, out)
    if name == "security":
        return security.run(size, out, results.get("protocol"), results.get("overlap"),
                            with_overlap=size == "full" or "overlap" in results)
    if name == "startup":          # its own temporary folder; the JSON is written by the suite
        return startup.run(size)
    raise ValueError(name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--docs", default=str(REPO / "docs"), help="where performance.md and perf_*.png go")
    ap.add_argument("--results", default=str(REPO / "bench" / "results"), help="where the raw JSON goes")
    ap.add_argument("--work", help="run directories (default: a temporary folder, removed unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--wait-load", type=float, default=0.0,
                    help="wait (up to 30 min) until the 1-minute load average is below this before starting")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the JSON in --results (run directories must still exist for the "
                         "breakdown plots)")
    a = ap.parse_args(argv)
    if a.report_only:
        from bench.report import write_report
        res_dir = Path(a.results)
        info = json.loads((res_dir / "suite.json").read_text())
        results = {n: json.loads((res_dir / f"{n}.json").read_text()) for n in info["benchmarks"]}
        print(f"bench: report {write_report(results, info, Path(a.docs))}", file=sys.stderr)
        return 0
    names = a.only.split(",") if a.only else (ORDER if a.size == "full" else TINY_DEFAULT)
    bad = [n for n in names if n not in ORDER]
    if bad:
        ap.error(f"unknown benchmark(s) {bad}; choose from {ORDER}")
    if a.wait_load:
        t_end = time.time() + 1800
        while load_avg() > a.wait_load and time.time() < t_end:
            print(f"bench: load average {load_avg():.2f} > {a.wait_load}; waiting", file=sys.stderr)
            time.sleep(30)
    import tempfile
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="cosim-bench-"))
    docs, res_dir = Path(a.docs), Path(a.results)
    docs.mkdir(parents=True, exist_ok=True)
    res_dir.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine(), "size": a.size, "load_avg_start": load_avg(), "command": " ".join(sys.argv)}
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    t0 = time.time()
    for n in ORDER:
        if n not in names:
            continue
        t = time.time()
        print(f"bench: {n} ({a.size}) ...", file=sys.stderr, flush=True)
        try:
            results[n] = run_one(n, a.size, work, results)
            results[n]["elapsed_s"] = time.time() - t
            (res_dir / f"{n}.json").write_text(json.dumps(results[n], indent=1, default=str))
        except Exception as e:
            errors[n] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        print(f"bench: {n} done in {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    info.update(elapsed_s=time.time() - t0, load_avg_end=load_avg(), errors=errors, benchmarks=list(results))
    (res_dir / "suite.json").write_text(json.dumps(info, indent=1, default=str))
    from bench.report import write_report
    path = write_report(results, info, docs)
    print(f"bench: report {path} ({time.time() - t0:.0f} s)", file=sys.stderr)
    if not a.keep and not a.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
