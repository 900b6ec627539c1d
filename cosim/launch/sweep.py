"""Parameter sweeps: many ordinary co-simulations on a local pool or a Dask cluster (`cosim sweep`).

    cosim sweep CONFIG --grid tvb.coupling_a=0.002,0.004 --seeds 2 --workers 2 --out study/
    cosim.sweep("my.yaml", grid={"tvb.coupling_a": [0.002, 0.004]}, seeds=2, workers=2, out="study/")

The runs are the cartesian product of the grid values (each key is a `--set` key, each value a
YAML value), the variants and the seeds (`run.seed`). Variants (`--zip KEY=V1,V2 --zip
KEY2=W1,W2`, ``zipped={KEY: [...], KEY2: [...]}``) are keys that vary together, not as a
product: variant i sets every zipped key to its i-th value (all lists equally long), e.g. a
model and the coupling that suits it. Each is an ordinary `cosim run` (cosim.launch.run.start:
its own coordinator and nodes as processes, free loopback ports) in its own folder,
`OUT/runs/<hash>/`, named by the hash of everything that determines its results
(cosim.runtime.checkpoint.config_hash): a crash stays in its run, and a second invocation skips
every run whose folder says it completed (`sweep_run.json`) and runs again the failed or missing
ones. Each run is one Dask task (dask.distributed): a `LocalCluster` of `--workers N` worker
processes, or an existing cluster at `--scheduler tcp://HOST:PORT`, whose workers start each
run's services on their own host (OUT and CONFIG at the same path there: a shared filesystem).
A worker process is the run's launcher and stays up between runs; it forks each run's services
from a zygote that imported cosim and the simulators once (cosim.launch.zygote; `warm=False`,
`--cold`: fresh processes), so the imports are paid once per worker, not once per run. A run's
record (`runs/<hash>/sweep_run.json`) says which of its services were forked (`forked`) and where
the worker's time went (`times`: launch, the coordinator's life, the services' exit, the measures).

The per-run summary measures (run_metrics) are gathered into one xarray dataset with a `run`
dimension and a coordinate per grid key and for the seed, written to `OUT/sweep.nc` (netCDF4 via
h5netcdf; read back with `cosim.load_sweep(OUT)`), plus `OUT/sweep.csv` (one row per run) and
`OUT/sweep.png`. A sweep in which any run failed raises SweepFailed (exit 1) naming each failed
run and its reason, after writing the dataset of the whole sweep (failed runs hold NaN).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from cosim.errors import ConfigError, CosimError, RunInterrupted, SweepFailed

#: the band of `beta_power` (Hz)
BETA_HZ = (13.0, 30.0)
RECORD = "sweep_run.json"


# ---- the runs of a sweep ----------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """'a,[1, 2],{x: 3}' → ['a', '[1, 2]', '{x: 3}']: commas inside brackets or braces stay."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def parse_grid(items: list[str], option: str = "--grid") -> dict[str, list]:
    """`--grid KEY=V1,V2,...` options → {key: [values]} (values parsed as YAML, like --set)."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{option} {item!r}: expected KEY=V1,V2,...")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key or not text.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=V1,V2,...")
        if key in grid:
            raise ConfigError(f"{option} {key}: given twice")
        try:
            grid[key] = [yaml.safe_load(v) for v in split_values(text)]
        except yaml.YAMLError as e:
            raise ConfigError(f"{option} {key}: {str(e).splitlines()[0]}") from None
    return grid


def parse_zip(items: list[str]) -> dict[str, list]:
    """`--zip KEY=V1,V2 --zip KEY2=W1,W2` → {key: [values]}, every key with as many values."""
    zipped = parse_grid(items, "--zip")
    check_zip(zipped)
    return zipped


def check_zip(zipped: dict[str, list], grid: dict[str, list] | None = None) -> None:
    """Zipped keys vary together: as many values each, and none also a grid key."""
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError("--zip: the zipped keys vary together and need as many values each; got "
                          + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
    both = sorted(set(zipped) & set(grid or {}))
    if both:
        raise ConfigError(f"--zip {both[0]}: also a --grid key (a key is zipped or in the grid, not both)")


def parse_seeds(text: str | int | list | None) -> list[int] | None:
    """`--seeds 3` → [0, 1, 2]; `--seeds 4,7` → [4, 7]; None → the config's run.seed."""
    if text is None:
        return None
    if isinstance(text, int):
        vals = list(range(text))
    elif isinstance(text, (list, tuple, range)):
        vals = [int(s) for s in text]
    else:
        try:
            vals = [int(s) for s in str(text).split(",")]
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: a count (3 → seeds 0, 1, 2) or seeds separated by commas") from None
        if len(vals) == 1:
            vals = list(range(vals[0]))
    if not vals:
        raise ConfigError("--seeds: at least one seed")
    return vals


