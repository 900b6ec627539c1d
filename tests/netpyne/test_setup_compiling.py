"""A standalone NetPyNE node that must compile its mechanisms says so in its heartbeats
(PROTOCOL.md §8, `setup: "compiling"`), and the coordinator does not count that time against
`setup_timeout_ms`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import harness

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.model_startup import config, write_model  # noqa: E402


@pytest.mark.unit
def test_setup_clock_stands_still_while_a_node_compiles(monkeypatch):
    from cosim.config import parse_config
    from cosim.services.coordinator.coordinator import Coordinator, Peer
    now = [100.0]
    monkeypatch.setattr("cosim.services.coordinator.coordinator.time.monotonic", lambda: now[0])
    c = Coordinator(parse_config({"spiking_nodes": [{"name": "a", "backend": "noop"}, {"name": "b", "backend": "noop",
                                                                                         "regions": [1]}]}), "/tmp")
    c.t_setup = 100.0
    a, b = Peer("a", "spiking"), Peer("b", "spiking")
    for t, peer, hb in ((101, a, {"setup": "compiling"}), (102, b, {"setup": "compiling"}), (103, a, {}),
                        (105, b, {"setup": "compiling"}), (106, b, {}), (110, a, {})):
        now[0] = t
        c.note_setup_work(peer, hb)
    assert c.t_setup == 105.0          # paused from 101 to 106 (overlapping nodes counted once)
    assert not c.compiling and c.paused_at is None


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.netpyne
@pytest.mark.tvb
def test_standalone_node_compiling_does_not_time_out_setup(tmp_path, monkeypatch):
    model = write_model(tmp_path / "model", 4)
    monkeypatch.setenv("COSIM_NRNMECH_CACHE", str(tmp_path / "cache"))      # cold: the node compiles
    cfg = config(model, duration_ms=10.0)
    cfg["coordinator"] = {"setup_timeout_ms": 60_000}
    with harness.Services(cfg, tmp_path / "out").start_all() as s:
        codes = s.wait_exit(timeout=600)
        assert codes["coordinator"] == 0, s.logs_text()
        assert "node 'spiking' is compiling; setup timeout paused" in s.log("coordinator")
        assert "mechanisms not cached: compiling them now" in s.log("spiking")
