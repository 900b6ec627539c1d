"""Scaling (issue 25): cells per region on both backends, regions on one service, regions split
over services; every figure against a baseline measured in the same call.

All runs: `cosim run` as a user runs it (real TVB, 76 regions, default window = the smallest
crossing delay, 4.9 ms; NEURON dt 0.025 ms default; default timeouts), one after the other.
- cells: regions 33 and 71 of 160 · s cells each (s = `network.scale` 1, 10, 100 → 160, 1,600,
  16,000; `scale_keeps: in_degree`, the default), NetPyNE and NEST. Per run: build (the spiking
  service's "network build" + "build" start-up phases, wall s), peak RSS of the spiking service
  (sampled from /proc every 0.25 s), loop ms per window and the simulator's own integration per
  window (`cosim.results.breakdown`, windows 1..K−1), and µs per simulated ms per cell =
  simulate ms per window / window ms / cells × 1000. Ratios against the 160-cell run of the
  same backend in the same call.
- regions: the first 2, 5, 10, 20 of bench/split_spikes.py's 20 regions, 160 cells each, on one
  NetPyNE service: loop per window, ratio to 2 regions.
- services: the 20 regions dealt round-robin over 1, 2, 4 NetPyNE services with
  `run.inter_service: spikes`, and over 4 with `rates`: loop per window, total spikes, and how
  many populations fire the same spikes (times and cells) as on one service (the 20-region run
  of the regions block is the 1-service run: same config, same seed). Ratio to 1 service.

- netns (`--netns`, root only): the same 20 regions with every service in its own network namespace
  (tests/netns.py: one veth pair per "host" on a bridge, all on this machine's cores) on 1 and 4
  spiking services (`spikes`): loop per window from coordinator.h5, spikes against the 1-service
  loopback run; ratio against the loopback run with the same number of services.

Usage: python bench/scaling.py [--size tiny|full] [--out FILE.json] [--netns]   (JSON on stdout, and in FILE)
       python bench/scaling.py --table bench/results/scaling.json   (the markdown table)
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, TreeSampler, arg_parser, cosim_run, load_avg  # noqa: E402
from bench.split_spikes import REGIONS, spikes  # noqa: E402

SIZES = {
    # tiny: CI-sized (< 1 min): 160 cells on both backends, 4 regions, 4 regions on 1 and 2 services (4 runs,
    # each ~8 CPU-s of start-up for < 1 s of loop: one size per scan; no `rates` split: its row is
    # the `spikes` row's code with another config, and rates between services have their own
    # system tests, tests/netpyne/test_spikes_between_services.py)
    "tiny": {"scales": [1], "cells_ms": 20.0, "regions": [4], "regions_ms": 60.0, "services": [1, 2],
             "rates_services": 0},
    "full": {"scales": [1, 10, 100], "cells_ms": 50.0, "regions": [2, 5, 10, 20], "regions_ms": 100.0,
             "services": [1, 2, 4], "rates_services": 4},
}
BACKENDS = ["netpyne", "nest"]
CELL_REGIONS = [33, 71]
SEED = 7


def config(name: str, duration_ms: float, groups: list[list[int]], backend: str = "netpyne",
           scale: float = 1.0, **run) -> dict:
    params: dict = {"record": {"plot": False}}
    if scale != 1.0:
        params["network"] = {"scale": scale, "scale_keeps": "in_degree"}
    return {"run": {"name": name, "duration_ms": duration_ms, "seed": SEED, **run},
            "spiking_nodes": [{"name": f"s{i}", "backend": backend, "regions": g, "params": params}
                              for i, g in enumerate(groups)]}


def measure(cfg: dict, out: Path, timeout: float = 900) -> dict:
    """One run's figures, or {"error": why} (a failed size must not lose the others)."""
    try:
        return _measure(cfg, out, timeout)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _measure(cfg: dict, out: Path, timeout: float) -> dict:
    sampler = TreeSampler(0.25)
    r = cosim_run(cfg, out, timeout=timeout, sampler=sampler)
    s = r["summary"]
    b = s["breakdown"]
    names = [n["name"] for n in cfg["spiking_nodes"]]
    phases = {n: s["startup"]["services"][n]["phases"] for n in names}
    peak = sampler.peak_kb()
    return {"windows": s["windows"], "window_ms": s["window_ms"], "simulated_ms": s["simulated_ms"],
            "loop_s": s["wall_s"], "loop_ms_per_window": b["loop_ms_per_window"],
            "simulate_ms": {n: b["nodes"][n]["simulate"] for n in names},
            "tvb_simulate_ms": b["nodes"]["tvb"]["simulate"],
            "build_s": {n: phases[n].get("network build", 0.0) + phases[n].get("build", 0.0) for n in names},
            "startup_s": s["startup"]["wall_s"],
            "peak_rss_mb": {n: peak[n] / 1024 for n in names if n in peak},
            "wall_total_s": r["wall_total_s"], "out": str(out)}


