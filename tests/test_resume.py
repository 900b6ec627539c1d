"""Checkpoint and resume (PROTOCOL.md §10.1, issue 11 §1): a run of the reference backend whose
coordinator, TVB node or spiking node is SIGKILLed at a random window and then `cosim resume`d
equals the uninterrupted run bit for bit; a corrupted newest checkpoint falls back to the previous
one; refusals are one line. A resume that restarted from scratch fails: the resumed coordinator
must report (summary, log) that it started at the window after the checkpoint.

The 20-kill loop over both backends is bench/resume.py (too long for the suite)."""
from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest
import yaml
from pathlib import Path

from harness import read_results
from resumelib import assert_equal_results, kill_and_resume, netpyne_config, resume_config

pytestmark = [pytest.mark.system]


def _uninterrupted_warm(cfg: dict, tmp: Path) -> dict:
    """The uninterrupted run, its services forked from one zygote (conftest.run_warm: TVB, NEURON
    imported once, not in each service; a forked service computes what a fresh one does): the
    killed and resumed runs below are fresh processes, compared with it bit for bit."""
    from conftest import run_warm
    r = run_warm({"run": cfg}, tmp, "--no-plots")["run"]
    assert r.code == 0, r.stderr[-3000:]
    return read_results(r.out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _uninterrupted_warm(resume_config(), tmp_path_factory.mktemp("uninterrupted"))


@pytest.mark.tvb
@pytest.mark.parametrize("seed", [11] + [pytest.param(s, marks=pytest.mark.slow) for s in (12, 13)])   # one victim each
def test_killed_run_resumed_equals_the_uninterrupted_one(tmp_path, reference, seed):
    """Three seeds, one per victim: the spiking node in the quick loop, the others in the full
    suite (slow). Seeds 14 and 15 killed the spiking node and the coordinator a second time; the
    many random kills are bench/resume.py's 20-kill loop, not the suite's."""
    rng = random.Random(seed)
    victim = ["coordinator", "tvb", "spiking"][seed % 3]      # each service is killed; the moment is random
    got = kill_and_resume(resume_config(), tmp_path, victim, rng)
    k = got["expected_from"]
    assert got["resumed_from"] == k, got
    log = (tmp_path / "logs" / "coordinator.log").read_text()
    assert f"from window {k + 1} (resumed)" in log        # not a restart from scratch
    assert_equal_results(read_results(tmp_path), reference)
    _assert_the_summary_counts_only_the_windows_the_resume_ran(got["summary"], got["stdout"] + got["stderr"])


def _assert_the_summary_counts_only_the_windows_the_resume_ran(s: dict, said: str) -> None:
    """The speed figures of a resumed run divide the windows the resumed part ran (not all of the
    run's) by its wall time, and the summary says so (before: real-time factor 2.27 printed, 12.6
    true). Checked on the resumes above (it was a test of its own resuming one more run)."""
    first = s["resumed_from_window"] + 1
    ran = s["windows"] - first
    assert 0 < ran < s["windows"]
    assert s["speed_counts"]["windows"] == ran and s["speed_counts"]["first_window"] == first
    assert s["windows_per_s"] == pytest.approx(ran / s["wall_s"], rel=1e-9)
    assert s["real_time_factor"] == pytest.approx(s["wall_s"] / (ran * s["window_ms"] / 1000), rel=1e-9)
    assert (f"resumed from window {first}: {ran} windows" in said
            and "counting only the windows the resumed part ran" in said), said


@pytest.mark.slow
@pytest.mark.tvb
def test_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path, reference, broken_run):
    """On a copy of `broken_run` (its spiking node SIGKILLed within 0.05 s after the second
    checkpoint; this test made the same kill in a run of its own): the newest checkpoint's tvb.npz
    gets one byte flipped, and `cosim resume` falls back to the checkpoint before it."""
    from cosim.runtime import checkpoint
    from resumelib import resume
    run = _copy_run(broken_run, tmp_path / "run")
    ready = [k for k in checkpoint.windows_on_disk(run) if (checkpoint.folder(run, k) / checkpoint.MANIFEST).exists()]
    assert len(ready) >= 2, f"need two checkpoints to corrupt the newest, have {ready}"
    corrupted, previous = ready[0], ready[1]
    victim = checkpoint.folder(run, corrupted) / "tvb.npz"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    p = resume(run)
    assert p.returncode == 0, f"cosim resume exited {p.returncode}\n{p.stderr[-3000:]}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from_window"] == previous < corrupted, (summary, ready)
    log = (run / "logs" / "coordinator.log").read_text()
    assert f"checkpoint {corrupted}: checkpoints/{corrupted:06d}/tvb.npz does not match its checksum" in log
    assert_equal_results(read_results(run), reference)


