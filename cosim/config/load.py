"""Loading a run configuration: YAML/TOML files, `--set` overrides, backend params checked by
each backend's own model (``cosim.plugins``), and each backend's deeper checks (``check_nodes``).
Every error is one ConfigError line naming the file and the field."""
from __future__ import annotations

import re
import tomllib
from typing import Any
from pathlib import Path

import yaml
from pydantic import ValidationError

from cosim.config.schema import _MPI_RANK_OPTS, NodeEntry, RunConfig, _require_whole
from cosim.errors import ConfigError, ModelError


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


# how pydantic names a union member in an error's location: a type (float, list[float], ClassSpec)
_UNION_TAG = re.compile(r"(float|int|str|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\]|[A-Z]\w*)")


def _one_per_field(errors: list) -> list:
    """A value refused by every member of a union (``float | list[float]``) is one error at the
    field, not one per member named by type (``tvb.model.J_N.float``, ``... .list[float]``)."""
    out, seen = [], set()
    for err in errors:
        loc = tuple(err["loc"])
        if loc and _UNION_TAG.fullmatch(str(loc[-1])) and any(
                tuple(o["loc"])[:-1] == loc[:-1] and tuple(o["loc"]) != loc and o.get("input") is err.get("input")
                for o in errors):
            loc = loc[:-1]                  # a union member's tag (same input, a type's name): the field itself
        if loc in seen:
            continue
        seen.add(loc)
        out.append({**err, "loc": loc})
    return out


def parse_config(data: dict | None, source: str = "<config>") -> RunConfig:
    """Validate plain data; raise ConfigError naming the first bad field."""
    try:
        cfg = RunConfig.model_validate(data or {})
    except ValidationError as e:
        errors = _one_per_field(e.errors())
        err = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        loc = f"{_fmt_loc(err['loc'])}: " if err["loc"] else ""     # whole-config checks name their fields
        raise ConfigError(f"{source}: {loc}{msg}{more}") from None
    from cosim import plugins  # late: backends import simulators lazily
    for i, n in enumerate(cfg.spiking_nodes):
        try:
            spec = plugins.get(n.backend)
            params = spec.params_model().model_validate(n.params or {})
            dt = spec.dt_ms(params)
            if dt is not None:
                _require_whole(cfg.tvb.dt_ms, dt, f"{spec.dt_param}: {dt} ms does not divide tvb.dt_ms ({cfg.tvb.dt_ms} ms)")
        except plugins.UnknownBackend as e:
            raise ConfigError(f"{source}: spiking_nodes[{i}].backend: {e}") from None
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(f"{source}: spiking_nodes[{i}].params.{_fmt_loc(err['loc'])}: "
                              f"{err['msg'].removeprefix('Value error, ')}") from None
        except ValueError as e:
            raise ConfigError(f"{source}: spiking_nodes[{i}].params.{e}" if spec.dt_param and str(e).startswith(spec.dt_param)
                              else f"{source}: spiking_nodes[{i}].params: {e}") from None
        if n.mpi is not None:
            _check_mpi(n, spec, params, f"{source}: spiking_nodes[{i}].mpi")
    return cfg


def _check_mpi(n: NodeEntry, spec, params, where: str) -> None:
    """``mpi`` needs a backend that runs on several ranks, and hosts with a slot for each rank."""
    if not spec.mpi_param:
        raise ConfigError(f"{where}: backend {n.backend!r} does not run under MPI; remove mpi")
    ranks = spec.mpi_ranks(params)
    assert n.mpi is not None
    for a in n.mpi.args:
        if a.split("=")[0] in _MPI_RANK_OPTS:
            raise ConfigError(f"{where}.args: {a!r}: the rank count is params.{spec.mpi_param} ({ranks}), "
                              "not an mpiexec argument")
    if ranks < 2:
        raise ConfigError(f"{where}: the node runs on one rank (params.{spec.mpi_param} = {ranks}), so not "
                          f"under mpiexec; raise params.{spec.mpi_param} or remove mpi")
    if n.mpi.hosts and n.mpi.slots() < ranks:
        raise ConfigError(f"{where}.hosts: {n.mpi.slots()} slot(s) for {ranks} ranks "
                          f"(params.{spec.mpi_param}); give slots as HOST:SLOTS")


def load_config(path: str | Path | None) -> RunConfig:
    """Load YAML (.yaml/.yml) or TOML (.toml); None gives the documented default example."""
    if path is None:
        return parse_config({}, "<default>")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_text()
        data = tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'YAML'}: {first}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return parse_config(_resolve_paths(data or {}, p.parent), str(p))


def _resolve_paths(data: dict, base: Path) -> dict:
    """Relative file paths in a config mean "next to the config file" when such a file exists.
    Which backend params are paths is the backend's to say (``BackendSpec.path_params``)."""
    def fix(holder: dict, key: str) -> None:
        v = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(v, str) and v != "default" and not Path(v).is_absolute() and (base / v).exists():
            holder[key] = str((base / v).resolve())
    fix(data.get("tvb") or {}, "connectivity")
    from cosim import plugins
    for node in data.get("spiking_nodes") or []:
        if not isinstance(node, dict) or not isinstance(node.get("params"), dict):
            continue
        try:
            spec = plugins.get(node.get("backend") or NodeEntry.model_fields["backend"].default)
        except plugins.UnknownBackend:
            continue                      # validation names the unknown backend
        for dotted in spec.path_params:
            *parents, key = dotted.split(".")
            holder = node["params"]
            for part in parents:
                holder = holder.get(part) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                fix(holder, key)
    return data


