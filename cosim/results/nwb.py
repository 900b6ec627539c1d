"""`cosim export RUN_DIR --nwb FILE`: a run's results as one NWB file (pynwb), for tools that
read Neurodata Without Borders.

What goes where (times in seconds, as NWB wants):
  units                          one unit per spiking cell that fired: spike_times, and columns
                                 gid, population, region, region_label, node
  processing/spiking/rate_<node>_<population>   population rates (Hz), (time, region): the
                                 spiking node's measured exc/inh rates (or R_e/R_i of the
                                 reference backend); `comments` lists the regions
  processing/tvb/regions         table of the connectome's regions: label, simulated_by
  processing/tvb/<monitor>_<var> TVB time series (time, region) in region order 0…N-1 (the
                                 rows of processing/tvb/regions); EEG/MEG/iEEG monitors (time,
                                 channel), the channel labels in `comments`
  processing/exchange/<producer>_<signal>   every signal exchanged between the services
Reads through cosim.results.reader (the same data as `cosim.load`).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, UTC
from pathlib import Path

import numpy as np

from cosim.results.reader import Results


def _series(name: str, data: np.ndarray, t_ms: np.ndarray, unit: str, description: str, comments: str):
    from pynwb import TimeSeries
    t_s = np.asarray(t_ms, dtype=np.float64) / 1000.0
    step = np.diff(t_s)
    regular = t_s.size > 1 and np.allclose(step, step[0], rtol=1e-9, atol=1e-12)
    timing = ({"starting_time": float(t_s[0]), "rate": float(1.0 / step[0])} if regular
              else {"timestamps": t_s})
    return TimeSeries(name=name, data=np.ascontiguousarray(data), unit=unit, description=description,
                      comments=comments, **timing)


def export_nwb(run_dir: str | Path, path: str | Path) -> Path:
    """Write the NWB file for the run in `run_dir`; returns its path."""
    r = Results(run_dir)             # a bad directory is refused before pynwb (and pandas) load
    from pynwb import NWBHDF5IO, NWBFile
    from hdmf.common import DynamicTable, VectorData

    path = Path(path)
    started = datetime.fromtimestamp((r.dir / "config.yaml").stat().st_mtime if (r.dir / "config.yaml").exists()
                                     else r.dir.stat().st_mtime, tz=UTC)
    cfg = r.config
    nodes = {n["name"]: n for n in cfg.get("spiking_nodes", [])}
    backends = ", ".join(f"{k}: {v.get('backend')}" for k, v in nodes.items())
    spiking_regions = sorted(x for v in nodes.values() for x in v.get("regions", []))
    nwb = NWBFile(
        session_description=f"cosim co-simulation '{cfg.get('run', {}).get('name', r.dir.name)}': TVB whole-brain "
                            f"model with spiking regions {spiking_regions} ({backends})",
        identifier=f"cosim-{r.dir.name}-{uuid.uuid4()}", session_start_time=started,
        source_script="cosim export", source_script_file_name="cosim/results/nwb.py",
        notes=json.dumps({"summary": r.summary, "config": cfg}, default=str))
    labels = r.region_labels if (r.dir / "tvb.h5").exists() else []

    def label(region: int) -> str:
        return labels[region] if region < len(labels) else str(region)

    # ---- spikes -------------------------------------------------------------------------
    spikes = r.spikes
    if len(spikes):
        for col, desc in (("gid", "NetPyNE cell id (unique within its node)"),
                          ("population", "NetPyNE population label"),
                          ("region", "TVB region index the population belongs to"),
                          ("region_label", "connectome label of the region"),
                          ("node", "the cosim spiking service that simulated the cell")):
            nwb.add_unit_column(name=col, description=desc)
        for (node, gid), g in spikes.groupby(["node", "gid"], sort=True, observed=True):
            region = int(g["region"].iloc[0])
            nwb.add_unit(spike_times=np.sort(g["time_ms"].to_numpy()) / 1000.0, gid=int(gid),
                         population=str(g["population"].iloc[0]), region=region, region_label=label(region),
                         node=str(node))

    # ---- population rates ---------------------------------------------------------------
    if r.spiking_nodes:
        mod = nwb.create_processing_module("spiking", "population rates of the spiking regions (Hz)")
        try:
            rates = r.rates
        except LookupError:
            rates = None
        if rates is not None:
            for node in r.spiking_nodes:
                sel = rates.sel(region=[int(x) for x in rates.region.values if str(rates.node.sel(region=x).values) == node])
                regions = [int(x) for x in sel.region.values]
                for pop in rates["population"].values:
                    mod.add(_series(f"rate_{node}_{pop}", sel.sel(population=pop).values, sel.time.values, "Hz",
                                    f"{pop} rate of node {node}'s regions ({r.backend(node)} backend)",
                                    f"columns: regions {regions} ({', '.join(label(x) for x in regions)})"))

    # ---- TVB ----------------------------------------------------------------------------
    if (r.dir / "tvb.h5").exists() and r.monitors:
        mod = nwb.create_processing_module("tvb", "The Virtual Brain: whole-brain model time series")
        owner = {reg: name for name, n in nodes.items() for reg in n.get("regions", [])}
        n = len(labels) or next(da for da in r.monitors.values() if "region" in da.dims).sizes["region"]
        mod.add(DynamicTable(name="regions", description="connectome regions (row i = column i of the TVB series)",
                             columns=[VectorData(name="label", description="connectome label",
                                                 data=[label(i) for i in range(n)]),
                                      VectorData(name="simulated_by", description="'tvb' or the spiking node",
                                                 data=[owner.get(i, "tvb") for i in range(n)])]))
        for mon, da in r.monitors.items():
            units = json.loads(da.attrs.get("units", "{}"))
            sensors = "channel" in da.dims          # EEG / MEG / iEEG: columns are channels
            cols = (f"columns: {da.sizes['channel']} channels {', '.join(map(str, da['label'].values))}" if sensors
                    else f"columns: regions 0..{da.sizes['region'] - 1}, labels in processing/tvb/regions")
            for var in da["variable"].values:
                mod.add(_series(f"{mon}_{var}", da.sel(variable=var).values, da.time.values,
                                units.get(str(var), "n/a") if units.get(str(var)) not in ("1", "") else "dimensionless",
                                f"TVB {mon} monitor, variable {var}" + (" projected to sensors" if sensors else ""),
                                cols))

    # ---- the exchange -------------------------------------------------------------------
    if (r.dir / "coordinator.h5").exists() and r.signals:
        mod = nwb.create_processing_module("exchange", "signals exchanged between the services each window")
        for key, da in r.signals.items():
            producer, name = key.split(":", 1)
            unit = "Hz" if "/R_" in name else "dimensionless"
            mod.add(_series(f"{producer}_{name.replace('/', '_')}", da.values, da.time.values, unit,
                            f"{name} sent by {producer}", f"columns: regions {[int(x) for x in da.region.values]}"))

    path.parent.mkdir(parents=True, exist_ok=True)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
