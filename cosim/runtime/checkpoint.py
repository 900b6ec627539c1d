"""Checkpoints of a run and resuming from them (PROTOCOL.md §10.1).

A checkpoint of window k is the folder ``<run>/checkpoints/<k:06d>/``: every node's state files
(written by its adapter's ``checkpoint(dir)``), ``coordinator.npz`` (the routed outputs of window
k, the only data in flight at the cut) and ``manifest.json``, written last, naming every file
with its sha256, the row count of every results dataset at window k and the hash of the config.
A checkpoint exists only once its manifest does; every file is written atomically (temporary
name, fsync, rename, fsync of the folder).

On resume the newest checkpoint whose manifest and every file verify is used, else the previous
one; results files are cut back to the recorded rows (`truncate_h5`).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FOLDER = "checkpoints"
MANIFEST = "manifest.json"
FORMAT = 1


from cosim.errors import CheckpointError  # noqa: E402  (one hierarchy: cosim.errors)


# ---------------------------------------------------------------------------- atomic files
def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> str:
    """Write `data` to `path` atomically and durably; returns its sha256 (hex)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return hashlib.sha256(data).hexdigest()


def save_arrays(path: str | Path, arrays: dict[str, Any]) -> str:
    """An .npz of named arrays (no pickle), written atomically; returns its sha256."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]  # names are arrays
    return atomic_write(path, buf.getvalue())


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rng_state(rs: np.random.RandomState) -> dict[str, Any]:
    """A legacy RandomState's full state as arrays (its position in the stream included)."""
    name, keys, pos, has_gauss, cached = rs.get_state()
    return {"keys": np.asarray(keys, np.uint32), "pos": np.int64(pos), "has_gauss": np.int64(has_gauss),
            "cached": np.float64(cached)}


def set_rng_state(rs: np.random.RandomState, d: dict[str, np.ndarray], prefix: str = "") -> None:
    rs.set_state(("MT19937", d[prefix + "keys"], int(d[prefix + "pos"]), int(d[prefix + "has_gauss"]),
                  float(d[prefix + "cached"])))


# ---------------------------------------------------------------------------- config identity
_NOT_RESULTS = {"run": ("progress", "checkpoint", "results_dir", "name")}


def _hash_path(p: Path) -> str:
    """sha256 of a file's content, or of a folder's top-level files (names and contents; hidden
    files and sub-folders, such as compiled mechanisms, left out); "missing" if neither."""
    try:
        if p.is_file():
            return sha256_file(p)
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")):
                h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
            return h.hexdigest()
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return "missing"


