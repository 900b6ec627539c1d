"""What the coordinator's parts share through `self`, declared once so the type checker sees it.

The coordinator is one object built from four mixins (setup, clock, liveness, status) and the
socket and dispatch code in coordinator.py. Each mixin reads state that another one sets up;
this base class names that state and the methods the parts call on each other. It holds no
values and no code: `Coordinator.__init__` and the mixins assign everything.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zmq

if TYPE_CHECKING:
    from cosim.config import RunConfig
    from cosim.config.schema import CoordinatorSection
    from cosim.errors import RunFailed
    from cosim.proto.messages import Message, MessageType
    from cosim.runtime.security import CurveServer
    from cosim.runtime.startup import StartupClock
    from cosim.runtime.transport import RejectCounter
    from cosim.services.coordinator.peers import Peer
    from cosim.services.coordinator.record import RunRecord
    from cosim.services.coordinator.routing import Plan


class CoordinatorState:
    # configuration and where results go
    cfg: RunConfig
    cc: CoordinatorSection
    results_dir: Path
    curve: CurveServer | None
    progress: Callable[[int, int, float, float], None] | None   # (windows done, of, sim ms, wall s)
    config_sha256: str
    resume: dict | None
    # sockets
    zctx: zmq.Context
    router: zmq.Socket
    pub: zmq.Socket
    router_addr: str
    monitors: list[tuple[zmq.Socket, zmq.Socket, str]]
    # peers and what they sent
    peers: dict[str, Peer]
    by_rid: dict[bytes, str]
    rejects: RejectCounter
    resent: int
    compiling: set[str]
    connectome: dict
    _prepared_requires: dict
    _next_id: int
    # the plan and the clock (PROTOCOL §3)
    state: str
    plan: Plan
    W: int
    K: int
    lag: int
    lag_reason: str
    window: int
    until: int
    tick_ms: float
    dt_ticks: int
    tvb_dt_ms: float
    tvb_name: str | None
    time_cut: int | None
    copies: dict[str, dict[int, dict[str, np.ndarray]]]
    timing: dict[int, dict[str, dict]]
    record: RunRecord | None
    ckpt: dict | None
    ckpt_costs: list[float]
    failure: RunFailed | None
    # time
    startup: StartupClock
    startup_report: dict | None
    first_window_at: float | None
    t_setup: float
    t_start: float | None
    t_end: float
    t_window: float
    paused_at: float | None
    stalled: tuple[float, float] | None
    longest_window_s: float
    _next_ping: float
    _loop_t: float
    _last_wall_s: float
    _last_progress: float
    _last_ckpt_t: float

    if TYPE_CHECKING:
        # the methods one part calls on another (each is defined in exactly one of them)
        def send(self, peer: Peer, type_: MessageType, content: dict | None = None, window: int | None = None,
                 parent: Message | None = None) -> None: ...
        def _send_to(self, rid: bytes | None, msg: Message) -> str: ...
        def unexpected(self, peer: Peer, msg: Message) -> None: ...
        def publish(self, topic: str, data: dict, window: int | None = None) -> None: ...
        def progress_content(self, k: int, sim_ms: float, elapsed: float, produced: dict, timing: dict) -> dict: ...
        def where(self, name: str, why: str, window: int | None = None) -> str: ...
        def _flushed(self, windows: int) -> None: ...
        def _writing(self) -> AbstractContextManager[None]: ...
        def start_run(self) -> None: ...
        def resend_data(self, consumer: str, producer: str, j: int) -> bool: ...
        def watch_echo(self, peer: Peer, address: Any) -> None: ...
