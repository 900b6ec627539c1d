"""NEST with several threads: every thread's spikes are read (NEST writes one spike file per thread).

Issue 22: ``_spike_file`` read only the first file, so with 2 threads about half the spikes were
kept (the default example: 483 of 1087), the rates sent to TVB were as wrong, and a model file
that set its own ``local_num_threads`` was logged as "1 thread(s)". Here a small model with its
own Poisson noise is run standalone by NEST (a separate process, its own ``spike_recorder``) and
under cosim with TVB's drive at zero: the spike totals are the same, for 1, 2 and 4 threads,
whether cosim or the model file sets the thread count.
"""
from __future__ import annotations

import logging
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest

from test_nest_adapter import drive, make

pytestmark = [pytest.mark.system, pytest.mark.nest]     # NEST standalone in a subprocess, then in-process

T_MS = 320.0            # 200 windows of 16 TVB steps of 0.1 ms
MODEL = """
import nest
nest.ResetKernel()
nest.SetKernelStatus({"resolution": 0.05, "rng_seed": 12THREADS})
E = nest.Create("iaf_psc_alpha", 160, params={"tau_m": 20.0, "V_th": -55.0})
I = nest.Create("iaf_psc_alpha", 40, params={"tau_m": 20.0, "V_th": -55.0})
noise = nest.Create("poisson_generator", params={"rate": 9000.0})
nest.Connect(noise, E + I, syn_spec={"weight": 20.0, "delay": 1.0})
nest.Connect(E, E + I, {"rule": "fixed_indegree", "indegree": 16}, {"weight": 10.0, "delay": 1.5})
nest.Connect(I, E + I, {"rule": "fixed_indegree", "indegree": 4}, {"weight": -40.0, "delay": 1.5})
rec = nest.Create("spike_recorder")
nest.Connect(E, rec)
rec_i = nest.Create("spike_recorder")
nest.Connect(I, rec_i)
nest.Simulate(T_MS)
print("SPIKES", rec.n_events, rec_i.n_events)
"""
POPS = {"E": {"region": 33, "role": "exc"}, "I": {"region": 33, "role": "inh"}}


def model_text(threads_in_file: int | None) -> str:
    extra = "" if threads_in_file is None else f', "local_num_threads": {threads_in_file}'
    return MODEL.replace("THREADS", extra).replace("T_MS", repr(T_MS))


def standalone(tmp_path, threads: int) -> tuple[int, int]:
    f = tmp_path / f"alone{threads}.py"
    f.write_text(model_text(threads))
    out = subprocess.run([sys.executable, str(f)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"PYNEST_QUIET": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    e, i = re.search(r"SPIKES (\d+) (\d+)", out.stdout).groups()
    return int(e), int(i)


def under_cosim(tmp_path, threads: int, set_by: str, caplog) -> dict:
    f = tmp_path / f"model_{set_by}{threads}.py"
    f.write_text(model_text(threads if set_by == "file" else None))
    params = {"model_file": {"path": str(f), "populations": POPS}, "dt_ms": 0.05,
              "input": {"scale": 1.0, "weight_pA": 20.0}}
    if set_by == "params":
        params["local_num_threads"] = threads
    tag = f"{set_by}{threads}"
    a, ctx = make(tmp_path, params=params, K=200, tag=tag)
    with caplog.at_level(logging.INFO, logger="cosim.services.nest_node.adapter"):
        outs = drive(a, ctx, rate_hz=0.0)
    a.finish(None)
    with h5py.File(tmp_path / tag / "s.h5") as h:
        n_dt = 0.1e-3                                                       # TVB step in s
        return {"E": int(np.sum(h["spikes/pop"][...] == 0)), "I": int(np.sum(h["spikes/pop"][...] == 1)),
                "E_from_rates": float(h["rates/exc"][...].sum() * 160 * n_dt),
                "I_from_rates": float(h["rates/inh"][...].sum() * 40 * n_dt),
                "threads_attr": int(h.attrs.get("nest_threads", -1)), "R_e_sent": float(np.mean([o["state/R_e"] for o in outs])),
                "log": caplog.text}


@pytest.mark.parametrize("set_by", ["params", "file"])
def test_every_threads_spikes_reach_the_results_and_tvb(tmp_path, caplog, set_by):
    """Totals under cosim equal NEST's own standalone totals for the same thread count (same seed,
    TVB's drive silent: the same network, the same draws), for 1, 2 and 4 threads; the thread
    counts agree with one another within statistical spread; the rates (what TVB gets) are
    those of all spikes; the log and the results file give the kernel's real thread count."""
    totals, said = {}, {}
    for threads in (1, 2, 4):
        alone = standalone(tmp_path, threads)
        caplog.clear()
        got = under_cosim(tmp_path, threads, set_by, caplog)
        assert (got["E"], got["I"]) == alone, f"{threads} thread(s): cosim {got['E'], got['I']}, NEST alone {alone}"
        assert got["E_from_rates"] == pytest.approx(got["E"]) and got["I_from_rates"] == pytest.approx(got["I"])
        totals[threads] = got["E"] + got["I"]
        said[threads] = (got["threads_attr"], re.findall(r"h=0\.05 ms, (\d+) thread\(s\)", got["log"]))
    # ~10,000 spikes: Poisson spread ~100; the thread counts draw different noise, never 5 sd apart
    n1 = totals[1]
    assert n1 > 5000, totals
    for threads in (2, 4):
        assert abs(totals[threads] - n1) < 5 * np.sqrt(n1), totals
    assert said == {t: (t, [str(t)]) for t in (1, 2, 4)}, said