def input_files(config: dict) -> dict[str, Path]:
    """The files a run reads that the config names by path only, by config key: the connectome
    (``tvb.connectivity``), a user's TVB model module (``tvb.model_class`` as a dotted path), each
    backend's ``path_params`` (model files, mechanism folders) and the ``.mod`` files beside a
    model file (NEURON mechanisms). Their contents go into the config hash (`config_hash`)."""
    out: dict[str, Path] = {}
    tvb = config.get("tvb") or {}
    c = tvb.get("connectivity")
    if isinstance(c, str) and c != "default":
        out["tvb.connectivity"] = Path(c).expanduser()
    m = tvb.get("model_class")
    if isinstance(m, str) and "." in m and not m.startswith("tvb."):
        import importlib.util
        try:
            spec = importlib.util.find_spec(m.rpartition(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            out["tvb.model_class"] = Path(spec.origin)
    from cosim import plugins
    for i, node in enumerate(config.get("spiking_nodes") or []):
        if not isinstance(node, dict):
            continue
        try:
            spec_b = plugins.get(node.get("backend") or "reference")
        except plugins.UnknownBackend:
            continue
        for dotted in spec_b.path_params:
            v = plugins._get(node.get("params") or {}, dotted)
            if isinstance(v, str) and v:
                p = Path(v).expanduser()
                out[f"spiking_nodes[{i}].params.{dotted}"] = p
                if p.is_file():
                    for mod in sorted(p.parent.glob("*.mod")):
                        out[f"spiking_nodes[{i}].params.{dotted} (beside it: {mod.name})"] = mod
    return out


def input_hashes(config: dict) -> dict[str, str]:
    """{config key: "<path> <sha256>"} of `input_files` (a missing file hashes as "missing")."""
    return {k: f"{p} {_hash_path(p)}" for k, p in input_files(config).items()}


def inputs_changed(old: dict[str, str] | None, new: dict[str, str]) -> str:
    """Which input files differ between a checkpoint's manifest and now, in words ("" if none)."""
    if not isinstance(old, dict):
        return ""
    diff = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        path = (b or a or "").rpartition(" ")[0]
        if b is None or a is None:
            diff.append(f"{k} {'added' if a is None else 'removed'}")
        elif b.endswith(" missing"):
            diff.append(f"{k}: {path} is missing")
        elif a.rpartition(" ")[0] != path:
            diff.append(f"{k}: now {path}, was {a.rpartition(' ')[0]}")
        else:
            diff.append(f"{k}: the content of {path} changed")
    return "; ".join(diff)


def config_hash(config: dict, inputs: dict[str, str] | None = None) -> str:
    """sha256 of what determines the results (not addresses, heartbeats, names, checkpointing or
    the machines a node's MPI ranks run on), with the content of the files the config names
    (`input_hashes`: connectome, model and mechanism files; a changed file under the same path
    changes the results)."""
    data = json.loads(json.dumps(config, default=str))
    inputs = input_hashes(config) if inputs is None else inputs
    if inputs:                  # (none: the hash of a checkpoint written before files were hashed)
        data["__inputs__"] = inputs
    data.pop("coordinator", None)
    for k in _NOT_RESULTS["run"]:
        (data.get("run") or {}).pop(k, None)
    for node in data.get("spiking_nodes") or []:
        if isinstance(node, dict):
            node.pop("mpi", None)      # which machines the ranks run on
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------- folders
def folder(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / FOLDER / f"{int(k):06d}"


def rel_folder(k: int) -> str:
    return f"{FOLDER}/{int(k):06d}"


def windows_on_disk(run_dir: str | Path) -> list[int]:
    """Windows of checkpoint folders (with or without a manifest), newest first."""
    d = Path(run_dir) / FOLDER
    if not d.is_dir():
        return []
    return sorted((int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


def begin(run_dir: str | Path, k: int) -> Path:
    """The folder of a new checkpoint of window k, without a manifest (a rewrite of a folder left
    by an earlier attempt is not a checkpoint until its new manifest exists)."""
    d = folder(run_dir, k)
    d.mkdir(parents=True, exist_ok=True)
    m = d / MANIFEST
    if m.exists():
        m.unlink()
        fsync_dir(d)
    return d


def write_manifest(run_dir: str | Path, k: int, manifest: dict) -> str:
    return atomic_write(folder(run_dir, k) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def prune(run_dir: str | Path, keep: int, newest: int) -> None:
    """Keep the newest `keep` checkpoints up to window `newest`; drop older ones and leftovers."""
    kept = 0
    for k in windows_on_disk(run_dir):
        d = folder(run_dir, k)
        if k > newest:
            continue
        if (d / MANIFEST).exists() and kept < keep:
            kept += 1
            continue
        shutil.rmtree(d, ignore_errors=True)


def drop_newer(run_dir: str | Path, k: int) -> None:
    """Resuming from window k abandons every checkpoint after it (e.g. a corrupted newest one)."""
    for w in windows_on_disk(run_dir):
        if w > k:
            shutil.rmtree(folder(run_dir, w), ignore_errors=True)


def verify(run_dir: str | Path, k: int, cfg_hash: str | None = None,
           inputs: dict[str, str] | None = None) -> tuple[dict | None, str]:
    """(manifest, "") if checkpoint k verifies, else (None, why)."""
    d = folder(run_dir, k)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        return None, "no manifest (the checkpoint was not finished)"
    except (OSError, ValueError) as e:
        return None, f"unreadable manifest ({e})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("window") != k:
        return None, "manifest of another format or window"
    if cfg_hash is not None and manifest.get("config_sha256") != cfg_hash:
        changed = inputs_changed(manifest.get("inputs"), inputs or {}) if inputs is not None else ""
        return None, ("written by another configuration (config hash differs"
                      + (f": {changed})" if changed else ")"))
    for rel, digest in (manifest.get("files") or {}).items():
        p = Path(run_dir) / rel
        if not p.is_file():
            return None, f"{rel} is missing"
        if sha256_file(p) != digest:
            return None, f"{rel} does not match its checksum"
    return manifest, ""


def select(run_dir: str | Path, cfg_hash: str, inputs: dict[str, str] | None = None) -> dict:
    """The manifest of the newest checkpoint that verifies (falling back to older ones); raises
    CheckpointError naming why none does."""
    found = windows_on_disk(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoint to resume from (was run.checkpoint set?)")
    why: list[str] = []
    for k in found:
        manifest, bad = verify(run_dir, k, cfg_hash, inputs)
        if manifest is not None:
            if why:
                log.warning("checkpoint: skipping %s; resuming from window %d", "; ".join(why), k)
            return manifest
        why.append(f"checkpoint {k}: {bad}")
    raise CheckpointError(f"{run_dir}: no usable checkpoint ({'; '.join(why)})")


def check_resume(run_dir: str | Path, manifest: dict, watch_regions: list[int], nodes: bool = True) -> None:
    """What a resume from `manifest` needs beyond the checkpoint's own files, in one line each
    (CheckpointError): the same ``coordinator.watch_regions`` (coordinator.h5 records the watched
    regions' signals from window 0: a changed list would leave a dataset short or one that stops
    at the cut) and the results files to continue (coordinator.h5; with `nodes`, the nodes' files
    too, when they are written in this folder, as under `cosim resume`)."""
    k = manifest.get("window")
    had = manifest.get("watch_regions")
    if had is not None and sorted(had) != sorted(watch_regions):
        raise CheckpointError(f"cannot resume: coordinator.watch_regions is {sorted(watch_regions)}, the run "
                              f"watched {sorted(had)} (coordinator.h5 records them from window 0); set it back "
                              f"to {sorted(had)} to resume")
    files = ["coordinator.h5"] if (manifest.get("coordinator") or {}).get("rows") else []
    if nodes:
        files += [rel for node in (manifest.get("nodes") or {}).values() for rel in (node.get("rows") or {})]
    for rel in files:
        if not (Path(run_dir) / rel).is_file():
            raise CheckpointError(f"cannot resume: results file {Path(run_dir) / rel} is missing (the checkpoint "
                                  f"of window {k} continues it)")


# ---------------------------------------------------------------------------- results files
def h5_rows(f) -> dict[str, int]:
    """Rows (first axis) of every dataset in an open h5py file, by path."""
    import h5py
    out: dict[str, int] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.shape:
            out[name] = int(obj.shape[0])
    f.visititems(visit)
    return out


def truncate_h5(path: str | Path, rows: dict[str, int], libver: str | None = None) -> None:
    """Cut every dataset named in `rows` back to that many rows (results of a resumed run); a
    dataset not named was created after the checkpoint (a writer that creates them lazily, traces
    written at the end of the killed run) and is removed.

    The file is rewritten (a copy of every object, then resized) and renamed over the old one:
    it may have been left by a killed writer (open-for-write flag, unflushed tail), which
    HDF5 does not reopen for writing, while a reader copes."""
    import h5py
    from cosim.runtime.store import open_h5
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"results file {path} is missing (the checkpoint continues it)")
    tmp = path.with_name(f".{path.name}.resume")
    with open_h5(path) as src, h5py.File(tmp, "w", **({"libver": libver} if libver else {})) as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name in src:
            src.copy(src[name], dst, name=name)
        have = h5_rows(dst)
        for name in sorted(set(have) - set(rows)):
            del dst[name]
        for name, n in rows.items():
            if name not in have:
                raise CheckpointError(f"{path.name}: dataset {name} is missing")
            if have[name] < n:
                raise CheckpointError(f"{path.name}: {name} holds {have[name]} rows, the checkpoint needs {n}")
            if have[name] != n:           # fixed datasets (not chunked) keep their size
                dst[name].resize(int(n), axis=0)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def resume_target(run_dir: str | Path, config: str | None = None, out: str | None = None) -> tuple[str, str]:
    """(config path, results folder) of `--resume RUN_DIR`; ConfigError in one line if unusable."""
    from cosim.config import ConfigError
    d = Path(run_dir)
    if not d.is_dir():
        raise ConfigError(f"--resume {run_dir}: no such run folder")
    if out is not None and Path(out).resolve() != d.resolve():
        raise ConfigError(f"--resume {run_dir}: a resumed run continues in its own folder, not --out {out}")
    cfg = config or str(d / "config.yaml")
    if not Path(cfg).is_file():
        raise ConfigError(f"--resume {run_dir}: {cfg} not found (the config the run started with)")
    try:
        status = json.loads((d / "status_coordinator.json").read_text())
    except (OSError, ValueError):
        status = {}
    if status.get("completed") is True:
        raise ConfigError(f"--resume {run_dir}: the run completed; nothing to resume")
    return cfg, str(d)
