"""What the coordinator knows about each node (one `Peer` per expected node name)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import zmq

from cosim.runtime.adapter import SignalSpec

# the pseudo-consumer of `coordinator.watch_regions` (never a node name: names are [A-Za-z0-9_.-])
WATCH = "<watch>"


@dataclass
class Peer:
    name: str
    role: str
    routing_id: bytes | None = None
    token: str = ""
    last_seen: float = field(default_factory=time.monotonic)
    state: str = "expected"         # expected → registered → configured → preparing → ready → finished
    requires: list[SignalSpec] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    data: str | None = None             # its data inbox's address (CONFIGURED.data, §4.1)
    rtt_ms: float | None = None         # its heartbeats' round trip to the coordinator (the smallest seen)
    step_s: float | None = None         # what a TVB step costs it, if it said (CONFIGURED.cost)
    done: int = -1                      # the last window whose STEP_DONE arrived (all before it did too)
    asked: int | None = None            # the window from which it was last asked to resend (§8)
    silent_warned: bool = False
    stuck_since: float | None = None    # idle (per its heartbeats) although the run waits for it
    stuck_key: tuple | None = None
    refused: str | None = None          # the last of its messages the coordinator answered with ERROR
    # liveness (§8, "Three signals")
    echo: str | None = None             # its echo socket's address (CONFIGURED.echo)
    echo_sock: zmq.Socket | None = None            # the coordinator's DEALER to it, and that socket's monitor
    echo_mon: zmq.Socket | None = None
    echo_seen: float = 0.0              # the last echo reply
    echo_down_at: float | None = None   # its echo connection closed (and not reconnected since)
    echo_refused: bool = False          # ... and a reconnect failed: nothing listens there any more
    busy_since: float | None = None     # when its heartbeats first said it computes window busy_done + 1
    busy_done: int = -1
    gil_noted: bool = False             # logged once: silent but its echo answers
