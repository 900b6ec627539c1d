"""Bad configurations are refused before any simulation starts (issue "Reliability" §4).

Table-driven: each case mutates a valid config. Static mistakes are refused by `cosim validate`
(and would be by `cosim run`); mistakes only visible once the nodes describe themselves (the
connectome: region ranges, the smallest delay) or that touch the machine (ports) are refused
by `cosim run` during setup (`cosim validate` and `cosim run` check regions and the window
against the connectome too, before a results folder exists). Every refusal: exit code 2, one line naming the field, no
traceback, and for `cosim run` no window simulated (no coordinator.h5, no process left).
"""
from __future__ import annotations

import copy
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest
import yaml
from pathlib import Path

from psutil_free import cosim_processes

PY = [sys.executable, "-m", "cosim.cli"]
pytestmark = [pytest.mark.system]       # `cosim validate` / `cosim run` as processes


def base() -> dict:
    return {"run": {"name": "bad", "duration_ms": 20, "progress": False},
            "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3, 5]}],
            "coordinator": {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 2000, "setup_timeout_ms": 60000}}


def _set(path: str, value):
    def f(c: dict) -> None:
        keys = path.split(".")
        node = c
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return f


# (id, mutation or raw text, words the one-line message must contain)
STATIC = [
    ("unknown_top_key", _set("simulation", {"x": 1}), ["simulation", "Extra inputs"]),
    ("unknown_nested_key", _set("run.durration_ms", 10), ["run.durration_ms"]),
    ("duration_wrong_type", _set("run.duration_ms", "long"), ["run.duration_ms"]),
    ("duration_zero", _set("run.duration_ms", 0), ["run.duration_ms", "greater than 0"]),
    ("duration_negative", _set("run.duration_ms", -5), ["run.duration_ms"]),
    ("window_negative", _set("run.window_ms", -1.0), ["run.window_ms"]),
    ("window_not_whole_steps", _set("run.window_ms", 0.25), ["run.window_ms", "whole number of TVB steps"]),
    ("dt_zero", _set("tvb.dt_ms", 0), ["tvb.dt_ms"]),
    ("tavg_not_multiple_of_dt", _set("tvb.monitors.temporal_average_ms", 0.15), ["temporal_average_ms", "tvb.dt_ms"]),
    ("seed_negative", _set("run.seed", -1), ["run.seed"]),
    ("duplicate_regions_in_node", _set("spiking_nodes.0.regions", [3, 3]), ["spiking_nodes[0].regions", "duplicate"]),
    ("negative_region", _set("spiking_nodes.0.regions", [-1]), ["spiking_nodes[0].regions"]),
    ("region_claimed_twice", _set("spiking_nodes", [{"name": "a", "backend": "noop", "regions": [3]},
                                                    {"name": "b", "backend": "noop", "regions": [3]}]),
     ["spiking_nodes", "region 3", "claimed"]),
    ("no_regions", _set("spiking_nodes.0.regions", []), ["spiking_nodes[0].regions"]),
    ("no_spiking_nodes", _set("spiking_nodes", []), ["spiking_nodes"]),
    ("spiking_nodes_not_a_list", _set("spiking_nodes", "spiking"), ["spiking_nodes"]),
    ("bad_node_name", _set("spiking_nodes.0.name", "bad name!"), ["spiking_nodes[0].name"]),
    ("node_named_tvb", _set("spiking_nodes.0.name", "tvb"), ["spiking node names", "tvb"]),
    ("unknown_backend", _set("spiking_nodes.0.backend", "nestt"), ["spiking_nodes[0].backend", "nestt", "installed:"]),
    ("unknown_backend_param", _set("spiking_nodes.0.params", {"bogus": 1}), ["spiking_nodes[0].params", "bogus"]),
    ("backend_param_wrong_type", _set("spiking_nodes.0.params", {"step_sleep_ms": "slow"}),
     ["spiking_nodes[0].params", "step_sleep_ms"]),
    ("unknown_integrator", _set("tvb.integrator.kind", "euler"), ["tvb.integrator.kind"]),
    ("unknown_model_param", _set("tvb.model", {"Q": 1.0}), ["tvb.model", "Q"]),
    ("heartbeat_timeout_too_short", _set("coordinator.heartbeat_timeout_ms", 150),
     ["coordinator", "heartbeat_timeout_ms"]),
    ("max_message_too_small", _set("coordinator.max_message_bytes", 100), ["coordinator.max_message_bytes"]),
    ("missing_connectivity_file", _set("tvb.connectivity", "/nonexistent/connectivity_76.zip"),
     ["tvb.connectivity", "not found"]),
    # values that passed validation and failed late (issue "Reliability II" §2)
    ("max_message_bytes_huge", _set("coordinator.max_message_bytes", 1e20), ["coordinator.max_message_bytes"]),
    ("seed_beyond_32_bits", _set("run.seed", 2**100), ["run.seed"]),
    ("duration_huge", _set("run.duration_ms", 1e308), ["run.duration_ms"]),
    ("dt_tiny", _set("tvb.dt_ms", 1e-300), ["tvb.dt_ms"]),
    ("dt_inf", _set("tvb.dt_ms", float("inf")), ["tvb.dt_ms", "finite"]),
    ("speed_tiny", _set("tvb.conduction_speed_mm_per_ms", 1e-300), ["tvb.conduction_speed_mm_per_ms"]),
    ("noise_inf", _set("tvb.integrator.noise_sigma", float("inf")), ["tvb.integrator.noise_sigma", "finite"]),
    ("coupling_nan", _set("tvb.coupling_a", float("nan")), ["tvb.coupling_a", "finite"]),
    ("model_param_nan", _set("tvb.model", {"G": float("nan")}), ["tvb.model.G", "finite"]),
    ("hb_timeout_huge", _set("coordinator.heartbeat_timeout_ms", 10**30), ["coordinator.heartbeat_timeout_ms"]),
    ("bad_router_address", _set("coordinator.router", "localhost:5555"), ["coordinator.router", "ZeroMQ address"]),
    ("router_port_out_of_range", _set("coordinator.router", "tcp://127.0.0.1:99999"), ["coordinator.router", "99999"]),
    # checks that need the connectome or files (noop: its synthetic connectome, delays 16 steps)
    ("window_longer_than_min_delay", _set("run.window_ms", 3.2), ["run.window_ms", "longer than the smallest delay"]),
    ("region_out_of_range", _set("spiking_nodes.0.regions", [3, 500]), ["spiking_nodes[0].regions", "500"]),
    # issue 23: refused by the coordinator only after every service had started, `cosim validate` said ok
    ("window_times_lookahead_beyond_min_delay", lambda c: c["run"].update(window_ms=1.6, lookahead=2),
     ["run.window_ms", "run.lookahead 2", "need 32 steps", "16 steps", "use at most 0.8 ms"]),
    ("lookahead_beyond_min_delay", _set("run.lookahead", 40), ["run.lookahead", "40 windows", "use at most 16 windows"]),
    ("watch_region_out_of_range", _set("coordinator.watch_regions", [900]), ["coordinator.watch_regions", "900"]),
    ("connectivity_not_a_zip", _set("tvb.connectivity", __file__), ["tvb.connectivity", "not a zip file"]),
    ("neuron_dt_does_not_divide", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                                          "params": {"dt_ms": 0.03}}]),
     ["spiking_nodes[0].params.dt_ms", "does not divide"]),
    ("missing_model_file", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                                   "params": {"model_file": {"path": "/nonexistent/model.py", "populations": {
                                                                  "E": {"region": 3, "role": "exc"}}}}}]),
     ["spiking_nodes[0].params.model_file.path", "not found"]),
    # where a node's MPI ranks run (spiking_nodes[i].mpi)
    ("mpi_backend_without_mpi", _set("spiking_nodes.0.mpi", {"hosts": ["a", "b"]}),
     ["spiking_nodes[0].mpi", "does not run under MPI"]),
    ("mpi_one_rank", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                             "mpi": {"hosts": ["a", "b"]}}]),
     ["spiking_nodes[0].mpi", "one rank", "params.mpi_ranks"]),
    ("mpi_too_few_slots", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                                  "params": {"mpi_ranks": 3}, "mpi": {"hosts": ["a", "b"]}}]),
     ["spiking_nodes[0].mpi.hosts", "2 slot(s) for 3 ranks", "HOST:SLOTS"]),
    ("mpi_bad_host", _set("spiking_nodes.0.mpi", {"hosts": ["a b"]}), ["spiking_nodes[0].mpi.hosts", "'a b'"]),
    ("mpi_rank_count_in_args", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                                       "params": {"mpi_ranks": 2}, "mpi": {"args": ["-np", "4"]}}]),
     ["spiking_nodes[0].mpi.args", "'-np'", "rank count is params.mpi_ranks (2)"]),
    ("mpi_hosts_twice", _set("spiking_nodes.0.mpi", {"hosts": ["a"], "args": ["--hostfile", "h.txt"]}),
     ["spiking_nodes[0].mpi", "--hostfile"]),
    ("not_yaml", "run: {duration_ms: [1, 2\n", ["not valid YAML"]),
    ("not_a_mapping", "- a\n- b\n", ["top level must be a mapping"]),
]