def _cosim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.tvb         # it ends by validating resume_config(), a reference-backend config
# -m "not slow": noop; NEST (the same refusal from its spec, with NEST imported) is a repeat: slow
@pytest.mark.parametrize("backend", ["noop", pytest.param("nest", marks=[pytest.mark.nest, pytest.mark.slow])])
def test_validate_refuses_checkpoints_for_a_backend_that_cannot(tmp_path, backend):
    """NEST has no state save: its spec says checkpoint=False (noop: nothing to save, not worth it)."""
    cfg = resume_config(backend=backend, regions=(3, 5))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = _cosim("validate", str(path))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"cosim: configuration error: {path}: spiking_nodes[0].backend: '{backend}' cannot checkpoint "
        f"(run.checkpoint is set; remove it or use a backend that can)"]
    path.write_text(yaml.safe_dump(resume_config()))
    assert _cosim("validate", str(path)).returncode == 0


@pytest.mark.tvb
def test_resume_refusals_are_one_line(tmp_path):
    p = _cosim("resume", str(tmp_path / "nope"))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"cosim: configuration error: --resume {tmp_path / 'nope'}: no such run folder"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(resume_config()))
    p = _cosim("resume", str(tmp_path))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"cosim: configuration error: {tmp_path}: no checkpoint to resume from (was run.checkpoint set?)"]
    (tmp_path / "status_coordinator.json").write_text(json.dumps({"completed": True}))
    p = _cosim("resume", str(tmp_path))
    assert p.returncode == 2 and "the run completed; nothing to resume" in p.stderr


@pytest.mark.slow
@pytest.mark.tvb
def test_a_protocol_1_node_is_refused_with_a_clear_error(tmp_path):
    """Protocol 2 added CHECKPOINT: a node of protocol 1 is refused at REGISTER, in words."""
    import zmq
    from cosim.config import parse_config
    from harness import free_port
    from cosim.proto import codec
    from cosim.proto.messages import PROTOCOL_VERSION, Message, MessageType as T
    from cosim.services.coordinator.coordinator import Coordinator
    import threading
    port = free_port()
    cfg = parse_config({**resume_config(), "coordinator": {"router": f"tcp://127.0.0.1:{port}",
                                                           "pub": f"tcp://127.0.0.1:{free_port()}",
                                                           "setup_timeout_ms": 3000}}, "<test>")
    coord = Coordinator(cfg, tmp_path)
    t = threading.Thread(target=lambda: pytest.raises(Exception, coord.run), daemon=True)  # noqa: B017 (it only waits for the end)
    t.start()
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(f"tcp://127.0.0.1:{port}")
    s.send_multipart(codec.encode(Message(T.REGISTER, {"name": "spiking", "role": "spiking", "backend": "reference",
                                                       "protocol": 1, "pid": 1, "host": "old", "token": "t" * 32},
                                          node="spiking", msg_id=1)))
    assert s.poll(5000)
    reply = codec.decode(s.recv_multipart())
    s.close()
    t.join(10)
    assert reply.type == T.ERROR and reply.content["error"] == "VersionMismatch"
    assert reply.content["message"] == f"coordinator speaks protocol {PROTOCOL_VERSION}, node 1"


@pytest.fixture(scope="module")
def netpyne_reference(tmp_path_factory):
    return _uninterrupted_warm(netpyne_config(), tmp_path_factory.mktemp("np_uninterrupted"))


@pytest.mark.slow
@pytest.mark.netpyne
@pytest.mark.tvb
@pytest.mark.parametrize("victim", ["spiking"])
def test_netpyne_killed_run_resumed_equals_spike_for_spike(tmp_path, netpyne_reference, victim):
    """NEURON SaveState (with the relays' queued Poisson events) + generators, proxy, counters:
    the resumed run has the same spikes (and therefore the same exchanged signals). The spiking
    node (whose NEURON state is the point) is the victim; killing the coordinator instead was one
    more NetPyNE run of the same resume path (bench/resume.py --backend netpyne kills each 20 times)."""
    got = kill_and_resume(netpyne_config(), tmp_path, victim,
                          random.Random(len(victim)))
    assert got["resumed_from"] == got["expected_from"], got
    res = read_results(tmp_path)
    assert res["spiking.h5"]["spikes/t_ms"].size > 100          # a network that spikes
    assert_equal_results(res, netpyne_reference)


@pytest.mark.netpyne
def test_netpyne_configurations_that_cannot_checkpoint_are_refused_by_validate(tmp_path):
    cfg = resume_config(backend="netpyne", params={"mpi_ranks": 2})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = _cosim("validate", str(path))
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"cosim: configuration error: {path}: spiking_nodes[0].params: 'netpyne' cannot checkpoint with "
        f"mpi_ranks > 1 (checkpoints save one NEURON process)"]


