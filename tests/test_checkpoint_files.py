"""cosim.runtime.checkpoint without processes: atomic files, manifests that verify or not, the choice of
checkpoint on resume, keeping the last two, cutting results files back (PROTOCOL.md §10.1)."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cosim.runtime import checkpoint as ck

pytestmark = [pytest.mark.unit]


def _make(run, k, cfg_hash="h", payload=b"state"):
    d = ck.begin(run, k)
    digest = ck.atomic_write(d / "tvb.npz", payload + bytes([k % 256]))
    ck.write_manifest(run, k, {"format": ck.FORMAT, "window": k, "config_sha256": cfg_hash,
                               "files": {f"{ck.rel_folder(k)}/tvb.npz": digest}})


def test_newest_verifying_checkpoint_is_chosen_and_a_corrupted_one_skipped(tmp_path):
    for k in (4, 9, 14):
        _make(tmp_path, k)
    assert ck.select(tmp_path, "h")["window"] == 14
    (ck.folder(tmp_path, 14) / "tvb.npz").write_bytes(b"torn")
    assert ck.select(tmp_path, "h")["window"] == 9
    (ck.folder(tmp_path, 9) / ck.MANIFEST).write_text("{not json")
    assert ck.select(tmp_path, "h")["window"] == 4
    with pytest.raises(ck.CheckpointError, match="written by another configuration"):
        ck.select(tmp_path, "other")


def test_a_checkpoint_without_manifest_does_not_exist(tmp_path):
    _make(tmp_path, 4)
    ck.begin(tmp_path, 9)
    ck.atomic_write(ck.folder(tmp_path, 9) / "tvb.npz", b"half written")
    assert ck.select(tmp_path, "h")["window"] == 4
    _make(tmp_path, 4)     # rewriting a folder drops its manifest first
    assert ck.verify(tmp_path, 4, "h")[0] is not None


def test_prune_keeps_the_newest_two_and_drops_leftovers(tmp_path):
    for k in (4, 9, 14, 19):
        _make(tmp_path, k)
    ck.begin(tmp_path, 2)                  # an unfinished leftover
    ck.prune(tmp_path, 2, 19)
    assert ck.windows_on_disk(tmp_path) == [19, 14]
    ck.drop_newer(tmp_path, 14)
    assert ck.windows_on_disk(tmp_path) == [14]


def test_no_checkpoint_is_one_line(tmp_path):
    with pytest.raises(ck.CheckpointError, match="no checkpoint to resume from"):
        ck.select(tmp_path, "h")


def test_truncate_h5_cuts_back_and_keeps_layout(tmp_path):
    p = tmp_path / "r.h5"
    with h5py.File(p, "w", libver="latest") as f:
        f.attrs["x"] = 3
        d = f.create_dataset("raw/S_e", data=np.arange(40.0).reshape(20, 2), maxshape=(None, 2), chunks=(4, 2))
        f.create_dataset("raw/time_ms", data=np.arange(20.0), maxshape=(None,), chunks=(4,))
        d.attrs["units"] = "1"
        f.swmr_mode = True
    ck.truncate_h5(p, {"raw/S_e": 7, "raw/time_ms": 7}, libver="latest")
    with h5py.File(p, "a", libver="latest") as f:
        assert f["raw/S_e"].shape == (7, 2) and f["raw/S_e"].maxshape == (None, 2)
        assert np.array_equal(f["raw/S_e"][:], np.arange(14.0).reshape(7, 2))
        assert f.attrs["x"] == 3 and f["raw/S_e"].attrs["units"] == "1"
    with pytest.raises(ck.CheckpointError, match="holds 7 rows, the checkpoint needs 9"):
        ck.truncate_h5(p, {"raw/S_e": 9})


def test_config_hash_ignores_what_cannot_change_results():
    a = {"run": {"name": "a", "seed": 1, "progress": True, "checkpoint": {"every_windows": 5}},
         "coordinator": {"router": "tcp://127.0.0.1:1"}, "tvb": {"dt_ms": 0.1}}
    b = json.loads(json.dumps(a))
    b["run"].update(name="b", progress=False, checkpoint=None)
    b["coordinator"]["router"] = "tcp://127.0.0.1:2"
    assert ck.config_hash(a) == ck.config_hash(b)
    b["run"]["seed"] = 2
    assert ck.config_hash(a) != ck.config_hash(b)


def test_rng_state_round_trip():
    rs = np.random.RandomState(5)
    rs.normal(size=3)                        # leaves a cached gaussian
    st = ck.rng_state(rs)
    want = rs.normal(size=4)
    other = np.random.RandomState(0)
    ck.set_rng_state(other, st)
    assert np.array_equal(other.normal(size=4), want)


def test_when_checkpoints_are_due(tmp_path):
    """every_windows counts windows (k+1), every_s wall time since the last one; never after the last window."""
    import time
    from cosim.config import parse_config
    from cosim.services.coordinator.coordinator import Coordinator
    cfg = {"spiking_nodes": [{"name": "spiking", "backend": "reference", "regions": [33]}]}
    c = Coordinator(parse_config({**cfg, "run": {"checkpoint": {"every_windows": 5}}}, "<t>"), tmp_path)
    c.K, c._last_ckpt_t = 20, time.monotonic()
    assert [k for k in range(20) if c._checkpoint_due(k)] == [4, 9, 14]
    # every_s: once the time has come, the cut is the end of the windows granted so far (nodes run
    # ahead to there; protocol 3 grants windows in advance), and never the last window
    c = Coordinator(parse_config({**cfg, "run": {"checkpoint": {"every_s": 0.05}}}, "<t>"), tmp_path)
    c.K, c._last_ckpt_t, c.until = 20, time.monotonic(), 3
    assert not c._checkpoint_due(0)
    c._last_ckpt_t -= 0.06
    assert not c._checkpoint_due(1) and c.time_cut == 3
    assert c._checkpoint_due(3) and not c._checkpoint_due(19)
    with pytest.raises(Exception, match="every_windows or every_s"):
        parse_config({**cfg, "run": {"checkpoint": {"keep": 2}}}, "<t>")