def _params(table: list) -> list:
    """The cases for parametrize; one whose config has a NetPyNE node needs NetPyNE (its checks run)."""
    out = []
    for name, case, words in table:
        needs = []
        if not isinstance(case, str):
            c = copy.deepcopy(base())
            case(c)
            nodes = c.get("spiking_nodes")
            if isinstance(nodes, list) and any(isinstance(n, dict) and n.get("backend") == "netpyne" for n in nodes):
                needs = [pytest.mark.netpyne]
        out.append(pytest.param(name, case, words, id=name, marks=needs))
    return out


def _write(tmp_path, case) -> str:
    p = tmp_path / "bad.yaml"
    if isinstance(case, str):
        p.write_text(case)
    else:
        c = copy.deepcopy(base())
        case(c)
        p.write_text(yaml.safe_dump(c))
    return str(p)


def _check_refusal(p: subprocess.CompletedProcess, words: list[str]) -> str:
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [l for l in p.stderr.splitlines() if l.startswith("cosim") and ("error" in l or "failed" in l)]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def cli():
    """`cosim validate` forked from a zygote that imported cosim.cli once (conftest.run_cli_warm,
    closed after the module's last test): the ~55 refusals below cost ~0.4 CPU-s of imports each as
    processes of their own. The two tests after them run `python -m cosim.cli validate` as a
    process, as a user does."""
    from conftest import run_cli_warm
    yield lambda args, timeout=120: run_cli_warm(args, Path.cwd(), timeout=timeout, preload=("cosim.cli.commands",))


