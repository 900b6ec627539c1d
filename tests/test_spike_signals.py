"""Spike signals between spiking services (PROTOCOL.md §4.2; issue 25): the event block's rules, its
routing (only source regions that project to the consumer), how a producer's block is cut per
consumer and put back together by the consumer's inbox, and which config couples by spikes."""
from __future__ import annotations

import numpy as np
import pytest

from cosim.config import parse_config
from cosim.config.inter_service import cannot_spike, spike_sources
from cosim.proto.messages import Message, MessageType
from cosim.proto.signals import check_events, check_outputs, is_event, select_events, split_events
from cosim.runtime.step_copies import StepCopies
from cosim.runtime.adapter import RunContext, SignalSpec
from cosim.runtime.node import Inbox
from cosim.services.coordinator import routing

pytestmark = [pytest.mark.unit]


def ev(*rows):
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def test_event_blocks_are_checked_for_columns_cells_and_times():
    assert is_event("spikes/E") and not is_event("state/R_e")
    ok = ev((0, 3, 0.025), (1, 0, 1.6))
    assert check_events(ok, 2, 1.6) is None
    assert check_events(ev(), 2, 1.6) is None
    assert "outside 0..1" in check_events(ev((2, 0, 0.1)), 2, 1.6)
    assert "cell" in check_events(ev((0, 1.5, 0.1)), 2, 1.6)
    assert "outside the window" in check_events(ev((0, 1, 1.7)), 2, 1.6)
    assert "NaN" in check_events(ev((0, 1, np.nan)), 2, 1.6)
    assert "float64" in check_events(ok.astype(np.float32), 2, 1.6)
    assert "(n, 3)" in check_events(np.zeros((2, 2)), 2, 1.6)
    # value checks leave event signals alone (they are never (W, n) blocks, never copied)
    assert check_outputs([SignalSpec("spikes/E", (1, 2))], {}, 16) is None


def test_a_producer_sends_each_consumer_only_its_columns_renumbered():
    block = ev((0, 5, 0.1), (1, 6, 0.2), (2, 7, 0.3), (1, 8, 0.4))
    got = select_events(block, np.array([1, 2]))
    assert np.array_equal(got, ev((0, 6, 0.2), (1, 7, 0.3), (0, 8, 0.4)))
    assert select_events(block, None) is block
    assert select_events(ev(), np.array([0])).shape == (0, 3)


def test_spikes_are_planned_only_from_regions_that_project_to_the_consumer():
    w = np.zeros((6, 6))
    w[1, 3] = 1.0          # 3 -> 1
    w[4, 2] = 1.0          # 2 -> 4
    owner = {0: "tvb", 5: "tvb", 1: "a", 2: "a", 3: "b", 4: "b"}
    req = {"a": [SignalSpec("coupling/R_e", (1, 2)), SignalSpec("spikes/E", (3, 4))],
           "b": [SignalSpec("coupling/R_e", (3, 4)), SignalSpec("spikes/E", (1, 2))], "tvb": []}
    plan = routing.plan(req, owner, weights=w)
    assert SignalSpec("spikes/E", (3,)) in plan.inputs["a"]          # 4 projects nowhere in a
    assert SignalSpec("spikes/E", (2,)) in plan.inputs["b"]
    assert SignalSpec("spikes/E", (2,)) in plan.outputs["a"]
    send, _ = routing.links(plan, "a")
    assert {"name": "spikes/E", "cols": [0]} in next(e["signals"] for e in send if e["to"] == "b")
    # the coordinator resends (§8) and replays after a resume (§10.1) each consumer's columns of its copy
    resent = routing.data_for(plan, "a", "b", {"spikes/E": ev((0, 1, 0.2))})
    assert np.array_equal(resent["spikes/E"], ev((0, 1, 0.2)))
    with pytest.raises(routing.PlanError, match="simulated by TVB has no spikes"):
        routing.plan({"a": [SignalSpec("spikes/E", (0,))], "tvb": []}, {0: "tvb", 1: "a"})


