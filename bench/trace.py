"""Read a per-message trace (COSIM_TRACE=FILE, cosim/runtime/transport.py) and say where each window's
time goes on its critical path.

Trace lines: `<monotonic ns> <pid> <who> <send|recv|begin|end> <TYPE|step> <window> <peer> <bytes>`.

Per node and window k (protocol 3, lag m): the node begins window k once it holds DATA of window
k-m from every producer; so each window's start is set either by the node itself (it was still
busy with window k-1) or by the last DATA it waited for. Figures per window (means over the
windows after the first few, in ms):

- `step`: begin → end of `adapter.step` (simulate + transform: the adapter's whole window);
- `post`: end → window done (outputs checked; DATA encoded and sent to every consumer; the
  STEP_DONE copies leave later, in batches: PROTOCOL.md §4.1);
- `idle`: window k-1 done → begin of k (waiting for data, or for the CPU);
- `transit`: producer's DATA(k-m) sent → this node's DATA(k-m) received (ZeroMQ, the kernel, the
  receiver's I/O thread and the receiver noticing it: its poll wake-up, or its being busy);
- `take`: last needed DATA received → begin of k (inputs assembled and validated);
- `data_send`: end → DATA sent (to every consumer);
- `ready` = max(this node's window k-1 done, the last producer's DATA of k-m sent): the
  earliest window k could start if messages took no time; `deliver` = begin of k − ready: the
  messaging and scheduling time on the critical path (the message crossing ZeroMQ and the kernel,
  the receiver waking up, decoding and assembling the inputs), `deliver_recv` the part up to the
  DATA's receipt;
- `data_late`: fraction of windows where the producer's DATA was sent after this node had finished
  its previous window (the node really waited for the other side);
- `copy_interference`: per link, the delay from ready (DATA sent, consumer done) to the DATA being
  read, split by whether the coordinator handled the producer's STEP_DONE copy in between.

The window period (begin k → begin k+1) then splits into step + post + idle.

Usage: python bench/trace.py TRACE_FILE [--skip 10] [--lag 1]
"""
from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np


def read(path: str) -> list[tuple]:
    rows = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) != 8:
                continue
            w = None if p[5] == "None" else int(p[5])
            rows.append((int(p[0]), p[2], p[3], p[4], w, p[6], int(p[7])))
    rows.sort()
    return rows


