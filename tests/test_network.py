"""Network faults between the nodes and the coordinator (issue "Reliability" §5), through a
userspace TCP proxy on loopback (`tcp_proxy.TcpProxy`; the kernel here has no netem).

- delay + jitter on every chunk: the run completes, bit-identical to a clean run;
- a cut (nothing forwarded, connections held) longer than the heartbeat timeout: the run aborts
  by the rules (coordinator names the node; nodes notice the coordinator is gone), nobody hangs;
- a cut shorter than the timeout: TCP holds, the run completes, bit-identical;
- connection resets (RST): ZeroMQ reconnects but does not resend what was in flight; the
  coordinator repeats a STEP a node is idle-waiting for (heartbeats carry the node's progress),
  so the run completes, bit-identical.
"""
from __future__ import annotations

import json
import random
import time

import pytest

from harness import Services, check_prefix, free_port, log_time, read_results, ref_config, record_fault, wait_for
from tcp_proxy import TcpProxy

pytestmark = [pytest.mark.system, pytest.mark.tvb]

HB_MS = 1000
DURATION = 200        # ms: 41 windows of 4.9 ms
W = 49


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The run without a proxy, its services forked from a zygote (conftest.run_warm: TVB imported
    once, not in each service; a forked service computes what a fresh one does)."""
    from conftest import run_warm
    r = run_warm({"clean": ref_config(DURATION, hb_timeout_ms=HB_MS)}, tmp_path_factory.mktemp("clean"), "--no-plots")["clean"]
    assert r.code == 0, r.stderr[-3000:]
    return read_results(r.out)


class _ProxiedServices(Services):
    def start_all(self) -> Services:
        """The coordinator first, the nodes once it has bound its ROUTER (a node that connects
        before sees the proxy accept and close: it waits, by its register timeout; that it is not
        taken for a key problem is tests/test_security.py's proxy test)."""
        self.start_coordinator()
        wait_for(lambda: "ROUTER on" in self.log("coordinator") or self.any_exited(), 120, "the coordinator to bind")
        self.start_node("tvb")
        for n in self.cfg["spiking_nodes"]:
            self.start_node(n["name"])
        return self


def _proxied(tmp_path, cfg, **proxy):
    port = free_port()
    px = TcpProxy("127.0.0.1", port, **proxy)
    px.start()
    return px, _ProxiedServices(cfg, tmp_path, node_address=f"tcp://127.0.0.1:{px.port}", router_port=port)


def _complete_and_equal(s: Services, out, clean) -> dict:
    codes = s.wait_exit(timeout=180)
    assert codes == {"coordinator": 0, "tvb": 0, "spiking": 0}, s.logs_text()
    got = check_prefix(out, clean, W)
    full = clean["coordinator.h5"]["time_ms"].shape[0] // W
    assert got["coordinator.h5"] == full and got["spiking.h5"] == full, got
    return json.loads((out / "status_coordinator.json").read_text())


def test_delay_and_jitter_change_nothing(tmp_path, clean):
    px, s = _proxied(tmp_path, ref_config(DURATION, hb_timeout_ms=HB_MS), delay_ms=3, jitter_ms=4, seed=1)
    with px, s:
        s.start_all()
        _complete_and_equal(s, tmp_path, clean)
        assert px.stats["bytes"] > 0


@pytest.mark.slow
def test_short_cut_is_survived(tmp_path, clean):
    """Held for 40 % of the heartbeat timeout, twice: TCP keeps the connections, nothing is lost."""
    px, s = _proxied(tmp_path, ref_config(DURATION, hb_timeout_ms=HB_MS))
    with px, s:
        s.start_all()
        s.wait_running()
        for _ in range(2):
            time.sleep(0.15)
            px.cut()
            time.sleep(0.4 * HB_MS / 1000)
            px.heal()
        _complete_and_equal(s, tmp_path, clean)


@pytest.mark.slow
def test_connection_resets_are_survived(tmp_path, clean):
    """RST on every connection at random moments: ZeroMQ reconnects; lost messages are repeated."""
    rng = random.Random(3)
    px, s = _proxied(tmp_path, ref_config(DURATION, hb_timeout_ms=HB_MS), delay_ms=1, jitter_ms=2)
    with px, s:
        s.start_all()
        s.wait_running()
        resets = 0
        for _ in range(6):
            time.sleep(rng.uniform(0.05, 0.3))
            if s.any_exited():
                break
            px.reset()
            resets += 1
        status = _complete_and_equal(s, tmp_path, clean)
    record_fault("connection resets", resets=resets, messages_repeated=status["messages_repeated"])
    assert resets >= 2


@pytest.mark.slow
def test_long_cut_aborts_cleanly(tmp_path):
    """Cut (connections held) for 3 heartbeat timeouts: the coordinator fails the run naming a node,
    the nodes conclude the coordinator is gone; every process exits by itself, in bounded time."""
    cfg = ref_config(2000, hb_timeout_ms=HB_MS)
    px, s = _proxied(tmp_path, cfg)
    with px, s:
        s.start_all()
        s.wait_running()
        time.sleep(0.3)
        px.cut()
        t_cut = time.time()
        codes = s.wait_exit(timeout=HB_MS / 1000 + 30)
        assert codes == {"coordinator": 1, "tvb": 1, "spiking": 1}, (codes, s.logs_text())
        px.heal()
        fails = [l for l in s.log("coordinator").splitlines() if l.startswith("cosim: run failed")]
        # the proxy cuts the dialog only: each node's echo (PROTOCOL.md §8) is reached directly, so the
        # coordinator may first see a node exit (having given up on it) and say so, before its own timeout
        assert len(fails) == 1 and "last completed window" in fails[0] and (
            "no heartbeat" in fails[0] or "gave up on the coordinator" in fails[0]), fails
        t_abort = log_time(s.log("coordinator"), "aborting run")
        nodes = {}
        for n in ("tvb", "spiking"):
            assert "stopped answering heartbeats" in s.log(n), s.log(n)
            nodes[n] = round((log_time(s.log(n), "no heartbeat from the coordinator") - t_cut) * 1000)
        record_fault("cut > timeout", coordinator_detect_ms=round((t_abort - t_cut) * 1000), nodes_detect_ms=nodes,
                timeout_ms=HB_MS)
        assert t_abort - t_cut < HB_MS / 1000 + 1.0
    status = json.loads((tmp_path / "status_coordinator.json").read_text())
    assert not status["completed"]


def test_zmtp_heartbeats_close_a_link_that_went_silent(monkeypatch):
    """Every TCP link of a run carries ZMTP heartbeats (libzmq's PING/PONG): a link cut without a
    close (the proxy blackholes both ways, as an unplugged cable does) is closed by libzmq after the
    ZMTP timeout, and the socket reconnects, instead of staying half open for ever (TCP alone never
    notices). The node's Channel (DEALER) against a ROUTER as the coordinator binds it."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    from cosim.runtime import transport
    monkeypatch.setattr(transport, "ZMTP_IVL_MS", 100)
    monkeypatch.setattr(transport, "ZMTP_TIMEOUT_MS", 500)
    ctx = zmq.Context()
    router = transport.zmtp_heartbeats(ctx.socket(zmq.ROUTER))
    port = router.bind_to_random_port("tcp://127.0.0.1")
    px = TcpProxy("127.0.0.1", port)
    px.start()
    ch = transport.Channel(ctx, f"tcp://127.0.0.1:{px.port}", b"node#1")
    mon = ch.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    try:
        def next_event(timeout_s):
            if not mon.poll(int(timeout_s * 1000)):
                return None
            return recv_monitor_message(mon)["event"]
        assert next_event(5) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        px.cut()
        t0 = time.monotonic()
        assert next_event(5) == zmq.EVENT_DISCONNECTED, "the silent link stayed open"
        assert time.monotonic() - t0 < 3.0
    finally:
        px.close()
        mon.close(linger=0)
        ch.sock.close(linger=0)
        router.close(linger=0)
        ctx.term()
