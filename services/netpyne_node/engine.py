"""The NEURON side of the node: instantiate a NetPyNE network once, then step it window by window.

- Built once (``sim.initialize`` ... ``setupRecording``); ``cfg.oneSynPerNetcon = False``.
- Input: one persistent ``NetCon(None, relay)`` per input cell (NetStim relay, ``number=1,
  start=-1, noise=0``), one ``nc.event(t)`` per Poisson spike of the coming window.
- Clock: time is counted in integer NEURON steps. Window targets are ``(end_step + 0.5) * dt``:
  NEURON's fixed-step ``psolve`` takes ``floor((tstop - t) / dt)`` steps, so half a step of
  margin absorbs float drift of ``h.t`` either way (a bare ``(k+1)*W`` target ran one step short
  after ~7000 windows here), and every window checks ``round(h.t / dt) == end_step``.
- Spikes of every population but the input relays (``pc.spike_record`` per local gid), read each window
  with ``np.array(vec)`` then ``vec.resize(0)``.
- RxD compiles reactions with the C++ compiler into the working directory: initialization and
  stepping of an RxD model run inside ``work_dir``.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from .builder import BuiltNetwork

log = logging.getLogger(__name__)


class SpikingEngine:
    def __init__(self, built: BuiltNetwork, dt_ms: float, work_dir: str | Path | None = None):
        from neuron import h
        from netpyne import sim
        self.h, self.sim = h, sim
        self.dt = float(dt_ms)
        self.uses_rxd = built.uses_rxd
        self.work_dir = Path(work_dir) if work_dir else None
        if getattr(sim, "net", None) is not None and getattr(sim.net, "cells", None):
            sim.clearAll()                            # a previous network in this process
        cfg = built.simConfig
        cfg.recordCellsSpikes = []                    # spikes are recorded below (pc.spike_record)
        chatter = io.StringIO()                       # NetPyNE prints progress; keep it for DEBUG
        with self._cwd(), contextlib.redirect_stdout(chatter):
            sim.initialize(built.netParams, cfg)
            sim.net.createPops()
            sim.net.createCells()
            sim.net.connectCells()
            sim.net.addStims()
            for name, args, kw in built.modifications:      # the user's script changed its network so
                getattr(sim.net, name)(*args, **kw)
            if built.uses_rxd:
                sim.net.addRxD()
            sim.setupRecording()
        log.debug("netpyne: %s", chatter.getvalue().strip().replace("\n", " | "))
        self.pc = sim.pc
        self.rank, self.nhost = int(sim.rank), int(sim.nhosts)
        self._index_pops(built.popmap)
        self._make_inputs()
        self.spk_t, self.spk_id = h.Vector(), h.Vector()
        silent: dict[str, int] = {}
        for cell in sim.net.cells:
            if self.popmap.get(cell.tags["pop"], (None, "other"))[1] not in ("input", "remote"):   # role other too
                if not self.pc.gid_exists(cell.gid):
                    # no spike source registered for this gid (e.g. NetPyNE's tut_artif makes its VecStim
                    # population with `pulses` section-less CompartCells): NEURON asserts in spike_record
                    silent[cell.tags["pop"]] = silent.get(cell.tags["pop"], 0) + 1
                    continue
                self.pc.spike_record(cell.gid, self.spk_t, self.spk_id)
        for pop, n in silent.items():
            log.warning("population %r: %d cell(s) without a spike source in NEURON (NetPyNE registered none), "
                        "so they report no spikes", pop, n)
        sim.preRun()                                  # collective: set_maxstep allreduce, h.dt
        h.dt = self.dt
        with self._cwd():
            h.finitialize(float(cfg.hParams.get("v_init", -65.0)))
        self.step_count = 0
        if abs(h.t) > 1e-12:
            raise RuntimeError(f"NEURON did not start at t = 0 (h.t = {h.t})")

    def _cwd(self):
        if self.uses_rxd and self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            return contextlib.chdir(self.work_dir)
        return contextlib.nullcontext()

    # ---- bookkeeping ---------------------------------------------------------------------
    def _index_pops(self, popmap: dict[str, tuple[int, str]]) -> None:
        """Global gid ranges per population (NetPyNE numbers each pop's cells contiguously)."""
        sim = self.sim
        missing = [p for p in popmap if p not in sim.net.pops]
        if missing:
            raise ValueError(f"populations {missing} were not created by NetPyNE")
        local = {label: [int(c.gid) for c in sim.net.cells if c.tags["pop"] == label] for label in sim.net.pops}
        allg = self.pc.py_allgather(local) if self.nhost > 1 else [local]
        self.popmap = dict(popmap)
        self.pops: list[tuple[str, int, str, int, int]] = []   # label, region, role, first gid, n
        self.local_cells: dict[str, dict] = {label: {} for label in sim.net.pops}
        for cell in sim.net.cells:
            self.local_cells[cell.tags["pop"]][int(cell.gid)] = cell
        n_gid = 0
        for label in sim.net.pops:
            gids = sorted(g for d in allg for g in d.get(label, []))
            first = gids[0] if gids else 0
            if gids and gids != list(range(first, first + len(gids))):
                raise RuntimeError(f"population {label}: gids are not contiguous")
            region, role = popmap.get(label, (-1, "other"))
            self.pops.append((label, region, role, first, len(gids)))
            n_gid = max(n_gid, first + len(gids))
        self.pop_of_gid = np.full(n_gid, -1, dtype=np.int64)
        for i, (_, _, _, first, n) in enumerate(self.pops):
            self.pop_of_gid[first:first + n] = i

    def _make_inputs(self) -> None:
        """Per region: list over input cells (global index) of a NetCon into the relay, or None."""
        h = self.h
        self.inputs: dict[int, list] = {}
        self.remote: dict[int, list] = {}    # stand-ins of other services' E cells, by source region (§4.2)
        for label, region, role, first, n in self.pops:
            if role not in ("input", "remote"):
                continue
            lst = (self.inputs if role == "input" else self.remote).setdefault(region, [])
            for i in range(n):
                cell = self.local_cells[label].get(first + i)
                nc = None
                if cell is not None:
                    nc = h.NetCon(None, cell.hPointp)
                    nc.weight[0] = 1.0
                lst.append(nc)

    def n_cells_of(self, label: str) -> int:
        """Size of the population ``label`` (0 if there is none)."""
        return sum(n for lab, _, _, _, n in self.pops if lab == label)

    def n_cells(self, region: int, role: str) -> int:
        return sum(n for _, r, ro, _, n in self.pops if r == region and ro == role)

    # ---- per window ----------------------------------------------------------------------
    def deliver(self, region: int, times_ms: np.ndarray, idx: np.ndarray, remote: bool = False) -> int:
        """Queue input spikes (times >= now) on this rank's relays; returns how many were local.
        ``remote``: on the stand-ins of ``region``'s E cells (another service's; PROTOCOL.md §4.2)."""
        ncs = (self.remote if remote else self.inputs).get(region, [])
        now = self.h.t
        n = 0
        for t, i in zip(np.maximum(times_ms, now).tolist(), idx.tolist()):
            nc = ncs[i]
            if nc is not None:
                nc.event(t)
                n += 1
        return n

    def advance_to(self, end_step: int) -> None:
        """Integrate until NEURON step ``end_step`` (collective under MPI)."""
        if end_step <= self.step_count:
            raise ValueError(f"cannot advance to step {end_step}: already at {self.step_count}")
        with self._cwd():
            self.pc.psolve((end_step + 0.5) * self.dt)
        got = round(self.h.t / self.dt)
        if got != end_step or abs(self.h.t - end_step * self.dt) > 0.25 * self.dt:
            raise RuntimeError(f"NEURON clock off: expected step {end_step}, h.t = {self.h.t!r} (step {got})")
        self.step_count = end_step

    # ---- checkpoint (PROTOCOL.md §10.1) ---------------------------------------------------
    def save_state(self, path: str | Path) -> None:
        """NEURON's SaveState (every state variable, NetCon weights/states and the event queue,
        i.e. the relays' Poisson events already queued with ``nc.event`` for later windows), written
        atomically. Not covered by SaveState and kept by the adapter: the Poisson generators, the
        input history, the rate proxy, the step counter. Spikes of the window were read already."""
        import os
        from cosim.runtime.checkpoint import fsync_dir
        h = self.h
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        ss = h.SaveState()
        ss.save()
        f = h.File(str(tmp))
        f.wopen()
        ss.fwrite(f)
        f.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def restore_state(self, path: str | Path, step_count: int) -> None:
        """After building the same network: NEURON back at ``step_count`` (queue restored, the
        events queued at t = 0 discarded: ``restore(0)``)."""
        h = self.h
        ss = h.SaveState()
        f = h.File(str(path))
        f.ropen()
        ss.fread(f)
        f.close()
        with self._cwd():
            ss.restore(0)
        got = round(h.t / self.dt)
        if got != step_count:
            raise RuntimeError(f"NEURON state restored at step {got} (h.t = {h.t!r}), expected {step_count}")
        self.step_count = int(step_count)
        self.spk_t.resize(0)
        self.spk_id.resize(0)

    def read_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        t = np.array(self.spk_t)
        g = np.array(self.spk_id).astype(np.int64)
        self.spk_t.resize(0)
        self.spk_id.resize(0)
        return t, g

    def local_traces(self) -> dict[str, dict[int, np.ndarray]]:
        out: dict[str, dict[int, np.ndarray]] = {}
        for var, per_cell in (self.sim.simData or {}).items():
            if var in ("spkt", "spkid", "t", "stims") or not isinstance(per_cell, dict):
                continue
            for key, vec in per_cell.items():
                if isinstance(key, str) and key.startswith("cell_"):
                    out.setdefault(var, {})[int(key[5:])] = np.array(vec)
        return out

    def close(self) -> None:
        """Release this network's NEURON objects (collective under MPI)."""
        self.inputs = {}
        self.remote = {}
        self.local_cells = {}
        self.spk_t = self.spk_id = None
        self.sim.clearAll()
