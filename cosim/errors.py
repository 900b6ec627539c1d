"""One exception hierarchy for every way a cosim process or run ends early, each carrying its exit code.

    CosimError                      1  the base: one line naming the culprit
    ├── ConfigError                 2  the run cannot start as configured (fix the config, run again)
    │   ├── UnknownBackend          2  a backend no installed plugin provides, or whose simulator is missing
    │   ├── ModelError              2  a spiking model that cannot run (file and cause)
    │   ├── PlanError               2  the nodes' requirements cannot be routed (PROTOCOL.md §4)
    │   └── CheckpointError         2  no usable checkpoint, or one of another run (PROTOCOL.md §10.1)
    ├── RunFailed                   1  the run ended early (node, window, time); `.out` = its results folder
    │   ├── RunRefused              2  refused during setup (also a ConfigError): no window ran
    │   ├── RunInterrupted        130  stopped by the user (Ctrl-C, SIGTERM, RunHandle.stop)
    │   └── SweepFailed             1  runs of a sweep failed, each named with its reason; `.out` = the sweep folder
    ├── NodeFailed                  1  this node's own simulation failed; the coordinator was told
    ├── RunAborted                  1  the coordinator aborted the run (another node failed)
    ├── PeerTimeout                 1  a peer did not answer in time
    │   └── CoordinatorLost         1  the coordinator stopped answering heartbeats
    ├── PeerLost                    1  a node this node exchanges data with cannot be reached
    ├── RemoteError            1 or 2  the peer answered ERROR (2 for the configuration kinds)
    ├── ResultsWriteError           1  a results file could not be written (disk full, I/O error)
    ├── ProtocolError               1  a message that cannot be accepted (cosim.proto.codec)
    └── Interrupted               130  Ctrl-C or SIGTERM in a service

Only the CLI (cosim.cli) turns an error into an exit code, by `exc.exit_code`, never by matching
its text or name: 0 completed, 1 failed (partial results kept), 2 configuration, 130 interrupted.
A configuration problem found late (a node refuses the config during setup) still exits 2.
This module imports nothing from cosim: every layer may raise these.
"""
from __future__ import annotations

from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


class CosimError(RuntimeError):
    """Base: the message is one line naming the culprit; `exit_code` is what the process returns."""
    exit_code = EXIT_FAILED

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(CosimError, ValueError):
    """A configuration that cannot run; the message names the field and the reason."""
    exit_code = EXIT_CONFIG


class UnknownBackend(ConfigError):
    """A backend name that no installed plugin provides, or whose simulator is not installed."""


class ModelError(ConfigError):
    """A spiking model that cannot run: the message is one line naming the file and cause."""


class PlanError(ConfigError):
    """What the nodes require cannot be routed (a signal nobody produces, a region that does not exist)."""


class CheckpointError(ConfigError):
    """No usable checkpoint, or one that does not belong to this run (one line)."""


class RunFailed(CosimError):
    """The run ended early; the message names node, window and time. `out` is the results folder
    (results up to the last completed window are kept there), when known."""

    def __init__(self, message: str = "", exit_code: int | None = None, out: str | Path | None = None,
                 no_window_ran: bool = False):
        super().__init__(message, exit_code)
        self.out = Path(out) if out is not None else None
        # it ended before its first window (and is no resumed run): no results to speak of
        self.no_window_ran = no_window_ran


class RunRefused(RunFailed, ConfigError):
    """The run was refused during setup (a node or the coordinator found the configuration
    unusable): no window ran. Both a RunFailed and a ConfigError; exit 2. `removed` is True when
    the results folder, created for this run, was removed again."""
    removed = False


class RunInterrupted(RunFailed):
    """Stopped by the user (Ctrl-C, SIGTERM, `RunHandle.stop()`); results so far are kept."""
    exit_code = EXIT_INTERRUPTED


class SweepFailed(RunFailed):
    """One or more runs of a sweep failed (the others completed and are kept). `failures` maps each
    failed run's folder to its one-line reason; `results` is the sweep's dataset (failed runs NaN)."""

    def __init__(self, message: str = "", exit_code: int | None = None, out: str | Path | None = None,
                 failures: dict | None = None, results=None):
        super().__init__(message, exit_code, out)
        self.failures = dict(failures or {})
        self.results = results


class NodeFailed(CosimError):
    """This node's own simulation failed; the coordinator was told."""


class RunAborted(CosimError):
    """The coordinator aborted the run (another node failed, or a config error)."""


class PeerTimeout(CosimError):
    """A peer did not answer in time."""


class CoordinatorLost(PeerTimeout):
    """The coordinator stopped answering heartbeats."""


class PeerLost(CosimError):
    """A node this node exchanges data with could not be reached (protocol 3)."""


# errors a coordinator sends that mean "this node cannot run this configuration" (exit 2)
CONFIG_ERRORS = frozenset({"ConfigRejected", "UnknownNode", "NameInUse", "VersionMismatch", "NotAuthorized"})


class RemoteError(CosimError):
    """The peer answered with ERROR; `kind` is its error name (§6)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}", EXIT_CONFIG if kind in CONFIG_ERRORS else EXIT_FAILED)
        self.kind, self.remote_message = kind, message


class ResultsWriteError(CosimError):
    """A results file could not be written (disk full, I/O error). The file was rolled back to
    the windows durable before the failed flush (`windows` of them); the message says why."""

    def __init__(self, message: str, windows: int):
        super().__init__(message)
        self.windows = windows


class ProtocolError(CosimError, ValueError):
    """A message that cannot be accepted. `kind` is the ERROR name sent back, if any (PROTOCOL.md §6)."""
    kind = "MalformedMessage"


class Interrupted(CosimError):
    """Ctrl-C or SIGTERM."""
    exit_code = EXIT_INTERRUPTED
