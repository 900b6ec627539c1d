"""A run's results as labelled data for Python and notebooks: `cosim.load(RUN_DIR)` → `Results`.

Reads the files a run leaves (README "Results"), also of a run that stopped early (SWMR reads):

  results.tvb / .monitors[name]   xarray (time × region × variable): TVB monitors of tvb.h5
                                  (raw, tavg, bold); coords `time` (ms), `region` (index),
                                  `label` (connectome labels), `variable`
  results.spikes                  pandas (time_ms, gid, population, region, node): every spike
                                  of every spiking node's `<node>.h5`
  results.populations             pandas (node, population, region, role, n_cells)
  results.rates                   xarray (time × region × population): the spiking regions'
                                  rates in Hz: measured `exc`/`inh` (NetPyNE) or the mean-field
                                  `R_e`/`R_i` (reference backend)
  results.signals                 {"producer:kind/var": xarray (time × region)}: every signal
                                  exchanged (coordinator.h5; coupling rows timed at the window
                                  they feed)
  results.timings                 pandas, one row per window: per node compute/wait/... (s) and
                                  the coordinator's window wall time
  results.summary, .status, .config, .breakdown()
  results.plot.activity() / .spikes() / .exchange() / .breakdown()   the run's figures, inline

Files are read when a property is first used; pandas and xarray are imported then too.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from cosim.runtime.store import open_h5


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


class Results:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"no run directory {self.dir}")
        if not (self.dir / "coordinator.h5").exists() and not (self.dir / "tvb.h5").exists():
            raise FileNotFoundError(f"{self.dir} holds no results (no coordinator.h5 or tvb.h5)")

    def __repr__(self) -> str:
        s = self.summary
        what = (f"{s['windows']} windows, {s['simulated_ms']:g} ms simulated in {s['wall_s']:.1f} s"
                if s else f"not completed: {self.status.get('coordinator', {}).get('reason', 'unknown')}")
        return f"<cosim Results {self.dir}: {what}; spiking nodes {self.spiking_nodes}>"

    # ---- run-level documents -------------------------------------------------------------
    @cached_property
    def config(self) -> dict:
        p = self.dir / "config.yaml"
        return yaml.safe_load(p.read_text()) if p.exists() else {}

    @cached_property
    def summary(self) -> dict:
        """summary.json (empty if the run did not complete)."""
        p = self.dir / "summary.json"
        return json.loads(p.read_text()) if p.exists() else {}

    @cached_property
    def status(self) -> dict:
        """{who: status_<who>.json}."""
        return {p.stem[len("status_"):]: json.loads(p.read_text()) for p in sorted(self.dir.glob("status_*.json"))}

    @property
    def completed(self) -> bool:
        return bool(self.status.get("coordinator", {}).get("completed"))

    @cached_property
    def spiking_nodes(self) -> list[str]:
        names = [n["name"] for n in self.config.get("spiking_nodes", [])]
        return [n for n in names if (self.dir / f"{n}.h5").exists()]

    def backend(self, node: str) -> str:
        return next((n.get("backend", "") for n in self.config.get("spiking_nodes", []) if n["name"] == node), "")

    def breakdown(self) -> dict:
        """Where the time went, per service (cosim.results.breakdown)."""
        from cosim.results.breakdown import breakdown
        return breakdown(self.dir)

    # ---- TVB -----------------------------------------------------------------------------
    @cached_property
    def region_labels(self) -> list[str]:
        with open_h5(self.dir / "tvb.h5") as f:
            return [_str(x) for x in f.attrs.get("region_labels", [])]

    @cached_property
    def monitors(self) -> dict:
        """{monitor: xarray.DataArray (time, region, variable)} for every monitor in tvb.h5."""
        import xarray as xr
        out = {}
        with open_h5(self.dir / "tvb.h5") as f:
            labels = [_str(x) for x in f.attrs.get("region_labels", [])]
            spiking = [int(r) for r in np.atleast_1d(f.attrs.get("spiking_regions", []))]
            for name, g in f.items():
                if not hasattr(g, "keys") or "time_ms" not in g:
                    continue
                vars_ = [k for k in g if k != "time_ms" and g[k].ndim == 2]
                if not vars_:
                    continue
                data = np.stack([g[v][()] for v in vars_], axis=-1)
                n = data.shape[1]
                units = json.loads(g.attrs.get("units", f.attrs.get("units", "{}")) or "{}")
                attrs = {"units": json.dumps(units), "time_units": "ms", "monitor": name}
                if "channel_labels" in g.attrs:          # EEG / MEG / iEEG: sensor space
                    space, names = "channel", [_str(x) for x in g.attrs["channel_labels"]]
                    attrs["sensors"] = _str(g.attrs.get("sensors", ""))
                else:
                    space, names = "region", labels
                    attrs["spiking_regions"] = spiking
                out[name] = xr.DataArray(
                    data, dims=("time", space, "variable"), name=f"tvb_{name}",
                    coords={"time": g["time_ms"][()], space: np.arange(n),
                            "label": (space, names if len(names) == n else [str(i) for i in range(n)]),
                            "variable": vars_},
                    attrs=attrs)
        return out

    @property
    def tvb(self):
        """The raw monitor (every TVB step), else the first one recorded."""
        m = self.monitors
        if not m:
            raise LookupError(f"{self.dir / 'tvb.h5'} holds no monitor data")
        return m.get("raw", next(iter(m.values())))

    # ---- spiking nodes -------------------------------------------------------------------
    @cached_property
    def populations(self):
        import pandas as pd
        rows = []
        for node in self.spiking_nodes:
            with open_h5(self.dir / f"{node}.h5") as f:
                if "pops" not in f:
                    continue
                p = f["pops"]
                for label, region, role, n in zip(p["label"][()], p["region"][()], p["role"][()], p["n_cells"][()]):
                    rows.append((node, _str(label), int(region), _str(role), int(n)))
        return pd.DataFrame(rows, columns=["node", "population", "region", "role", "n_cells"])

    @cached_property
    def spikes(self):
        """Every spike: time_ms, gid, population (label), region, node; sorted by time."""
        import pandas as pd
        parts = []
        for node in self.spiking_nodes:
            with open_h5(self.dir / f"{node}.h5") as f:
                if "spikes/t_ms" not in f:
                    continue
                labels = np.array([_str(x) for x in f["pops/label"][()]], dtype=object)
                pop = f["spikes/pop"][()].astype(np.int64)
                parts.append(pd.DataFrame({
                    "time_ms": f["spikes/t_ms"][()], "gid": f["spikes/gid"][()].astype(np.int64),
                    "population": pd.Categorical(labels[pop], categories=list(labels)),
                    "region": f["spikes/region"][()].astype(np.int64), "node": node}))
        if not parts:
            return pd.DataFrame({"time_ms": np.empty(0), "gid": np.empty(0, np.int64), "population": [],
                                 "region": np.empty(0, np.int64), "node": []})
        df = pd.concat(parts, ignore_index=True)
        if len(parts) > 1:
            df["population"] = df["population"].astype(str)
        return df.sort_values("time_ms", kind="stable", ignore_index=True)

    @cached_property
    def rates(self):
        """Spiking regions' rates (Hz), (time, region, population) over every spiking node."""
        import xarray as xr
        arrays = []
        for node in self.spiking_nodes:
            with open_h5(self.dir / f"{node}.h5") as f:
                regions = [int(r) for r in f.attrs["regions"]]
                if "rates/exc" in f:      # NetPyNE: measured population rates per TVB step
                    t = f["steps"][()] * float(f.attrs["tvb_dt_ms"])
                    data, pops = np.stack([f["rates/exc"][()], f["rates/inh"][()]], axis=-1), ["exc", "inh"]
                elif "raw/R_e" in f:      # reference: the mean-field rates
                    t = f["raw/time_ms"][()]
                    data, pops = np.stack([f["raw/R_e"][()], f["raw/R_i"][()]], axis=-1), ["R_e", "R_i"]
                else:
                    continue
            labels = self.region_labels if (self.dir / "tvb.h5").exists() else []
            arrays.append(xr.DataArray(data, dims=("time", "region", "population"), name="rate",
                                       coords={"time": t, "region": regions, "population": pops,
                                               "label": ("region", [labels[r] if r < len(labels) else str(r)
                                                                    for r in regions]),
                                               "node": ("region", [node] * len(regions))},
                                       attrs={"units": "Hz", "time_units": "ms", "backend": self.backend(node)}))
        if not arrays:
            raise LookupError(f"{self.dir}: no spiking node results with rates")
        return arrays[0] if len(arrays) == 1 else xr.concat(arrays, dim="region", join="outer")

    # ---- the exchange and its timing (coordinator.h5) ------------------------------------
    @cached_property
    def signals(self) -> dict:
        import xarray as xr
        out = {}
        with open_h5(self.dir / "coordinator.h5") as f:
            t = f["time_ms"][:, 0]
            window_ms = float(f.attrs["steps_per_window"]) * float(f.attrs["tvb_dt_ms"])
            for producer, g in f.get("signals", {}).items():
                def visit(name, d, producer=producer):
                    if not hasattr(d, "shape"):
                        return
                    offset = int(d.attrs.get("window_offset", 0))
                    regions = [int(r) for r in d.attrs["regions"]]
                    out[f"{producer}:{name}"] = xr.DataArray(
                        d[()], dims=("time", "region"), name=name,
                        coords={"time": t[: d.shape[0]] + offset * window_ms, "region": regions},
                        attrs={"producer": producer, "signal": name, "window_offset": offset, "time_units": "ms"})
                g.visititems(visit)
        return out

    @cached_property
    def timings(self):
        """Per window: (node, field) columns in seconds, plus (coordinator, window_wall_s / coordinator_s)."""
        import pandas as pd
        cols = {}
        with open_h5(self.dir / "coordinator.h5") as f:
            for name, d in f["timing"].items():
                if name in ("window_wall_s", "coordinator_s"):
                    cols[("coordinator", name)] = d[:, 0]
                else:
                    for i, field in enumerate(d.attrs["fields"]):
                        cols[(name, _str(field))] = d[:, i]
        df = pd.DataFrame(cols)
        df.index.name = "window"
        return df

    @property
    def plot(self) -> Plots:
        return Plots(self)


