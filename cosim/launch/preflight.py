"""Checks of a run config that need more than the config itself: files, addresses, time steps and
the connectome (`cosim validate`, and `cosim run` before it creates the results folder).

Each raises `ConfigError` with one line naming the field. Everything here is also re-checked
where it matters at run time (the coordinator, the nodes); these make the mistakes visible
before a run starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cosim.config import ConfigError, RunConfig, address_problem, check_files


def check_address(addr: str, what: str) -> None:
    """A ZeroMQ endpoint: tcp://HOST:PORT, ipc://PATH or inproc://NAME."""
    why = address_problem(addr)
    if why:
        raise ConfigError(f"{what}: {why}")


def check_model_files(cfg: RunConfig, source: str) -> None:
    """Every file a spiking node's params name (its backend's ``path_params``, e.g. a model file)
    exists where it will be read."""
    from cosim import plugins
    for i, n in enumerate(cfg.spiking_nodes):
        spec = plugins.get(n.backend)
        for dotted in spec.path_params:
            v = plugins._get(n.params or {}, dotted)
            if isinstance(v, str) and not Path(v).expanduser().exists():
                raise ConfigError(f"{source}: spiking_nodes[{i}].params.{dotted}: not found: {v!r}")


def connectome_of(cfg: RunConfig) -> dict:
    """The weights and integer delays the whole-brain node will serve: the one the launcher will
    start (the noop stand-in when every spiking node is noop: its synthetic connectome)."""
    from cosim import plugins
    side = plugins.whole_brain(whole_brain_side(cfg))
    try:
        return side.load_connectome(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def whole_brain_side(cfg: RunConfig) -> str:
    """Which whole-brain side a local run starts: 'noop' when every spiking node is noop, else 'tvb'."""
    return "noop" if all(n.backend == "noop" for n in cfg.spiking_nodes) else "tvb"


def check_window(cfg: RunConfig, source: str, connectome: dict | None = None) -> None:
    """Spiking regions and coordinator.watch_regions exist, and run.lookahead windows of an explicit
    run.window_ms fit in the smallest integer delay between differently simulated regions
    (m·W <= D, PROTOCOL.md §3): what the coordinator would otherwise refuse only once every
    service has started."""
    con = connectome if connectome is not None else connectome_of(cfg)
    from cosim.config.regions import region_problem
    plain = cfg.model_dump(mode="json")      # what the pure checks take (as the coordinator's CONFIGURE)
    bad_region = region_problem(plain, con["weights"].shape[0])
    if bad_region:
        raise ConfigError(f"{source}: {bad_region[0]}: {bad_region[1]}")
    lag = 1 if cfg.run.lookahead == "auto" else int(cfg.run.lookahead)   # auto picks one that fits
    if cfg.run.window_ms is None and lag == 1:
        return
    from cosim.config.inter_service import window_limit_steps
    d, slack = window_limit_steps(plain, con["weights"], con["idelays"])
    if d is None:
        return
    from cosim.config.timing import lag_window_problem
    why = lag_window_problem(cfg.run.window_ms, lag, int(d), cfg.tvb.dt_ms)
    if why:
        raise ConfigError(f"{source}: {why[0]}: {why[1]}{slack}")


def needs_connectome(cfg: RunConfig) -> bool:
    """Whether `cosim run` loads the connectome before it starts anything (~2 s with TVB's): when
    an explicit window or lookahead could be refused by it (the defaults are causal by construction)."""
    return cfg.run.window_ms is not None or cfg.run.lookahead not in ("auto", 1)


#: backends whose default network couples this node's spiking regions E->E (params.inter_region)
INTER_REGION_BACKENDS = ("netpyne", "nest")


def split_coupling_note(cfg: RunConfig, connectome: dict | None = None) -> str | None:
    """One line naming the connected spiking regions that sit on *different* spiking services while
    their default networks would couple them E->E within one service (``inter_region``) and that
    are coupled only through rates across services: ``run.inter_service: rates``, or a service that
    cannot exchange spikes (cosim/config/inter_service.py; issue 25: 20 regions on one service gave
    3,999 spikes, on four services coupled by rates 1,232). None when nothing is split so."""
    from cosim.config.inter_service import cannot_spike
    mode = cfg.run.inter_service
    nets = [(n.name, set(n.regions), cannot_spike(n.model_dump(mode="json")) is None) for n in cfg.spiking_nodes
            if n.backend in INTER_REGION_BACKENDS and not (n.params or {}).get("model_file")
            and ((n.params or {}).get("inter_region") or {}).get("enabled", True)]
    if len(nets) < 2:
        return None
    w = (connectome if connectome is not None else connectome_of(cfg))["weights"]
    split = []
    for a, (na, ra, sa) in enumerate(nets):
        for nb, rb, sb in nets[a + 1:]:
            if mode != "rates" and sa and sb:
                continue                    # spikes travel between these two: the same network
            links = sum(1 for i in ra for j in rb if w[i, j] != 0 or w[j, i] != 0)
            if links:
                split.append(f"{na}/{nb} ({links} region pair(s))")
    if not split:
        return None
    why = "run.inter_service is 'rates'" if mode == "rates" else "one of each pair cannot exchange spikes"
    return ("spiking regions on different services are coupled through their rates only, not E->E as "
            f"within one service (inter_region; {why}): " + ", ".join(split) + "; the same regions on one "
            "service form a different network")


def check_run(cfg: RunConfig, source: str, connectome: bool = True) -> None:
    """Everything `cosim validate` checks beyond the config's own fields (addresses are checked
    by the config itself); `connectome=False` skips loading the connectivity (~2 s)."""
    check_files(cfg, source)
    check_model_files(cfg, source)
    if connectome:
        check_window(cfg, source)


def writable_dir(path: Path, what: str) -> None:
    """Create `path` (and parents) and make sure files can be written in it; ConfigError if not."""
    import os
    import tempfile
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".cosim-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{what}: cannot write to {str(path)!r}: {e.strerror or e}") from None


#: the lock file a run holds in its results folder for its whole life (fcntl.flock)
LOCK_NAME = ".cosim.lock"


def claim_dir(path: Path, what: str, auto: bool = False) -> tuple[Path, Any]:
    """Create (if needed) and lock results folder `path` for one run: the open lock file is
    returned with the folder and must stay open for the run's life (the lock goes with it, also
    when the process dies). Another run holding it: ConfigError naming the folder, and nothing
    in the folder is touched. `auto`: `path` is an automatic name; a folder that exists already
    (a run started in the same second) is never reused: `-2`, `-3`, ... is appended instead."""
    import fcntl
    import os
    if auto:
        base, i = path, 1
        while True:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.mkdir()
                break
            except FileExistsError:
                i += 1
                path = base.with_name(f"{base.name}-{i}")
            except OSError as e:
                raise ConfigError(f"{what}: cannot write to {str(path)!r}: {e.strerror or e}") from None
    writable_dir(path, what)
    f = open(path / LOCK_NAME, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        by = f" (launcher pid {holder})" if holder.isdigit() else ""
        raise ConfigError(f"{what}: {str(path)!r} is in use by another run{by}; "
                          f"choose another results folder") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return path, f
