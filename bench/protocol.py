"""Protocol overhead: windows with nodes that simulate nothing, against raw pyzmq.

Protocol 3 (PROTOCOL.md §4.1): a window's data goes straight from node to node (each node PUSHes
DATA to the other's PULL inbox); the coordinator only grants windows (RUN, far ahead) and receives
STEP_DONE copies off the critical path. With lag m = 1, window k of each node needs the other
node's DATA of window k-1, so each window costs at least one message each way between the two
nodes, sent concurrently.

Baseline (the floor, same run, interleaved with the measurement): two processes, each binding a
PULL and connecting a PUSH to the other's, exchanging per iteration exactly the frames of the two
DATA messages of a window (same sizes: codec-encoded DATA of the noop run's signals), each
sending its frames and then waiting for the other's: `symmetric_us` per iteration. No codec, no
validation, no coordinator: nothing a protocol with direct data can do without. The protocol-2
floor (a ROUTER exchanging one message with each of 2 DEALER echo processes: one round trip per
window through a third process) is kept for context (`raw_round_trip_us`).

A second baseline, the *Python floor* (`python_floor_us`, same run): the same two processes plus
a third standing in for the coordinator, each node doing per window only what any Python
implementation of protocol 3 must: receive the other's DATA, decode and validate it with the
project's codec (proto/codec.py), check its values, encode and send its own DATA, and every 16
windows send the coordinator one batched STEP_DONE copy (which the third process decodes). The
gap between the two floors is what CPython costs per window on this machine; the gap between the
Python floor and cosim is the runtime's own bookkeeping (grants, heartbeats, timing, recording).

Measured: `cosim run` with the noop backend (real coordinator, real node runtime, real
heartbeats and recording). Figures:

- `ratio` (the aim, ≤ 1.5): time per window of the run's loop (loop wall / windows, i.e.
  1 / windows per second from the summary) over the symmetric exchange's time per iteration.
- `ratio_window_median`: the coordinator's median per-window wall (interval between completed
  windows, recorded in coordinator.h5) over the symmetric exchange's median iteration.

Usage: python bench/protocol.py [--size tiny|full] [--windows 4000] [--repeats 3] [--lookahead M] [--curve]
"""
from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import PY, cosim_run, load_avg, median, timing, arg_parser  # noqa: E402

SIZES = {"tiny": {"windows": 300, "repeats": 1}, "full": {"windows": 4000, "repeats": 5}}
REGIONS = [3, 5]
W_STEPS = 16            # the noop connectome's delay: one window = 16 TVB steps


def _echo(addr: str, ident: bytes) -> None:
    s = zmq.Context().socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.connect(addr)
    s.send(b"hello")
    while True:
        m = s.recv_multipart(copy=False)
        if bytes(m[0]) == b"quit":
            return
        s.send_multipart(m, copy=False)


