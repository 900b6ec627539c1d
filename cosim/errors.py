"""One exception hierarchy for every way a cosim process ends early, each carrying its exit code.

The CLI maps an error to an exit code by `exc.exit_code`, never by matching its text or
name: 0 ok, 1 failed (a node or the run failed; partial results kept), 2 configuration (the
run cannot start as configured: fix the config and run again), 130 interrupted. A
configuration problem found late (a node refuses the config during setup) still exits 2.
"""
from __future__ import annotations

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


class RunFailed(CosimError):
    """The coordinator ended the run early; the message names node, window and time."""


class NodeFailed(CosimError):
    """This node's own simulation failed; the coordinator was told."""


class RunAborted(CosimError):
    """The coordinator aborted the run (another node failed, or a config error)."""


class PeerTimeout(CosimError):
    """A peer did not answer in time."""


class CoordinatorLost(CosimError):
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


class Interrupted(CosimError):
    """Ctrl-C or SIGTERM."""
    exit_code = EXIT_INTERRUPTED
