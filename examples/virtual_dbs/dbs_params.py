"""The study's three states and its DBS protocol, shared by every backend and by examples/virtual_dbs.py."""
import argparse

FIT = {"healthy": "control", "parkinson": "patient", "parkinson_dbs": "patient"}
T_SKIP_MS = 500.0        # transient left out of rates and spectra

#: STN-DBS: 130 Hz, charge-balanced biphasic pulses (first phase A for 0.3 ms, then -A/10 for 3 ms).
#: A in nA == mV/ms on the Izhikevich-Hamker cell (mod/izhi_hamker.mod). Variants (where the pulses go):
#:   stn      every STN cell (somatic activation)
#:   stn_gpe  STN and GPe (GPe's axons to STN activated antidromically)
#:   stn_inh  every STN cell with the first phase negative (somatic inhibition, a "functional lesion")
VARIANTS = {"stn": (["STN"], 1.0), "stn_gpe": (["STN", "GPe"], 1.0), "stn_inh": (["STN"], -1.0)}
DEFAULT_VARIANT = "stn"
DEFAULT_AMPLITUDE_NA = 100.0


def dbs_devices(variant: str = DEFAULT_VARIANT, amplitude_nA: float = DEFAULT_AMPLITUDE_NA) -> list[dict]:
    """The devices of one DBS variant, as ``params.stimulus`` entries (one per population)."""
    pops, sign = VARIANTS[variant]
    a = sign * amplitude_nA
    return [dict(label=f"dbs_{p}", population=p, frequency_hz=130.0, width_ms=0.3, amplitude_nA=a,
                 phase2_width_ms=3.0, phase2_amplitude_nA=-a / 10, onset_ms=0.0) for p in pops]


def standalone_args(argv=None) -> argparse.Namespace:
    """The command line of both standalone scripts (standalone_netpyne.py, standalone_brian2.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("state", choices=["healthy", "parkinson", "parkinson_dbs"])
    ap.add_argument("seed", type=int)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--duration", type=float, default=2000.0)
    ap.add_argument("--dbs", choices=sorted(VARIANTS), default=DEFAULT_VARIANT)
    ap.add_argument("--amp", type=float, default=DEFAULT_AMPLITUDE_NA, help="DBS first-phase amplitude (nA)")
    return ap.parse_args(argv)
