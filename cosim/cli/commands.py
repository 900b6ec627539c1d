"""`cosim`: the command line. The only place that configures logging and turns errors into exit codes.

  cosim run [CONFIG]          the embedded default: every service as a local process
  cosim sweep [CONFIG] --grid KEY=V1,V2 --seeds N --out DIR   many runs on a local pool or a Dask cluster
  cosim resume RUN_DIR        continue a broken run from its last good checkpoint (run.checkpoint)
  cosim coordinator CONFIG    the coordinator alone (nodes connect to it)
  cosim tvb-node              the TVB node alone, pointed at a coordinator
  cosim spiking-node          a spiking node alone (backend from the config, or --backend)
  cosim validate CONFIG       check a config (and load each node's model, nothing simulated) and exit
  cosim build CONFIG          compile the nodes' mechanisms ahead (cached by content)
  cosim keys DIR              CURVE key pairs for the coordinator and nodes
  cosim backends              the installed spiking backends (plugins), with versions
  cosim report RUN_DIR        a run's summary and where its time went (cosim.results.breakdown)
  cosim watch [ADDRESS]       live view of a running co-simulation (PUB channel)
  cosim export RUN_DIR --nwb FILE    the run's spikes, rates and TVB time series as NWB

Exit codes: 0 completed, 1 run failed (a node or the coordinator), 2 bad configuration or
usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from cosim.config import apply_overrides, dump_yaml
from cosim.errors import (EXIT_FAILED, EXIT_OK, ConfigError, CosimError, Interrupted, PeerTimeout, RemoteError,
                          RunAborted, RunFailed, RunInterrupted, RunRefused, SweepFailed, UnknownBackend)
from cosim.runtime.logs import keep_tvb_off_logging
from cosim.runtime.progress import compile_progress

log = logging.getLogger("cosim")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def setup_logging(level: str, who: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format=f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("tvb", "numba", "matplotlib", "h5py", "PIL", "numexpr", "distributed", "tornado", "bokeh"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    keep_tvb_off_logging()



def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers separated by commas, e.g. 33,71") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cosim", description="TVB ⇄ NetPyNE/NEURON co-simulation over ZeroMQ")
    p.add_argument("--log-level", default=_env("COSIM_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run coordinator and nodes as local processes (the embedded default)")
    r.add_argument("config", nargs="?", help="YAML/TOML run config; default: the documented example")
    r.add_argument("--out", help="results directory for this run (default: <run.results_dir>/<name>_<time>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set run.duration_ms=200 (YAML value)")
    r.add_argument("--no-plots", action="store_true")

    sw = sub.add_parser("sweep", help="a parameter sweep: every combination of --grid values × --seeds, each an "
                                      "ordinary run in DIR/runs/, on a local pool or a Dask cluster")
    sw.add_argument("config", nargs="?", help="YAML/TOML run config; default: the documented example")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a config key and its values (YAML, like --set), e.g. --grid tvb.coupling_a=0.002,0.004")
    sw.add_argument("--zip", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="keys that vary together (variant i sets each to its i-th value; as many values each), "
                         "e.g. --zip tvb.model.class=A,B --zip tvb.coupling_a=0.1,0.2: 2 variants, not 4")
    sw.add_argument("--seeds", help="N (run.seed = 0..N-1) or seeds separated by commas; default: the config's")
    where = sw.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="runs at once on this machine (a Dask LocalCluster; default 1)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster, e.g. tcp://HOST:8786 "
                                                              "(DIR and CONFIG on a filesystem its workers share)")
    sw.add_argument("--out", required=True, help="the sweep's folder: runs/, sweep.nc, sweep.csv, sweep.png")
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    sw.add_argument("--transient-ms", type=float, default=0.0, help="left out of the per-run measures")
    sw.add_argument("--plots", action="store_true", help="also draw each run's figures")
    sw.add_argument("--cold", action="store_true", help="start every service as a fresh process (default: forked "
                                                        "from a process that imported the simulators once per worker)")

    rs = sub.add_parser("resume", help="continue a broken run from its last good checkpoint, into the same folder")
    rs.add_argument("run_dir")
    rs.add_argument("--no-plots", action="store_true")

    c = sub.add_parser("coordinator", help="run the coordinator alone")
    c.add_argument("config", nargs="?", default=_env("COSIM_CONFIG"))
    c.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last good checkpoint "
                                                        "(config: RUN_DIR/config.yaml unless given)")
    c.add_argument("--router", default=_env("COSIM_ROUTER"), help="bind address, e.g. tcp://*:5555")
    c.add_argument("--pub", default=_env("COSIM_PUB"), help="bind address, e.g. tcp://*:5556")
    c.add_argument("--out", default=_env("COSIM_RESULTS"), help="results directory")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--no-plots", action="store_true")
    # `cosim run`/`resume` pass their pid: the results folder's lock (.cosim.lock) is theirs already
    c.add_argument("--launched-by", type=int, default=None, help=argparse.SUPPRESS)

    for name, role in (("tvb-node", "tvb"), ("spiking-node", "spiking")):
        n = sub.add_parser(name, help=f"run a {role} node alone")
        n.add_argument("--coordinator", default=_env("COSIM_COORDINATOR", "tcp://127.0.0.1:5555"),
                       help="the coordinator's ROUTER address")
        n.add_argument("--name", default=_env("COSIM_NODE_NAME", "tvb" if role == "tvb" else "spiking"))
        n.add_argument("--out", default=_env("COSIM_RESULTS"), help="results directory (default: the coordinator's)")
        n.add_argument("--keys", default=_env("COSIM_KEYS"), help="CURVE keys folder (enables encryption)")
        n.add_argument("--resume", metavar="RUN_DIR", help="only join a resumed run (results folder: RUN_DIR "
                                                            "unless --out)")
        n.add_argument("--register-timeout-ms", type=int, default=int(_env("COSIM_REGISTER_TIMEOUT_MS") or "30000"),
                       help="how long to wait for the coordinator to configure this node")
        n.add_argument("--data-bind", default=_env("COSIM_DATA_BIND"),
                       help="where this node's data inbox listens (protocol 3: data goes node to node); default "
                            "loopback for a loopback coordinator, else every interface, on a free port")
        n.add_argument("--data-advertise", default=_env("COSIM_DATA_ADVERTISE"),
                       help="the address other nodes reach the inbox at (default: the bound port on this machine's "
                            "address towards the coordinator); e.g. behind NAT or a proxy")
        if role == "tvb":
            n.add_argument("--backend", default=_env("COSIM_TVB_BACKEND", "tvb"),
                           help="the whole-brain side (entry points cosim.whole_brain): 'tvb', or 'noop', which "
                                "serves a synthetic connectome and simulates nothing (protocol benchmarks)")
        if role == "spiking":
            n.add_argument("--backend", default=_env("COSIM_BACKEND", ""),
                           help="refuse to run any other backend (default: whatever the config says)")

    b = sub.add_parser("backends", help="list the installed spiking backends (plugins) with versions")
    b.add_argument("--json", action="store_true")

    mo = sub.add_parser("models", help="list the whole-brain models with a spiking interface (entry points cosim.models)")
    mo.add_argument("--json", action="store_true")

    v = sub.add_parser("validate", help="validate a config file")
    v.add_argument("config")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="validate with this override, as `cosim run --set` would apply it")

    b = sub.add_parser("build", help="compile the spiking nodes' mechanisms ahead (cached by content)")
    b.add_argument("config")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    rp = sub.add_parser("report", help="a run's summary and where its time went (per service); draws breakdown.png")
    rp.add_argument("run_dir")
    rp.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    rp.add_argument("--no-plot", action="store_true")

    w = sub.add_parser("watch", help="live view of a running co-simulation (from the coordinator's PUB channel)")
    w.add_argument("address", nargs="?", help="PUB address tcp://HOST:PORT or a run directory "
                                              "(default: the newest running run under ./results)")
    w.add_argument("--once", action="store_true", help="print one snapshot and exit")
    w.add_argument("--regions", type=_int_list, help="only these regions, e.g. 33,71")
    w.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds of silence")
    w.add_argument("--keys", default=_env("COSIM_KEYS"), help="CURVE keys folder (when the run uses CURVE)")
    w.add_argument("--key-name", default="watch", help="whose key pair to use (`cosim keys DIR watch` makes one)")

    e = sub.add_parser("export", help="convert a run's results to another format")
    e.add_argument("run_dir")
    e.add_argument("--nwb", required=True, metavar="FILE", help="write an NWB file (pynwb)")

    k = sub.add_parser("keys", help="generate CURVE key pairs")
    k.add_argument("dir")
    k.add_argument("names", nargs="*", default=["coordinator", "tvb", "spiking"])
    return p


def cmd_run(a) -> int:
    """`cosim run`: every service as a local process, a progress bar, the summary."""
    from tqdm import tqdm
    from cosim.launch.run import start
    from cosim.runtime.startup import process_start_time
    a.launched_at = process_start_time()      # the start-up the user waits for begins with this command
    return _follow(start(a), tqdm)


def cmd_sweep(a) -> int:
    """`cosim sweep`: a grid × seeds of ordinary runs (cosim.launch.sweep); exit 1 if any failed."""
    from tqdm import tqdm
    from cosim.launch.sweep import parse_grid, parse_seeds, parse_zip, run_sweep, summary_line
    ds = run_sweep(a.config, parse_grid(a.grid), parse_seeds(a.seeds), a.out, sets=a.set, workers=a.workers,
                   scheduler=a.scheduler, plots=a.plots, transient_ms=a.transient_ms, log_level=a.log_level,
                   warm=not a.cold, bar_cls=tqdm, zipped=parse_zip(a.zip))
    print(summary_line(ds))
    print(f"cosim sweep: results in {a.out}/sweep.nc (cosim.load_sweep), sweep.csv, sweep.png")
    return EXIT_OK


def cmd_resume(a) -> int:
    """`cosim resume RUN_DIR`: every service started again with `--resume`, on fresh ports."""
    from tqdm import tqdm
    from cosim.launch.run import start_resume
    return _follow(start_resume(a), tqdm)


def _follow(job, bar_cls) -> int:
    from cosim.results.report import format_summary
    try:
        summary = job.supervise(bar_cls=bar_cls)
    except KeyboardInterrupt:
        job.stop()
        job.reap()
        raise RunInterrupted("interrupted", out=job.out) from None
    finally:
        job.reap()
    print(format_summary(summary))
    return EXIT_OK


def held_by_launcher(out, pid: int | None) -> bool:
    """The results folder's lock is held by launcher `pid` (`cosim run` / `cosim resume`, which
    start this coordinator): its lock file names that pid and cannot be taken now."""
    import fcntl
    from cosim.launch.preflight import LOCK_NAME
    if pid is None:
        return False
    try:
        with open(out / LOCK_NAME) as f:
            if f.read().strip() != str(pid):
                return False
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True             # held, by the launcher that named itself
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False                # the launcher is gone: take it ourselves
    except OSError:
        return False


def cmd_coordinator(a) -> int:
    from pathlib import Path
    from cosim.launch.preflight import check_address, writable_dir
    from cosim.launch.service import run_coordinator
    from cosim.runtime.progress import ProgressBar
    if a.resume:
        from cosim.runtime.checkpoint import resume_target
        a.config, a.out = resume_target(a.resume, a.config, a.out)
    cfg = apply_overrides(a.config, a.set)
    updates = {k: v for k, v in (("router", a.router), ("pub", a.pub)) if v}
    for k, v in updates.items():
        check_address(v, f"--{k}")
    if updates:
        cfg.coordinator = cfg.coordinator.model_copy(update=updates)
    out = Path(a.out or Path(cfg.run.results_dir) / cfg.run.name)
    what = "--out" if a.out else "run.results_dir"
    writable_dir(out, what)
    lock = None
    if not held_by_launcher(out, a.launched_by):
        # a hand-started coordinator owns its results folder as `cosim run` does: one run per folder
        from cosim.launch.preflight import claim_dir
        out, lock = claim_dir(out, what)
    if not a.resume:       # a resumed run keeps the config it started with
        (out / "config.yaml").write_text(dump_yaml(cfg))
    else:
        from cosim.config import check_nodes
        check_nodes(cfg, a.config)       # e.g. a backend that cannot checkpoint
    bar = ProgressBar(cfg.run.progress)
    try:
        from cosim.runtime.startup import process_start_time
        run_coordinator(cfg, out, resume=bool(a.resume), plots=not a.no_plots, keys_dir=_env("COSIM_KEYS"),
                        progress=bar.update, started_at=process_start_time())
    except RunFailed as e:
        e.out = out
        raise
    finally:
        bar.close()
        if lock is not None:
            lock.close()
    return EXIT_OK


def cmd_node(a, role: str) -> int:
    from cosim.launch.preflight import check_address
    from cosim.launch.service import run_node
    check_address(a.coordinator, "--coordinator")
    backend = getattr(a, "backend", "") or ""
    mpi = _mpi_world()
    if role == "spiking" and mpi is not None and mpi.Get_rank() > 0:
        from cosim import plugins
        if not backend:
            raise ConfigError(f"MPI rank {mpi.Get_rank()}: --backend is required under mpiexec "
                              f"(followers cannot ask the coordinator)")
        plugins.adapter_class(backend)().follow()
        return EXIT_OK
    from cosim.runtime.startup import process_start_time
    try:
        run_node(a.name, role, a.coordinator, backend=backend, keys=a.keys, results_dir=a.out or a.resume,
                 resume=bool(a.resume), register_timeout_ms=a.register_timeout_ms, data_bind=a.data_bind,
                 data_advertise=a.data_advertise, started_at=process_start_time())
    finally:
        if mpi is not None:
            _mpi_release(a)
    return EXIT_OK


def _mpi_world():
    """mpi4py's COMM_WORLD when started under mpiexec with >1 rank (imported before NEURON)."""
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)
    if size <= 1:
        return None
    from mpi4py import MPI
    return MPI.COMM_WORLD


