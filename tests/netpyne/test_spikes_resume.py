"""A run whose NetPyNE services exchange spikes (PROTOCOL.md §4.2), killed and resumed from a
checkpoint (§10.1), equals the uninterrupted run spike for spike: the spikes in flight at the cut
(windows k-m+1 .. k) come back from the coordinator's copies, the stand-ins' queued events from
NEURON's SaveState."""
from __future__ import annotations

import random

import h5py
import numpy as np
import pytest

from harness import Services, read_results
from resumelib import NETPYNE, assert_equal_results, kill_and_resume

pytestmark = [pytest.mark.system, pytest.mark.netpyne, pytest.mark.tvb, pytest.mark.slow]


def config() -> dict:
    return {"run": {"name": "resume", "duration_ms": 150, "progress": False, "seed": 7,
                    "checkpoint": {"every_windows": 5, "keep": 2}},
            "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [71, 38], "params": NETPYNE},
                              {"name": "other", "backend": "netpyne", "regions": [59, 39], "params": NETPYNE}],
            "coordinator": {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 5000}}


def other_spikes(out) -> dict:
    with h5py.File(out / "other.h5", "r") as f:
        return {k: f[f"spikes/{k}"][:] for k in ("t_ms", "gid")}


def test_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    with Services(config(), ref_dir).start_all() as s:
        codes = s.wait_exit(timeout=240)
        assert set(codes.values()) == {0}, s.logs_text()
    ref = read_results(ref_dir)
    got = kill_and_resume(config(), run_dir, "other", random.Random(3), after_checkpoints=2)
    assert got["resumed_from"] == got["expected_from"], got
    assert_equal_results(read_results(run_dir), ref)
    a, b = other_spikes(run_dir), other_spikes(ref_dir)
    assert a["t_ms"].size > 50 and all(np.array_equal(a[k], b[k]) for k in a)
