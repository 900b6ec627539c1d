"""Entry point of a node in a container: `python3 -m cosim.cli.container tvb-node|spiking-node [args]`.

Runs the node exactly as `cosim` would, then, if `COSIM_LINGER_S` > 0, waits until the
coordinator has gone before exiting with the node's exit code. Why: `docker compose up
--exit-code-from coordinator` (and podman-compose) stops every container as soon as ANY container
ends; a node that finished first would cut short the coordinator's last writes (summary, plots,
which come after it has closed its sockets) and lose its exit code.

"Gone" means: its address no longer accepts TCP connections AND, when the address is a host
name (a compose service name), that name no longer resolves (a stopped container leaves the
compose network's DNS). The wait is capped at `COSIM_LINGER_S` seconds (compose.yaml sets 120;
default 0 = no wait). SIGTERM ends it at once, and a node stopped by a signal does not wait.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time


def _host_port(address: str) -> tuple[str, int] | None:
    if not address.startswith("tcp://"):
        return None
    host, _, port = address[len("tcp://"):].rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
        return True
    except OSError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def coordinator_alive(address: str, timeout_s: float = 1.0) -> bool:
    hp = _host_port(address)
    if hp is None:
        return False
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            return True
    except OSError:           # refused, unreachable, or the name no longer resolves
        pass
    return not _is_ip(hp[0]) and hp[0] != "localhost" and _resolves(hp[0])


def linger(address: str, max_s: float, poll_s: float = 0.5) -> None:
    end = time.monotonic() + max_s
    while time.monotonic() < end and coordinator_alive(address):
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    from cosim.cli.commands import build_parser
    from cosim.cli.commands import main as cosim_main
    from cosim.errors import EXIT_INTERRUPTED
    argv = list(sys.argv[1:] if argv is None else argv)
    code = cosim_main(argv)
    args = build_parser().parse_args(argv)
    address = getattr(args, "coordinator", None)
    max_s = float(os.environ.get("COSIM_LINGER_S", "0"))
    if address and max_s > 0 and code != EXIT_INTERRUPTED:   # stopped by a signal: leave now
        try:
            linger(address, max_s)
        except KeyboardInterrupt:      # SIGTERM (cli turns it into KeyboardInterrupt)
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