@pytest.mark.parametrize("name,case,words", _params(STATIC))
def test_static_mistakes_are_refused_by_validate(tmp_path, cli, name, case, words):
    p = cli(["validate", _write(tmp_path, case)], timeout=60)
    _check_refusal(p, words)


def test_missing_config_file_is_refused(tmp_path):
    p = subprocess.run(PY + ["validate", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60)
    _check_refusal(p, ["nope.yaml", "not found"])


def test_the_base_config_is_valid(tmp_path):
    p = subprocess.run(PY + ["validate", _write(tmp_path, lambda c: None)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


RUNTIME = [
    # the TVB node knows the connectome: regions out of its range are a configuration error
    ("region_out_of_range", _set("spiking_nodes.0.regions", [3, 500]), ["regions", "500"]),
    # the smallest crossing delay of the noop connectome is 16 steps = 1.6 ms
    ("window_longer_than_min_delay", _set("run.window_ms", 3.2), ["run.window_ms", "longer than the smallest delay"]),
    ("router_port_in_use", "router", ["coordinator.router", "already in use"]),
    ("pub_port_in_use", "pub", ["coordinator.pub", "already in use"]),
    # rank 0 talks to the coordinator, which `cosim run` puts on loopback: it must run here
    ("mpi_rank0_elsewhere", _set("spiking_nodes", [{"name": "spiking", "backend": "netpyne", "regions": [3],
                                                    "params": {"mpi_ranks": 2}, "mpi": {"hosts": ["192.0.2.1", "localhost"]}}]),
     ["spiking_nodes[0].mpi.hosts", "'192.0.2.1'", "not this machine", "list this machine first"]),
]


@pytest.mark.parametrize("name,case,words", _params(RUNTIME))
def test_mistakes_found_at_setup_are_refused_by_run(tmp_path, name, case, words):
    busy = None
    if isinstance(case, str):               # a port held by someone else
        busy, port = _busy_port()
        case = _set(f"coordinator.{case}", f"tcp://127.0.0.1:{port}")
    try:
        out = tmp_path / "out"
        p = subprocess.run(PY + ["run", _write(tmp_path, case), "--out", str(out), "--no-plots"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    finally:
        if busy is not None:
            busy.close()
    _check_refusal(p, words)
    assert not (out / "coordinator.h5").exists()      # no window was simulated
    assert not cosim_processes(str(out))


@pytest.mark.tvb
def test_window_longer_than_the_causal_limit_of_the_default_connectome(tmp_path):
    """The TVB connectome (tvb-data's 76 regions, regions 33 and 71): the smallest crossing delay
    is 49 steps (4.9 ms): 5.0 ms is refused by validate, 4.9 ms passes. The 5.0 ms comes from
    `--set`, as a user tries a value before `cosim run --set` (validate applies it the same way)."""
    path = _write(tmp_path, lambda c: (c["spiking_nodes"][0].update(backend="reference", regions=[33, 71]),
                                       c["run"].update(window_ms=4.9)))
    p = subprocess.run(PY + ["validate", path, "--set", "run.window_ms=5.0"], capture_output=True, text=True,
                       timeout=120)
    _check_refusal(p, ["run.window_ms", "longer than the smallest delay", "4.9"])
    p = subprocess.run(PY + ["validate", path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_refused_run_leaves_no_results_folder(tmp_path):
    """Refused by `cosim run` (here: the causal window, checked before anything is created)."""
    out = tmp_path / "out"
    p = subprocess.run(PY + ["run", _write(tmp_path, _set("run.window_ms", 3.2)), "--out", str(out), "--no-plots"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    _check_refusal(p, ["run.window_ms"])
    assert not out.exists()


@pytest.mark.tvb
def test_refused_at_setup_leaves_no_results_folder(tmp_path):
    """Refused only once the nodes run (a node rejects its parameters while building): exit 2,
    no window simulated, and the folder the launcher created is removed."""
    out = tmp_path / "out"
    case = _set("spiking_nodes", [{"name": "spiking", "backend": "reference", "regions": [33],
                                   "params": {"dt_ms": 0.05}}])
    p = subprocess.run(PY + ["run", _write(tmp_path, case), "--out", str(out), "--no-plots"],
                       capture_output=True, text=True, timeout=180, cwd=tmp_path)
    _check_refusal(p, ["spiking"])
    assert not out.exists(), list(out.rglob("*"))
    assert not cosim_processes(str(out))


def test_bad_coordinator_address_of_a_node_is_one_line(tmp_path):
    p = subprocess.run(PY + ["tvb-node", "--coordinator", "127.0.0.1:5555", "--register-timeout-ms", "2000"],
                       capture_output=True, text=True, timeout=60)
    _check_refusal(p, ["--coordinator", "ZeroMQ address"])


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (a private mount)")
def test_read_only_out_is_one_line_exit_2(tmp_path):
    """`--out` on a read-only file system (a private read-only tmpfs: root ignores file modes)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = _write(tmp_path, lambda c: None)
    for cmd in (["run", cfg, "--out", str(ro / "run"), "--no-plots"], ["coordinator", cfg, "--out", str(ro / "run")]):
        argv = " ".join(shlex.quote(x) for x in PY + cmd)
        p = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o ro,size=100k tmpfs {ro} && exec {argv}"],
                           capture_output=True, text=True, timeout=120)
        _check_refusal(p, ["--out", "Read-only file system"])


def test_second_run_into_a_live_runs_folder_is_refused_and_the_first_is_untouched(tmp_path):
    """A results folder is owned by one run (a lock held by the launcher for the run's life): a
    second `cosim run --out` into it refuses in one line, exit 2, before writing anything; the first
    run's config.yaml and logs stay as they were and it completes."""
    out = tmp_path / "out"
    cfg = _write(tmp_path, lambda c: c["spiking_nodes"][0].update(params={"step_sleep_ms": 200}))
    first = subprocess.Popen(PY + ["run", cfg, "--out", str(out), "--no-plots"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # until every service of the first run logs (the launcher starts them one after another: on a
        # busy machine the others' logs appeared after a snapshot taken at the coordinator's)
        for _ in range(600):
            if all((out / "logs" / f"{n}.log").exists() for n in ("coordinator", "tvb", "spiking")):
                break
            time.sleep(0.1)
        assert first.poll() is None
        before = (out / "config.yaml").read_text()
        logs = sorted(p.name for p in (out / "logs").iterdir())
        p = subprocess.run(PY + ["run", cfg, "--out", str(out), "--no-plots"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        line = _check_refusal(p, ["--out", str(out), "in use by another run"])
        assert str(first.pid) in line
        assert first.poll() is None, "the refusal must not disturb the live run"
        assert (out / "config.yaml").read_text() == before
        assert sorted(p.name for p in (out / "logs").iterdir()) == logs
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert (out / "coordinator.h5").exists() and (out / "config.yaml").read_text() == before
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the run has ended: the folder is free for the next one (here: refused only as a finished run would be)
    assert not cosim_processes(str(out))


def test_a_hand_started_coordinator_takes_the_results_folder_lock(tmp_path):
    """`cosim coordinator --out` owns its folder as `cosim run` does (issue 23): a `cosim run` into
    a waiting hand-started coordinator's folder, and a second hand-started coordinator into it, are
    refused in one line, exit 2, and the first is untouched; a coordinator started by `cosim run`
    (which holds the lock itself) runs. Before: both were accepted and wrote into the live folder."""
    from harness import free_port
    out = tmp_path / "out"

    def coordinator():
        return PY + ["coordinator", cfg, "--out", str(out), "--router", f"tcp://127.0.0.1:{free_port()}",
                     "--pub", f"tcp://127.0.0.1:{free_port()}", "--no-plots"]
    cfg = _write(tmp_path, lambda c: c["coordinator"].update(setup_timeout_ms=60000))
    first = subprocess.Popen(coordinator(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if (out / "config.yaml").exists():
                break
            time.sleep(0.1)
        assert first.poll() is None
        before = (out / "config.yaml").read_text()
        for argv in (coordinator(), PY + ["run", cfg, "--out", str(out), "--no-plots"]):
            p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
            line = _check_refusal(p, ["--out", str(out), "in use by another run", str(first.pid)])
            assert "configuration error" in line
            assert first.poll() is None and (out / "config.yaml").read_text() == before
    finally:
        first.terminate()
        first.wait(30)
    p = subprocess.run(PY + ["run", cfg, "--out", str(out), "--no-plots"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]          # the launcher's coordinator shares its launcher's lock


def test_auto_named_runs_in_the_same_second_never_share_a_folder(tmp_path):
    """Two auto-named folders for the same name and second: the second gets its own (-2)."""
    from cosim.launch.preflight import claim_dir
    from cosim.errors import ConfigError
    name = tmp_path / "res" / "bad_20260101-000000"
    a, lock_a = claim_dir(name, "run.results_dir", auto=True)
    b, lock_b = claim_dir(name, "run.results_dir", auto=True)
    try:
        assert a == name and b == name.with_name(name.name + "-2")
        with pytest.raises(ConfigError, match="in use by another run"):
            claim_dir(a, "--out")                  # an explicit --out onto a live run's folder
    finally:
        lock_a.close()
        lock_b.close()
    _, again = claim_dir(a, "--out")               # free once its run let go
    again.close()