def _mpi_release(a) -> None:
    """Rank 0 left the run (ended or failed): make sure followers are released."""
    try:
        from cosim import plugins
        cls = plugins.adapter_class(getattr(a, "backend", ""))
        release = getattr(cls, "release_followers", None)
        if release:
            release()
    except Exception:
        pass


def cmd_validate(a) -> int:
    from cosim.launch.preflight import check_run
    from cosim.config import check_nodes
    cfg = apply_overrides(a.config, a.set)
    check_run(cfg, a.config)
    check_nodes(cfg, a.config, deep=True)     # builds each node's network as the run would, simulates nothing
    print(f"{a.config}: ok ({len(cfg.spiking_nodes)} spiking node(s), regions {cfg.spiking_regions()})")
    return EXIT_OK


def cmd_build(a) -> int:
    from cosim.config import check_nodes
    cfg = apply_overrides(a.config, a.set)
    check_nodes(cfg, a.config, build_only=True, progress=compile_progress)
    print(f"{a.config}: mechanisms built (cache: $COSIM_NRNMECH_CACHE or ~/.cache/cosim/nrnmech)")
    return EXIT_OK


def cmd_backends(a) -> int:
    import json
    from cosim import plugins
    rows = plugins.describe()
    if a.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    for r in rows:
        sims = ", ".join(f"{k} {v}" for k, v in r["simulators"].items())
        state = "ready" if r["ready"] else f"not installed: {', '.join(r['missing'])} ({r['install']})"
        par = "/".join(x for x in ("MPI" if r["mpi"] else "", "threads" if r["threads"] else "") if x)
        print(f"{r['name']:<10} {r['distribution']} {r['version']}  [{state}]" + (f"  {sims}" if sims else "")
              + (f"  parallel: {par}" if par else ""))
        if r["description"]:
            print(f"{'':<10} {r['description']}")
    return EXIT_OK


