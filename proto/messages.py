"""Message types and their content schemas (PROTOCOL.md §5–6).

A schema maps a field name to the Python types it may have; `None` in the tuple means the
field may be absent. Unknown fields are tolerated (§5).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# the dialog's version (REGISTER.protocol; 2 added CHECKPOINT/CHECKPOINTED and CONFIGURE.resume;
# 3 sends data straight between nodes (DATA), clocks windows with RUN grants and adds lookahead)
PROTOCOL_VERSION = 4
# frame 0 of every message: the framing's version (§5), unchanged since protocol 1, so that a peer
# of another dialog version still decodes REGISTER and its ERROR VersionMismatch reply
SIGNATURE = b"COSIM1"


class MessageType(str, enum.Enum):  # noqa: UP042 (str() and f-strings keep "MessageType.X")
    REGISTER = "REGISTER"
    CONFIGURE = "CONFIGURE"
    CONFIGURED = "CONFIGURED"
    PREPARE = "PREPARE"
    READY = "READY"
    RUN = "RUN"                        # protocol 3: windows granted (replaces STEP)
    DATA = "DATA"                      # protocol 3: a producer's window of signals, node to node
    STEP_DONE = "STEP_DONE"
    END = "END"
    FINISHED = "FINISHED"
    ABORT = "ABORT"
    ERROR = "ERROR"
    HEARTBEAT = "HEARTBEAT"
    CHECKPOINT = "CHECKPOINT"          # protocol 2 (§10.1)
    CHECKPOINTED = "CHECKPOINTED"
    # broadcast on the PUB channel only (PROTOCOL.md §6.1); never sent to or accepted from a node
    PROGRESS = "PROGRESS"
    EVENT = "EVENT"


_num = (int, float)
_arrays = (dict,)  # map name -> ndarray, checked by _check_signals

# field -> allowed types; a trailing None marks the field optional
SCHEMAS: dict[MessageType, dict[str, tuple]] = {
    MessageType.REGISTER: {"name": (str,), "role": (str,), "backend": (str,), "protocol": (int,),
                           "pid": (int, None), "host": (str, None), "token": (str,)},
    MessageType.CONFIGURE: {"config": (dict,), "regions": (list,), "tvb_dt_ms": _num, "tick_ms": _num,
                            "results_dir": (str, None), "heartbeat_interval_ms": (int,),
                            "heartbeat_timeout_ms": (int,), "resume": (dict, None), "keys": (dict, None)},
    MessageType.CONFIGURED: {"requires": (list,), "connectome": (dict, None), "data": (str, None),
                             "cost": (dict, None), "echo": (str, None)},
    MessageType.PREPARE: {"outputs": (list,), "inputs": (list,), "steps_per_window": (int,),
                          "n_windows": (int,), "connectome": (dict,), "lag": (int,), "send": (list,),
                          "receive": (list,)},
    MessageType.READY: {"initial": _arrays, "info": (dict, None)},
    MessageType.RUN: {"first": (int,), "until": (int,)},
    MessageType.DATA: {"signals": _arrays, "token": (str, None)},
    MessageType.STEP_DONE: {"outputs": _arrays, "first": (int, None), "timing": (dict, list, None)},
    MessageType.END: {"reason": (str, None)},
    MessageType.FINISHED: {"summary": (dict, None)},
    MessageType.ABORT: {"reason": (str,)},
    MessageType.ERROR: {"error": (str,), "message": (str,)},
    MessageType.HEARTBEAT: {},
    MessageType.CHECKPOINT: {"window": (int,), "dir": (str,)},
    MessageType.CHECKPOINTED: {"window": (int,), "files": (list,), "sha256": (dict,), "rows": (dict,),
                               "info": (dict, None)},
    MessageType.PROGRESS: {"windows_done": (int,), "windows": (int,), "window_ms": _num, "t_ms": _num,
                           "wall_s": _num, "timing": (dict, None), "rates": (list, None)},
    MessageType.EVENT: {"event": (str,), "node": (str, None), "reason": (str, None), "windows": (int, None),
                        "steps_per_window": (int, None)},
}
# PUB topics (the first frame of a broadcast, a ZeroMQ subscription prefix) per broadcast type
PUB_TOPICS = {MessageType.PROGRESS: b"progress", MessageType.EVENT: b"event"}
# messages whose header must carry the window number
WINDOWED = {MessageType.STEP_DONE, MessageType.PROGRESS}
# ... the window may be negative: DATA of windows -m..-1 are the initial outputs (lag m, §3)
WINDOWED_ANY = {MessageType.DATA}
# fields that hold a map of signal name -> 2-D float array
SIGNAL_FIELDS = {MessageType.READY: "initial", MessageType.DATA: "signals", MessageType.STEP_DONE: "outputs"}


@dataclass
class Message:
    """What a message is (header fields + content); how it travels is codec.py's business."""
    type: MessageType
    content: dict[str, Any] = field(default_factory=dict)
    node: str = ""                 # sender's node name ("coordinator" for the coordinator)
    window: int | None = None
    msg_id: int = 0
    parent_id: int | None = None
    sent_ns: int = 0

    def reply(self, type: MessageType, content: dict | None = None, node: str = "coordinator") -> Message:
        return Message(type, content or {}, node=node, window=self.window, parent_id=self.msg_id)

    def __repr__(self) -> str:  # never arrays in logs
        w = f" w={self.window}" if self.window is not None else ""
        return f"<{self.type.value} from {self.node!r}{w} #{self.msg_id}>"


def error(parent: Message | None, name: str, message: str, node: str = "coordinator") -> Message:
    m = Message(MessageType.ERROR, {"error": name, "message": message}, node=node)
    if parent is not None:
        m.parent_id, m.window = parent.msg_id, parent.window
    return m


def signals_ok(sig: Any) -> str | None:
    """None if `sig` is a map of str -> finite 2-D float64 arrays, else the reason."""
    if not isinstance(sig, dict):
        return "signals must be a map"
    for k, v in sig.items():
        if not isinstance(k, str):
            return "signal names must be strings"
        if not isinstance(v, np.ndarray) or v.ndim != 2 or v.dtype != np.float64:
            return f"signal {k!r} must be a 2-D float64 array"
    return None
