"""One starter interface (cosim.launch.starters): the same run started as local processes and as
threads of one process gives the same results bit for bit, a local process never outlives the
launcher, and each starter builds the command a service needs (MPI, threads)."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from cosim.config import NodeEntry, parse_config
from cosim.launch import command_lines
from cosim.launch.run import start
from cosim.launch.starters import Container, LocalProcess, ServiceSpec, Thread
from psutil_free import cosim_processes


def _args(out, cfg_path=None) -> argparse.Namespace:
    return argparse.Namespace(config=cfg_path, set=[], out=str(out), no_plots=True, log_level="WARNING")


@pytest.mark.unit
def test_local_process_wraps_a_multi_rank_node_in_mpiexec_and_sets_its_threads():
    mpi = NodeEntry(name="s", backend="netpyne", regions=[33], params={"mpi_ranks": 3})
    one = NodeEntry(name="s", backend="nest", regions=[33], params={"local_num_threads": 2})
    lp = LocalProcess("INFO")
    argv = lp.argv(ServiceSpec("s", "spiking", command_lines.spiking_args(mpi, "tcp://h:1"), backend="netpyne",
                               entry=mpi))
    assert argv[:5] == ["mpiexec", "--allow-run-as-root", "--oversubscribe", "-n", "3"]
    assert argv[argv.index("-P"):][:4] == ["-P", "-m", "cosim.cli", "--log-level"]
    argv = lp.argv(ServiceSpec("s", "spiking", command_lines.spiking_args(one, "tcp://h:1"), backend="nest", entry=one))
    assert argv[0] == sys.executable and "mpiexec" not in argv
    assert command_lines.spiking_env(one, {})["OMP_NUM_THREADS"] == "2"
    # a container runs the same `cosim` arguments in the service's image; it refuses MPI ranks
    c = Container(engine="podman", mounts=["/r"])
    spec = ServiceSpec("s", "spiking", command_lines.spiking_args(one, "tcp://h:1"), backend="nest", entry=one)
    argv = c.argv(spec)
    assert argv[:4] == ["podman", "run", "--rm", "--network"] and "cosim-nest:latest" in argv
    assert argv[-len(spec.args):] == spec.args and ["-v", "/r:/r"] == argv[argv.index("-v"):argv.index("-v") + 2]
    from cosim.errors import ConfigError
    with pytest.raises(ConfigError, match="MPI ranks"):
        c.argv(ServiceSpec("s", "spiking", [], backend="netpyne", entry=mpi))


@pytest.mark.system
@pytest.mark.tvb
def test_processes_and_threads_give_the_same_run_bit_for_bit(tmp_path):
    """The reference backend through the two starters: every signal the coordinator recorded and
    TVB's raw record are equal bit for bit; the summary counts the same windows."""
    cfg = parse_config({"run": {"duration_ms": 40.0, "seed": 5, "progress": False},
                        "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}]})
    results = {}
    for name, starter in (("process", None), ("thread", Thread())):
        job = start(_args(tmp_path / name), cfg, starter=starter)
        try:
            summary = job.supervise()
        finally:
            job.reap()
        assert summary["windows"] == 9, summary
        with h5py.File(tmp_path / name / "coordinator.h5") as f:
            sig: dict = {}
            f.visititems(lambda k, o, sig=sig: sig.__setitem__(k, o[...])
                         if k.startswith("signals/") and hasattr(o, "shape") else None)
        with h5py.File(tmp_path / name / "tvb.h5") as f:
            sig["raw/S_e"] = f["raw/S_e"][...]
        results[name] = sig
    assert results["process"].keys() == results["thread"].keys() and len(results["process"]) >= 3
    for k in results["process"]:
        np.testing.assert_array_equal(results["process"][k], results["thread"][k], err_msg=k)
    assert not cosim_processes(str(tmp_path))


def _services_of(out) -> list[int]:
    """Live processes whose environment names a log file of this run (every service's does:
    COSIM_LOG_FILE), zombies excluded."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            env = (d / "environ").read_bytes()
            state = next((l for l in (d / "status").read_text().splitlines() if l.startswith("State:")), "")
        except OSError:
            continue
        if f"COSIM_LOG_FILE={out}/logs/".encode() in env and "zombie" not in state:
            pids.append(int(d.name))
    return pids


@pytest.mark.system
def test_killing_the_launcher_ends_every_service(tmp_path):
    """SIGKILL of `cosim run` (no chance to clean up): its services get SIGTERM from the kernel
    (PR_SET_PDEATHSIG through setpriv) and leave nothing behind."""
    cfg = {"run": {"duration_ms": 60000.0, "progress": False, "results_dir": str(tmp_path)},
           "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [1, 2],
                              "params": {"n_regions": 8, "step_sleep_ms": 2.0}}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    p = subprocess.Popen(command_lines.cosim_cmd() + ["run", str(path), "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out / "coordinator.h5").exists():
            time.sleep(0.2)
        assert (out / "coordinator.h5").exists(), "the run did not start"
        assert len(_services_of(out)) == 3, _services_of(out)        # coordinator, tvb, spiking
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _services_of(out):
            time.sleep(0.2)
        assert not _services_of(out)
    finally:
        if p.poll() is None:
            p.kill()


def _rival_takes(addr: str) -> bool:
    """Can another process's socket bind this loopback port now?"""
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", int(addr.rsplit(":", 1)[1])))
            return True
        except OSError:
            return False


@pytest.mark.system
@pytest.mark.parametrize("how", ["local", "warm"])
def test_picked_ports_stay_held_from_the_pick_to_the_coordinators_bind(tmp_path, monkeypatch, how):
    """Issue 25: `cosim run` picks the coordinator's free loopback ports and keeps them bound and
    listening; the coordinator inherits the sockets and binds its ZeroMQ sockets on them
    (ZMQ_USE_FD). A rival trying to take them before the coordinator starts, or just after (while
    it is still importing, long before its bind), fails, and the run completes; picking a port
    and releasing it (the old way) let the rival in and the run end as a configuration error.
    The same with the coordinator forked from a zygote (warm: the sockets reach it through the
    zygote, SCM_RIGHTS), which must fork it rather than start a fresh process."""
    from conftest import noop_config
    from cosim.launch import run as run_mod
    from cosim.launch.starters import Warm
    starter = Warm("INFO") if how == "warm" else None
    seen = {}
    real = run_mod._start_all

    def racing(starter, specs):
        addrs = list(specs[0].listen_fds)
        seen["addrs"] = addrs
        seen["before"] = [_rival_takes(a) for a in addrs]
        started = real(starter, specs)
        seen["after_start"] = [_rival_takes(a) for a in addrs]
        return started
    monkeypatch.setattr(run_mod, "_start_all", racing)
    job = start(_args(tmp_path / "run"), parse_config(noop_config(duration_ms=16)), starter=starter)
    try:
        summary = job.supervise()
    finally:
        job.reap()
    if starter is not None:
        assert starter.forked == {"coordinator": True, "tvb": True, "spiking": True}, starter.forked
    assert len(seen["addrs"]) == 2 and seen["before"] == [False, False] and seen["after_start"] == [False, False]
    assert summary["windows"] == 10
    cc = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["coordinator"]
    assert [cc["router"], cc["pub"]] == seen["addrs"]        # the nodes reached the coordinator there
    # the old way, for contrast: a port picked and released is anybody's
    assert _rival_takes(f"tcp://127.0.0.1:{run_mod.free_port()}")
    assert not cosim_processes(str(tmp_path))


@pytest.mark.unit
def test_a_services_reason_is_its_failure_line_not_the_no_results_line_after_it(tmp_path):
    """A coordinator that could not write its status marker (a full disk) leaves the launcher only its
    log: the reason is `run failed: …`, not the `no window completed: no results` line printed after
    it (a warm sweep on a full disk reported that line as the run's reason)."""
    from cosim.launch.starters import last_error_line
    log = tmp_path / "coordinator.log"
    log.write_text("2026-12-08 01:16:16,410 coordinator ERROR cosim.services.coordinator.coordinator: aborting run: X\n"
                   "cosim: run failed: cannot write results: cannot write /r/coordinator.h5: No space left on device\n"
                   "cosim: no window completed: no results (config in /r)\n")
    assert last_error_line(log) == ("cosim: run failed: cannot write results: cannot write /r/coordinator.h5: "
                                    "No space left on device")
