"""Fuzz soak: many hostile messages against the coordinator during one long live run.

    python bench/fuzz_soak.py [--messages 200000] [--seed 7] [--max-seconds 600]

Same ingredients as tests/test_fuzz.py (tests/fuzzlib.py), scaled up: a noop TVB node process,
an in-process spiking node that misbehaves on its own registered identity every window, and
unregistered peers sending `--messages` hostile messages in rounds, interleaved with oversized
messages, raw TCP garbage and a heartbeat spammer that never reads. Then a clean run of the same
configuration. Prints one JSON line: messages/s handled, rejection counts by kind, coordinator
log lines, and whether the results equal the clean run's (exit code 1 if not). Loopback only;
every loop is bounded by --max-seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402

from cosim.runtime.store import open_h5  # noqa: E402
from fuzzlib import FakeNode, Fuzzer  # noqa: E402
from harness import Services, noop_cfg, wait_for  # noqa: E402


def one_run(out: Path, messages: int, seed: int, max_s: float) -> dict:
    cfg = noop_cfg(duration_ms=16 * 0.1 * 200, hb_interval_ms=100, hb_timeout_ms=2000)
    cfg["coordinator"]["max_message_bytes"] = 1 << 20
    rep: dict = {}
    with Services(cfg, out) as s:
        s.start_coordinator()
        s.start_node("tvb")
        hold = threading.Event()
        node = FakeNode(s.router, hostile=6 if messages else 0, seed=seed, hold_last=hold, step_sleep_s=0.002,
                        timeout_s=max_s + 60)
        node.start()
        try:
            wait_for(node.windows_started.is_set, 60, "the windows to start")
            if messages:
                fz = Fuzzer(s.router, seed=seed, max_bytes=1 << 20)
                t0 = time.monotonic()
                try:
                    rounds = 10
                    for r in range(rounds):
                        fz.run(messages // rounds, deadline_s=max(1.0, max_s - (time.monotonic() - t0)))
                        if r % 3 == 0:
                            fz.oversized(2)
                            fz.raw_tcp(5)
                            fz.hb_spam(2000)
                    fz.barrier(timeout_s=60)
                finally:
                    fz.close()
                rep["fuzz_s"] = round(time.monotonic() - t0, 2)
                rep["messages_per_s"] = round(messages / rep["fuzz_s"])
                rep["sent"] = fz.sent
        finally:
            hold.set()
            node.join(timeout=60)
        rep["node"] = node.result
        rep["codes"] = s.wait_exit(["coordinator", "tvb"], timeout=120)
        rep["log_lines"] = len(s.log("coordinator").splitlines())
    rep["status"] = json.loads((out / "status_coordinator.json").read_text())
    with open_h5(out / "coordinator.h5") as f:
        rep["data"] = {k: f[k][()] for k in ("time_ms", "signals/spiking/state/S_e", "signals/tvb/coupling/R_e")}
    return rep


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fuzz_soak_") as tmp:
        fuzz = one_run(Path(tmp) / "fuzz", a.messages, a.seed, a.max_seconds)
        clean = one_run(Path(tmp) / "clean", 0, a.seed, a.max_seconds)
    equal = all(np.array_equal(clean["data"][k], fuzz["data"][k]) for k in clean["data"])
    ok = equal and fuzz["node"] == "finished" and fuzz["codes"] == {"coordinator": 0, "tvb": 0}
    print(json.dumps({"ok": ok, "results_equal_clean_run": equal, "messages": a.messages,
                      "fuzz_s": fuzz.get("fuzz_s"), "messages_per_s": fuzz.get("messages_per_s"),
                      "rejected": fuzz["status"]["rejected_messages"], "coordinator_log_lines": fuzz["log_lines"],
                      "clean_log_lines": clean["log_lines"], "node": fuzz["node"], "codes": fuzz["codes"]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
