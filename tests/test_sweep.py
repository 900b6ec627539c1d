"""`cosim sweep` / `cosim.sweep`: a grid × seeds of ordinary runs on a Dask LocalCluster.

  the grid and seeds parse as documented; a value the schema refuses fails that run alone (unit)
  a run made to fail by its grid value fails alone, named with its reason; exit 1; a second
  invocation skips the completed runs and reruns only the failed ones (noop services, 2 workers)
  a sweep killed half-way (SIGTERM) and run again completes only the missing runs
  each run of a sweep equals a single `cosim run` of the same config bit for bit (reference backend),
  every service of it (the coordinator too) forked from the worker's zygote
  a sweep sent to a real Dask cluster (scheduler and two workers on network-namespace hosts) equals
  the local pool's bit for bit
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from harness import noop_cfg, ref_config, wait_for
from psutil_free import cosim_processes


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args], capture_output=True, text=True, timeout=timeout)


def _write(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


# ---- parsing and planning (pure) -------------------------------------------------------------
@pytest.mark.unit
def test_grid_values_are_yaml_and_brackets_keep_their_commas():
    from cosim.launch.sweep import parse_grid, parse_seeds
    g = parse_grid(["tvb.coupling_a=0.002,0.004", "spiking_nodes.0.regions=[33, 71],[10,20,30]",
                    "spiking_nodes.0.params.fail_at_window=null,2"])
    assert g == {"tvb.coupling_a": [0.002, 0.004], "spiking_nodes.0.regions": [[33, 71], [10, 20, 30]],
                 "spiking_nodes.0.params.fail_at_window": [None, 2]}
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,7") == [4, 7] and parse_seeds(2) == [0, 1]
    assert parse_seeds(None) is None
    from cosim.errors import ConfigError
    for bad in (["tvb.coupling_a"], ["=1,2"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds("two")


@pytest.mark.unit
def test_plan_names_each_run_by_its_config_hash_and_keeps_a_refused_value_to_its_run(tmp_path):
    from cosim.launch.sweep import plan
    cfg = _write(tmp_path / "c.yaml", noop_cfg())
    tasks = plan(cfg, {"run.duration_ms": [20, -5, 30]}, [0, 1], [], tmp_path / "out")
    assert len(tasks) == 6 and [t["seed"] for t in tasks] == [0, 1] * 3
    assert [t["values"]["run.duration_ms"] for t in tasks] == [20, 20, -5, -5, 30, 30]
    assert len({t["folder"] for t in tasks}) == 6                      # every run its own folder
    bad = [t for t in tasks if t["error"]]
    assert [t["index"] for t in bad] == [2, 3] and all("run.duration_ms" in t["error"] for t in bad)
    again = plan(cfg, {"run.duration_ms": [30]}, [1], [], tmp_path / "out")
    assert again[0]["hash"] == tasks[5]["hash"]                          # same config, same run: resumable


@pytest.mark.unit
def test_zipped_keys_vary_together_times_the_grid_and_the_seeds(tmp_path):
    from cosim.errors import ConfigError
    from cosim.launch.sweep import parse_zip, plan
    cfg = _write(tmp_path / "c.yaml", noop_cfg())
    z = parse_zip(["run.duration_ms=20,30", "spiking_nodes.0.regions=[3, 5],[3, 5, 7]"])
    assert z == {"run.duration_ms": [20, 30], "spiking_nodes.0.regions": [[3, 5], [3, 5, 7]]}
    tasks = plan(cfg, {"tvb.coupling_a": [0.002, 0.004]}, [0, 1], [], tmp_path / "out", zipped=z)
    # 2 grid values x 2 variants x 2 seeds = 8 runs, not 2 x 2 x 2 x 2 = 16 (a product of the zipped keys)
    assert len(tasks) == 8 and not any(t["error"] for t in tasks)
    pairs = [(t["values"]["run.duration_ms"], t["values"]["spiking_nodes.0.regions"]) for t in tasks]
    assert pairs == [(20, [3, 5])] * 2 + [(30, [3, 5, 7])] * 2 + [(20, [3, 5])] * 2 + [(30, [3, 5, 7])] * 2
    assert [t["values"]["tvb.coupling_a"] for t in tasks] == [0.002] * 4 + [0.004] * 4
    assert [t["seed"] for t in tasks] == [0, 1] * 4
    assert len({t["hash"] for t in tasks}) == 8                # each variant its own config, its own folder
    assert all("spiking_nodes.0.regions=[3, 5, 7]" in t["sets"] for t in tasks if t["values"]["run.duration_ms"] == 30)
    only = plan(cfg, {}, None, [], tmp_path / "out", zipped=z)   # variants alone
    assert [t["values"]["run.duration_ms"] for t in only] == [20, 30]
    with pytest.raises(ConfigError, match="as many values each.*run.duration_ms: 2, run.seed: 3"):
        parse_zip(["run.duration_ms=20,30", "run.seed=1,2,3"])
    with pytest.raises(ConfigError, match="--zip run.duration_ms: also a --grid key"):
        plan(cfg, {"run.duration_ms": [10]}, None, [], tmp_path / "out", zipped=z)
    with pytest.raises(ConfigError, match="--zip"):
        parse_zip(["run.duration_ms"])


@pytest.mark.unit
def test_a_run_label_shows_a_long_zipped_value_shortened():
    """A zipped value can be a whole mapping (examples/virtual_dbs.py zips the spiking node's params):
    its run line shows the start of it, not kilobytes."""
    from cosim.launch.sweep import _label
    params = {"model_file": {"path": "/x/" + "bg_" * 100}, "stimulus": [{"label": "dbs_STN"}]}
    label = _label({"values": {"spiking_nodes.0.params": params, "run.seed_offset": 3}, "seed": 2})
    assert label.startswith('spiking_nodes.0.params={"model_file": ') and label.endswith("run.seed_offset=3, seed=2")
    assert len(label) < 120 and "…" in label


@pytest.mark.unit
def test_a_sweep_whose_every_run_is_refused_is_a_configuration_error_and_leaves_nothing(tmp_path):
    from cosim.errors import ConfigError
    from cosim.launch.sweep import run_sweep
    cfg = _write(tmp_path / "c.yaml", noop_cfg())
    with pytest.raises(ConfigError, match="tvb.no_such_key"):
        run_sweep(cfg, {"tvb.no_such_key": [1, 2]}, None, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_a_sweep_folder_that_cannot_be_written_is_one_line_before_any_run(tmp_path):
    # before: a bare OSError traceback from mkdir (found with a read-only mount; a file in the
    # way fails the same call here without one)
    from cosim.errors import ConfigError
    from cosim.launch.sweep import run_sweep
    cfg = _write(tmp_path / "c.yaml", noop_cfg())
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"--out: cannot write to .*afile/out"):
        run_sweep(cfg, {"run.seed": [1, 2]}, None, tmp_path / "afile" / "out", progress=False)


# ---- a sweep on a LocalCluster (real services) ----------------------------------------------
@pytest.mark.system
@pytest.mark.dask
def test_a_failing_run_fails_alone_with_its_reason_and_a_rerun_skips_the_completed(tmp_path):
    cfg = _write(tmp_path / "noop.yaml", noop_cfg(duration_ms=30))
    out = tmp_path / "sweep"
    # one worker (one zygote importing TVB per call, not two): the failed runs share it with the
    # completed ones, so a failure must not spoil the worker either; 2 workers: tests below
    args = ["sweep", cfg, "--grid", "spiking_nodes.0.params.fail_at_window=null,2", "--seeds", "2",
            "--workers", "1", "--out", str(out)]
    p = _cli(*args)
    assert p.returncode == 1, p.stderr
    assert "2 of 4 runs failed" in p.stderr
    assert p.stderr.count("null node told to fail at window 2") >= 2, p.stderr
    import cosim
    ds = cosim.load_sweep(out)
    assert ds.sizes["run"] == 4 and list(ds["seed"].values) == [0, 1, 0, 1]
    assert list(ds["spiking_nodes.0.params.fail_at_window"].values) == ["null", "null", "2", "2"]
    assert list(ds["status"].values) == ["completed", "completed", "failed", "failed"]
    assert all("fail at window 2" in r for r in ds["reason"].values[2:])
    for folder in ds["folder"].values[:2]:      # the completed runs are whole: every window recorded
        r = cosim.load(folder)
        assert r.completed and r.summary["windows"] == r.timings.shape[0] > 2
    for folder in ds["folder"].values[2:]:      # each failed run kept its results up to its last window
        assert json.loads((Path(folder) / "sweep_run.json").read_text())["status"] == "failed"
    assert (out / "sweep.csv").read_text().count("\n") == 5 and (out / "sweep.png").stat().st_size > 0
    assert not cosim_processes(str(out))
    done = {f: (Path(f) / "coordinator.h5").stat().st_mtime_ns for f in ds["folder"].values[:2]}

    p2 = _cli(*args)                             # again: the completed runs are skipped, the failed rerun
    assert p2.returncode == 1 and "(2 already completed, 2 to run)" in p2.stderr, p2.stderr
    assert {f: (Path(f) / "coordinator.h5").stat().st_mtime_ns for f in done} == done
    p3 = _cli(*args[:3], "spiking_nodes.0.params.fail_at_window=null", *args[4:])
    assert p3.returncode == 0 and "(2 already completed, 0 to run)" in p3.stderr, p3.stderr
    assert "2 of 2 runs completed" in p3.stdout
    assert not cosim_processes(str(out))


@pytest.mark.system
@pytest.mark.dask
@pytest.mark.slow
def test_a_sweep_stopped_half_way_completes_only_the_missing_runs_when_run_again(tmp_path):
    # 62 windows of 10 ms (~0.6 s) per run: after the first completed run the SIGTERM (polled every
    # 20 ms) has 3 runs' time to land before the sweep ends (was 30 ms a window: 7.5 s of sleep)
    cfg = _write(tmp_path / "noop.yaml", noop_cfg(duration_ms=100, step_sleep_ms=10))
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "cosim.cli", "sweep", cfg, "--seeds", "4", "--workers", "1", "--out", str(out)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(list(out.glob("runs/*/sweep_run.json"))) >= 1, 120, "a first completed run")
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    wait_for(lambda: not cosim_processes(str(out)), 30, "the stopped sweep's services to end")
    first = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("runs/*/sweep_run.json")}
    assert 1 <= len(first) < 4
    q = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr
    assert f"({len(first)} already completed, {4 - len(first)} to run)" in q.stderr
    assert {k: (out / "runs" / k / "sweep_run.json").stat().st_mtime_ns for k in first} == first
    assert len(list(out.glob("runs/*/sweep_run.json"))) == 4


GRID = {"tvb.coupling_a": [0.002, 0.006]}
GRID_ARGS = ["--grid", "tvb.coupling_a=0.002,0.006", "--seeds", "2"]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 2-value grid × 2 seeds of reference runs on a 2-worker LocalCluster: (config path, dataset)."""
    import cosim
    tmp = tmp_path_factory.mktemp("local_sweep")
    cfg = _write(tmp / "ref.yaml", ref_config(duration_ms=30))
    ds = cosim.sweep(cfg, grid=GRID, seeds=2, workers=2, out=tmp / "sweep", progress=False)
    return cfg, ds


@pytest.mark.system
@pytest.mark.dask
@pytest.mark.tvb
@pytest.mark.slow
def test_each_run_of_a_sweep_equals_a_single_cosim_run_of_its_config(local_sweep, tmp_path):
    cfg, ds = local_sweep
    assert list(ds["status"].values) == ["completed"] * 4
    assert list(ds["tvb.coupling_a"].values) == [0.002, 0.002, 0.006, 0.006] and list(ds["seed"].values) == [0, 1, 0, 1]
    # the grid value and the seed each change the result (so the comparison below can fail)
    tvb_rate = ds["tvb_rate"].values
    assert not np.array_equal(tvb_rate[0], tvb_rate[1]) and not np.array_equal(tvb_rate[0], tvb_rate[2])
    # a single `cosim run` of run 3's config (coupling 0.006, seed 1), made now: equal bit for bit
    single = tmp_path / "single"
    p = _cli("run", cfg, "--set", "tvb.coupling_a=0.006", "--set", "run.seed=1", "--out", str(single), "--no-plots")
    assert p.returncode == 0, p.stderr
    swept = Path(str(ds["folder"].values[3]))
    _assert_same_run(swept, single)
    # every service of every run, the coordinator included, was forked from its worker's zygote
    for f in ds["folder"].values:
        forked = json.loads((Path(str(f)) / "sweep_run.json").read_text())["forked"]
        assert forked == {"coordinator": True, "tvb": True, "spiking": True}, forked
    # and the dataset's measures are the single run's
    from cosim.launch.sweep import run_metrics
    m = run_metrics(single)
    assert np.array_equal(ds["tvb_rate"].values[3], np.array(m["tvb_rate"]["values"]))
    assert np.array_equal(ds["rate"].sel(spiking_region=[33, 71]).values[3], np.array(m["rate"]["values"]))
    assert not cosim_processes(str(tmp_path))


def _assert_same_run(a_dir: Path, b_dir: Path) -> None:
    with h5py.File(a_dir / "tvb.h5") as a, h5py.File(b_dir / "tvb.h5") as b:
        for v in ("R_e", "R_i", "S_e", "S_i"):
            assert np.array_equal(a[f"raw/{v}"][()], b[f"raw/{v}"][()]), v
    with h5py.File(a_dir / "spiking.h5") as a, h5py.File(b_dir / "spiking.h5") as b:
        assert np.array_equal(a["raw/R_e"][()], b["raw/R_e"][()]) and np.array_equal(a["raw/R_i"][()], b["raw/R_i"][()])


@pytest.mark.system
@pytest.mark.dask
@pytest.mark.tvb
@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_sweep_on_a_real_dask_cluster_of_two_hosts_equals_the_local_pool(local_sweep, tmp_path):
    """`dask scheduler` on h0, one `dask worker` on each of h1 and h2 (network namespaces), the sweep
    sent from h0 with --scheduler: each run's services on its worker's host, results bit for bit
    those of the local pool."""
    import cosim
    try:
        from tests.netns import Lab, available
    except ImportError:
        from netns import Lab, available
    why = available()
    if why:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    cfg, local = local_sweep
    out = tmp_path / "cluster"
    with Lab(3, prefix="cosimdask") as lab:
        h0, h1, h2 = lab.hosts
        scheduler = f"tcp://{h0.ip}:8786"
        lab_logs = tmp_path / "logs"
        lab_logs.mkdir()
        h0.popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", h0.ip, "--port", "8786",
                  "--no-dashboard"], lab_logs / "scheduler.log")
        for h in (h1, h2):
            h.popen([sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--host", h.ip, "--nworkers", "1",
                     "--nthreads", "1", "--no-dashboard"], lab_logs / f"worker_{h.index}.log")
        p = h0.run([sys.executable, "-m", "cosim.cli", "sweep", cfg, *GRID_ARGS, "--scheduler", scheduler,
                    "--out", str(out)], timeout=400)
        logs = "".join(f.read_text() for f in sorted(lab_logs.iterdir()))
        assert p.returncode == 0, p.stderr + logs
    ds = cosim.load_sweep(out)
    assert list(ds["status"].values) == ["completed"] * 4
    for v in ("tvb.coupling_a", "seed", "tvb_rate", "rate"):
        assert np.array_equal(ds[v].values, local[v].values), v
    workers = set()
    for i in range(4):
        a, b = Path(str(ds["folder"].values[i])), Path(str(local["folder"].values[i]))
        assert a.name == b.name                       # the same config hash
        _assert_same_run(a, b)
        workers.add(json.loads((a / "sweep_run.json").read_text())["worker"].split("//")[1].rsplit(":", 1)[0])
    assert workers == {h1.ip, h2.ip}


