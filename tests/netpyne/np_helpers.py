"""Tiny networks for the NetPyNE backend tests (20 E + 8 I per region, 100-200 ms)."""
from __future__ import annotations

import copy

TINY = {"network": {"n_exc": 20, "n_inh": 8,
                    "conns": {"EE": {"prob": 0.1, "weight_uS": 0.004}, "EI": {"prob": 0.1, "weight_uS": 0.004},
                              "IE": {"prob": 0.3, "weight_uS": 0.004}, "II": {"prob": 0.3, "weight_uS": 0.004}}},
        "input": {"scale": 0.05}, "record": {"plot": False}}


def tiny(**over) -> dict:
    p = copy.deepcopy(TINY)
    for key, val in over.items():
        d = p
        *path, last = key.split("__")
        for part in path:
            d = d.setdefault(part, {})
        d[last] = val
    return p


def run(params: dict, regions=(33,), duration_ms=150.0, level=300.0, seed=42, results_dir=None, W=16):
    from cosim.services.netpyne_node.adapter import NetpyneAdapter
    from cosim.services.netpyne_node.drive import make_context, run_fake_lockstep
    ad = NetpyneAdapter(params)
    ctx = make_context(regions, params, duration_ms, W=W, seed=seed,
                       results_dir=None if results_dir is None else str(results_dir))
    res = run_fake_lockstep(ad, ctx, level=level, first_input=True)
    return ad, ctx, res