def netns_run(cfg: dict, out: Path, timeout: float = 900) -> dict:
    """`cfg` with the coordinator, TVB and every spiking service in its own network namespace."""
    import subprocess
    sys.path.insert(0, str(REPO / "tests"))
    from netns import Lab  # type: ignore[import-not-found]
    from bench.common import PY, env, free_port, write_config
    from cosim.results.breakdown import breakdown
    names = [n["name"] for n in cfg["spiking_nodes"]]
    out.mkdir(parents=True, exist_ok=True)
    path = write_config(cfg, out / "config.yaml")
    with Lab(2 + len(names), prefix="cosimscale") as lab:
        h = lab.hosts
        router, pub = f"tcp://{h[0].ip}:{free_port()}", f"tcp://{h[0].ip}:{free_port()}"
        coord = h[0].popen(PY + ["coordinator", str(path), "--router", router, "--pub", pub, "--out",
                                 str(out / "coordinator"), "--no-plots"], out / "coordinator.log", env=env())
        h[1].popen(PY + ["tvb-node", "--coordinator", router, "--out", str(out / "tvb")], out / "tvb.log", env=env())
        for i, n in enumerate(names):
            h[2 + i].popen(PY + ["spiking-node", "--coordinator", router, "--name", n, "--out", str(out / n)],
                           out / f"{n}.log", env=env())
        try:
            rc = coord.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        procs = [p for x in h for p in x.procs]
        for p in procs[1:]:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if rc != 0:
            raise RuntimeError(f"coordinator exit {rc}: {(out / 'coordinator.log').read_text()[-500:]}")
    b = breakdown(out / "coordinator")
    sp: dict = {}
    for n in names:
        sp.update(spikes(out / n, [n]))
    return {"windows": b["windows"], "window_ms": b["window_ms"], "loop_ms_per_window": b["loop_ms_per_window"],
            "simulate_ms": {n: b["nodes"][n]["simulate"] for n in names}, "out": str(out), "_spikes": sp}