def analyse(path: str, skip: int = 10, lag: int = 1) -> dict:
    rows = read(path)
    ev: dict = collections.defaultdict(dict)          # (who, what, type, window, peer) -> first t
    for t, who, what, typ, w, peer, _ in rows:
        ev[(who, what, typ, w, peer)].setdefault("t", t)
    nodes = sorted({who for _, who, what, typ, *_ in rows if typ == "step"})
    producers = collections.defaultdict(set)           # consumer -> producers (from DATA received)
    for _, who, what, typ, _w, peer, _ in rows:
        if what == "recv" and typ == "DATA":
            producers[who].add(peer)
    res = {"trace": path, "lag": lag, "nodes": {}, "messages": collections.Counter(
        f"{who} {what} {typ}" for _, who, what, typ, *_ in rows)}
    for n in nodes:
        ks = sorted(w for (who, what, typ, w, _p) in ev if who == n and what == "begin")
        per = collections.defaultdict(list)
        for k in ks:
            if k < skip or (n, "begin", "step", k + 1, "-") not in ev:
                continue

            def t(key):
                v = ev.get(key)
                return None if v is None else v["t"]
            b, e = t((n, "begin", "step", k, "-")), t((n, "end", "step", k, "-"))
            sd = t((n, "end", "window", k, "-"))            # DATA of window k sent: the window is done
            sd_prev = t((n, "end", "window", k - 1, "-"))
            b_next = t((n, "begin", "step", k + 1, "-"))
            per["period"].append(b_next - b)
            per["step"].append(e - b)
            if sd is not None:
                per["post"].append(sd - e)
            if sd_prev is not None:
                per["idle"].append(b - sd_prev)
            j = k - lag
            recvs, transits = [], []
            for p in producers[n]:
                r, s = t((n, "recv", "DATA", j, p)), t((p, "send", "DATA", j, n))
                if r is not None:
                    recvs.append(r)
                if r is not None and s is not None:
                    transits.append(r - s)
            if recvs:
                last = max(recvs)
                per["take"].append(b - last)
            if transits:
                per["transit"].append(max(transits))
            ds = t((n, "send", "DATA", k, sorted(c for c, ps in producers.items() if n in ps)[0])) \
                if any(n in ps for ps in producers.values()) else None
            if ds is not None:
                per["data_send"].append(ds - e)
            sends = [t((p, "send", "DATA", j, n)) for p in producers[n]]
            if sd_prev is not None and sends and None not in sends and recvs:
                ready = max([sd_prev] + sends)
                per["deliver"].append(b - ready)
                per["deliver_recv"].append(max(recvs) - ready if max(recvs) > ready else 0)
                per["data_late"].append(1.0 if max(sends) > sd_prev else 0.0)
        res["nodes"][n] = {k: float(np.mean(v)) / (1 if k == "data_late" else 1e6) for k, v in per.items() if v}
        res["nodes"][n]["windows"] = len(per["period"])
    # did the coordinator handle the producer's STEP_DONE copy while the consumer had not yet read
    # the producer's DATA? (on 2 cores the copy's processing may delay the consumer's wake-up)
    res["copy_interference"] = {}
    for cons in nodes:
        for prod in sorted(producers[cons]):
            inside, outside = [], []
            for (who, what, typ, j, peer), v in ev.items():
                if who != cons or what != "recv" or typ != "DATA" or peer != prod or j is None or j < skip:
                    continue
                r, s_ = v["t"], ev.get((prod, "send", "DATA", j, cons), {}).get("t")
                done = ev.get((cons, "end", "window", j + lag - 1, "-"), {}).get("t")
                c = ev.get(("coordinator", "recv", "STEP_DONE", j, prod), {}).get("t")   # (a batch's last window)
                if None in (s_, done, c):
                    continue
                ready = max(s_, done)
                if r < ready:
                    continue
                (inside if ready < c < r else outside).append((r - ready) / 1e6)
            res["copy_interference"][f"{prod}->{cons}"] = {
                "windows_copy_between": len(inside), "read_delay_ms_copy_between": float(np.mean(inside)) if inside else None,
                "windows_other": len(outside), "read_delay_ms_other": float(np.mean(outside)) if outside else None}
    co = [t for t, who, what, typ, *_ in rows if who == "coordinator" and what == "recv" and typ == "STEP_DONE"]
    res["coordinator_step_done_received"] = len(co)
    res["messages"] = dict(res["messages"])
    return res


def text(res: dict) -> str:
    cols = ["period", "step", "data_send", "idle", "transit", "deliver", "deliver_recv", "take",
            "data_late"]
    out = [f"  per-message trace {res['trace']} (lag {res['lag']}), ms per window (mean):",
           "  " + f"{'':>12}" + "".join(f"{c:>13}" for c in cols)]
    for n, d in res["nodes"].items():
        out.append("  " + f"{n:>12}" + "".join(f"{d.get(c, float('nan')):>13.3f}" for c in cols))
    for link, d in res.get("copy_interference", {}).items():
        f = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        out.append(f"  {link}: DATA read {f(d['read_delay_ms_copy_between'])} ms after ready in "
                   f"{d['windows_copy_between']} windows where the coordinator handled the producer's STEP_DONE in "
                   f"between, {f(d['read_delay_ms_other'])} ms in {d['windows_other']} others")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--skip", type=int, default=10)
    ap.add_argument("--lag", type=int, default=1)
    a = ap.parse_args()
    res = analyse(a.trace, a.skip, a.lag)
    print(text(res), file=sys.stderr)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