class Plots:
    """The run's figures (the same code that draws them after a run), shown inline in Jupyter.

    Each method (re)writes the figure in the run directory and returns an IPython Image (shown
    when it is a cell's last expression), or the file's path outside IPython."""

    def __init__(self, results: Results):
        self.r = results

    def activity(self, var: str = "R_e"):
        """Whole-brain activity (tvb_activity.png): every region over time, spiking regions marked."""
        from cosim.services.tvb_node.figure import plot
        return self._show(lambda: plot(self.r.dir, var=var, name="tvb_activity.png" if var == "R_e"
                                       else f"tvb_activity_{var}.png"))

    def spikes(self, node: str | None = None):
        """Raster and rates of a spiking node (<node>_spiking.png)."""
        from cosim.sdk.spiking_figure import plot_results            # shared by every spiking backend
        node = node or self.r.spiking_nodes[0]
        with open_h5(self.r.dir / f"{node}.h5") as f:
            if "pops" not in f:
                raise ValueError(f"node {node!r} ({self.r.backend(node)} backend) records no spikes")
        return self._show(lambda: plot_results(self.r.dir / f"{node}.h5"))

    def exchange(self):
        """Every exchanged signal (up to 12 regions each) and the per-window timing (exchange.png)."""
        from cosim.results.figures import plot_exchange
        return self._show(lambda: plot_exchange(self.r.dir))

    def breakdown(self):
        """Where the time went per service (breakdown.png)."""
        from cosim.results.breakdown import plot_breakdown
        return self._show(lambda: plot_breakdown(self.r.dir))

    @staticmethod
    def _show(draw):
        import matplotlib
        backend = matplotlib.get_backend()
        try:
            path = draw()               # the drawing code selects Agg: give the notebook its backend back
        finally:
            if matplotlib.get_backend() != backend:
                import matplotlib.pyplot as plt
                plt.switch_backend(backend)
        try:
            from IPython.display import Image
        except ImportError:
            return path
        return Image(filename=str(path))