def cmd_models(a) -> int:
    import json
    from cosim.config import interfaces
    rows: list[dict[str, Any]] = [
        {"model": name, "rate_hz": i.rate_doc, "proxy_vars": list(i.proxy_vars), "transformer": i.transformer_doc,
         "coupling": i.coupling_hint, "coupling_rate": i.coupling_rate_doc or None, "citation": i.citation}
        for name, i in sorted(interfaces.installed().items())]
    if a.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    for r in rows:
        print(f"{r['model']:<22} to spiking: {r['rate_hz']}")
        print(f"{'':<22} from spiking: {', '.join(r['proxy_vars'])} <- {r['transformer']}")
        print(f"{'':<22} Difference/Kuramoto: coupling/R_e = "
              + (f"{r['coupling_rate']} (Hz*weight; c: TVB's coupling)" if r["coupling_rate"] else "not declared"))
    print("any other tvb-library model: declare tvb.interface in the config (docs/models.md)")
    return EXIT_OK


def cmd_keys(a) -> int:
    from cosim.runtime import security
    for path in security.generate(a.dir, a.names):
        print(path)
    return EXIT_OK


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


COMMANDS = {
    "run": cmd_run, "sweep": cmd_sweep, "resume": cmd_resume, "coordinator": cmd_coordinator,
    "tvb-node": lambda a: cmd_node(a, "tvb"), "spiking-node": lambda a: cmd_node(a, "spiking"),
    "watch": lambda a: cmd_watch(a), "export": lambda a: cmd_export(a), "validate": cmd_validate,
    "build": cmd_build, "keys": cmd_keys, "backends": cmd_backends, "models": cmd_models,
    "report": lambda a: cmd_report(a),
}


