"""NetPyNE ``rxdParams`` for the calcium example: one cytosolic region on the chosen pops'
somata, species ``ca`` (charge 2, so ``ica`` from cachan.mod flows in) with first-order
extrusion back to rest, ``d[ca]/dt = -(ca - cai0) / tau_ca``. ``tau_ca_ms`` is the molecular
parameter the example varies: slower extrusion -> more [Ca]i -> more KCa -> lower rate.
"""
from __future__ import annotations


def rxd_params(pops: list[str], rx) -> dict:
    """rxdParams for ``pops`` (NetPyNE pop labels) from an RxdExample config block."""
    return {
        "regions": {"cyt": {"cells": list(pops), "secs": ["soma"], "nrn_region": "i",
                            "geometry": {"class": "FractionalVolume",
                                         "args": {"volume_fraction": 0.83, "surface_fraction": 1}}}},
        "species": {"ca": {"regions": ["cyt"], "d": float(rx.diffusion_um2_ms), "charge": 2,
                           "initial": float(rx.cai0_mM)}},
        "rates": {"ca_extrusion": {"species": "ca", "regions": ["cyt"],
                                   "rate": f"-(ca - {float(rx.cai0_mM)!r}) / {float(rx.tau_ca_ms)!r}"}},
    }
