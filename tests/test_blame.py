"""Blame (issue "Reliability II" §2): a node that sends bad data, or whose message the coordinator
refuses, is named at once with the real reason; never the node that received the data, never
"no heartbeat … died or hung" seconds later.

Real processes: `cosim run` with the noop backend told to send a bad value (NaN, ±Inf, 1e308,
float32) in one window, and a real node runtime patched to send a STEP_DONE for a window that
does not exist.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from conftest import noop_config
from harness import Services, log_time, noop_cfg, record_fault

HB_MS = 2000


# protocol 3: the producer's runtime checks its outputs before they leave (consumers check what they
# receive too, and the coordinator the copy): every bad value is named at once as the producer's
@pytest.mark.system
@pytest.mark.parametrize("bad,words", [("nan", "bad outputs"), ("inf", "bad outputs"), ("huge", "bad outputs"),
                                       ("float32", "bad outputs")])
def test_bad_values_are_blamed_on_their_producer_at_once(cosim, bad, words):
    cfg = noop_config(duration_ms=64, bad_output=bad, bad_output_at_window=5)
    cfg["coordinator"] = {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": HB_MS}
    t0 = time.monotonic()
    r = cosim(cfg, "--no-plots", timeout=120)
    assert r.code == 1, r.stderr
    line = [l for l in r.stderr.splitlines() if "run failed" in l]
    assert len(line) == 1, r.stderr
    line = line[0]
    assert "node 'spiking' failed in window 5" in line and words in line, line
    assert {"nan": "NaN", "inf": "Inf", "huge": "1e+308", "float32": "float64"}[bad] in line, line
    assert "no heartbeat" not in line
    log = (r.out / "logs" / "coordinator.log").read_text()
    assert "aborting run" in log
    # the receiver is not blamed: the TVB node was told by ABORT, it did not fail
    assert "run aborted by the coordinator" in (r.out / "logs" / "tvb.log").read_text()
    assert time.monotonic() - t0 < 60
    wall = time.monotonic() - t0
    record_fault("bad output value", value=bad, cosim_run_wall_s=round(wall, 1), timeout_ms=HB_MS)
    print(f"{bad}: whole cosim run {wall:.1f} s")


@pytest.mark.unit
def test_routing_check_outputs_refuses_bad_values():
    from cosim.runtime.adapter import SignalSpec
    from cosim.services.coordinator.routing import check_outputs
    specs = [SignalSpec("state/S_e", (1, 2))]
    ok = np.zeros((4, 2))
    assert check_outputs(specs, {"state/S_e": ok}, 4) is None
    for bad, word in ((np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf"), (1e308, "beyond"), (-1e31, "beyond")):
        a = ok.copy()
        a[2, 1] = bad
        why = check_outputs(specs, {"state/S_e": a}, 4)
        assert why and word in why and "region 2" in why and "step 2" in why, why
    assert "float32" in check_outputs(specs, {"state/S_e": ok.astype(np.float32)}, 4)
    assert "not an array" in check_outputs(specs, {"state/S_e": "x"}, 4)
    assert "not a map" in check_outputs(specs, "x", 4)


# a real node runtime (noop backend) that sends its STEP_DONE of window 3 as window 1000 (copies
# sent one window at a time, so that window 3 has a STEP_DONE of its own)
_PATCHED_NODE = r"""
import sys
from cosim.runtime import node
from cosim.runtime import step_copies
step_copies.StepCopies.__init__.__defaults__ = (1, 0.0)
from cosim.proto.messages import MessageType as T
orig_send = node.Channel.send
def send(self, msg, *args, **kwargs):
    if msg.type == T.STEP_DONE and msg.window == 3:
        msg.window = 1000
    return orig_send(self, msg, *args, **kwargs)
node.Channel.send = send
from cosim.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.system
def test_refused_message_of_a_registered_node_is_named_at_once(tmp_path):
    cfg = noop_cfg(duration_ms=16 * 0.1 * 20, hb_interval_ms=100, hb_timeout_ms=HB_MS)
    with Services(cfg, tmp_path) as s:
        s.start_coordinator()
        s.start_node("tvb")
        s._start("spiking", [sys.executable, "-c", _PATCHED_NODE, "spiking-node", "--coordinator", s.router,
                             "--name", "spiking"])
        codes = s.wait_exit(timeout=60)
        assert codes["coordinator"] == 1 and codes["spiking"] == 1 and codes["tvb"] == 1, (codes, s.logs_text())
        log = s.log("coordinator")
        fails = [l for l in log.splitlines() if l.startswith("cosim: run failed")]
        assert len(fails) == 1, log
        line = fails[0]
        assert "node 'spiking' failed in window 3" in line and "STEP_DONE for window 1000" in line, line
        assert "no heartbeat" not in line, line
        t_refused = log_time(log, "rejected UnexpectedMessage")
        t_abort = log_time(log, "aborting run")
        record_fault("refused message of a registered node", refusal_to_abort_ms=round((t_abort - t_refused) * 1000),
                     timeout_ms=HB_MS)
        print(f"refusal -> abort: {(t_abort - t_refused) * 1000:.0f} ms")
        assert t_abort - t_refused < 1.0, (t_refused, t_abort)     # at once, not after the heartbeat timeout


@pytest.mark.system
@pytest.mark.parametrize("field", ["spiking_nodes[0].regions", "coordinator.watch_regions"])
def test_services_started_by_hand_refuse_a_region_that_does_not_exist_as_validate_does(tmp_path, field):
    """Without `cosim run`'s preflight (services started one by one, as on several machines) the
    coordinator refuses the region once TVB has told it the connectome's size: exit 2, the same
    words as `cosim validate` (one check, cosim.config.regions)."""
    cfg = noop_cfg()
    if field == "coordinator.watch_regions":
        cfg["coordinator"]["watch_regions"] = [1, 500]
    else:
        cfg["spiking_nodes"][0]["regions"] = [3, 500]
    with Services(cfg, tmp_path) as s:
        s.start_coordinator()
        s.start_node("tvb")
        s.start_node("spiking")
        codes = s.wait_exit(names=["coordinator"], timeout=60)
        assert codes["coordinator"] == 2, (codes, s.logs_text())
        fails = [l for l in s.log("coordinator").splitlines() if l.startswith("cosim: run failed")]
        assert len(fails) == 1, s.log("coordinator")
        assert f"{field}: region(s) [500] do not exist (the connectivity has 76 regions, 0..75)" in fails[0], fails
