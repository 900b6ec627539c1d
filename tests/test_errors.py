"""One exception hierarchy carries the exit codes (cosim.errors); the CLI maps by `exit_code`."""
from __future__ import annotations

import pytest

from cosim import errors


@pytest.mark.unit
@pytest.mark.parametrize("exc,code", [
    (errors.ConfigError("x"), 2), (errors.RunFailed("x"), 1), (errors.RunFailed("x", 2), 2),
    (errors.NodeFailed("x"), 1), (errors.RunAborted("x"), 1), (errors.CoordinatorLost("x"), 1),
    (errors.PeerTimeout("x"), 1), (errors.PeerLost("x"), 1), (errors.Interrupted("x"), 130),
    (errors.RemoteError("ConfigRejected", "x"), 2), (errors.RemoteError("NameInUse", "x"), 2),
    (errors.RemoteError("VersionMismatch", "x"), 2), (errors.RemoteError("NodeFailure", "x"), 1)])
def test_every_error_carries_its_exit_code(exc, code):
    assert isinstance(exc, errors.CosimError) and exc.exit_code == code


@pytest.mark.unit
def test_the_old_names_are_the_same_classes():
    """Modules re-export the hierarchy's classes rather than defining their own."""
    import cosim.api
    import cosim.config
    import cosim.runtime.node
    import cosim.runtime.transport
    from cosim.services.coordinator import coordinator
    assert cosim.config.ConfigError is errors.ConfigError and coordinator.RunFailed is errors.RunFailed
    assert cosim.runtime.node.NodeFailed is errors.NodeFailed and cosim.runtime.transport.RemoteError is errors.RemoteError
    assert issubclass(cosim.api.RunFailed, errors.RunFailed)
    assert isinstance(errors.ConfigError("x"), ValueError)      # pydantic validators raise it as a ValueError


@pytest.mark.system
def test_a_refused_node_exits_with_the_errors_code(tmp_path):
    """A node refused at REGISTER (no coordinator speaks for that name) exits 2, from the error's code."""
    import subprocess
    import sys
    import threading

    from cosim.config import parse_config
    from harness import free_port
    from cosim.services.coordinator.coordinator import Coordinator
    port = free_port()
    cfg = parse_config({"run": {"duration_ms": 10}, "coordinator": {"router": f"tcp://127.0.0.1:{port}",
                        "pub": f"tcp://127.0.0.1:{free_port()}", "setup_timeout_ms": 8000},
                        "spiking_nodes": [{"name": "spiking", "backend": "noop", "regions": [3]}]})
    coord = Coordinator(cfg, tmp_path)
    t = threading.Thread(target=lambda: pytest.raises(errors.RunFailed, coord.run), daemon=True)
    t.start()
    p = subprocess.run([sys.executable, "-m", "cosim.cli", "spiking-node", "--coordinator", f"tcp://127.0.0.1:{port}",
                        "--name", "nobody"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "UnknownNode" in p.stderr, p.stderr[-1000:]
    coord.request_stop()            # not its 8 s setup timeout: the coordinator ends as on Ctrl-C
    t.join(15)
    assert not t.is_alive()
