"""Kill a run at a random window, `cosim resume` it, and compare with the uninterrupted run
(PROTOCOL.md §10.1). Shared by tests/test_resume.py and bench/resume.py (the 20-kill loop)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from harness import Services, read_results, wait_for
from cosim.runtime import checkpoint

from cosim.launch import command_lines
HB_MS = 1000
# a small NetPyNE network that spikes in 150 ms; heartbeat timeout 5 s (NetPyNE's finish holds the
# GIL ~1 s on a loaded machine)
NETPYNE = {"network": {"n_exc": 40, "n_inh": 12}, "input": {"offset_hz": 50.0, "weight_uS": 0.02},
           "record": {"plot": False}}


def netpyne_config() -> dict:
    return resume_config(150, backend="netpyne", params=NETPYNE, hb_timeout_ms=5000)


def resume_config(duration_ms: float = 300, every_windows: int = 5, backend: str = "reference",
                  regions=(33, 71), params: dict | None = None, hb_timeout_ms: int = HB_MS) -> dict:
    return {"run": {"name": "resume", "duration_ms": duration_ms, "progress": False,
                    "checkpoint": {"every_windows": every_windows, "keep": 2}},
            "spiking_nodes": [{"name": "spiking", "backend": backend, "regions": list(regions),
                               **({"params": params} if params else {})}],
            "coordinator": {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": hb_timeout_ms}}


def uninterrupted(cfg: dict, out: Path) -> dict:
    with Services(cfg, out).start_all() as s:
        codes = s.wait_exit(timeout=240)
        assert codes == {"coordinator": 0, "tvb": 0, "spiking": 0}, s.logs_text()
    return read_results(out)


def _manifests(out: Path) -> list[int]:
    return [k for k in checkpoint.windows_on_disk(out) if (checkpoint.folder(out, k) / checkpoint.MANIFEST).exists()]


def killed_run(cfg: dict, out: Path, victim: str, rng: random.Random, *, after_checkpoints: int | None = None,
               kill_within_s: float = 0.1) -> dict:
    """Start the run's services one by one and SIGKILL `victim` at a random moment (uniform in
    `kill_within_s`) after the `after_checkpoints`-th checkpoint (default: random, in the first
    two thirds of the run, so that the kill lands before the end even on a quiet machine where a
    300 ms reference run takes 0.6 s); the others end. Returns the coordinator's status at the kill."""
    if after_checkpoints is None:
        n_ckpt = int(cfg["run"]["duration_ms"] / 4.9) // cfg["run"]["checkpoint"]["every_windows"]
        after_checkpoints = rng.randint(1, max(1, (2 * n_ckpt) // 3))
    with Services(cfg, out).start_all() as s:
        every = cfg["run"]["checkpoint"]["every_windows"]
        target = after_checkpoints * every - 1      # the window of that checkpoint (only `keep` remain on disk)
        wait_for(lambda: max(_manifests(out), default=-1) >= target or s.any_exited(), 240, "checkpoints")
        assert not s.any_exited(), f"a service exited before the kill\n{s.logs_text()}"
        time.sleep(rng.uniform(0.0, kill_within_s))
        assert not s.any_exited(), f"the run ended before the kill (make it longer)\n{s.logs_text()}"
        status = json.loads((out / "status_coordinator.json").read_text())
        os.kill(s.pid(victim), signal.SIGKILL)
        s.wait_exit([n for n in s.procs if n != victim], timeout=cfg["coordinator"]["heartbeat_timeout_ms"] / 1000 + 30)
    return status


def resume(out: Path) -> subprocess.CompletedProcess:
    """`cosim resume OUT --no-plots`, as a user types it."""
    return subprocess.run(command_lines.cosim_cmd() + ["resume", str(out), "--no-plots"], capture_output=True, text=True,
                          timeout=300, env=command_lines.service_env())


def kill_and_resume(cfg: dict, out: Path, victim: str, rng: random.Random, *, after_checkpoints: int | None = None,
                    kill_within_s: float = 0.1, corrupt_newest: bool = False) -> dict:
    """`killed_run`, then `cosim resume` the folder. Returns what happened."""
    status = killed_run(cfg, out, victim, rng, after_checkpoints=after_checkpoints, kill_within_s=kill_within_s)
    ready = _manifests(out)
    corrupted = None
    if corrupt_newest:
        assert len(ready) >= 2, f"need two checkpoints to corrupt the newest, have {ready}"
        victim_file = checkpoint.folder(out, ready[0]) / "tvb.npz"
        data = bytearray(victim_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        victim_file.write_bytes(bytes(data))
        corrupted = ready[0]
    expect = ready[1] if corrupt_newest else ready[0]
    t0 = time.monotonic()
    p = resume(out)
    resume_s = time.monotonic() - t0
    assert p.returncode == 0, f"cosim resume exited {p.returncode}\n{p.stderr[-3000:]}"
    summary = json.loads((out / "summary.json").read_text())
    return {"victim": victim, "windows_at_kill": status.get("windows_completed"), "checkpoints": ready,
            "expected_from": expect, "resumed_from": summary.get("resumed_from_window"), "corrupted": corrupted,
            "resume_s": resume_s, "stdout": p.stdout, "stderr": p.stderr, "summary": summary}


def assert_equal_results(got: dict, ref: dict) -> None:
    """Every deterministic dataset bit for bit (tvb.h5 raw + monitors, coordinator.h5 signals,
    the spiking node's file)."""
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for fname, dsets in ref.items():
        names = sorted(n for n in dsets if n != "__attrs__")
        assert names == sorted(n for n in got[fname] if n != "__attrs__"), f"{fname}: other datasets"
        for name in names:
            a, b = got[fname][name], dsets[name]
            assert a.shape == b.shape and a.dtype == b.dtype, f"{fname}:{name}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
            if a.dtype == object:              # strings (pops/label): compare values, not pointers
                assert a.tolist() == b.tolist(), f"{fname}:{name} differs from the uninterrupted run"
                continue
            assert a.tobytes() == b.tobytes(), (f"{fname}:{name} differs from the uninterrupted run "
                                                f"(first row {np.flatnonzero((a != b).reshape(a.shape[0], -1).any(1))[:1]})")
        assert got[fname]["__attrs__"].get("completed", True) in (True, np.True_), f"{fname} not marked completed"