def cmd_watch(a) -> int:
    from cosim.results.watch import resolve_address, watch
    address, _ = resolve_address(a.address)
    return watch(address, once=a.once, timeout_s=a.timeout, regions=a.regions, keys=a.keys, key_name=a.key_name)


def cmd_export(a) -> int:
    try:
        from cosim.results.nwb import export_nwb
    except ImportError as e:
        raise ConfigError(f"{e.name or e} is not installed (pip install 'brain-cosim[nwb]')") from None
    try:
        print(export_nwb(a.run_dir, a.nwb))
    except ImportError as e:
        raise ConfigError(f"{e.name or e} is not installed (pip install 'brain-cosim[nwb]')") from None
    except (FileNotFoundError, LookupError) as e:
        raise ConfigError(str(e)) from None
    return EXIT_OK


def cmd_report(a) -> int:
    from cosim.results.report import report
    try:
        return report(a.run_dir, as_json=a.json, plot=not a.no_plot)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def report_error(e: BaseException, a) -> int:
    """The one place an error becomes what the user reads and the process's exit code."""
    node = a.cmd in ("tvb-node", "spiking-node")
    who = f"cosim {a.name}" if node else ("cosim" if a.cmd in ("run", "resume", "coordinator", "validate", "build",
                                                               "keys", "backends", "models") else f"cosim {a.cmd}")
    say = lambda line: print(line, file=sys.stderr)   # noqa: E731
    if isinstance(e, KeyboardInterrupt):
        e = Interrupted("interrupted")
    if not isinstance(e, CosimError):      # a bug or an unexpected state: traceback to the log, one line here
        from cosim.runtime.node import traceback_note
        log.error("%s: unexpected error", who, exc_info=e)
        say(f"{who}: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} ({traceback_note()})")
        return EXIT_FAILED
    out = getattr(e, "out", None)
    if isinstance(e, UnknownBackend):
        say(f"{who}: {e}")
    elif isinstance(e, ConfigError):
        say(f"{who}: configuration error: {e}")
        if isinstance(e, RunRefused) and e.removed:
            say(f"{who}: run refused before its first window; no results folder kept ({out})")
        elif isinstance(e, RunRefused) and out is not None:
            say(f"{who}: results and logs are in {out}")
    elif isinstance(e, SweepFailed):
        n = len(e.failures)
        say(f"{who}: {str(e).split(':', 1)[0]}; the others completed (results in {out}/sweep.nc)")
        for folder, reason in e.failures.items():
            say(f"{who}:   {folder}: {reason}")
        say(f"{who}: run the same command again to rerun the {n} failed run{'s' if n > 1 else ''} only")
    elif isinstance(e, (RunInterrupted, Interrupted)):
        if getattr(e, "no_window_ran", False):
            say(f"{who}: interrupted ({e}); no window completed" + (f": no results (its folder: {out})" if out else ""))
        else:
            say(f"{who}: interrupted" + (f"; results up to the last completed window are in {out}" if out else ""))
    elif isinstance(e, RunFailed):
        say(f"{who}: run failed: {e}")
        logs = " and logs" if a.cmd in ("run", "resume") else ""
        if out is not None and e.no_window_ran:
            say(f"{who}: no window completed: no results (config{logs} in {out})")
        elif out is not None:
            say(f"{who}: results up to the last completed window{logs} are in {out}")
    elif isinstance(e, RunAborted):
        say(f"{who}: run aborted by the coordinator: {e}")
    elif isinstance(e, RemoteError):
        say(f"{who}: refused by the coordinator: {e}")
    elif isinstance(e, PeerTimeout):       # CoordinatorLost included
        say(f"{who}: {e}" + ("" if getattr(e, "nothing_written", False) else "; partial results kept"))
    else:
        say(f"{who}: {e}")
    return e.exit_code


