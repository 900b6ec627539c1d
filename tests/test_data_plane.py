"""A data plane that trusts no stranger (issue 23, PROTOCOL.md §4.1, protocol 4), with real
processes and sockets: a local process finds a node's listening ports and pushes forged DATA
"from tvb" (NaN blocks for every window of the run, so that any one accepted fails the run blaming
tvb), without CURVE, and under CURVE with tvb's own valid key. The run must complete, the forged
messages counted and reported, tvb never blamed. Plus the inbox's checks one by one (unit)."""
import os
import threading
import time

import numpy as np
import pytest
import zmq

from conftest import noop_config
from psutil_free import cosim_processes

W, REGIONS = 16, 2          # the noop runs' window (delay_steps 16) and the spiking node's regions


def listening_ports(pid: int) -> list[int]:
    """TCP ports process `pid` listens on (/proc: what any local user can learn)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:
            ports.append(int(f[1].split(":")[1], 16))
    return ports


def _running_spiking_node(out) -> int | None:
    """The pid of the spiking node of the run writing `out`, once its windows run (coordinator.h5
    exists); None if that does not happen within 60 s."""
    import yaml
    deadline = time.time() + 60
    while time.time() < deadline:
        if (out / "config.yaml").exists():
            router = yaml.safe_load((out / "config.yaml").read_text())["coordinator"]["router"]
            pids = [pid for pid, cmd in cosim_processes(f"--coordinator {router} ") if "--name spiking" in cmd]
            if pids and (out / "coordinator.h5").exists():
                return pids[0]
        time.sleep(0.05)
    return None


def _attack(out, got: dict, n_windows: int, curve_keys=None) -> None:
    from cosim.proto import codec
    from cosim.proto.messages import Message, MessageType as T
    pid = _running_spiking_node(out)
    if pid is None:
        return
    ctx = zmq.Context.instance()
    socks = []
    for port in listening_ports(pid):
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        if curve_keys is not None:          # a valid key of the run: tvb's own
            from cosim.runtime import security
            me = security.client_from_dir(curve_keys, "tvb")
            s.curve_secretkey, s.curve_publickey = me.secret, me.public
            s.curve_serverkey = security.server_from_dir(curve_keys).public_keys()["spiking"].encode()
        s.connect(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    bad = {"coupling/R_e": np.full((W, REGIONS), np.nan)}
    n = 0
    for j in range(n_windows):
        frames = codec.encode(Message(T.DATA, {"signals": bad}, node="tvb", window=j, msg_id=j + 1))
        for s in socks:         # never blocks: the node's echo port (a ROUTER) takes no PUSH at all
            try:
                s.send_multipart(frames, flags=zmq.NOBLOCK)
                n += 1
            except zmq.Again:
                pass
    got.update(sent=n, ports=len(socks))
    time.sleep(1.0)
    for s in socks:
        s.close(linger=0)


@pytest.mark.system
@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve-with-tvb-key"])
def test_forged_data_is_dropped_counted_and_never_blamed(cosim, tmp_path, curve):
    cfg = noop_config(duration_ms=800, step_sleep_ms=2.0)      # 500 windows of 1.6 ms
    cfg["coordinator"] = {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 1000}
    keys = None
    if curve:
        from cosim.runtime import security
        keys = tmp_path / "keys"
        security.generate(keys, ["coordinator", "tvb", "spiking"])
        cfg["coordinator"].update(curve=True, keys_dir=str(keys))
    got: dict = {}
    t = threading.Thread(target=_attack, args=(tmp_path / "out", got, 500, keys))
    t.start()
    try:
        r = cosim(cfg, "--no-plots", timeout=120)
    finally:
        t.join(30)
    assert got.get("sent", 0) >= 1, "the spiking node's ports were never found"
    assert r.code == 0, r.stderr               # before: "node 'tvb' failed ...: bad outputs (refused by 'spiking')"
    import json
    s = json.loads((r.out / "summary.json").read_text())
    n = s["rejected_data"]["spiking"]["DataBadToken"]
    assert 0 < n <= got["sent"], (n, got)
    from harness import record_fault
    record_fault("forged DATA", curve=curve, sent=got["sent"], ports=got["ports"], dropped=n)
    assert "spiking: dropped data messages" in r.stdout and "DataBadToken" in r.stdout, r.stdout
    log = (r.out / "logs" / "spiking.log").read_text()
    assert log.count("rejected DataBadToken") <= 2, "a flood must be logged in summaries, not line by line"


@pytest.mark.unit
def test_inbox_checks_each_rule():
    """Inbox.put: not a producer, bad token, wrong CURVE key, window outside the run, and the
    coordinator's trusted copy; a float32 block from the real producer is blamed on it."""
    from cosim.proto.messages import Message, MessageType as T
    from cosim.runtime.adapter import RunContext, SignalSpec
    from cosim.runtime.node import Inbox
    ctx = RunContext(config={}, node_name="spiking", regions=(3, 5), tvb_dt_ms=0.1, tick_ms=0.1)
    ctx.inputs = [SignalSpec("coupling/R_e", (3, 5))]
    ctx.steps_per_window, ctx.n_windows = W, 10
    inbox = Inbox(ctx, [{"from": "tvb", "token": "a" * 32, "signals": [{"name": "coupling/R_e", "cols": [0, 1]}]}], 1)

    def data(j, node="tvb", token="a" * 32, dtype=np.float64):
        return Message(T.DATA, {"signals": {"coupling/R_e": np.ones((W, 2), dtype=dtype)}, "token": token}, node=node, window=j)

    inbox.put(data(0, node="evil"))
    inbox.put(data(0, token="b" * 32))
    inbox.put(data(0, token=None))
    inbox.put(data(0), key="spiking")                 # CURVE: the key of another node
    inbox.put(data(10))                               # beyond the run's last window
    inbox.put(data(-2))                               # before the initial windows (lag 1)
    assert inbox.rejects.counts == {"DataNotAProducer": 1, "DataBadToken": 2, "DataWrongKey": 1,
                                    "DataWindowOutOfRange": 2}
    assert not inbox.complete(1)
    inbox.put(Message(T.DATA, {"signals": {"coupling/R_e": np.ones((W, 2))}}, node="tvb", window=0), trusted=True)
    assert inbox.complete(1)
    inbox.put(data(1, dtype=np.float32), key="tvb")
    inbox.take(1)
    _, bad = inbox.take(2)
    assert bad[0] == "tvb" and "float32" in bad[1], bad


