"""Compile .mod files once with ``nrnivmodl`` (cached by content hash) and load them.

``ensure_mechanisms(mod_dir)`` hashes the folder's ``*.mod`` files (names + bytes + NEURON
version), compiles them in ``<build_root>/<hash>/`` if that build does not exist yet, and loads
the library into this process (once). A failed compilation raises :class:`ModelError` with one
line naming the folder and the compiler's first error line; nothing half-built is cached.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_loaded: set[str] = set()


class ModelError(ValueError):
    """A spiking model that cannot run: the message is one line naming the file and cause."""


def default_build_root() -> Path:
    return Path(os.environ.get("COSIM_NRNMECH_CACHE", Path.home() / ".cache" / "cosim" / "nrnmech"))


def _hash(mods: list[Path]) -> str:
    import neuron
    h = hashlib.sha256(f"neuron {neuron.__version__}".encode())
    for m in mods:
        h.update(m.name.encode() + b"\0" + m.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _first_error(text: str) -> str:
    """The most telling line of nrnivmodl's output (nocmodl's 'Error: ... at line N' or gcc's 'error:')."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if ("error" in ln.lower() or "illegal" in ln.lower() or "undefined" in ln.lower())
            and not ln.startswith(("make:", "NOTE", "subprocess.", "raise ")) and not ln.endswith(":")]
    return hits[0] if hits else (lines[-1] if lines else "no output")


def _lib_exists(build: Path) -> bool:
    return any(build.glob("*/libnrnmech.so")) or any(build.glob("*/.libs/libnrnmech.so")) \
        or any(build.glob("*/libnrnmech.dylib"))


def compile_mods(mod_dir: str | Path, build_root: str | Path | None = None) -> Path | None:
    """Compiled build folder for the .mod files of ``mod_dir`` (None if it has none)."""
    mod_dir = Path(mod_dir)
    if not mod_dir.is_dir():
        raise ModelError(f"mechanism folder {mod_dir} does not exist")
    mods = sorted(mod_dir.glob("*.mod"))
    if not mods:
        return None
    root = Path(build_root) if build_root else default_build_root()
    root.mkdir(parents=True, exist_ok=True)
    build = root / _hash(mods)
    if _lib_exists(build):
        log.debug("mechanisms of %s cached in %s", mod_dir, build)
        return build
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        for m in mods:
            shutil.copy2(m, tmp / m.name)
        nrnivmodl = shutil.which("nrnivmodl")
        if nrnivmodl is None:
            raise ModelError("nrnivmodl not found on PATH (install NEURON) to compile " + str(mod_dir))
        log.info("compiling %d mechanism(s) from %s", len(mods), mod_dir)
        res = subprocess.run([nrnivmodl], cwd=tmp, capture_output=True, text=True, timeout=600)
        if res.returncode != 0 or not _lib_exists(tmp):
            raise ModelError(f"nrnivmodl failed for {mod_dir}: {_first_error(res.stderr + res.stdout)}")
        try:
            tmp.rename(build)
        except OSError:          # another process finished the same build first
            if not _lib_exists(build):
                raise
        return build
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_mechanisms(build: Path) -> None:
    """Load a compiled build into NEURON once per process."""
    key = str(Path(build).resolve())
    if key in _loaded:
        return
    import neuron
    if not neuron.load_mechanisms(key, warn_if_already_loaded=False):
        raise ModelError(f"could not load compiled mechanisms from {key}")
    _loaded.add(key)


def ensure_mechanisms(mod_dir: str | Path, build_root: str | Path | None = None) -> Path | None:
    build = compile_mods(mod_dir, build_root)
    if build is not None:
        load_mechanisms(build)
    return build
