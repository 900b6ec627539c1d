"""Compile a model's mechanisms once with ``nrnivmodl`` (cached by content) and load them.

``compile_mods(mod_dir)`` takes the folder's ``*.mod`` files (minus ``exclude`` globs) and every
``*.inc``/``*.h`` beside them, hashes names + bytes + the NEURON version, and compiles them in
``<build_root>/<hash>/`` unless that build exists. Includes are copied next to the ``.mod`` files
in the build folder, so a ``.mod`` that ``INCLUDE``s a file compiles as with plain ``nrnivmodl``.
``progress(done, total, name)`` is called as nocmodl translates each file (``cosim build`` prints
it). A failed compilation raises :class:`ModelError` naming the file and line of the real mistake
(nocmodl's ``at line N in file F``, or the compiler's error traced back to the ``.mod`` line);
nothing half-built is cached.
"""
from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from collections.abc import Callable

log = logging.getLogger(__name__)

_loaded: set[str] = set()
INCLUDES = ("*.inc", "*.h")


from cosim.errors import ModelError  # noqa: E402  (one hierarchy: cosim.errors)


def default_build_root() -> Path:
    return Path(os.environ.get("COSIM_NRNMECH_CACHE", Path.home() / ".cache" / "cosim" / "nrnmech"))


def mod_files(mod_dir: str | Path, exclude: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """The ``.mod`` files of ``mod_dir`` that no ``exclude`` glob matches (by file name)."""
    return sorted(m for m in Path(mod_dir).glob("*.mod") if not any(fnmatch.fnmatch(m.name, g) for g in exclude))


_INCLUDE = re.compile(r'^\s*INCLUDE\s+"([^"]+)"', re.M)


def _sources(mod_dir: Path, exclude) -> tuple[list[Path], list[Path]]:
    """The ``.mod`` files and the files they ``INCLUDE``, found where nocmodl finds them when the
    user runs ``nrnivmodl mod`` from the model's folder: beside the ``.mod`` files, in the folder
    above (nrnivmodl's working directory; NetPyNE's ``doc/source/code/netcon.inc`` sits there, its
    ``mod/AMPA.mod`` includes it), then the folders of ``$MODL_INCLUDE``."""
    mods = mod_files(mod_dir, exclude)
    incs = {p for pat in INCLUDES for p in mod_dir.glob(pat)}
    have = {p.name for p in incs}
    search = [mod_dir.parent] + [Path(d) for d in os.environ.get("MODL_INCLUDE", "").split(os.pathsep) if d]
    for m in mods:
        for name in _INCLUDE.findall(m.read_text(errors="replace")):
            if Path(name).name in have or (mod_dir / name).is_file():
                continue
            found = next((d / name for d in search if (d / name).is_file()), None)
            if found is not None:
                incs.add(found)
                have.add(found.name)
    return mods, sorted(incs)


def _neuron_version() -> str:
    """NEURON's version without importing it: under MPI, importing NEURON on one rank alone
    (rank 0 compiling before the others build) deadlocks on NEURON's collective MPI start."""
    from importlib import metadata
    for dist in ("neuron", "NEURON", "neuron-nightly"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import neuron
    return neuron.__version__


def _hash(files: list[Path]) -> str:
    h = hashlib.sha256(f"neuron {_neuron_version()}".encode())
    for m in files:
        h.update(m.name.encode() + b"\0" + m.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_path(mod_dir: str | Path, build_root: str | Path | None = None, exclude=()) -> Path | None:
    """Where the build of these sources lives (whether or not it exists yet); None: no .mod files."""
    mods, incs = _sources(Path(mod_dir), exclude)
    if not mods:
        return None
    root = Path(build_root) if build_root else default_build_root()
    return root / _hash(mods + incs)


_NOCMODL = re.compile(r"at line (\d+) in file (\S+)")
_CXX = re.compile(r"([^\s:]+)\.(?:cpp|c):(\d+)(?::\d+)?: (?:fatal )?error: (.*)")


def _first_error(text: str, sources: list[Path]) -> str:
    """``file line N: message`` for the real mistake in nrnivmodl's output."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    for i, ln in enumerate(lines):       # nocmodl: "Error: <what>" ... " at line N in file F", then the source
        m = _NOCMODL.search(ln)
        if m:
            what = next((lines[j].strip() for j in range(i, max(i - 4, -1), -1)
                         if "Error" in lines[j] or "error" in lines[j]), ln.strip())
            what = what.removeprefix("Error:").strip()
            if what.startswith("at line") or not what:
                what = "syntax error"
            src = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return f"{m.group(2)} line {m.group(1)}: {_NOCMODL.sub('', what).strip()}" + (f" ({src!r})" if src else "")
    for i, ln in enumerate(lines):       # C++ compiler: map the generated line back to the .mod source text
        m = _CXX.search(ln)
        if m:
            stem, msg = Path(m.group(1)).name, m.group(3).strip()
            code = next((lines[j].split("|", 1)[1].strip() for j in range(i + 1, min(i + 3, len(lines)))
                         if "|" in lines[j] and lines[j].split("|", 1)[0].strip().isdigit()), "")
            for source in sources:
                if source.stem != stem and source.suffix == ".mod":
                    continue
                for n, text_line in enumerate(source.read_text(errors="replace").splitlines(), 1):
                    if code and code in text_line:
                        return f"{source.name} line {n}: {msg}"
            return f"{stem}.mod (generated C++ line {m.group(2)}): {msg}"
    hits = [ln.strip() for ln in lines if ln.strip() and ("error" in ln.lower() or "illegal" in ln.lower())
            and not ln.lstrip().startswith(("make:", "NOTE", "subprocess.", "raise ", "Traceback"))]
    return hits[0] if hits else next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")


def _lib_exists(build: Path) -> bool:
    return any(build.glob("*/libnrnmech.so")) or any(build.glob("*/.libs/libnrnmech.so")) \
        or any(build.glob("*/libnrnmech.dylib"))


def is_cached(mod_dir: str | Path, build_root: str | Path | None = None, exclude=()) -> bool:
    b = build_path(mod_dir, build_root, exclude)
    return b is None or _lib_exists(b)


def compile_mods(mod_dir: str | Path, build_root: str | Path | None = None, exclude=(),
                 progress: Callable[[int, int, str], None] | None = None) -> Path | None:
    """Compiled build folder for the .mod files of ``mod_dir`` (None if it has none)."""
    mod_dir = Path(mod_dir)
    if not mod_dir.is_dir():
        raise ModelError(f"mechanism folder {mod_dir} does not exist")
    mods, incs = _sources(mod_dir, exclude)
    if not mods:
        return None
    root = Path(build_root) if build_root else default_build_root()
    root.mkdir(parents=True, exist_ok=True)
    build = root / _hash(mods + incs)
    if _lib_exists(build):
        log.debug("mechanisms of %s cached in %s", mod_dir, build)
        return build
    nrnivmodl = shutil.which("nrnivmodl")
    if nrnivmodl is None:
        raise ModelError("nrnivmodl not found on PATH (install NEURON) to compile " + str(mod_dir))
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=root))
    try:
        for m in mods + incs:
            shutil.copy2(m, tmp / m.name)
        log.info("compiling %d mechanism(s) from %s (once; cached in %s)", len(mods), mod_dir, root)
        proc = subprocess.Popen([nrnivmodl], cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, done = [], 0
        assert proc.stdout is not None
        for line in proc.stdout:          # nrnivmodl prints "Translating X.mod" per file
            out.append(line)
            if line.startswith("Translating ") and progress is not None:
                done += 1
                progress(done, len(mods), line.split()[1])
        rc = proc.wait()
        if rc != 0 or not _lib_exists(tmp):
            raise ModelError(f"mechanisms in {mod_dir} do not compile: {_first_error(''.join(out), mods + incs)}")
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
    """Load a compiled build into NEURON once per process (keyed by its content hash: the same
    sources built in another cache folder are the same mechanisms)."""
    path = str(Path(build).resolve())
    if Path(path).name in _loaded:
        return
    import neuron
    try:
        ok = neuron.load_mechanisms(path, warn_if_already_loaded=False)
    except RuntimeError as e:       # hoc: "The user defined name already exists: <mech>"
        raise ModelError(f"mechanisms in {path} clash with mechanisms already loaded in this process: "
                         f"{str(e).splitlines()[-1]}") from None
    if not ok:
        raise ModelError(f"could not load compiled mechanisms from {path}")
    _loaded.add(Path(path).name)


def ensure_mechanisms(mod_dir: str | Path, build_root: str | Path | None = None, exclude=()) -> Path | None:
    build = compile_mods(mod_dir, build_root, exclude)
    if build is not None:
        load_mechanisms(build)
    return build