def run(size: str = "full", out: Path | None = None, with_netns: bool = False) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-scaling-"))
    loads = [load_avg()]
    cells = []
    for backend in BACKENDS:
        base = None
        for s in sz["scales"]:
            n = 2 * int(round(160 * s))
            m = measure(config(f"cells-{backend}-{s:g}", sz["cells_ms"], [CELL_REGIONS], backend, float(s)),
                        out / f"cells_{backend}_{s:g}")
            row = {"backend": backend, "scale": s, "cells_per_region": n // 2, "cells": n, **m}
            if "error" not in m:
                row["us_per_sim_ms_per_cell"] = m["simulate_ms"]["s0"] / m["window_ms"] / n * 1e3
                row["loop_us_per_sim_ms_per_cell"] = m["loop_ms_per_window"] / m["window_ms"] / n * 1e3
                base = base or row
                row["ratio"] = {k: (row[k] / base[k] if base[k] else None) for k in
                                ("loop_ms_per_window", "us_per_sim_ms_per_cell", "loop_us_per_sim_ms_per_cell")}
                row["ratio"]["build_s"] = row["build_s"]["s0"] / base["build_s"]["s0"]
                if "s0" in row["peak_rss_mb"] and "s0" in base["peak_rss_mb"]:
                    row["ratio"]["peak_rss_mb"] = row["peak_rss_mb"]["s0"] / base["peak_rss_mb"]["s0"]
            cells.append(row)
            loads.append(load_avg())
            print(f"scaling: cells {backend} ×{s:g}: {_short(row)}", file=sys.stderr)
    regions = []
    one_service = None
    for k in sz["regions"]:
        regs = REGIONS[:k]
        m = measure(config(f"regions-{k}", sz["regions_ms"], [regs]), out / f"regions_{k}")
        row = {"regions": k, "cells": 160 * k, **m}
        if "error" not in m:
            if k == max(sz["regions"]):
                one_service = (out / f"regions_{k}", spikes(out / f"regions_{k}", ["s0"]))
            row["ratio"] = m["loop_ms_per_window"] / regions[0]["loop_ms_per_window"] if regions and \
                "error" not in regions[0] else 1.0 if not regions else None
        regions.append(row)
        loads.append(load_avg())
        print(f"scaling: {k} regions: {_short(row)}", file=sys.stderr)
    services = []
    regs = REGIONS[:max(sz["regions"])]
    base_row = next((r for r in regions if r["regions"] == len(regs)), None)
    plan = [(n, "spikes") for n in sz["services"]] + ([(sz["rates_services"], "rates")] if sz["rates_services"] else [])
    for n, how in plan:
        if n == 1:
            row = {"services": 1, "inter_service": "–", **(base_row or {"error": "no 1-service run"})}
        else:
            groups = [regs[i::n] for i in range(n)]
            d = out / f"services_{n}_{how}"
            row = {"services": n, "inter_service": how,
                   **measure(config(f"services-{n}-{how}", sz["regions_ms"], groups, inter_service=how), d)}
        if "error" not in row and one_service is not None:
            sp = one_service[1] if n == 1 else spikes(Path(row["out"]), [f"s{i}" for i in range(n)])
            ref = one_service[1]
            row["spikes_total"] = sum(map(len, sp.values()))
            row["spikes_per_population"] = {lab: len(v) for lab, v in sorted(sp.items())}
            row["populations"] = len(ref)
            row["populations_identical"] = sum(sp.get(lab) == v for lab, v in ref.items())
            row["ratio"] = row["loop_ms_per_window"] / base_row["loop_ms_per_window"] if base_row else None
        services.append(row)
        loads.append(load_avg())
        print(f"scaling: {n} services ({how}): {_short(row)}", file=sys.stderr)
    netns = []
    if with_netns:
        for n in (1, max(sz["services"])):
            groups = [regs[i::n] for i in range(n)]
            cfg = config(f"netns-{n}", sz["regions_ms"], groups, **({"inter_service": "spikes"} if n > 1 else {}))
            try:
                row = {"services": n, **netns_run(cfg, out / f"netns_{n}")}
            except Exception as e:
                row = {"services": n, "error": f"{type(e).__name__}: {e}"}
            if "error" not in row:
                sp = row.pop("_spikes")
                loop = next((r for r in services if r["services"] == n and r["inter_service"] in ("–", "spikes")
                             and "error" not in r), None)
                row["spikes_total"] = sum(map(len, sp.values()))
                if one_service is not None:
                    row["populations"] = len(one_service[1])
                    row["populations_identical"] = sum(sp.get(lab) == v for lab, v in one_service[1].items())
                row["ratio_to_loopback"] = row["loop_ms_per_window"] / loop["loop_ms_per_window"] if loop else None
            netns.append(row)
            loads.append(load_avg())
            print(f"scaling: netns {n} services: {_short(row) if 'error' in row else row['loop_ms_per_window']}",
                  file=sys.stderr)
    return {"benchmark": "scaling", "size": size, "netns": netns, "seed": SEED,
             "load_avg_start": loads[0], "load_avg_end": loads[-1],
            "load_avg_max": max(loads), "load_avg_min": min(loads), "cells_ms": sz["cells_ms"],
            "regions_ms": sz["regions_ms"], "cells": cells, "regions": regions, "services": services}


def _short(row: dict) -> str:
    if "error" in row:
        return "FAILED " + row["error"][:300]
    return f"loop {row['loop_ms_per_window']:.2f} ms/window, build {max(row['build_s'].values()):.1f} s"


def _f(x, nd: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def table(res: dict) -> list[str]:
    """Markdown tables of a run() result (docs/performance.md; bench/report.py)."""
    L = [f"One call of `bench/scaling.py --size {res['size']}` on a shared machine: 1-minute load average "
         f"{res['load_avg_min']:.1f}–{res['load_avg_max']:.1f} during the call (timings carry that noise).", "",
         f"Cells per region ({res['cells_ms']:g} ms runs; regions 33 and 71; build = the spiking service's "
         "network build + build, wall; memory = peak RSS of the spiking service; loop and simulate are ms per "
         "window, means of windows 1..K−1; µs per simulated ms per cell from the simulator's own integration; "
         "ratios against the 160-cell run of the same backend):", "",
         "| backend | cells per region | build s | peak RSS MB | loop ms/window | simulate ms/window | "
         "µs / sim ms / cell | ratio: build | memory | loop | µs/ms/cell |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["cells"]:
        if "error" in r:
            L.append(f"| {r['backend']} | {r['cells_per_region']:,} | **failed**: {r['error'][:160]} | | | | | | | | |")
            continue
        q = r["ratio"]
        L.append(f"| {r['backend']} | {r['cells_per_region']:,} | {_f(r['build_s']['s0'], 1)} | "
                 f"{_f(r['peak_rss_mb'].get('s0'), 0)} | {_f(r['loop_ms_per_window'], 1)} | "
                 f"{_f(r['simulate_ms']['s0'], 1)} | {_f(r['us_per_sim_ms_per_cell'], 1)} | "
                 f"{_f(q['build_s'], 1)} | {_f(q.get('peak_rss_mb'), 1)} | {_f(q['loop_ms_per_window'], 1)} | "
                 f"{_f(q['us_per_sim_ms_per_cell'], 2)} |")
    L += ["", f"Regions of 160 cells on one NetPyNE service ({res['regions_ms']:g} ms runs; the first k of "
          f"bench/split_spikes.py's 20 regions; ratio against {res['regions'][0]['regions'] if res['regions'] else '–'} "
          "regions):", "",
          "| regions | cells | loop ms/window | simulate ms/window | µs / sim ms / cell | ratio (loop) |",
          "|---|---|---|---|---|---|"]
    for r in res["regions"]:
        if "error" in r:
            L.append(f"| {r['regions']} | {r['cells']:,} | **failed**: {r['error'][:160]} | | | |")
            continue
        L.append(f"| {r['regions']} | {r['cells']:,} | {_f(r['loop_ms_per_window'])} | "
                 f"{_f(r['simulate_ms']['s0'])} | {_f(r['simulate_ms']['s0'] / r['window_ms'] / r['cells'] * 1e3, 1)} | "
                 f"{_f(r.get('ratio'))} |")
    n = max((r["regions"] for r in res["regions"]), default=0)
    L += ["", f"The {n} regions split over NetPyNE services ({res['regions_ms']:g} ms, seed {res['seed']}; "
          "round-robin; the 1-service row is the last row above; populations identical = same spike times "
          "and cells as on one service; ratio against 1 service):", "",
          "| services | between services | loop ms/window | slowest simulate ms/window | spikes | "
          "populations identical | ratio (loop) |", "|---|---|---|---|---|---|---|"]
    for r in res["services"]:
        if "error" in r:
            L.append(f"| {r['services']} | {r['inter_service']} | **failed**: {r['error'][:160]} | | | | |")
            continue
        L.append(f"| {r['services']} | {r['inter_service']} | {_f(r['loop_ms_per_window'])} | "
                 f"{_f(max(r['simulate_ms'].values()))} | {r.get('spikes_total', '–'):,} | "
                 f"{r.get('populations_identical', '–')} / {r.get('populations', '–')} | {_f(r.get('ratio'))} |")
    if res.get("netns"):
        L += ["", "The same regions with every service (coordinator, TVB, each spiking service) in its own network "
              "namespace on this machine (veth pairs on a bridge, tests/netns.py), `spikes` between services; ratio "
              "against the loopback run with as many services above:", "",
              "| services | loop ms/window | slowest simulate ms/window | spikes | populations identical to 1 service "
              "(loopback) | ratio to loopback |", "|---|---|---|---|---|---|"]
        for r in res["netns"]:
            if "error" in r:
                L.append(f"| {r['services']} | **failed**: {r['error'][:160]} | | | | |")
                continue
            L.append(f"| {r['services']} | {_f(r['loop_ms_per_window'])} | {_f(max(r['simulate_ms'].values()))} | "
                     f"{r['spikes_total']:,} | {r.get('populations_identical', '–')} / {r.get('populations', '–')} | "
                     f"{_f(r.get('ratio_to_loopback'))} |")
    return L


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print("\n".join(table(json.loads(Path(sys.argv[2]).read_text()))))
        return
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--netns", action="store_true", help="also run the services in network namespaces (root)")
    a = ap.parse_args()
    res = run(a.size, with_netns=a.netns)
    print("\n".join(table(res)), file=sys.stderr)
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