def raw_round_trip(n_peers: int, payload_bytes: int, iters: int, curve: bool = False) -> dict:
    """ROUTER → n DEALERs → ROUTER exchanges: median and mean seconds per exchange."""
    ctx = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    port = r.bind_to_random_port("tcp://127.0.0.1")
    ids = [f"peer{i}".encode() for i in range(n_peers)]
    procs = [mp.Process(target=_echo, args=(f"tcp://127.0.0.1:{port}", i)) for i in ids]
    for p in procs:
        p.start()
    for _ in ids:
        r.recv_multipart()
    payload = np.zeros(payload_bytes // 8).tobytes()
    times = np.empty(iters)
    t_all = time.perf_counter()
    for k in range(iters):
        t = time.perf_counter()
        for i in ids:
            r.send_multipart([i, b"x", payload])
        for _ in ids:
            r.recv_multipart(copy=False)
        times[k] = time.perf_counter() - t
    t_all = time.perf_counter() - t_all
    for i in ids:
        r.send_multipart([i, b"quit"])
    for p in procs:
        p.join(10)
    r.close(0)
    ctx.term()
    return {"median_s": float(np.median(times)), "mean_s": t_all / iters}


def _data_frames(producer: str, name: str, window: int = 1234) -> list[bytes]:
    """The frames of a window's DATA message as the node runtime sends them (PROTOCOL.md §4.1)."""
    from cosim.proto import codec
    from cosim.proto.messages import Message, MessageType
    return codec.encode(Message(MessageType.DATA, {"signals": {name: np.zeros((W_STEPS, len(REGIONS)))}},
                                node=producer, window=window, msg_id=window))


def _sym_peer(pull_addr: str, push_port_q, frames: list[bytes], iters: int) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push_port_q.put(port)
    push = ctx.socket(zmq.PUSH)
    push.connect(pull_addr)
    push.send(b"hello")
    pull.recv()
    for _ in range(iters):
        push.send_multipart(frames)
        pull.recv_multipart(copy=False)
    push.close(linger=1000)
    pull.close(0)
    ctx.term()


def symmetric_exchange(iters: int, frames_a: list[bytes], frames_b: list[bytes]) -> dict:
    """Two processes, PULL inbox each, PUSH to the other: per iteration each sends its frames and
    waits for the other's (the least a window of direct data can cost). Median/mean s per iteration."""
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    q = mp.Queue()
    peer = mp.Process(target=_sym_peer, args=(f"tcp://127.0.0.1:{port}", q, frames_b, iters))
    peer.start()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{q.get(timeout=30)}")
    pull.recv()
    push.send(b"hello")
    times = np.empty(iters)
    t_all = time.perf_counter()
    for k in range(iters):
        t = time.perf_counter()
        push.send_multipart(frames_a)
        pull.recv_multipart(copy=False)
        times[k] = time.perf_counter() - t
    t_all = time.perf_counter() - t_all
    peer.join(30)
    push.close(0)
    pull.close(0)
    ctx.term()
    return {"median_s": float(np.median(times[10:])), "mean_s": t_all / iters}


def _python_peer(name: str, coord: str, peer_q, my_q, iters: int, res_q) -> None:
    """One node of the Python floor (see the module's docstring)."""
    from cosim.proto import codec
    from cosim.proto.messages import Message, MessageType
    from cosim.proto.signals import values_ok
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    my_q.put(pull.bind_to_random_port("tcp://127.0.0.1"))
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{peer_q.get(timeout=30)}")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(coord)
    dealer.send(b"hello")
    dealer.recv()
    sig = "coupling/R_e" if name == "tvb" else "state/S_e"
    out = np.zeros((W_STEPS, len(REGIONS)))
    push.send_multipart(codec.encode(Message(MessageType.DATA, {"signals": {sig: out}}, node=name, window=-1)))
    batch = []
    t = time.perf_counter()
    for k in range(iters):
        msg = codec.decode(pull.recv_multipart())
        for a in msg.content["signals"].values():
            if not values_ok(a):
                raise ValueError("bad value")
        out = np.full((W_STEPS, len(REGIONS)), float(k))
        push.send_multipart(codec.encode(Message(MessageType.DATA, {"signals": {sig: out}}, node=name, window=k,
                                                 msg_id=k)))
        batch.append(out)
        if len(batch) == 16 or k == iters - 1:
            dealer.send_multipart(codec.encode(Message(MessageType.STEP_DONE, {
                "outputs": {sig: np.concatenate(batch)}, "first": k - len(batch) + 1, "timing": [{}] * len(batch)},
                node=name, window=k)))
            batch = []
    res_q.put(time.perf_counter() - t)
    for s_ in (push, dealer):
        s_.close(linger=1000)
    pull.close(0)
    ctx.term()


def python_floor(iters: int) -> dict:
    """The Python floor (module docstring): mean s per window."""
    from cosim.proto import codec
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    coord = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    qa, qb, res = mp.Queue(), mp.Queue(), mp.Queue()
    peers = [mp.Process(target=_python_peer, args=("tvb", coord, qb, qa, iters, res)),
             mp.Process(target=_python_peer, args=("spiking", coord, qa, qb, iters, res))]
    for p in peers:
        p.start()
    for _ in peers:
        ident, _hello = router.recv_multipart()
        router.send_multipart([ident, b"go"])
    times = []
    while len(times) < 2:
        if router.poll(100):
            codec.decode(router.recv_multipart()[1:])       # the coordinator's side of a copy
        while not res.empty() and len(times) < 2:
            times.append(res.get())
    for p in peers:
        p.join(30)
    router.close(0)
    ctx.term()
    return {"mean_s": max(times) / iters}


def lockstep(windows: int, out: Path, curve_dir: str | None, lookahead: int = 1) -> dict:
    cfg = {"run": {"name": "bench-protocol", "duration_ms": windows * W_STEPS * 0.1 / lookahead,
                   "lookahead": lookahead},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": REGIONS}]}
    if curve_dir:
        cfg["coordinator"] = {"curve": True, "keys_dir": curve_dir}
    r = cosim_run(cfg, out, timeout=600)
    t = timing(out)
    wall = t["window_wall_s"][:, 0]
    s = r["summary"]
    return {"window_median_s": float(np.median(wall[10:])), "loop_per_window_s": s["wall_s"] / s["windows"],
            "windows_per_s": s["windows_per_s"], "windows": s["windows"], "wall_total_s": r["wall_total_s"],
            "out": str(out)}


def make_keys(d: str) -> str:
    subprocess.run(PY + ["keys", d], check=True, capture_output=True)
    return d


def run(size: str = "full", out: Path | None = None, curve: bool = False, windows: int | None = None,
        repeats: int | None = None, lookahead: int = 1) -> dict:
    sz = SIZES[size]
    windows, repeats = windows or sz["windows"], repeats or sz["repeats"]
    out = Path(out or tempfile.mkdtemp(prefix="bench-protocol-"))
    curve_dir = make_keys(str(out / "keys")) if curve else None
    payload = W_STEPS * len(REGIONS) * 8 + 300          # one window's signal block plus headers
    frames_a, frames_b = _data_frames("tvb", "coupling/R_e"), _data_frames("spiking", "state/S_e")
    data_bytes = [sum(map(len, frames_a)), sum(map(len, frames_b))]
    raws, syms, steps, pys = [], [], [], []
    load0 = load_avg()
    for i in range(repeats):        # interleaved, so both see the same machine load
        syms.append(symmetric_exchange(windows, frames_a, frames_b))
        pys.append(python_floor(windows))
        raws.append(raw_round_trip(2, payload, windows))
        steps.append(lockstep(windows, out / f"{'curve' if curve else 'plain'}{i}", curve_dir, lookahead))
    raw_mean = median(r["mean_s"] for r in raws)
    raw_med = median(r["median_s"] for r in raws)
    sym_mean = median(r["mean_s"] for r in syms)
    sym_med = median(r["median_s"] for r in syms)
    py_mean = median(r["mean_s"] for r in pys)
    per_win = median(s["loop_per_window_s"] for s in steps)
    win_med = median(s["window_median_s"] for s in steps)
    return {"benchmark": "protocol", "protocol": 3, "curve": curve, "lookahead": lookahead, "nodes": 2,
            "windows": windows, "repeats": repeats,
            "payload_bytes": payload, "data_message_bytes": data_bytes, "load_avg_start": load0, "load_avg_end": load_avg(),
            "symmetric_us": sym_mean * 1e6, "symmetric_median_us": sym_med * 1e6,
            "raw_round_trip_us": raw_mean * 1e6, "raw_round_trip_median_us": raw_med * 1e6,
            "lockstep_per_window_us": per_win * 1e6, "lockstep_window_median_us": win_med * 1e6,
            "lockstep_windows_per_s": median(s["windows_per_s"] for s in steps),
            "raw_exchanges_per_s": 1 / raw_mean, "symmetric_exchanges_per_s": 1 / sym_mean,
            "ratio": per_win / sym_mean, "ratio_window_median": win_med / sym_med, "aim": 1.5,
            "ratio_vs_round_trip": per_win / raw_mean,
            "python_floor_us": py_mean * 1e6, "python_floor_ratio": py_mean / sym_mean,
            "ratio_vs_python_floor": per_win / py_mean, "python_floor_runs_us": [r["mean_s"] * 1e6 for r in pys],
            "symmetric_runs_us": [r["mean_s"] * 1e6 for r in syms],
            "raw_runs_us": [r["mean_s"] * 1e6 for r in raws],
            "lockstep_runs_us": [s["loop_per_window_s"] * 1e6 for s in steps],
            "lockstep_window_median_runs_us": [s["window_median_s"] * 1e6 for s in steps],
            "example_run": steps[-1]["out"]}


def main() -> None:
    ap = arg_parser(__doc__, SIZES)
    ap.add_argument("--windows", type=int)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--curve", action="store_true", help="run the lockstep part with CURVE on")
    ap.add_argument("--lookahead", type=int, default=1, help="run.lookahead of the cosim runs (default 1)")
    a = ap.parse_args()
    res = run(a.size, Path(a.out) if a.out else None, a.curve, a.windows, a.repeats, a.lookahead)
    print(f"raw symmetric PUSH/PULL exchange {res['symmetric_us']:.0f} µs (ROUTER↔2×DEALER round trip "
          f"{res['raw_round_trip_us']:.0f} µs); Python floor {res['python_floor_us']:.0f} µs "
          f"({res['python_floor_ratio']:.2f}× the raw exchange); cosim {res['lockstep_per_window_us']:.0f} µs per "
          f"window; ratio {res['ratio']:.2f} (aim ≤ 1.5), {res['ratio_vs_python_floor']:.2f}× the Python floor; "
          f"coordinator window median ratio {res['ratio_window_median']:.2f}", file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
