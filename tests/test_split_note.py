"""Regions split across spiking services change the model (issue 25): `cosim run` says so, naming
the services whose connected regions are coupled through rates only instead of E->E."""
from __future__ import annotations

import numpy as np
import pytest

from cosim.config import parse_config
from cosim.launch.preflight import split_coupling_note

pytestmark = [pytest.mark.unit]


def _cfg(nodes, inter_service="auto"):
    return parse_config({"run": {"inter_service": inter_service},
                         "spiking_nodes": [{"name": n, "backend": b, "regions": r, **({"params": p} if p else {})}
                                           for n, b, r, p in nodes]})


def test_connected_regions_on_two_services_are_named():
    w = np.zeros((76, 76))
    w[33, 71] = 1.0
    con = {"weights": w}
    one = _cfg([("s", "netpyne", [33, 71], None)])
    assert split_coupling_note(one, con) is None
    two = _cfg([("a", "netpyne", [33], None), ("b", "nest", [71], None)])
    assert split_coupling_note(two, con) is None                    # auto: NetPyNE and NEST exchange spikes
    two_np = _cfg([("a", "netpyne", [33], {"input": {"mode": "per_source"}}), ("b", "nest", [71], None)])
    note = split_coupling_note(two_np, con)
    assert note is not None and "a/b (1 region pair(s))" in note and "rates only" in note
    unlinked = _cfg([("a", "netpyne", [33], None), ("b", "netpyne", [10], None)])
    assert split_coupling_note(unlinked, con) is None
    off = _cfg([("a", "netpyne", [33], {"inter_region": {"enabled": False}}), ("b", "netpyne", [71], None)])
    assert split_coupling_note(off, con) is None                    # rate coupling chosen explicitly
    ref = _cfg([("a", "reference", [33], None), ("b", "netpyne", [71], None)])
    assert split_coupling_note(ref, con) is None                    # the mean-field side has no E->E
    spikes = _cfg([("a", "netpyne", [33], None), ("b", "netpyne", [71], None)])
    assert split_coupling_note(spikes, con) is None                 # auto: spikes travel, the same network
    rates = _cfg([("a", "netpyne", [33], None), ("b", "netpyne", [71], None)], "rates")
    note = split_coupling_note(rates, con)
    assert note is not None and "a/b (1 region pair(s))" in note and "'rates'" in note
