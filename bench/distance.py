"""Distance: wall time per window with a one-way latency L between hosts (userspace delay proxy,
bench/delay_proxy.py; the kernel here has no netem).

Deployment modelled: the coordinator runs next to the TVB node (same host: no delay), the
spiking node on a remote host, L each way. Nodes are noop nodes; the spiking one "computes"
`compute_ms` per window (sleep), so the figures isolate latency. Per window:

- measured: loop wall / windows;
- floor with the data routed through the coordinator (today, PROTOCOL.md §10): compute + 2 L
  (STEP goes out, STEP_DONE comes back: two one-way hops on the critical path);
- physical floor with node-to-node data (the issue's "compute + one one-way hop"): compute + L.
  With the one-window lag, the spiking node's window k+1 needs TVB's output of window k (one
  hop away) and TVB needs the spiking node's (one hop the other way); neither needs a second
  hop through a third party.

`extra_hop_ms` = measured − (compute + L): what routing through the coordinator costs.

Usage: python bench/distance.py [--size tiny|full]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import free_port, launch_services, load_avg, median, arg_parser  # noqa: E402
from bench.delay_proxy import DelayProxy  # noqa: E402

SIZES = {"tiny": {"latencies_ms": [0, 5], "compute_ms": 2.0, "budget_s": 1.0, "repeats": 1},
         "full": {"latencies_ms": [0, 1, 5, 20], "compute_ms": 2.0, "budget_s": 4.0, "repeats": 3}}


def config(windows: int, compute_ms: float) -> dict:
    return {"run": {"name": "bench-distance", "duration_ms": windows * 1.6},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5],
                               "params": {"step_sleep_ms": compute_ms}}],
            "coordinator": {"heartbeat_timeout_ms": 10_000}}


def one(L: float, compute_ms: float, windows: int, out: Path) -> dict:
    """One run; with L > 0 the spiking node reaches the coordinator through a delay proxy."""
    router_port = free_port()
    proxy = DelayProxy(("127.0.0.1", router_port), L) if L > 0 else None
    try:
        r = launch_services(config(windows, compute_ms), out, {"spiking": proxy.address} if proxy else None,
                            timeout=600, router_port=router_port)
    finally:
        if proxy is not None:
            proxy.close()
    s = r["summary"]
    return {"latency_ms": L, "windows": s["windows"], "per_window_ms": s["wall_s"] / s["windows"] * 1e3,
            "proxy_bytes": proxy.stats() if proxy else None}


def run(size: str = "full", out: Path | None = None) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-distance-"))
    C = sz["compute_ms"]
    rows = []
    load0 = load_avg()
    for L in sz["latencies_ms"]:
        windows = int(max(30, min(1000, sz["budget_s"] * 1000 / (C + 2 * L + 1))))
        reps = [one(L, C, windows, out / f"L{L:g}_{i}") for i in range(sz["repeats"])]
        per = median(r["per_window_ms"] for r in reps)
        rows.append({"latency_ms": L, "windows": windows, "per_window_ms": per,
                     "runs_ms": [r["per_window_ms"] for r in reps],
                     "floor_direct_ms": C + L, "floor_via_coordinator_ms": C + 2 * L,
                     "ratio_to_direct_floor": per / (C + L), "ratio_to_via_coordinator_floor": per / (C + 2 * L),
                     "extra_hop_ms": per - (C + L)})
    base = rows[0]["per_window_ms"] if rows and rows[0]["latency_ms"] == 0 else None
    for r in rows:      # latency cost beyond the local co-simulation: 2 L today, L with node-to-node data
        r["latency_cost_ms"] = None if base is None else r["per_window_ms"] - base
        r["hops_paid"] = None if base is None or not r["latency_ms"] else r["latency_cost_ms"] / r["latency_ms"]
    return {"benchmark": "distance", "size": size, "compute_ms": C, "load_avg_start": load0, "load_avg_end": load_avg(),
            "deployment": "coordinator + TVB node on one host, spiking node remote (L each way)",
            "rows": rows, "local_overhead_ms": None if base is None else base - C}


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None)
    for r in res["rows"]:
        print(f"L = {r['latency_ms']:g} ms: {r['per_window_ms']:.2f} ms per window; floors: direct "
              f"{r['floor_direct_ms']:.1f}, via coordinator {r['floor_via_coordinator_ms']:.1f}", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