@pytest.mark.system
@pytest.mark.dask
@pytest.mark.tvb
@pytest.mark.netpyne
@pytest.mark.slow
def test_netpyne_services_forked_from_a_warm_zygote_equal_fresh_processes_spike_for_spike(tmp_path):
    """Two seeds in one worker (the second run's services forked from the zygote that the first
    started, NEURON and TVB imported there once) against `cosim run` of the second (the warm
    zygote's run; the first one's services are forked too, from the same zygote cold): same spikes,
    same TVB. One `cosim run` only: a second (of seed 3) was a repeat of the same comparison."""
    import cosim
    params = {"network": {"n_exc": 30, "n_inh": 10}, "record": {"plot": False},
              "input": {"offset_hz": 3000.0}}          # driven hard: tens of spikes in 40 ms
    cfg = _write(tmp_path / "np.yaml", {"run": {"name": "np", "duration_ms": 40, "progress": False},
                                        "spiking_nodes": [{"name": "spiking", "backend": "netpyne", "regions": [33, 71],
                                                           "params": params}]})
    ds = cosim.sweep(cfg, seeds=[3, 4], workers=1, out=tmp_path / "sweep", progress=False)
    assert list(ds["status"].values) == ["completed"] * 2
    for f in ds["folder"].values:       # the coordinator too (the held ports passed through the zygote)
        forked = json.loads((Path(str(f)) / "sweep_run.json").read_text())["forked"]
        assert forked == {"coordinator": True, "tvb": True, "spiking": True}, forked
    swept = [Path(str(f)) for f in ds["folder"].values]
    for f in swept:     # the zygote imported TVB: its logging set-up (root at WARNING) must not reach a forked node
        assert "tvb: finished" in (f / "logs" / "tvb.log").read_text()
    spikes = [cosim.load(f).spikes for f in swept]
    assert len(spikes[0]) > 0 and not spikes[0].equals(spikes[1])   # the seed matters: the comparison below can fail
    single = tmp_path / "single4"
    p = _cli("run", cfg, "--set", "run.seed=4", "--out", str(single), "--no-plots")
    assert p.returncode == 0, p.stderr
    b = cosim.load(single).spikes
    assert len(b) > 0 and spikes[1].equals(b)
    with h5py.File(swept[1] / "tvb.h5") as x, h5py.File(single / "tvb.h5") as y:
        assert np.array_equal(x["raw/R_e"][()], y["raw/R_e"][()])
    assert not cosim_processes(str(tmp_path))
