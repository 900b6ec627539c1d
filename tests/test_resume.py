"""Checkpoint and resume (PROTOCOL.md §10.1, issue 11 §1): a run of the reference backend whose
coordinator, TVB node or spiking node is SIGKILLed at a random window and then `cosim resume`d
equals the uninterrupted run bit for bit; a corrupted newest checkpoint falls back to the previous
one; refusals are one line. A resume that restarted from scratch fails: the resumed coordinator
must report (summary, log) that it started at the window after the checkpoint.

The 20-kill loop over both backends is bench/resume.py (too long for the suite)."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import yaml

from harness import read_results
from resumelib import assert_equal_results, kill_and_resume, netpyne_config, resume_config, uninterrupted

pytestmark = [pytest.mark.system]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return uninterrupted(resume_config(), tmp_path_factory.mktemp("uninterrupted"))


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


@pytest.mark.slow
@pytest.mark.tvb
def test_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    rng = random.Random(7)
    got = kill_and_resume(resume_config(), tmp_path, "spiking", rng, after_checkpoints=2, kill_within_s=0.05,
                          corrupt_newest=True)
    assert got["resumed_from"] == got["checkpoints"][1] < got["corrupted"], got
    log = (tmp_path / "logs" / "coordinator.log").read_text()
    assert f"checkpoint {got['corrupted']}: checkpoints/{got['corrupted']:06d}/tvb.npz does not match its checksum" in log
    assert_equal_results(read_results(tmp_path), reference)


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
    from cosim.launch.run import free_port
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
    return uninterrupted(netpyne_config(), tmp_path_factory.mktemp("np_uninterrupted"))


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
        codes = s.wait_exit(timeout=120)
    assert codes["coordinator"] == 2 and codes["spiking"] != 0, (codes, s.logs_text())
    assert "started with --resume, but the coordinator starts a new run" in s.log("coordinator")
