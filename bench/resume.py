"""Checkpoint/resume (issue 11 §1): the N-kill loop and the checkpoint cost per window.

    PYTHONPATH=. python bench/resume.py kills [N] [--backend reference|netpyne] [--out DIR]
    PYTHONPATH=. python bench/resume.py cost [--out DIR]

`kills`: N runs (default 20) of `tests/resumelib.resume_config`, each SIGKILLing a service
(coordinator, tvb, spiking in turn) at a random moment after a random checkpoint, then
`cosim resume`; every resumed run must equal the uninterrupted one bit for bit. Prints one
JSON line per kill and a summary; exit 1 if any differs.

`cost`: the same run (reference backend, 300 ms = 62 windows of 4.9 ms) without checkpoints and
with a checkpoint after every window and every 10th; the coordinator's own measure of each
checkpoint (CHECKPOINT sent → manifest written, the run waits for it) and the wall time of
the windows. Writes bench/results/resume.json when --out is not given.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness import Services, read_results  # noqa: E402
from resumelib import assert_equal_results, kill_and_resume, netpyne_config, resume_config, uninterrupted  # noqa: E402


def kills(n: int, backend: str, out: Path, seed: int = 2026) -> dict:
    cfg = netpyne_config() if backend == "netpyne" else resume_config(backend=backend)
    ref = uninterrupted(cfg, out / "uninterrupted")
    rng = random.Random(seed)
    rows, failed = [], 0
    for i in range(n):
        d = out / f"kill{i:02d}"
        victim = ["coordinator", "tvb", "spiking"][i % 3]
        t0 = time.monotonic()
        try:
            got = kill_and_resume(cfg, d, victim, rng)
            assert got["resumed_from"] == got["expected_from"], got
            assert_equal_results(read_results(d), ref)
            ok, why = True, ""
        except AssertionError as e:
            ok, why, got = False, str(e).splitlines()[0][:300], locals().get("got", {})
            failed += 1
        row = {"i": i, "victim": victim, "ok": ok, "why": why, "windows_at_kill": got.get("windows_at_kill"),
               "resumed_from": got.get("resumed_from"), "resume_s": round(got.get("resume_s", 0), 1),
               "wall_s": round(time.monotonic() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if ok:
            shutil.rmtree(d, ignore_errors=True)
    return {"backend": backend, "kills": n, "equal": n - failed, "rows": rows}


def _run(cfg: dict, out: Path) -> dict:
    with Services(cfg, out).start_all() as s:
        codes = s.wait_exit(timeout=300)
        assert set(codes.values()) == {0}, s.logs_text()
    return json.loads((out / "summary.json").read_text())


def cost(out: Path) -> dict:
    res = {}
    for every in (None, 10, 1):
        cfg = resume_config()
        if every is None:
            cfg["run"].pop("checkpoint")
        else:
            cfg["run"]["checkpoint"]["every_windows"] = every
        s = _run(cfg, out / f"every{every}")
        c = s.get("checkpoints") or {}
        res[f"every_{every}" if every else "off"] = {
            "windows": s["windows"], "wall_s": round(s["wall_s"], 3),
            "window_wall_ms": round(s["timing"]["window_wall_ms"], 3),
            "checkpoints": c.get("count", 0), "checkpoint_mean_ms": round(c.get("mean_ms", 0.0), 2),
            "checkpoint_max_ms": round(c.get("max_ms", 0.0), 2),
            "cost_per_window_ms": round(c.get("total_s", 0.0) * 1e3 / s["windows"], 2)}
        print(json.dumps({every: res[f"every_{every}" if every else "off"]}), flush=True)
    return res


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["kills", "cost"])
    p.add_argument("n", nargs="?", type=int, default=20)
    p.add_argument("--backend", default="reference")
    p.add_argument("--out")
    a = p.parse_args()
    out = Path(a.out or tempfile.mkdtemp(prefix="cosim-resume-"))
    out.mkdir(parents=True, exist_ok=True)
    if a.what == "kills":
        r = kills(a.n, a.backend, out)
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}))
        return 0 if r["equal"] == r["kills"] else 1
    r = cost(out)
    if not a.out:
        (REPO / "bench" / "results" / "resume.json").write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
