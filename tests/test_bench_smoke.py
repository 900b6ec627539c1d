"""The benchmark suite runs end to end at tiny sizes and writes a sane report (~25 s, ~22 CPU-s).

Tiny sizes skip the benchmarks that build NEURON networks (overlap, toolbox, scaling): they
take ~30 s each just to start. Those run in the full suite (`python bench/run_all.py`); the
scaling benchmark's tiny size (~30 s: 160 cells on NetPyNE and NEST, 4 regions on 1 and 2
services with spikes between them; four runs) has its own test below.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = [pytest.mark.system, pytest.mark.slow, pytest.mark.tvb]

REPO = Path(__file__).resolve().parents[1]


def test_bench_suite_tiny_writes_a_sane_report(tmp_path):
    docs, results = tmp_path / "docs", tmp_path / "results"
    p = subprocess.run([sys.executable, "bench/run_all.py", "--size", "tiny", "--docs", str(docs),
                        "--results", str(results)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = (docs / "performance.md").read_text()
    for heading in ("## Summary", "## 1. Protocol overhead", "## 4. Long runs", "## 6. Distance",
                    "## 7. Security cost", "## 8. Start-up and sweeps", "## Where the time goes"):
        assert heading in report, heading
    for png in ("perf_protocol.png", "perf_distance.png", "perf_longrun.png", "perf_breakdown_longrun.png"):
        assert (docs / png).stat().st_size > 1000, png
    proto = json.loads((results / "protocol.json").read_text())
    assert proto["raw_round_trip_us"] > 0 and proto["lockstep_per_window_us"] > proto["raw_round_trip_us"] * 0.5
    assert 0.5 < proto["ratio"] < 100
    dist = json.loads((results / "distance.json").read_text())
    far = [r for r in dist["rows"] if r["latency_ms"] > 0][0]
    # protocol 3, lag 1, every link of the remote node behind a proxy: the two directions form two
    # chains, so a window cannot cost less than L + compute/2, i.e. L - compute/2 more than at L = 0
    assert far["latency_cost_ms"] > 0.5 * far["latency_ms"]
    assert far["per_window_ms"] > far["chain_floor_ms"] * 0.95
    lr = json.loads((results / "longrun.json").read_text())
    assert lr["windows"] == 300 and lr["steps_per_window"] == 1
    assert all(v > 0 for v in lr["rss_kb_at_mark"].values())
    sec = json.loads((results / "security.json").read_text())
    assert sec["protocol"]["curve"] is True and sec["protocol_ratio"] > 0
    st = json.loads((results / "startup.json").read_text())
    run = st["run"]
    assert st["backend"] == "noop" and st["floor_tvb_s"] > 0 and run["loop_s"] > 0
    # the start-up the benchmark sees from outside (command start to coordinator.h5, polled every 10 ms)
    # and the one `cosim run` reports (command start to the first window) are the same span
    assert abs(run["startup_reported"]["wall_s"] - run["startup_s"]) < 0.25
    assert set(run["startup_reported"]["services"]) == {"launcher", "coordinator", "tvb", "spiking"}
    for kind in ("sweep_cold", "sweep_warm"):
        assert len(st[kind]["wall_s"]) == 2 and all(w >= lp > 0 for w, lp in zip(st[kind]["wall_s"], st[kind]["loop_s"]))
    suite = json.loads((results / "suite.json").read_text())
    assert not suite["errors"]


@pytest.mark.netpyne
@pytest.mark.nest
def test_scaling_tiny_measures_both_backends_and_the_split(tmp_path):
    out = tmp_path / "scaling.json"
    p = subprocess.run([sys.executable, "bench/scaling.py", "--size", "tiny", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    cells = {r["backend"]: r for r in res["cells"]}
    assert set(cells) == {"netpyne", "nest"}
    for r in cells.values():
        assert "error" not in r, r.get("error")
        # the baseline row is its own baseline; the figures are positive and the memory was sampled
        assert r["ratio"]["us_per_sim_ms_per_cell"] == 1.0 and r["us_per_sim_ms_per_cell"] > 0
        assert r["build_s"]["s0"] > 0 and r["peak_rss_mb"]["s0"] > 50
    assert [r["regions"] for r in res["regions"]] == [4] and res["regions"][0]["ratio"] == 1.0
    one, split = res["services"]
    assert (one["services"], split["inter_service"]) == (1, "spikes") and "error" not in split, split.get("error")
    # spikes between services: the split network is the one-service network, spike for spike
    assert one["spikes_total"] > 0
    assert split["populations_identical"] == split["populations"] == 8
    assert split["spikes_per_population"] == one["spikes_per_population"]
    assert "| services |" in p.stderr          # the table is printed