def check_files(cfg: RunConfig, source: str = "<config>") -> None:
    """Files the run reads, checked where they will be read (`cosim validate`, `cosim run`): a
    coordinator on another machine need not see the TVB node's connectivity."""
    c = cfg.tvb.connectivity
    if c != "default" and not Path(c).expanduser().is_file():
        raise ConfigError(f"{source}: tvb.connectivity: file not found: {c!r} (use 'default' or a TVB connectivity zip)")
    if c != "default":
        import zipfile
        if not zipfile.is_zipfile(Path(c).expanduser()):    # cheap (`cosim run` refuses it before any service starts)
            raise ConfigError(f"{source}: tvb.connectivity: {c!r} is not a zip file (use 'default' or a TVB "
                              f"connectivity zip)")


def check_nodes(cfg: RunConfig, source: str = "<config>", build_only: bool = False, progress=None,
                deep: bool = False) -> None:
    """Each backend's own deeper checks (``BackendSpec.check``: model files, populations,
    mechanisms; ``BackendSpec.build`` with ``build_only``), run where the nodes will run
    (`cosim validate`, `cosim build`, `cosim run` before any service starts). ``progress(node)``
    gives a callback ``(done, total, what)`` for long work such as compiling mechanisms. ``deep``
    (`cosim validate`): also each backend's ``validate``, which builds the network the run would."""
    from cosim import plugins
    for i, n in enumerate(cfg.spiking_nodes):
        spec = plugins.get(n.backend)
        if cfg.run.checkpoint is not None and not spec.checkpoint:
            raise ConfigError(f"{source}: spiking_nodes[{i}].backend: {n.backend!r} cannot checkpoint "
                              f"(run.checkpoint is set; remove it or use a backend that can)")
        if cfg.run.checkpoint is not None:
            why = getattr(spec.params_model().model_validate(n.params or {}), "cannot_checkpoint", lambda: None)()
            if why:
                raise ConfigError(f"{source}: spiking_nodes[{i}].params: {n.backend!r} cannot checkpoint with {why}")
        refs = [spec.build] if build_only else [spec.check] + ([spec.validate] if deep else [])
        for ref in refs:
            if ref and not spec.missing():
                _check_one(plugins._load(ref), i, n, spec, cfg, source, progress)


def _check_one(fn, i: int, n, spec, cfg: RunConfig, source: str, progress) -> None:
    """One backend hook on one node entry; its refusal becomes one line naming the node."""
    try:
        fn(n, cfg, source, progress(n.name) if progress else None)
    except ValueError as e:     # the backend's one-line refusal (a model error, a value it cannot run)
        if isinstance(e, ConfigError) and not isinstance(e, ModelError):
            raise               # already names its field
        msg = str(e)
        head = msg.split(":", 1)[0]
        if ":" in msg and head.split(".")[0] in spec.params_model().model_fields and " " not in head:
            raise ConfigError(f"{source}: spiking_nodes[{i}].params.{msg}") from None   # names a param
        raise ConfigError(f"{source}: spiking_nodes[{i}] ({n.name}): {msg}") from None
    except Exception as e:      # noqa: BLE001  a model the simulator cannot digest, or a bug: keep the traceback
        import tempfile
        import traceback
        with tempfile.NamedTemporaryFile("w", prefix="cosim-traceback-", suffix=".txt", delete=False) as f:
            traceback.print_exception(e, file=f)
        first = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"{source}: spiking_nodes[{i}] ({n.name}): loading the model failed: "
                          f"{type(e).__name__}: {first} (full traceback in {f.name})") from None


def apply_overrides(cfg_path: str | None, sets: list[str]) -> RunConfig:
    """The config at ``cfg_path`` (None: the documented default) with ``--set KEY=VALUE`` overrides
    (YAML values; dotted keys, list indices as numbers); ConfigError names a bad override."""
    cfg = load_config(cfg_path)
    if not sets:
        return cfg
    data = cfg.model_dump(mode="json", exclude_unset=True)   # keep "unset" so defaults stay defaults
    full = cfg.model_dump(mode="json")
    for s in sets:
        if "=" not in s:
            raise ConfigError(f"--set {s!r}: expected KEY=VALUE")
        key, val = s.split("=", 1)
        node, parts = data, key.split(".")
        ref: Any = full
        try:
            for part in parts[:-1]:
                if isinstance(node, list):
                    node, ref = node[int(part)], ref[int(part)]
                    continue
                ref = ref.get(part) if isinstance(ref, dict) else None
                if part not in node:   # lists come whole from the defaults; mappings start empty
                    node[part] = list(ref) if isinstance(ref, list) else {}
                node = node[part]
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = yaml.safe_load(val)
            else:
                node[last] = yaml.safe_load(val)
        except (ValueError, IndexError, TypeError, KeyError, yaml.YAMLError):
            raise ConfigError(f"--set {s!r}: no such place in the config") from None
    return parse_config(data, cfg_path or "<default>")


def dump_yaml(cfg: RunConfig) -> str:
    """The config as a YAML document (every field, defaults included): what a run folder keeps."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