@pytest.mark.slow
@pytest.mark.tvb
def test_a_node_started_with_resume_refuses_a_fresh_run(tmp_path):
    """Services started one by one: `--resume RUN_DIR` on a node means "only join a resumed run";
    a coordinator starting afresh is refused in words (the run: exit 2, a configuration error)."""
    from harness import Services
    from cosim.launch import command_lines
    with Services(resume_config(), tmp_path) as s:
        s.start_coordinator()
        s.start_node("tvb")
        s._start("spiking", command_lines.spiking_cmd(s.cfg["spiking_nodes"][0], s.router) + ["--resume", str(tmp_path)])
        # the TVB node's exit is not the point: when its REGISTER comes after the abort, it waits out
        # its register timeout (30 s) for a CONFIGURE that never comes; close() kills it
        codes = s.wait_exit(["coordinator", "spiking"], timeout=120)
    assert codes["coordinator"] == 2 and codes["spiking"] != 0, (codes, s.logs_text())
    assert "started with --resume, but the coordinator starts a new run" in s.log("coordinator")


# ---- what a resume depends on besides the config's text (issue 23, What to build 5) ----------
@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    """A reference run on a connectivity zip of its own, its spiking node SIGKILLed after the
    second checkpoint: the folder each test below copies and resumes."""
    import shutil
    import tvb_data
    from resumelib import killed_run
    d = tmp_path_factory.mktemp("broken")
    conn = d / "connectome.zip"
    shutil.copy(Path(tvb_data.__file__).parent / "connectivity" / "connectivity_76.zip", conn)
    cfg = {**resume_config(), "tvb": {"connectivity": str(conn)}}
    killed_run(cfg, d / "run", "spiking", random.Random(3), after_checkpoints=2, kill_within_s=0.05)
    return d / "run", conn


def _copy_run(broken_run, dest: Path, **coordinator) -> Path:
    """The broken run in `dest` (config.yaml pointing at it), `coordinator` keys changed."""
    import shutil
    src, _ = broken_run
    shutil.copytree(src, dest)
    c = yaml.safe_load((dest / "config.yaml").read_text())
    c["run"]["results_dir"] = str(dest)
    c["coordinator"].update(coordinator)
    (dest / "config.yaml").write_text(yaml.safe_dump(c))
    return dest


@pytest.mark.tvb
def test_resume_refuses_a_connectome_whose_content_changed_under_the_same_path(tmp_path, broken_run):
    """The config names the connectivity by path: its content is part of the config hash, and the
    refusal says which file changed (before: resumed silently, with other results)."""
    import zipfile
    run = _copy_run(broken_run, tmp_path / "run")
    _, conn = broken_run
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(conn) as zi, zipfile.ZipFile(edited, "w") as zo:
        for n in zi.namelist():
            data = zi.read(n)
            zo.writestr(n, data.replace(b"1", b"2", 50) if n == "weights.txt" else data)
    original = conn.read_bytes()
    try:
        conn.write_bytes(edited.read_bytes())          # same path, other weights
        p = _cosim("resume", str(run))
    finally:
        conn.write_bytes(original)
    lines = _said(p.stderr)
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert f"tvb.connectivity: the content of {conn} changed" in lines[0], lines[0]
    assert "written by another configuration" in lines[0]


def _said(stderr: str) -> list[str]:
    """What `cosim resume` says, without its log lines: a killed run may hold an unfinished
    checkpoint, and the resume logs (WARNING) that it skips it before the one-line refusal."""
    return [ln for ln in stderr.strip().splitlines()
            if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ (DEBUG|INFO|WARNING) ", ln)]


@pytest.mark.tvb
def test_resume_refuses_changed_watch_regions_in_one_line(tmp_path, broken_run):
    """coordinator.watch_regions decides which signals coordinator.h5 records from window 0: a
    list edited before the resume is refused in one line (before: a dataset shorter than the
    others, or a KeyError blamed on tvb)."""
    run = _copy_run(broken_run, tmp_path / "run", watch_regions=[0, 1])
    p = _cosim("resume", str(run))
    assert p.returncode == 2 and _said(p.stderr) == [
        "cosim: configuration error: cannot resume: coordinator.watch_regions is [0, 1], the run watched [] "
        "(coordinator.h5 records them from window 0); set it back to [] to resume"], p.stderr


@pytest.mark.tvb
@pytest.mark.parametrize("lost", ["tvb.h5", "coordinator.h5"])
def test_resume_names_a_missing_results_file(tmp_path, broken_run, lost):
    run = _copy_run(broken_run, tmp_path / "run")
    (run / lost).unlink()
    p = _cosim("resume", str(run))
    lines = _said(p.stderr)
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith(f"cosim: configuration error: cannot resume: results file {run / lost} is missing"), lines


def test_truncate_names_a_missing_results_file(tmp_path):
    """A node resuming on another machine (no launcher to check first) names the file too."""
    from cosim.runtime import checkpoint
    with pytest.raises(checkpoint.CheckpointError, match=f"results file {tmp_path / 'spiking.h5'} is missing"):
        checkpoint.truncate_h5(tmp_path / "spiking.h5", {"raw/S_e": 3})