def _set_line(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"     # JSON is YAML: exactly like --set key=value


def plan(config: str | None, grid: dict[str, list], seeds: list[int] | None, base_sets: list[str],
         out: Path, zipped: dict[str, list] | None = None) -> list[dict]:
    """One task per run, in grid order (the first key varies slowest, then the variants of the
    zipped keys, the seed fastest)."""
    from cosim.config import apply_overrides
    from cosim.runtime.checkpoint import config_hash
    zipped = dict(zipped or {})
    check_zip(zipped, grid)
    apply_overrides(config, base_sets)      # the config and the sweep's own --set must load
    keys = list(grid)
    variants = [dict(zip(zipped, vs)) for vs in zip(*zipped.values())] if zipped else [{}]
    tasks: list[Any] = []
    for combo in itertools.product(*(grid[k] for k in keys), variants, seeds if seeds is not None else [None]):
        values, seed = {**dict(zip(keys, combo[:-2])), **combo[-2]}, combo[-1]
        sets = list(base_sets) + [_set_line(k, v) for k, v in values.items()]
        if seed is not None:
            sets.append(_set_line("run.seed", seed))
        task = {"index": len(tasks), "config": config, "sets": sets, "values": values, "seed": seed,
                "error": None}
        try:
            cfg = apply_overrides(config, sets)
            task["hash"] = config_hash(cfg.model_dump(mode="json"))
            if seed is None:
                task["seed"] = cfg.run.seed
        except ConfigError as e:        # a grid value the schema refuses: this run fails, the others run
            import hashlib
            task["hash"] = hashlib.sha256(json.dumps([config, sets]).encode()).hexdigest()
            task["error"] = str(e)
        task["folder"] = str(out / "runs" / task["hash"][:16])
        tasks.append(task)
    return tasks


# ---- one run (a Dask task, in a worker process) -----------------------------------------------
def execute(task: dict, plots: bool = False, transient_ms: float = 0.0, log_level: str = "INFO",
            warm: bool = True) -> dict:
    """Run one task as an ordinary `cosim run` into its folder; its record (status, reason, metrics).
    Never raises for a run that fails: the failure is the record's `reason`."""
    from cosim.config import apply_overrides
    from cosim.launch.run import start
    from cosim.launch.starters import LocalProcess, Warm
    folder = Path(task["folder"])
    if folder.exists():                 # an earlier attempt that failed or was killed
        shutil.rmtree(folder)
    record = {k: task[k] for k in ("index", "hash", "values", "seed", "sets", "folder")}
    record.update(status="failed", reason=None, exit_code=None, metrics=None, host=os.uname().nodename,
                  worker=_worker_address(), transient_ms=transient_ms)
    t0 = time.perf_counter()
    said = io.StringIO()
    # where the run's time went in this worker (s): checks and services started, the coordinator's
    # life (start-up, loop, results), the services' exit, the run's measures
    times = record["times"] = {}

    since = [t0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        times[name], since[0] = now - since[0], now
    try:
        with contextlib.redirect_stderr(said):
            cfg = apply_overrides(task["config"], task["sets"])
            a = argparse.Namespace(config=task["config"], set=task["sets"], out=str(folder), no_plots=not plots,
                                   log_level=log_level)
            starter = (Warm if warm else LocalProcess)(log_level)
            launch = start(a, cfg, starter=starter)
            # which services were forked from the worker's zygote (warm), not started afresh
            record["forked"] = dict(getattr(starter, "forked", {}))
            lap("launch")
            try:
                summary = launch.supervise(bar_cls=None, err=said)
                lap("coordinator")
            finally:
                launch.reap()
                lap("services exit")
        record.update(loop_s=summary.get("wall_s"), windows=summary.get("windows"))
        try:
            record["metrics"] = run_metrics(folder, transient_ms)
        except Exception as e:  # noqa: BLE001
            raise CosimError(f"the run completed but its measures failed: {type(e).__name__}: {e}") from e
        lap("measures")
        record.update(status="completed", exit_code=0)
    except CosimError as e:
        record.update(reason=str(e), exit_code=e.exit_code)
    except Exception as e:  # noqa: BLE001  a bug in one run stays in that run's record
        record.update(reason=f"unexpected {type(e).__name__}: {e}", exit_code=1)
    record["wall_s"] = time.perf_counter() - t0
    folder.mkdir(parents=True, exist_ok=True)      # a refused run's folder was removed: keep its record
    (folder / RECORD).write_text(json.dumps(record, indent=1))
    return record


def _worker_address() -> str | None:
    """The Dask worker running this task (its address names its host), if any."""
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return None


def run_metrics(folder: str | Path, transient_ms: float = 0.0) -> dict:
    """A run's summary measures, after `transient_ms`: mean rate per spiking region and population,
    TVB's mean rate per region (R_e, else the first state variable), beta power (13–30 Hz, Welch)
    of each spiking region's first population, and FC (correlation of BOLD) when BOLD is on."""
    import numpy as np
    from cosim.results.reader import Results
    r = Results(folder)
    m: dict[str, Any] = {}
    try:
        rates = r.rates
    except (LookupError, KeyError, OSError):
        rates = None
    if rates is not None:
        after = rates.isel(time=np.flatnonzero(rates.time.values >= transient_ms))
        m["rate"] = {"region": [int(x) for x in after.region.values], "population": [str(p) for p in after.population.values],
                     "values": after.mean("time").values.tolist()}
        m["beta_power"] = {"region": m["rate"]["region"], "values": [
            _band_power(after.time.values, after.isel(population=0, region=i).values, BETA_HZ)
            for i in range(after.sizes["region"])]}
    if (r.dir / "tvb.h5").exists():
        mons = r.monitors
        tvb = mons.get("raw", mons.get("tavg")) if mons else None
        if tvb is not None:
            var = "R_e" if "R_e" in tvb["variable"].values else str(tvb["variable"].values[0])
            x = tvb.sel(variable=var)
            x = x.isel(time=np.flatnonzero(x.time.values >= transient_ms))
            m["tvb_rate"] = {"variable": var, "values": x.mean("time").values.tolist()}
        bold = mons.get("bold") if mons else None
        if bold is not None:
            b = bold.isel(variable=0)
            b = b.isel(time=np.flatnonzero(b.time.values >= transient_ms)).values
            if b.shape[0] >= 3:
                with np.errstate(invalid="ignore", divide="ignore"):
                    m["fc"] = np.corrcoef(b.T).tolist()
    return m


def _band_power(t_ms, x, band: tuple[float, float]) -> float:
    """Power of x (mean removed) in `band` Hz, from Welch's estimate (segments of up to 250 ms);
    NaN if the run is too short to resolve the band."""
    import numpy as np
    from scipy.signal import welch
    if len(x) < 8:
        return float("nan")
    fs = 1000.0 / float(np.median(np.diff(t_ms)))
    f, p = welch(np.asarray(x, float) - np.mean(x), fs=fs, nperseg=min(len(x), max(8, int(fs * 0.25))))
    sel = (f >= band[0]) & (f <= band[1])
    if sel.sum() < 2:
        return float("nan")
    return float(np.trapezoid(p[sel], f[sel]))


# ---- the sweep ---------------------------------------------------------------------------------
def _done(task: dict) -> dict | None:
    """The record of a completed earlier run of this task, if its folder holds one."""
    p = Path(task["folder"]) / RECORD
    try:
        rec = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return rec if rec.get("status") == "completed" and rec.get("hash") == task["hash"] else None


def run_sweep(config: str | None, grid: dict[str, list], seeds: list[int] | None, out: str | Path, *,
              sets: list[str] | None = None, workers: int | None = None, scheduler: str | None = None,
              plots: bool = False, transient_ms: float = 0.0, progress: bool = True, log_level: str = "INFO",
              warm: bool = True, bar_cls: Any = None, err: Any = None, zipped: dict[str, list] | None = None):
    """The sweep (module docstring); its xarray dataset. SweepFailed if any run failed."""
    zipped = dict(zipped or {})
    err = err or sys.stderr
    out = Path(out).resolve()
    config = str(Path(config).resolve()) if config is not None else None
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: at least 1")
    if workers is not None and scheduler:
        raise ConfigError("--workers and --scheduler: give one (the cluster's workers are its own)")
    tasks = plan(config, grid, seeds, list(sets or []), out, zipped)
    if all(t["error"] for t in tasks):      # e.g. a misspelt grid key: no run can start, nothing to keep
        raise ConfigError(f"every run of the sweep is refused: {tasks[0]['error']}")
    from cosim.launch.preflight import writable_dir
    writable_dir(out, "--out")              # a read-only or missing place: one line, before any run
    (out / "sweep.json").write_text(json.dumps({"config": config, "grid": grid, "zip": zipped, "seeds": seeds,
                                                "sets": sets or [],
                                                "transient_ms": transient_ms, "runs": len(tasks)}, indent=1))
    records: dict[int, dict] = {}
    todo = []
    for t in tasks:
        rec = _done(t)
        if rec is not None:
            if rec.get("transient_ms", 0.0) != transient_ms:
                rec["metrics"], rec["transient_ms"] = run_metrics(t["folder"], transient_ms), transient_ms
            rec["skipped"] = True
            records[t["index"]] = rec
        elif t["error"] is not None:
            records[t["index"]] = {**{k: t[k] for k in ("index", "hash", "values", "seed", "sets", "folder")},
                                   "status": "failed", "reason": f"configuration error: {t['error']}",
                                   "exit_code": 2, "metrics": None, "wall_s": 0.0}
        else:
            todo.append(t)
    skipped = sum(1 for r in records.values() if r.get("skipped"))
    print(f"cosim sweep: {len(tasks)} runs → {out} ({skipped} already completed, {len(todo)} to run"
          + (f", {len(records) - skipped} refused by the schema" if len(records) > skipped else "") + ")", file=err)
    bar = None
    if progress and bar_cls is not None:
        bar = bar_cls(total=len(tasks), initial=len(records), unit="run", file=err, dynamic_ncols=True)
    try:
        if todo:
            _dispatch(todo, records, workers, scheduler, plots, transient_ms, log_level, warm, bar, err)
    finally:
        if bar is not None:
            bar.close()
    ordered = [records[t["index"]] for t in tasks]
    ds = to_dataset(ordered, list(grid) + list(zipped))
    write_outputs(ds, ordered, out)
    failed = [r for r in ordered if r["status"] != "completed"]
    if failed:
        lines = "; ".join(f"run {r['index']} ({_label(r)}) in {r['folder']}: {r['reason']}" for r in failed)
        raise SweepFailed(f"{len(failed)} of {len(ordered)} runs failed: {lines}", out=out,
                          failures={r["folder"]: r["reason"] for r in failed}, results=ds)
    return ds


def _short(text: str, most: int = 60) -> str:
    """A value as a label shows it: whole up to `most` characters (a zipped mapping can be kilobytes)."""
    return text if len(text) <= most else text[:most - 1] + "…"


def _label(rec: dict) -> str:
    parts = [f"{k}={_short(json.dumps(v))}" for k, v in rec["values"].items()]
    if rec.get("seed") is not None:
        parts.append(f"seed={rec['seed']}")
    return ", ".join(parts) or "base"


def _dispatch(todo: list[dict], records: dict, workers: int | None, scheduler: str | None, plots: bool,
              transient_ms: float, log_level: str, warm: bool, bar, err) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("dask.distributed is not installed (pip install 'brain-cosim[sweep]')") from None
    import logging
    for name in ("distributed", "tornado", "bokeh"):       # distributed sets its own levels on import
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as e:
            raise ConfigError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
    else:
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    write = bar.write if bar is not None else (lambda line: print(line, file=err))
    futures = {}
    try:
        for t in todo:
            f = client.submit(execute, t, plots, transient_ms, log_level, warm, key=f"cosim-run-{t['hash'][:16]}-{t['index']}",
                              pure=False)
            futures[f] = t
        for f in as_completed(futures):
            t = futures[f]
            try:
                rec = f.result()
            except Exception as e:  # noqa: BLE001  the task itself died (its worker was killed, ...)
                rec = {**{k: t[k] for k in ("index", "hash", "values", "seed", "sets", "folder")},
                       "status": "failed", "reason": f"the Dask task failed: {type(e).__name__}: {e}",
                       "exit_code": 1, "metrics": None, "wall_s": float("nan")}
            records[t["index"]] = rec
            mark = "ok" if rec["status"] == "completed" else "FAILED"
            write(f"  run {t['index']} ({_label(rec)}): {mark} in {rec['wall_s']:.1f} s"
                  + (f": {rec['reason']}" if rec["status"] != "completed" else ""))
            if bar is not None:
                bar.update(1)
                n_failed = sum(1 for r in records.values() if r["status"] != "completed")
                bar.set_postfix_str(f"{n_failed} failed" if n_failed else "all ok")
    except KeyboardInterrupt:
        for f in futures:
            f.cancel()
        raise RunInterrupted("the sweep was interrupted; completed runs are kept and a rerun skips them",
                             out=Path(todo[0]["folder"]).parents[1]) from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ---- results ------------------------------------------------------------------------------------
def _coord(values: list) -> list:
    """A coordinate's values: numbers stay numbers; anything else (null, lists, mixed) as YAML text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return values
    if all(isinstance(v, bool) for v in values):
        return values
    return [v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
            for v in values]


def to_dataset(records: list[dict], keys: list[str]):
    """The sweep's xarray dataset: dimension `run`, a coordinate per grid key and `seed`, the runs'
    folders, status, reasons and times, and the measures of run_metrics (NaN for a failed run)."""
    import numpy as np
    import xarray as xr
    n = len(records)
    coords: dict[str, Any] = {"run": np.arange(n)}
    for k in keys:
        coords[k] = ("run", _coord([r["values"].get(k) for r in records]))
    coords["seed"] = ("run", np.array([r["seed"] if r.get("seed") is not None else -1 for r in records], dtype=np.int64))
    ds = xr.Dataset(coords=coords)
    ds["folder"] = ("run", [str(r["folder"]) for r in records])
    ds["status"] = ("run", [r["status"] for r in records])
    ds["reason"] = ("run", [r.get("reason") or "" for r in records])
    ds["wall_s"] = ("run", np.array([r.get("wall_s", np.nan) for r in records], float))
    ds["loop_s"] = ("run", np.array([r.get("loop_s") if r.get("loop_s") is not None else np.nan for r in records], float))
    ms = [r.get("metrics") or {} for r in records]
    # mean rate per spiking region and population: the union over runs (a grid may change the regions)
    regions = sorted({x for m in ms if "rate" in m for x in m["rate"]["region"]})
    pops = list(dict.fromkeys(p for m in ms if "rate" in m for p in m["rate"]["population"]))
    if regions:
        rate = np.full((n, len(regions), len(pops)), np.nan)
        beta = np.full((n, len(regions)), np.nan)
        for i, m in enumerate(ms):
            if "rate" not in m:
                continue
            for a, reg in enumerate(m["rate"]["region"]):
                for b, pop in enumerate(m["rate"]["population"]):
                    rate[i, regions.index(reg), pops.index(pop)] = m["rate"]["values"][a][b]
                beta[i, regions.index(reg)] = m["beta_power"]["values"][a]
        ds = ds.assign_coords(spiking_region=regions, population=pops)
        ds["rate"] = (("run", "spiking_region", "population"), rate, {"units": "Hz", "long_name": "mean rate"})
        ds["beta_power"] = (("run", "spiking_region"), beta,
                            {"units": "Hz^2", "band_hz": list(BETA_HZ),
                             "long_name": "power of the first population's rate in the beta band (Welch)"})
    n_tvb = max((len(m["tvb_rate"]["values"]) for m in ms if "tvb_rate" in m), default=0)
    if n_tvb:
        tv = np.full((n, n_tvb), np.nan)
        for i, m in enumerate(ms):
            if "tvb_rate" in m and len(m["tvb_rate"]["values"]) == n_tvb:
                tv[i] = m["tvb_rate"]["values"]
        var = next(m["tvb_rate"]["variable"] for m in ms if "tvb_rate" in m)
        ds = ds.assign_coords(region=np.arange(n_tvb))
        ds["tvb_rate"] = (("run", "region"), tv, {"long_name": f"TVB mean {var} per region", "variable": var})
    if any("fc" in m for m in ms):
        n_fc = max(len(m["fc"]) for m in ms if "fc" in m)
        fc = np.full((n, n_fc, n_fc), np.nan)
        for i, m in enumerate(ms):
            if "fc" in m and len(m["fc"]) == n_fc:
                fc[i] = np.array(m["fc"], float)
        ds["fc"] = (("run", "region", "region_b"), fc, {"long_name": "functional connectivity (BOLD correlation)"})
    ds.attrs.update(grid_keys=json.dumps(keys), beta_band_hz=json.dumps(list(BETA_HZ)))
    return ds


def write_outputs(ds, records: list[dict], out: Path) -> None:
    """OUT/sweep.nc (the dataset), OUT/sweep.csv (one row per run), OUT/sweep.png (a figure)."""
    path = out / "sweep.nc"
    tmp = out / "sweep.nc.tmp"
    try:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True)
    except (ImportError, ValueError):
        ds.to_netcdf(tmp)
    os.replace(tmp, path)
    table(ds).to_csv(out / "sweep.csv", index=False)
    try:
        plot_sweep(ds, out / "sweep.png")
    except Exception as e:  # noqa: BLE001  a figure never fails a sweep whose results are written
        print(f"cosim sweep: no figure ({type(e).__name__}: {e})", file=sys.stderr)


def table(ds):
    """One row per run: grid values, seed, status, reason, times, folder, mean rates per region and
    population, the TVB regions' mean rate and beta power per spiking region."""
    import pandas as pd
    keys = json.loads(ds.attrs.get("grid_keys", "[]"))
    cols = {"run": ds.run.values}
    for k in keys + ["seed"]:
        cols[k] = ds[k].values
    for v in ("status", "reason", "wall_s", "loop_s", "folder"):
        cols[v] = ds[v].values
    if "rate" in ds:
        for reg in ds.spiking_region.values:
            for pop in ds.population.values:
                cols[f"rate_{reg}_{pop}_hz"] = ds["rate"].sel(spiking_region=reg, population=pop).values
            cols[f"beta_power_{reg}"] = ds["beta_power"].sel(spiking_region=reg).values
    if "tvb_rate" in ds:
        cols["tvb_rate_mean"] = ds["tvb_rate"].mean("region").values
    return pd.DataFrame(cols)


def plot_sweep(ds, path: Path) -> Path:
    """Mean rate of each spiking region and population (mean ± sd over seeds) against the first grid
    key (or the run index), and each run's wall time."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    keys = json.loads(ds.attrs.get("grid_keys", "[]"))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xkey = keys[0] if keys else "seed"
    x = ds[xkey].values
    numeric = np.issubdtype(np.asarray(x).dtype, np.number)
    levels = list(dict.fromkeys(x.tolist()))
    pos = np.asarray(levels, float) if numeric else np.arange(len(levels))
    series = []
    if "rate" in ds:
        for reg in ds.spiking_region.values:
            for pop in ds.population.values:
                series.append((f"region {reg} {pop}", ds["rate"].sel(spiking_region=reg, population=pop).values))
    elif "tvb_rate" in ds:
        series.append(("TVB, mean over regions", ds["tvb_rate"].mean("region").values))
    for label, y in series:
        mean = [np.nanmean(y[x == lv]) if np.isfinite(y[x == lv]).any() else np.nan for lv in levels]
        sd = [np.nanstd(y[x == lv]) if np.isfinite(y[x == lv]).any() else np.nan for lv in levels]
        ax.errorbar(pos, mean, yerr=sd, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(pos, [_short(str(v), 30) for v in levels], rotation=20)
    ax.set_xlabel(xkey)
    ax.set_ylabel("mean rate (Hz), mean ± sd over the other keys and seeds")
    if series:
        ax.legend(fontsize=7)
    ok = ds["status"].values == "completed"
    ax2.bar(ds.run.values[ok], ds["wall_s"].values[ok], color="tab:blue", label="completed")
    ax2.bar(ds.run.values[~ok], np.nan_to_num(ds["wall_s"].values[~ok]), color="tab:red", label="failed")
    ax2.set_xlabel("run")
    ax2.set_ylabel("wall time (s)")
    ax2.legend(fontsize=7)
    fig.suptitle(f"sweep: {ok.sum()} of {ok.size} runs completed")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load_sweep(out: str | Path):
    """A sweep's dataset (OUT/sweep.nc), read into memory."""
    import xarray as xr
    path = Path(out) / "sweep.nc"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no sweep results there (run `cosim sweep ... --out {out}`)")
    with xr.open_dataset(path, engine="h5netcdf" if _has("h5netcdf") else None) as ds:
        return ds.load()


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def summary_line(ds) -> str:
    ok = int((ds["status"].values == "completed").sum())
    wall = ds["wall_s"].values
    return (f"cosim sweep: {ok} of {ds.sizes['run']} runs completed"
            + (f" (wall time per run: median {float(_nanmedian(wall)):.1f} s)" if ok else ""))


def _nanmedian(x) -> float:
    import numpy as np
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else math.nan
