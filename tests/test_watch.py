"""`cosim watch` and the PUB broadcasts (PROTOCOL.md §6.1).

  cosim run (reference backend) ── PUB ──┬── cosim watch --once       (snapshot: window, speed, rates)
                                          ├── cosim watch (live, killed after a while)
                                          └── cosim watch --once (CURVE, a "watch" key)
  the same run without any watcher → coordinator.h5 signals identical bit for bit
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness import read_results, wait_for
from cosim.proto import Message, MessageType as T
from cosim.proto.codec import MalformedMessage, decode_published, encode_published
from psutil_free import cosim_processes

PY = [sys.executable, "-m", "cosim.cli"]


@pytest.mark.unit
def test_broadcasts_travel_through_the_codec():
    msg = Message(T.PROGRESS, {"windows_done": 3, "windows": 9, "window_ms": 4.9, "t_ms": 14.7, "wall_s": 0.1,
                               "timing": {"window_wall_s": 0.01, "nodes": {"tvb": {"compute_s": 0.005}}},
                               "rates": [{"node": "spiking", "name": "state/R_e", "regions": [33, 71],
                                          "hz": np.array([1.5, 2.5])}]}, node="coordinator", window=2, msg_id=7)
    frames = encode_published(msg)
    assert frames[0] == b"progress"
    got = decode_published(frames)
    assert got.type == T.PROGRESS and got.window == 2 and got.content["windows_done"] == 3
    assert np.array_equal(got.content["rates"][0]["hz"], [1.5, 2.5])
    with pytest.raises(MalformedMessage):                       # topic must match the type
        decode_published([b"event", *frames[1:]])
    with pytest.raises(MalformedMessage):                       # PROGRESS without its window
        decode_published(encode_published(Message(T.PROGRESS, msg.content, node="coordinator")))
    with pytest.raises(TypeError):
        encode_published(Message(T.RUN, {"first": 0, "until": 0}))
    ev = decode_published(encode_published(Message(T.EVENT, {"event": "started", "windows": 9})))
    assert ev.type == T.EVENT and ev.content["event"] == "started"


def _config(tmp: Path, name: str, duration_ms: float, **coordinator) -> Path:
    cfg = {"run": {"name": "watch", "duration_ms": duration_ms, "results_dir": str(tmp), "progress": False},
           "spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33, 71]}],
           "coordinator": {"watch_regions": [5], **coordinator}}
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _start_run(cfg: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(PY + ["run", str(cfg), "--out", str(out), "--no-plots"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _data(out: Path) -> dict:
    """Every deterministic dataset of coordinator.h5 (signals), tvb.h5 and spiking.h5 (not timings)."""
    return {(f, k): v for f, d in read_results(out).items() for k, v in d.items() if k != "__attrs__"}


@pytest.mark.system
@pytest.mark.tvb
def test_watch_once_shows_the_run_and_watchers_never_disturb_it(tmp_path):
    duration = 2500.0
    watched = tmp_path / "watched"
    run = _start_run(_config(tmp_path, "watched", duration), watched)
    try:
        wait_for(lambda: (watched / "coordinator.h5").exists() or run.poll() is not None, 120, "the run to start")
        assert run.poll() is None, run.stderr.read()[-2000:]
        snap = subprocess.run(PY + ["watch", str(watched), "--once", "--timeout", "20"],
                              capture_output=True, text=True, timeout=60)
        assert snap.returncode == 0, snap.stderr
        # a live watcher that stays to the end: it sees the run complete and exits 0
        follower = subprocess.Popen(PY + ["watch", str(watched)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        text = snap.stdout
        m = re.search(r"window (\d+) \((\d+)/(\d+),", text)
        assert m, text
        assert int(m.group(2)) == int(m.group(1)) + 1 and int(m.group(3)) == 511     # 2500 ms / 4.9 ms windows
        assert re.search(r"speed \d+ windows/s", text) and "real-time factor" in text, text
        assert re.search(r"spiking\s+state/R_e\s+33\s+\d+\.\d+", text), text   # spiking regions
        assert re.search(r"spiking\s+state/R_e\s+71\s+\d+\.\d+", text), text
        assert re.search(r"tvb\s+state/R_e\s+5\s+\d+\.\d+", text), text        # a watched TVB region
        assert "tvb compute" in text and "spiking compute" in text, text
        # a live watcher attaches, follows for a while and is killed (detaches abruptly)
        live = subprocess.Popen(PY + ["watch", str(watched)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(live.stdout.readline, "")), daemon=True)
        reader.start()
        # it redraws while the run goes on (two frames), then it is killed
        wait_for(lambda: sum("real-time factor" in l for l in lines) >= 2 or live.poll() is not None, 60,
                 "two frames from the live watcher")
        live.send_signal(signal.SIGKILL)
        live.wait(timeout=10)
        assert sum("real-time factor" in l for l in lines) >= 2, "".join(lines) + live.stderr.read()
        # a watcher with a region filter attaches again
        again = subprocess.run(PY + ["watch", str(watched), "--once", "--regions", "71"],
                               capture_output=True, text=True, timeout=60)
        # region rows only: "speed 33 windows/s" on a loaded machine must not read as region 33
        rows = [ln for ln in again.stdout.splitlines() if re.match(r"\s*\S+\s+state/\S+\s+\d+\s", ln)]
        assert again.returncode == 0 and rows, again.stdout
        assert [ln.split()[2] for ln in rows] == ["71"], again.stdout
        assert run.poll() is None, "the run ended before the watchers were done: make it longer"
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        f_out, f_err = follower.communicate(timeout=60)
        assert follower.returncode == 0 and "run completed" in f_out, (f_out[-1500:], f_err)
        assert "window 510 (511/511, 100 %)" in f_out, f_out[-1500:]
    finally:
        for p in (run, locals().get("follower")):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    # the same run without any watcher, its services forked from a zygote (conftest.run_warm: TVB
    # imported once, not in each service; a forked service computes what a fresh one does)
    from conftest import run_warm
    quiet = run_warm({"plain": yaml.safe_load(_config(tmp_path, "plain", duration).read_text())}, tmp_path,
                     "--no-plots")["plain"]
    assert quiet.code == 0, quiet.stderr[-2000:]
    plain = quiet.out
    a, b = _data(watched), _data(plain)
    assert a.keys() == b.keys() and ("coordinator.h5", "signals/tvb/state/R_e") in a and ("tvb.h5", "raw/R_e") in a
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs between the watched and the unwatched run"
    assert not cosim_processes(str(watched))


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.tvb
def test_watch_with_curve_keys(tmp_path):
    """An encrypted run is watched with an authorized 'watch' key; without keys nothing is heard."""
    from cosim.runtime import security
    keys = tmp_path / "keys"
    security.generate(keys, ["coordinator", "tvb", "spiking", "watch"])
    out = tmp_path / "curve"
    run = _start_run(_config(tmp_path, "curve", 2500.0, curve=True, keys_dir=str(keys)), out)
    try:
        wait_for(lambda: (out / "coordinator.h5").exists() or run.poll() is not None, 120, "the run to start")
        blind = subprocess.run(PY + ["watch", str(out), "--once", "--timeout", "2"], capture_output=True, text=True,
                               timeout=60)
        assert blind.returncode == 1 and "nothing heard" in blind.stderr, (blind.stdout, blind.stderr)
        snap = subprocess.run(PY + ["watch", str(out), "--once", "--keys", str(keys), "--timeout", "20"],
                              capture_output=True, text=True, timeout=60)
        assert snap.returncode == 0 and "real-time factor" in snap.stdout, snap.stderr
        assert re.search(r"spiking\s+state/R_e\s+33", snap.stdout), snap.stdout
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            run.kill()
            run.wait()


@pytest.mark.system
def test_watch_refuses_bad_addresses(tmp_path):
    p = subprocess.run(PY + ["watch", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "neither a PUB address" in p.stderr, p.stderr


@pytest.mark.unit
def test_view_skips_what_it_cannot_trust():
    """A broadcast with malformed rates or timing is drawn without them, never a crash."""
    from cosim.results.watch import View
    v = View()
    good = {"node": "spiking", "name": "state/R_e", "regions": [33], "hz": np.array([4.0])}
    v.add(Message(T.PROGRESS, {"windows_done": 2, "windows": 4, "window_ms": 4.9, "t_ms": 9.8, "wall_s": 0.1,
                               "timing": {"window_wall_s": "x", "nodes": {"tvb": 3, "spiking": {"compute_s": None}}},
                               "rates": [good, {"node": "x", "regions": [1, 2], "hz": np.array([1.0])}, "junk"]},
                  window=1))
    text = v.render()
    assert "window 1 (2/4, 50 %)" in text and re.search(r"spiking\s+state/R_e\s+33\s+4\.000", text), text
    assert "x " not in text.split("recent")[-1], text


@pytest.mark.unit
def test_addresses_resolve_from_run_directories(tmp_path, monkeypatch):
    from cosim.config import ConfigError
    from cosim.results.watch import DEFAULT_PUB, resolve_address
    old, new = tmp_path / "results" / "a", tmp_path / "results" / "b"
    for d, port, running in ((old, 7001, "true"), (new, 7002, "false")):
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump({"coordinator": {"pub": f"tcp://127.0.0.1:{port}"}}))
        (d / "status_coordinator.json").write_text(f'{{"running": {running}}}')
    assert resolve_address(str(new))[0] == "tcp://127.0.0.1:7002"          # a run directory
    assert resolve_address("host:5556")[0] == "tcp://host:5556"
    assert resolve_address("tcp://10.0.0.1:1234")[0] == "tcp://10.0.0.1:1234"
    monkeypatch.chdir(tmp_path)
    assert resolve_address(None)[0] == "tcp://127.0.0.1:7001"               # the run that is still running
    (old / "status_coordinator.json").write_text('{"running": false}')
    assert resolve_address(None)[0] == DEFAULT_PUB
    with pytest.raises(ConfigError, match="neither"):
        resolve_address("nonsense")


@pytest.mark.slow
@pytest.mark.system
@pytest.mark.tvb
def test_a_watch_region_that_does_not_exist_is_one_line(tmp_path):
    cfg = yaml.safe_load(_config(tmp_path, "bad", 50.0).read_text())
    cfg["coordinator"]["watch_regions"] = [5, 500]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(PY + ["run", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out"), "--no-plots"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "coordinator.watch_regions: region(s) [500] do not exist" in p.stderr, p.stderr


@pytest.mark.unit
def test_view_survives_nan_rates_wrong_types_and_escape_codes():
    """A PROGRESS with NaN rates, numbers of the wrong type or missing, names and an abort reason
    carrying terminal escape codes: drawn without a crash, the escape codes shown escaped, never raw.
    Before: ValueError (int(nan) in the sparkline), TypeError/KeyError on the numbers, and the escape
    codes reached the terminal."""
    from cosim.results.watch import View
    v = View()
    evil = "spi\x1b[2J\x1b]0;pwned\x07king"
    for k, hz in enumerate([np.array([np.nan, 2.0]), np.array([3.0, np.inf]), np.array([np.nan, np.nan])]):
        v.add(Message(T.PROGRESS, {"windows_done": k + 1, "windows": "many" if k else None, "window_ms": 4.9,
                                   "t_ms": float("nan"), "wall_s": [0.1] if k else 0.2,
                                   "timing": {"window_wall_s": 0.01, "nodes": {evil: {"compute_s": 0.001}, 7: {}}},
                                   "rates": [{"node": evil, "name": "state/R_e", "regions": [33, 71], "hz": hz},
                                             {"node": "s", "name": "x", "regions": [1], "hz": np.array(["a"])}]},
                      window=k))
        text = v.render()
        assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert "spi\\x1b[2J\\x1b]0;pwned\\x07king" in text, text
    assert re.search(r"state/R_e\s+33\s+nan", text), text
    v.add(Message(T.PROGRESS, ["not", "a", "mapping"], window=3))           # an unexpected type altogether
    v.add(Message(T.EVENT, {"event": "aborted", "reason": "\x1b[31mred\x1b[0m"}))
    text = v.render(width=400)
    assert "\x1b" not in text and "run aborted: \\x1b[31mred\\x1b[0m" in text, repr(text)
