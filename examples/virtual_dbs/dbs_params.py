"""The study's three states and its DBS protocol, shared by every backend and by examples/virtual_dbs.py."""
import argparse

FIT = {"healthy": "control", "parkinson": "patient", "parkinson_dbs": "patient"}
T_SKIP_MS = 500.0        # transient left out of rates and spectra

#: STN-DBS as Meier et al. 2022 ran it (tvb-multiscale, docs/notebooks/TVB-ANNarchy_DBS_BasalGanglia.ipynb,
#: the version of commit 79a06c22: cell 6 "bi | STN | 130.0 | 20.0 | 0.3", cell 19 the "bi" DBSInput):
#: a current injected into every STN cell, 130 Hz, charge-balanced biphasic pulses: amplitude*kappa =
#: 20*8 = 160 (mV/ms on the C = 1 STN cell; ANNarchy adds g_dbs to dv/dt) for 0.3 ms, then -16 for 3 ms.
#: Here A in nA == mV/ms on the Izhikevich-Hamker cell (mod/izhi_hamker.mod), first phase A for 0.3 ms,
#: then -A/10 for 3 ms: the same waveform. Somatic variants (where the current goes):
#:   stn      every STN cell (Meier et al. 2022)
#:   stn_gpe  STN and GPe (GPe's axons to STN activated antidromically)
#:   stn_inh  every STN cell with the first phase negative (somatic inhibition, a "functional lesion")
#: The notebook's two other modes (cell 6's table, whose target comment has "STN" between the "bi" and
#: "mono" columns and "GPi" over "simple": our reading, mono -> STN, simple -> GPi; cell 19 "mono"
#: DBSInput; cell 33 "simple" adds stim_ampl to the target's I):
#:   mono     every STN cell, 120 Hz, monophasic -35*8 = -280 for 0.3 ms
#:   simple   every GPi cell, a constant -10 (the notebook's stim_target "GPi", stim_mode "simple",
#:            stim_ampl -10 as cell 6 sets them)
#: Each: (populations, sign of the first phase, default |amplitude|, shape: bi / mono at Hz / dc).
VARIANTS = {"stn": (["STN"], 1.0, 160.0, "bi"), "stn_gpe": (["STN", "GPe"], 1.0, 160.0, "bi"),
            "stn_inh": (["STN"], -1.0, 160.0, "bi"), "mono": (["STN"], -1.0, 280.0, "mono"),
            "simple": (["GPi"], -1.0, 10.0, "dc")}
DEFAULT_VARIANT = "stn"
DEFAULT_AMPLITUDE_NA = 160.0
FREQUENCY_HZ = 130.0
MONO_FREQUENCY_HZ = 120.0
WIDTH_MS = 0.3

#: Fibre activation (not in Meier et al. 2022; the DBS mechanisms of the same group's later model, CompNeuroPy's
#: DBSstimulator, Olimaol/CompNeuroPy src/CompNeuroPy/dbs.py: ``orthodromic`` axon spikes on the ``efferents``,
#: ``afferents`` or ``passing_fibres`` of the stimulated population, on average ``axon_spikes_per_pulse`` = 1
#: per pulse, carried only by the activated projections, the soma untouched). Here: one spike per pulse and
#: fibre, at the pulse's first step, on a copy of the fitted projection (same probability and weight, its own
#: draw of synapses), so each target cell receives the projection's axons firing at 130 Hz in addition to their
#: somatic spikes. The sets, in this network's projections:
#:   efferent  STN's outputs: STN-GPe, STN-GPi
#:   afferent  STN's inputs: GPe-STN (inhibitory), CxE-STN (hyperdirect, excitatory)
#:   gpe_stn   the inhibitory afferents alone (GPe-STN)
#:   passing   fibres passing the STN region: the pallidothalamic GPi-Thal (lenticular fasciculus, Forel's H2)
FIBRES = {"efferent": ["STN-GPe", "STN-GPi"], "afferent": ["GPe-STN", "CxE-STN"], "gpe_stn": ["GPe-STN"],
          "passing": ["GPi-Thal"]}
FIBRES_ENV = "BG_DBS_FIBRES"     # read by the parkinson_dbs model files (cosim runs them in their own process)


def fibre_projections(spec: str) -> list[str]:
    """'afferent,efferent' -> the projections whose axons DBS activates (ValueError names an unknown set)."""
    out: list[str] = []
    for name in (s.strip() for s in (spec or "").split(",")):
        if not name:
            continue
        if name not in FIBRES:
            raise ValueError(f"DBS fibre set {name!r}: one of {', '.join(sorted(FIBRES))}")
        out += [p for p in FIBRES[name] if p not in out]
    return out


def dbs_devices(variant: str = DEFAULT_VARIANT, amplitude_nA: float | None = None) -> list[dict]:
    """The devices of one DBS variant, as ``params.stimulus`` entries (one per population).
    ``amplitude_nA``: the first phase's size (its sign is the variant's); None: the variant's own."""
    pops, sign, default, shape = VARIANTS[variant]
    a = sign * (default if amplitude_nA is None else amplitude_nA)
    if a == 0:
        return []
    if shape == "dc":
        return [dict(label=f"dbs_{p}", population=p, kind="constant", amplitude_nA=a, onset_ms=0.0) for p in pops]
    if shape == "mono":
        return [dict(label=f"dbs_{p}", population=p, frequency_hz=MONO_FREQUENCY_HZ, width_ms=WIDTH_MS,
                     amplitude_nA=a, onset_ms=0.0) for p in pops]
    return [dict(label=f"dbs_{p}", population=p, frequency_hz=FREQUENCY_HZ, width_ms=WIDTH_MS, amplitude_nA=a,
                 phase2_width_ms=3.0, phase2_amplitude_nA=-a / 10, onset_ms=0.0) for p in pops]


def no_noise() -> None:
    """Switch the per-cell noise currents off (bg_network.NOISE_SD to 0) for the networks built after."""
    from bg_network import NOISE_SD
    NOISE_SD.update(dict.fromkeys(NOISE_SD, 0.0))


def standalone_args(argv=None) -> argparse.Namespace:
    """The command line of both standalone scripts (standalone_netpyne.py, standalone_brian2.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("state", choices=["healthy", "parkinson", "parkinson_dbs"])
    ap.add_argument("seed", type=int)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--duration", type=float, default=2000.0)
    ap.add_argument("--dbs", choices=sorted(VARIANTS), default=DEFAULT_VARIANT)
    ap.add_argument("--amp", type=float, default=None,
                    help="DBS first-phase amplitude (nA; its sign is the variant's); default: the variant's own; 0: none")
    ap.add_argument("--fibres", default="", help=f"fibre sets DBS activates, comma-separated: {', '.join(sorted(FIBRES))}")
    ap.add_argument("--no-noise", action="store_true",
                    help="no per-cell noise current (tvb-multiscale's 'exact Maith' notebook runs the model so)")
    a = ap.parse_args(argv)
    try:
        fibre_projections(a.fibres)
    except ValueError as e:
        ap.error(str(e))
    return a