def _inbox(W=4, dt=0.1):
    ctx = RunContext(config={}, node_name="c", regions=(9,), tvb_dt_ms=dt, tick_ms=dt, steps_per_window=W,
                     n_windows=3, inputs=[SignalSpec("spikes/E", (1, 2, 3))])
    receive = [{"from": "p", "token": "t1", "signals": [{"name": "spikes/E", "cols": [0, 2]}]},
               {"from": "q", "token": "t2", "signals": [{"name": "spikes/E", "cols": [1]}]}]
    return Inbox(ctx, receive, 1)


def test_the_inbox_merges_producers_events_into_its_own_columns_and_refuses_bad_ones():
    box = _inbox()
    box.put(Message(MessageType.DATA, {"signals": {"spikes/E": ev((1, 4, 0.1))}, "token": "t1"}, node="p", window=0))
    box.put(Message(MessageType.DATA, {"signals": {"spikes/E": ev((0, 2, 0.3))}, "token": "t2"}, node="q", window=0))
    got, bad = box.take(1)
    assert bad is None
    assert np.array_equal(got["spikes/E"], ev((2, 4, 0.1), (1, 2, 0.3)))       # p's col 1 is input col 2
    box.put(Message(MessageType.DATA, {"signals": {"spikes/E": ev((0, 1, 9.0))}, "token": "t1"}, node="p", window=1))
    box.put(Message(MessageType.DATA, {"signals": {"spikes/E": ev()}, "token": "t2"}, node="q", window=1))
    _, bad = box.take(2)
    assert bad[0] == "p" and "outside the window" in bad[1]


def test_a_resend_without_spikes_is_named_as_lost_spikes():
    box = _inbox()
    box.put(Message(MessageType.DATA, {"signals": {}}, node="p", window=0), trusted=True)
    box.put(Message(MessageType.DATA, {"signals": {"spikes/E": ev()}, "token": "t2"}, node="q", window=0))
    _, bad = box.take(1)
    assert bad[0] == "p" and "resend lacks 'spikes/E'" in bad[1]


def _nodes(*nodes, **run):
    return parse_config({"run": run, "spiking_nodes": [{"name": n, "backend": b, "regions": r, "params": p}
                                                       for n, b, r, p in nodes]}).model_dump(mode="json")


def test_which_services_exchange_spikes():
    two = _nodes(("a", "netpyne", [1, 2], {}), ("b", "netpyne", [3], {}))
    assert spike_sources(two, "a") == [3] and spike_sources(two, "b") == [1, 2]
    rates = _nodes(("a", "netpyne", [1, 2], {}), ("b", "netpyne", [3], {}), inter_service="rates")
    assert spike_sources(rates, "a") == []
    mixed = _nodes(("a", "netpyne", [1], {}), ("b", "nest", [3], {}), ("c", "netpyne", [4], {}))
    assert spike_sources(mixed, "a") == [3, 4] and spike_sources(mixed, "b") == [1, 4]   # across backends too
    other = _nodes(("a", "netpyne", [1], {}), ("b", "reference", [3], {}))
    assert spike_sources(other, "a") == [] and "backend 'reference'" in cannot_spike(other["spiking_nodes"][1])
    assert "model_file" in cannot_spike({"backend": "nest", "params": {"model_file": {"path": "m.py"}}})
    assert "per_source" in cannot_spike({"backend": "nest", "params": {"input": {"mode": "per_source"}}})
    assert "wiring" in cannot_spike({"backend": "netpyne", "params": {"network": {"wiring": "netpyne"}}})
    assert "per_source" in cannot_spike({"backend": "netpyne", "params": {"input": {"mode": "per_source"}}})


def test_config_refuses_spikes_it_cannot_honour_in_one_line():
    with pytest.raises(Exception, match=r"run.inter_service: 'spikes' but spiking_nodes\[1\] \('b'\) cannot"):
        _nodes(("a", "netpyne", [1], {}), ("b", "reference", [3], {}), inter_service="spikes")
    _nodes(("a", "netpyne", [1], {}), ("b", "nest", [3], {}), inter_service="spikes")      # both can
    _nodes(("a", "netpyne", [1], {}), ("b", "netpyne", [3], {}), checkpoint={"every_windows": 10})