def _vm(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of `pid`, in MB."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


def _flood(out, got: dict, size: int, count: int) -> None:
    """Push `count` DATA of `size` bytes (each well-formed but far larger than this run's windows)
    to every port the running spiking node listens on; note its memory before and after."""
    from cosim.proto import codec
    from cosim.proto.messages import Message, MessageType as T
    pid = _running_spiking_node(out)
    if pid is None:
        return
    time.sleep(0.3)
    got["before"] = _vm(pid)
    big = {"coupling/R_e": np.zeros((size // (8 * REGIONS), REGIONS))}
    frames = codec.encode(Message(T.DATA, {"signals": big, "token": "x" * 32}, node="tvb", window=5, msg_id=1))
    ctx = zmq.Context()
    socks = []
    for port in listening_ports(pid):
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, 0)
        s.connect(f"tcp://127.0.0.1:{port}")
        socks.append(s)
    for _ in range(count):
        for s in socks:
            try:
                s.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                pass
    time.sleep(2.0)             # every byte has gone out (loopback: ~1 GB/s), or was refused
    try:
        got["after"] = _vm(pid)
    except OSError:
        pass
    got["ports"] = len(socks)
    for s in socks:
        s.close(linger=0)
    ctx.term()


@pytest.mark.system
def test_an_inbox_flood_of_large_messages_keeps_the_node_small(cosim, tmp_path):
    """Bounded inbox (§4.1): from PREPARE on, a node's inbox admits messages no larger than 4 x its
    largest legitimate DATA + 64 KiB (here 16 steps x 2 regions: 67 KB). A local process pushes
    5 x 60 MB DATA to every port of the spiking node: each connection is dropped at the first frame
    header, nothing is read, and the node's peak memory does not move. Before (the limit was the
    64 MiB default, taken at bind before the node knew its windows): all were read and decoded, a
    transient +300 MB peak."""
    cfg = noop_config(duration_ms=6000, step_sleep_ms=2.0)      # 3750 windows of 1.6 ms: ~10 s
    cfg["coordinator"] = {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 2000}
    got: dict = {}
    t = threading.Thread(target=_flood, args=(tmp_path / "out", got, 60 * 2**20, 5))
    t.start()
    try:
        r = cosim(cfg, "--no-plots", timeout=180)
    finally:
        t.join(60)
    assert "after" in got, f"the node ended before the flood was measured: {got}"
    assert r.code == 0, r.stderr
    log = (r.out / "logs" / "spiking.log").read_text()
    assert "data inbox" in log and "open (messages up to 66560 bytes)" in log, log[-2000:]
    grew = got["after"]["VmHWM"] - got["before"]["VmRSS"]
    from harness import record_fault
    record_fault("inbox flood 5 x 60 MB", ports=got["ports"], rss_before_mb=got["before"]["VmRSS"],
                 rss_after_mb=got["after"]["VmRSS"], peak_after_mb=got["after"]["VmHWM"])
    assert grew < 40, got          # 60 MB read even once would show