#: the command this process ran (main); services end with exit_fast
_ran: str | None = None
SERVICES = ("coordinator", "tvb-node", "spiking-node")


def exit_fast(code: int):
    """End the process with `code`. A service (coordinator, node) not under MPI skips the
    interpreter's teardown of every module, which takes 1-2 s with TVB, NEURON and numba loaded
    and is on the critical path of `cosim run` (it waits for its services to exit): ZeroMQ's
    context is destroyed first (what was sent still leaves, up to each socket's linger, at most
    1 s), the atexit handlers run (trace flush, logging), stdio is flushed, then os._exit. Results
    files are closed by then (each node closes its own before FINISHED). Anything else exits normally."""
    mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1) > 1
    if _ran not in SERVICES or mpi or os.environ.get("COSIM_SLOW_EXIT"):
        sys.exit(code)
    try:
        zmq = sys.modules.get("zmq")
        if zmq is not None:
            zmq.Context.instance().destroy(linger=1000)
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code if isinstance(code, int) else 1)


def main(argv: list[str] | None = None) -> int:
    global _ran
    a = build_parser().parse_args(argv)
    _ran = a.cmd
    who = {"tvb-node": getattr(a, "name", "tvb"), "spiking-node": getattr(a, "name", "spiking")}.get(a.cmd, a.cmd)
    setup_logging(a.log_level, who)
    # SIGTERM ends a service the way Ctrl-C does: abort the run, keep the results
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return COMMANDS[a.cmd](a) or EXIT_OK
    except BaseException as e:   # noqa: BLE001  (SystemExit passes: argparse, sys.exit)
        if isinstance(e, SystemExit):
            raise
        return report_error(e, a)


if __name__ == "__main__":
    sys.exit(main())