def test_spikes_into_nest_need_one_step_beyond_the_lag():
    """NEST cannot deliver a stand-in's spike through a synapse of delay 0 (PROTOCOL.md §4.2): the
    smallest delay of a connection carrying spikes into a NEST service, which the window must stay
    one step below; None when no spikes go into NEST."""
    from cosim.config.inter_service import slack_delay_steps
    w, d = np.zeros((6, 6)), np.full((6, 6), 40)
    w[1, 3], d[1, 3] = 1.0, 17             # 3 -> 1: into the NEST node
    w[3, 1], d[3, 1] = 1.0, 9              # 1 -> 3: into the NetPyNE node (it takes delay 0)
    w[2, 5], d[2, 5] = 1.0, 5              # 5 (TVB) -> 2: rates, no spikes
    mixed = _nodes(("a", "nest", [1, 2], {}), ("b", "netpyne", [3], {}))
    assert slack_delay_steps(mixed, w, d) == 17
    assert slack_delay_steps(_nodes(("a", "nest", [1, 2], {}), ("b", "netpyne", [3], {}), inter_service="rates"),
                             w, d) is None
    assert slack_delay_steps(_nodes(("a", "netpyne", [1, 2], {}), ("b", "netpyne", [3], {})), w, d) is None
    assert slack_delay_steps(_nodes(("a", "nest", [1, 2], {}), ("b", "nest", [3], {})), w, d) == 9


def test_validate_refuses_a_window_without_the_slack_in_one_line():
    from cosim.errors import ConfigError
    from cosim.launch.preflight import check_window
    w, d = np.zeros((6, 6)), np.full((6, 6), 40)
    w[1, 3] = w[3, 1] = 1.0
    d[1, 3] = d[3, 1] = 16
    con = {"weights": w, "idelays": d}

    def cfg(backend_b, window_ms):
        return parse_config({"run": {"window_ms": window_ms}, "spiking_nodes": [
            {"name": "a", "backend": "nest", "regions": [1]}, {"name": "b", "backend": backend_b, "regions": [3]}]})
    check_window(cfg("nest", 1.5), "c.yaml", con)
    check_window(cfg("netpyne", 1.5), "c.yaml", con)
    with pytest.raises(ConfigError, match=r"use at most 1.5 ms \(spikes into a NEST service cross a delay of 16"):
        check_window(cfg("nest", 1.6), "c.yaml", con)
    check_window(parse_config({"run": {"window_ms": 1.6}, "spiking_nodes": [
        {"name": "a", "backend": "netpyne", "regions": [1]}, {"name": "b", "backend": "netpyne", "regions": [3]}]}),
        "c.yaml", con)                                   # NetPyNE takes delay 0: no slack


def test_copies_carry_spikes_window_by_window():
    """STEP_DONE copies (§4.2): a batch's event blocks travel as one (n, 4) block, each row stamped
    with its window's offset in the batch, and the coordinator splits them back."""
    c = StepCopies("a", max_windows=3)
    blocks = [ev((0, 1, 0.5)), ev(), ev((1, 2, 0.1), (0, 3, 1.6))]
    for k, b in enumerate(blocks):
        c.add(k, {"spikes/E": b, "state/R_e": np.full((4, 2), float(k))}, {})
    msg = c.take()
    got = msg.content["outputs"]["spikes/E"]
    assert got.shape == (3, 4) and got[:, 0].tolist() == [0, 2, 2]
    per, why = split_events(got, 3, 2, 1.6)
    assert why is None and all(np.array_equal(p, b) for p, b in zip(per, blocks))
    assert "window offsets" in split_events(got, 2, 2, 1.6)[1]
    assert "outside 0..0" in split_events(got, 3, 1, 1.6)[1]
    one = StepCopies("a")
    one.add(5, {"spikes/E": blocks[0]}, {})
    assert one.take().content["outputs"]["spikes/E"].shape == (1, 4)
