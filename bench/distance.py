"""Distance: wall time per window with a one-way latency L between hosts (userspace delay proxy,
bench/delay_proxy.py; the kernel here has no netem).

Deployment modelled: the coordinator runs next to the TVB node (same host: no delay), the
spiking node on a remote host, L each way. Protocol 3 (PROTOCOL.md §4.1): data goes node to node,
so EVERY link of the remote node goes through a delay proxy:

- its coordinator link (DEALER → ROUTER, run dialog and heartbeats): `--coordinator <proxy>`;
- TVB → spiking DATA: the spiking node binds its inbox on a fixed port (`--data-bind
  tcp://127.0.0.1:P`) and advertises the proxy in front of it (`--data-advertise
  tcp://127.0.0.1:<proxy port>`), so TVB's PUSH connects through the proxy;
- spiking → TVB DATA: the same for the TVB node's inbox.

L = 0 runs through the same three proxies with no delay (the proxies' own cost is in the
baseline); `direct` is the same run without proxies.

Part 1, noop nodes (latency isolated): the spiking node "computes" `compute_ms` per window
(sleep), TVB nothing. Per window (mean of the coordinator's window walls after the first):

- aim (issue 12, m = 1): ≤ compute + 1.1 L (`met`, compute = the nominal sleep); `met_vs_local`
  reads "compute" as the L = 0 window of the same call (compute + protocol + proxies): the
  latency cost per window ≤ 1.1 L;
- chain floor with lag m = 1: window k of each node needs the other's window k-1, so two
  independent chains (TVB k → spiking k+1 → TVB k+2 …) each pay compute + L per hop: per window
  max(compute, L + compute/2) (TVB computes nothing);
- with lookahead m (`lookahead` rows): windows m times shorter (compute/m each), the latency is
  hidden while L ≤ (m-1) · per-window time.

Part 2, the default example (real TVB + NetPyNE, 500 ms) at L = 0 and L = `example_L` with
m = 1 and m = `lookahead`: aim loop(L) ≤ 1.25 × loop(0) at the same m. m is chosen so that L is
hidden: window k+m of one node needs the other's window k, produced (c per window) and sent (L)
while the node computes windows k+1 … k+m-1, i.e. L ≤ (m-1) · c(m); the L = 0 run measures
c(m) and the result reports `hides_up_to_ms` = (m-1) · c(m).

Usage: python bench/distance.py [--size tiny|full] [--lookahead 4] [--no-example]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import free_port, launch_services, load_avg, median, timing, arg_parser  # noqa: E402
from bench.delay_proxy import DelayProxy  # noqa: E402

# tiny (the bench smoke test): no run without proxies at L = 0 (the "direct" figure, a report line only)
SIZES = {"tiny": {"latencies_ms": [0, 5], "compute_ms": 2.0, "budget_s": 1.0, "repeats": 1, "lookahead": 4,
                  "example": False, "direct": False},
         "full": {"latencies_ms": [0, 1, 5, 20, 50], "compute_ms": 2.0, "budget_s": 3.0, "repeats": 3, "lookahead": 4,
                  "example": True, "example_L": 5.0, "example_ms": 500.0, "example_repeats": 2, "direct": True}}
NOOP_DELAY_STEPS = 16       # the noop connectome's delay: one window of 1.6 ms at m = 1


def noop_config(windows: int, compute_ms: float, lookahead: int = 1) -> dict:
    return {"run": {"name": "bench-distance", "duration_ms": windows * 1.6 / lookahead, "lookahead": lookahead},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5],
                               "params": {"step_sleep_ms": compute_ms / lookahead, "delay_steps": NOOP_DELAY_STEPS}}],
            "coordinator": {"heartbeat_timeout_ms": 20_000}}


def example_config(duration_ms: float, lookahead: int) -> dict:
    from bench.overlap import default_config
    cfg = default_config(duration_ms, {}, None, lookahead)
    cfg["coordinator"] = {"heartbeat_timeout_ms": 20_000}
    return cfg


def remote(cfg: dict, L: float, out: Path, proxies: bool = True, node: str = "spiking", timeout: float = 900) -> dict:
    """One run with node `node` L ms away on each of its links (three delay proxies)."""
    router_port = free_port()
    if not proxies:
        r = launch_services(cfg, out, None, timeout=timeout, router_port=router_port)
        px = {}
    else:
        tvb_in, node_in = free_port(), free_port()
        px = {"coordinator": DelayProxy(("127.0.0.1", router_port), L),   # node ⇄ coordinator (dialog, heartbeats)
              "to_node": DelayProxy(("127.0.0.1", node_in), L),           # TVB → node DATA
              "to_tvb": DelayProxy(("127.0.0.1", tvb_in), L)}             # node → TVB DATA
        args = {"tvb": ["--data-bind", f"tcp://127.0.0.1:{tvb_in}", "--data-advertise", px["to_tvb"].address],
                node: ["--data-bind", f"tcp://127.0.0.1:{node_in}", "--data-advertise", px["to_node"].address]}
        try:
            r = launch_services(cfg, out, {node: px["coordinator"].address}, timeout=timeout, router_port=router_port,
                                node_args=args)
        finally:
            for p in px.values():
                p.close()
    s = r["summary"]
    t = timing(Path(r["out"]))
    wall = t["window_wall_s"][:, 0]
    comp = {}
    for n in s["nodes"]:
        if n in t and "compute_s" in t.get(n + ":fields", []):
            comp[n] = float(np.mean(t[n][1:, t[n + ":fields"].index("compute_s")]) * 1e3)
    return {"latency_ms": L, "windows": s["windows"], "window_ms": s["window_ms"], "loop_s": s["wall_s"],
            "per_window_ms": float(np.mean(wall[1:]) * 1e3), "per_window_summary_ms": s["wall_s"] / s["windows"] * 1e3,
            "compute_ms": comp, "proxy_bytes": {k: p.stats() for k, p in px.items()}, "out": r["out"]}


def run(size: str = "full", out: Path | None = None, lookahead: int | None = None, example: bool | None = None) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-distance-"))
    C, M = sz["compute_ms"], lookahead or sz["lookahead"]
    load0 = load_avg()
    rows = []
    for L in sz["latencies_ms"]:
        windows = int(max(30, min(1000, sz["budget_s"] * 1000 / (C + 2 * L + 1))))
        reps, reps_m, reps_direct = [], [], []
        for i in range(sz["repeats"]):      # m = 1 and m = M interleaved
            reps.append(remote(noop_config(windows, C), L, out / f"L{L:g}_m1_{i}"))
            reps_m.append(remote(noop_config(windows * M, C, M), L, out / f"L{L:g}_m{M}_{i}"))
            if L == 0 and sz["direct"]:
                reps_direct.append(remote(noop_config(windows, C), 0, out / f"direct_{i}", proxies=False))
        per = median(r["per_window_ms"] for r in reps)
        per_m = median(r["per_window_ms"] for r in reps_m)
        row = {"latency_ms": L, "windows": windows, "per_window_ms": per, "runs_ms": [r["per_window_ms"] for r in reps],
               "per_window_summary_ms": median(r["per_window_summary_ms"] for r in reps),
               "aim_ms": C + 1.1 * L, "met": per <= C + 1.1 * L,
               "floor_direct_ms": C + L, "chain_floor_ms": max(C, L + C / 2), "ratio_to_aim": per / (C + 1.1 * L),
               "compute_measured_ms": median(r["compute_ms"].get("spiking") for r in reps),
               "lookahead": M, "per_window_m_ms": per_m, "runs_m_ms": [r["per_window_ms"] for r in reps_m],
               "per_1_6ms_simulated_m_ms": per_m * M, "m_floor_per_window_ms": max(C / M, (L + C / M) / M)}
        if reps_direct:
            row["direct_per_window_ms"] = median(r["per_window_ms"] for r in reps_direct)
            row["direct_runs_ms"] = [r["per_window_ms"] for r in reps_direct]
        rows.append(row)
    base = rows[0] if rows and rows[0]["latency_ms"] == 0 else None
    for r in rows:
        r["latency_cost_ms"] = None if base is None else r["per_window_ms"] - base["per_window_ms"]
        r["latency_cost_m_per_1_6ms"] = None if base is None else (r["per_window_m_ms"] - base["per_window_m_ms"]) * M
        # the aim with "compute" read as this run's own L = 0 window (compute + protocol + proxies)
        r["met_vs_local"] = None if base is None else r["latency_cost_ms"] <= 1.1 * r["latency_ms"] + 1e-9
    res = {"benchmark": "distance", "protocol": 3, "size": size, "compute_ms": C, "lookahead": M,
           "load_avg_start": load0,
           "deployment": "coordinator + TVB node on one host, spiking node remote: its coordinator link and both "
                         "data links through a delay proxy of L each way",
           "rows": rows}
    if example if example is not None else sz["example"]:
        res["example"] = run_example(sz, M, out)
    res["load_avg_end"] = load_avg()
    return res


def run_example(sz: dict, M: int, out: Path) -> dict:
    L, dur = sz["example_L"], sz["example_ms"]
    runs: dict[str, list] = {}
    for i in range(sz["example_repeats"]):
        for m in (1, M):
            for lat in (0.0, L):
                key = f"m{m}_L{lat:g}"
                runs.setdefault(key, []).append(remote(example_config(dur, m), lat, out / f"example_{key}_{i}"))
    med = {k: {"loop_s": median(r["loop_s"] for r in v), "per_window_ms": median(r["per_window_ms"] for r in v),
               "windows": v[0]["windows"], "window_ms": v[0]["window_ms"], "loop_runs_s": [r["loop_s"] for r in v],
               "compute_ms": {n: median(r["compute_ms"].get(n) for r in v) for n in v[0]["compute_ms"]}}
           for k, v in runs.items()}
    res = {"duration_ms": dur, "L_ms": L, "lookahead": M, "repeats": sz["example_repeats"], "runs": med}
    for m in (1, M):
        a, b = med[f"m{m}_L0"], med[f"m{m}_L{L:g}"]
        res[f"ratio_m{m}"] = b["loop_s"] / a["loop_s"]
        c = a["per_window_ms"]            # per-window time at L = 0: what one window of compute covers
        res[f"hides_up_to_ms_m{m}"] = (m - 1) * c
    res["aim"] = 1.25
    res["met"] = res[f"ratio_m{M}"] <= 1.25
    return res


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--lookahead", type=int, help="lag m of the lookahead rows and of the example (default 4)")
    ap.add_argument("--no-example", action="store_true", help="skip the default-example part")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.lookahead, False if a.no_example else None)
    for r in res["rows"]:
        print(f"L = {r['latency_ms']:g} ms: m=1 {r['per_window_ms']:.2f} ms per window (aim ≤ {r['aim_ms']:.1f}, chain "
              f"floor {r['chain_floor_ms']:.1f}); m={r['lookahead']} {r['per_window_m_ms']:.2f} ms per window "
              f"({r['per_1_6ms_simulated_m_ms']:.2f} per 1.6 ms simulated)", file=sys.stderr)
    if "example" in res:
        e = res["example"]
        for k, v in e["runs"].items():
            print(f"example {k}: loop {v['loop_s']:.2f} s, {v['per_window_ms']:.2f} ms per window", file=sys.stderr)
        rm = e[f"ratio_m{e['lookahead']}"]
        print(f"example L={e['L_ms']:g}/L=0: m=1 {e['ratio_m1']:.2f}, m={e['lookahead']} {rm:.2f} (aim ≤ 1.25)",
              file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
