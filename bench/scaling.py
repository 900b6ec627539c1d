"""Scaling: cost per window against cells per region, number of spiking regions (one and two
spiking services), MPI ranks; and bytes on the wire per window, which must not grow with cells.

All runs: real TVB (76 regions) + NetPyNE, NEURON dt 0.05 ms, window 1.6 ms (16 TVB steps).
- cells: one spiking region (33) of 160 · s cells (s = 1, 10, 100 → 160, 1,600, 16,000), driven
  by TVB's input, recurrent rules at probability 0 (NetPyNE's probability rule is O(N_pre ×
  N_post): with the default probabilities 16,000 cells took 19 GB here before it was stopped).
  NOTE: the committed report's cell and MPI runs predate this: they passed `conns: {}`, which the
  NetPyNE config now reads as "all defaults", so they ran with the default recurrent synapses.
- regions: 1, 2, 4, 8 regions of 160 cells on one service; 8 regions over two services (4 + 4).
- MPI: one region of 2,000 cells (1,500 E + 500 I, recurrent rules at probability 0: with the
  default ones NetPyNE takes ~40 s to build it) on 1 and 2 ranks (the machine has 2 cores, shared with TVB and the
  coordinator).
Per run: loop per window, the slowest simulator's own integration per window, and what the
co-simulation adds (cosim.results.breakdown). Bytes per window: both nodes reach the coordinator through
a zero-delay counting proxy (bench/delay_proxy.py); bytes between the coordinator's "started"
event and its last progress message, divided by the windows (heartbeats included: ~0.5 kB/s).

Usage: python bench/scaling.py [--size tiny|full]
"""
from __future__ import annotations

import json
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import cosim_run, free_port, launch_services, load_avg, arg_parser  # noqa: E402
from bench.delay_proxy import DelayProxy  # noqa: E402

SIZES = {
    "tiny": {"scales": [0.1], "scale_ms": {0.1: 8.0, 1: 8.0}, "regions": [1], "region_ms": 8.0, "two_services": False,
             "mpi": [], "bytes_scales": [0.1, 1], "repeats": 1},
    "full": {"scales": [1, 10, 100], "scale_ms": {1: 160.0, 10: 48.0, 100: 16.0}, "regions": [1, 2, 4, 8],
             "region_ms": 80.0, "two_services": True, "mpi": [1, 2], "mpi_ms": 48.0, "bytes_scales": [1, 10, 100],
             "repeats": 1},
}
REGIONS8 = [33, 71, 10, 20, 30, 40, 50, 60]
BASE_CONNS = {"EE": (0.01, 0.02), "EI": (0.01, 0.01), "IE": (0.03, 0.01), "II": (0.03, 0.01)}


def params(scale: float = 1.0, n_exc: int = 120, n_inh: int = 40, ranks: int = 1, recurrent: bool = True) -> dict:
    # prob 0 drops a rule; an empty block would mean "all defaults" (netpyne_node/config.py merges them)
    conns = {k: {"prob": p if recurrent else 0.0, "weight_uS": w} for k, (p, w) in BASE_CONNS.items()}
    p = {"dt_ms": 0.05, "network": {"n_exc": n_exc, "n_inh": n_inh, "scale": scale, "conns": conns},
         "record": {"plot": False}}
    if ranks > 1:
        p["mpi_ranks"] = ranks
    return p


def config(duration_ms: float, nodes: list[tuple[str, list[int], dict]]) -> dict:
    return {"run": {"name": "bench-scaling", "duration_ms": duration_ms, "window_ms": 1.6},
            "coordinator": {"setup_timeout_ms": 600_000},
            "tvb": {"monitors": {"temporal_average_ms": None}},
            "spiking_nodes": [{"name": n, "backend": "netpyne", "regions": r, "params": p} for n, r, p in nodes]}


def measure(cfg: dict, out: Path) -> dict:
    """One run's figures, or {"error": why} (a failed size must not lose the others)."""
    try:
        return _measure(cfg, out)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _measure(cfg: dict, out: Path) -> dict:
    from cosim.results.breakdown import breakdown
    r = cosim_run(cfg, out, timeout=600)
    b = breakdown(out)
    s = r["summary"]
    return {"windows": s["windows"], "loop_ms_per_window": s["wall_s"] / s["windows"] * 1e3,
            "slowest_simulate_ms": b["slowest_simulate_ms"], "overhead_ms_per_window": b["overhead_ms_per_window"],
            "simulate_ms": {n: v["simulate"] for n, v in b["nodes"].items()},
            "transform_ms": {n: v["transform"] for n, v in b["nodes"].items()},
            "build_s": {n: v.get("build_s") for n, v in s["nodes"].items()}, "wall_total_s": r["wall_total_s"],
            "out": str(out)}


def wire_bytes(cfg: dict, out: Path) -> dict:
    """Bytes per window through a zero-delay counting proxy in front of the coordinator."""
    import zmq
    from cosim.proto import codec
    from cosim.proto.messages import MessageType as T
    router_port, pub_port = free_port(), free_port()
    proxy = DelayProxy(("127.0.0.1", router_port), 0.0)
    cfg = {**cfg, "coordinator": {**cfg.get("coordinator", {}), "pub": f"tcp://127.0.0.1:{pub_port}"}}
    marks: dict = {}
    stop = threading.Event()

    def listen():
        s = zmq.Context.instance().socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        for t in (b"event", b"progress"):
            s.setsockopt(zmq.SUBSCRIBE, t)
        s.connect(f"tcp://127.0.0.1:{pub_port}")
        while not stop.is_set():
            if s.poll(50):
                try:
                    msg = codec.decode_published(s.recv_multipart())
                except codec.ProtocolError:
                    continue
                d = msg.content
                if msg.type == T.EVENT and d.get("event") == "started":
                    marks["start"] = proxy.stats()
                elif msg.type == T.PROGRESS and d["windows_done"] == d["windows"]:
                    marks["end"] = proxy.stats()
                    marks["windows"] = d["windows"]
        s.close()

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    nodes = [n["name"] for n in cfg["spiking_nodes"]] + ["tvb"]
    try:
        # launch_services overrides the pub address: keep ours
        r = launch_services({**cfg}, out, {n: proxy.address for n in nodes}, timeout=600, router_port=router_port,
                            pub_port=pub_port)
    finally:
        stop.set()
        th.join(2)
        proxy.close()
    if "start" not in marks or "end" not in marks:
        return {"bytes_per_window": None, "note": "missed the PUB marks"}
    up = marks["end"]["bytes_up"] - marks["start"]["bytes_up"]
    down = marks["end"]["bytes_down"] - marks["start"]["bytes_down"]
    K = marks["windows"]
    return {"bytes_per_window": (up + down) / K, "to_coordinator_per_window": up / K,
            "from_coordinator_per_window": down / K, "windows": K, "loop_s": r["summary"]["wall_s"]}


def run(size: str = "full", out: Path | None = None) -> dict:
    sz = SIZES[size]
    out = Path(out or tempfile.mkdtemp(prefix="bench-scaling-"))
    load0 = load_avg()
    cells = []
    for s in sz["scales"]:
        m = measure(config(sz["scale_ms"][s], [("spiking", [33], params(s, recurrent=False))]), out / f"cells{s:g}")
        cells.append({"cells": int(round(160 * s)), "scale": s, **m})
    regions = []
    for n in sz["regions"]:
        m = measure(config(sz["region_ms"], [("spiking", REGIONS8[:n], params())]), out / f"regions{n}")
        regions.append({"regions": n, "services": 1, "cells": 160 * n, **m})
    if sz["two_services"]:
        m = measure(config(sz["region_ms"], [("spikingA", REGIONS8[:4], params()), ("spikingB", REGIONS8[4:], params())]),
                    out / "regions8_two_services")
        regions.append({"regions": 8, "services": 2, "cells": 1280, **m})
    mpi = []
    for ranks in sz["mpi"]:
        m = measure(config(sz["mpi_ms"], [("spiking", [33], params(12.5, ranks=ranks, recurrent=False))]),
                    out / f"mpi{ranks}")
        mpi.append({"ranks": ranks, "cells": 2000, **m})
    wire = []
    for s in sz["bytes_scales"]:
        ms = sz["scale_ms"].get(s, 16.0)
        try:
            b = wire_bytes(config(ms, [("spiking", [33], params(s, recurrent=False))]), out / f"bytes{s:g}")
        except Exception as e:
            b = {"bytes_per_window": None, "error": f"{type(e).__name__}: {e}"}
        wire.append({"cells": int(round(160 * s)), **b})
    bpw = [w["bytes_per_window"] for w in wire if w.get("bytes_per_window")]
    return {"benchmark": "scaling", "size": size, "load_avg_start": load0, "load_avg_end": load_avg(),
            "cells": cells, "regions": regions, "mpi": mpi, "wire": wire,
            "bytes_growth": (max(bpw) / min(bpw) - 1) if len(bpw) > 1 else None,
            "mpi_speedup": (mpi[0]["simulate_ms"]["spiking"] / mpi[1]["simulate_ms"]["spiking"]
                            if len(mpi) == 2 and all("error" not in m for m in mpi) else None)}


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None)
    for c in [c for c in res["cells"] if "error" not in c]:
        print(f"{c['cells']} cells: loop {c['loop_ms_per_window']:.2f} ms/window, simulate "
              f"{c['slowest_simulate_ms']:.2f}, overhead {c['overhead_ms_per_window']:.2f}", file=sys.stderr)
    for w in res["wire"]:
        print(f"{w['cells']} cells: {w.get('bytes_per_window')} bytes per window", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
