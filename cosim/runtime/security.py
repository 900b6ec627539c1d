"""CURVE encryption and authentication for every socket (PROTOCOL.md §9).

A keys folder, written by `cosim keys DIR [names...]`:

    DIR/coordinator.key          the coordinator's public key   (every node needs it)
    DIR/coordinator.key_secret   the coordinator's secret key   (only the coordinator's machine)
    DIR/<name>.key               a node's public key
    DIR/<name>.key_secret        a node's secret key            (only that node's machine)
    DIR/authorized/<name>.key    public keys the coordinator accepts (every name but the coordinator)

- `server_from_dir(DIR)` → `CurveServer`: the coordinator's side. `apply_server(ctx, sock)` makes
  `sock` a CURVE server and starts, once per ZeroMQ context, a ZAP authenticator thread that
  accepts only the keys in `DIR/authorized` and logs every refused key (WARNING, first time per
  key and address, then every 100th). Accepted connections carry the key's name as the ZeroMQ
  "User-Id" property of every message they send.
- `client_from_dir(DIR, name)` → `CurveClient`: a node's side. `apply_client(sock)` sets the
  node's key pair and the coordinator's public key.

The file format is pyzmq's (`zmq.auth.create_certificates`), so keys can also be made with
other ZeroMQ tools. Keys are read once, when the server or client object is made.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
import zmq.utils.z85
from zmq.auth.thread import ThreadAuthenticator

from cosim.config import ConfigError

log = logging.getLogger(__name__)

SERVER_NAME = "coordinator"
AUTHORIZED = "authorized"


def generate(directory: str | os.PathLike, names: list[str] | tuple[str, ...] = ("coordinator", "tvb", "spiking")
             ) -> list[Path]:
    """Write a key pair per name (kept if both files already exist) and the authorized/ folder.

    Returns every file written or kept: `<name>.key`, `<name>.key_secret`, `authorized/<name>.key`.
    Secret files are readable by their owner only.
    """
    d = Path(directory)
    names = list(dict.fromkeys(names or ()))
    if SERVER_NAME not in names and not (d / f"{SERVER_NAME}.key").exists():
        names.insert(0, SERVER_NAME)          # nodes cannot connect without the server's key
    for n in names:
        if not n or "/" in n or n.startswith("."):
            raise ConfigError(f"cosim keys: bad name {n!r}")
    (d / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for n in names:
        pub, sec = d / f"{n}.key", d / f"{n}.key_secret"
        if not (pub.is_file() and sec.is_file()):
            zmq.auth.create_certificates(d, n)
        sec.chmod(0o600)
        out += [pub, sec]
        if n != SERVER_NAME:
            dst = d / AUTHORIZED / pub.name
            shutil.copyfile(pub, dst)
            out.append(dst)
    return out


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"CURVE: {what} {path} not found (make keys with `cosim keys {path.parent}`)")
    return path


def _load(path: Path, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        pub, sec = zmq.auth.load_certificate(_need(path, what))
    except (OSError, ValueError) as e:
        raise ConfigError(f"CURVE: cannot read {what} {path}: {e}") from None
    if secret and not sec:
        raise ConfigError(f"CURVE: {path} holds no secret key")
    return pub, sec


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, remembering the peer address of the request being checked."""

    address = ""

    keys: Any = None          # _AuthorizedKeys or CurveClient: what has `names` (public key → node name)

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.address = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The key's name (its file name in authorized/): every message of that connection carries
        it as the frame property "User-Id" (`frame.get("User-Id")`), so a receiver can tell which
        key sent it."""
        z85 = zmq.utils.z85.encode(client_public_key)
        return self.keys.names.get(z85, z85.decode()) if self.keys else z85.decode()


class _AuthorizedKeys:
    """ZAP credentials provider: the public keys of `<dir>/authorized/*.key`, by z85 text."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names: dict[bytes, str] = {}
        for f in sorted(folder.glob("*.key")):
            pub, _ = _load(f, "authorized key", secret=False)
            self.names[pub] = f.stem
        self.refused: Counter[tuple[bytes, str]] = Counter()
        self.auth: _Authenticator | None = None

    def callback(self, domain: str, key: bytes) -> bool:
        address = self.auth.address if self.auth else "?"
        name = self.names.get(key)
        if name is not None:
            log.debug("coordinator: CURVE key of %r accepted from %s", name, address)
            return True
        self.refused[(key, address)] += 1
        n = self.refused[(key, address)]
        if n == 1 or n % 100 == 0:
            log.warning("coordinator: refused CURVE client key %s from %s: not in %s (%d attempt(s))",
                        key.decode(errors="replace"), address, self.folder, n)
        return False


class CurveServer:
    """The coordinator's keys and the authorized client keys."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.public, self.secret = _load(self.dir / f"{SERVER_NAME}.key_secret", "coordinator secret key", secret=True)
        folder = self.dir / AUTHORIZED
        if not folder.is_dir():
            raise ConfigError(f"CURVE: {folder} not found (make keys with `cosim keys {self.dir}`)")
        self.keys = _AuthorizedKeys(folder)
        if not self.keys.names:
            log.warning("coordinator: %s holds no key: every node will be refused", folder)
        self._auths: dict[int, tuple[zmq.Context, _Authenticator]] = {}
        self._lock = threading.Lock()

    def authenticator(self, ctx: zmq.Context) -> _Authenticator:
        """The ZAP thread of `ctx`, started on first use (one per context, as ZAP requires)."""
        with self._lock:
            entry = self._auths.get(id(ctx))
            if entry is None or entry[0] is not ctx:
                auth = _Authenticator(ctx, log=logging.getLogger("zmq.auth"))
                auth.start()
                auth.configure_curve_callback(domain="*", credentials_provider=self.keys)
                self.keys.auth, auth.keys = auth, self.keys
                entry = self._auths[id(ctx)] = (ctx, auth)
                log.info("coordinator: CURVE on; %d authorized key(s) in %s: %s", len(self.keys.names),
                         self.keys.folder, ", ".join(sorted(self.keys.names.values())))
            return entry[1]

    def apply_server(self, ctx: zmq.Context, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server (call before bind)."""
        self.authenticator(ctx)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def public_keys(self) -> dict[str, str]:
        """Node name → public key (z85 text), from the authorized keys: handed to the nodes in
        PREPARE so that their direct data links are CURVE too (protocol 3, §9)."""
        return {name: pub.decode() for pub, name in self.keys.names.items()}

    def stop(self) -> None:
        with self._lock:
            for _, auth in self._auths.values():
                auth.stop()
            self._auths.clear()


# how long a data inbox holds a CURVE handshake that arrives before PREPARE told it its producers
DATA_KEYS_WAIT_S = 600.0


class CurveClient:
    """A node's key pair and the coordinator's public key."""

    def __init__(self, directory: str | os.PathLike, name: str):
        self.dir, self.name = Path(directory), name
        self.public, self.secret = _load(self.dir / f"{name}.key_secret", f"secret key of {name!r}", secret=True)
        self.server_public, _ = _load(self.dir / f"{SERVER_NAME}.key", "coordinator public key", secret=False)

    def apply_client(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE client of the coordinator (call before connect)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public

    # ---- direct data (protocol 3, PROTOCOL.md §4.1, §9) -----------------------------------
    def apply_data_server(self, ctx: zmq.Context, sock: zmq.Socket) -> None:
        """The node's data inbox: a CURVE server with this node's key pair; it accepts the run's
        other nodes' keys only (`allow`, from CONFIGURE.keys, before any producer can connect)."""
        if not hasattr(self, "_data_keys"):
            self._data_keys: dict[bytes, str] = {}
            auth = _Authenticator(ctx, log=logging.getLogger("zmq.auth"))
            auth.start()
            auth.configure_curve_callback(domain="cosim-data", credentials_provider=self)
            auth.keys = self         # User-Id = the key's node name (`names`): DATA.node must match it (§4.1)
            self._data_auth = auth
        sock.zap_domain = b"cosim-data"
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    @property
    def names(self) -> dict[bytes, str]:
        """Admitted public keys (z85) → node name: the User-Id of a data connection."""
        return getattr(self, "_data_keys", {})

    def allow(self, keys: dict[str, str]) -> None:
        """The keys the inbox admits: public keys (z85 text) by node name (CONFIGURE.keys)."""
        self._data_keys = {k.encode(): n for n, k in keys.items() if k}
        # the coordinator pings this node's echo socket, which shares the inbox's ZAP domain (§8)
        self._data_keys.setdefault(self.server_public, "coordinator")
        self._keys_known = True

    def callback(self, domain: str, key: bytes):
        if not getattr(self, "_keys_known", False):
            # a handshake before the keys are known (a coordinator that sends none in CONFIGURE, or
            # a producer faster than this node's CONFIGURE): libzmq never reconnects after a refused
            # handshake, so the answer waits for the keys instead of refusing a producer for being early
            return self._check_when_known(key)
        return self._check(key)

    async def _check_when_known(self, key: bytes) -> bool:
        import asyncio
        import time
        t_end = time.monotonic() + DATA_KEYS_WAIT_S
        while not getattr(self, "_keys_known", False) and time.monotonic() < t_end:
            await asyncio.sleep(0.01)
        return self._check(key)

    def _check(self, key: bytes) -> bool:
        ok = key in getattr(self, "_data_keys", {})
        if not ok:
            log.warning("%s: refused CURVE key %s on the data inbox (not one of its producers)", self.name,
                        key.decode(errors="replace"))
        return ok

    def apply_data_client(self, sock: zmq.Socket, server_key: str | None) -> None:
        if not server_key:
            raise ConfigError("CURVE is on but the coordinator sent no public key for a data link")
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key.encode()

    def stop(self) -> None:
        auth = getattr(self, "_data_auth", None)
        if auth is not None:
            auth.stop()


def server_from_dir(directory: str | os.PathLike | None) -> CurveServer:
    if not directory:
        raise ConfigError("coordinator.curve is on but no keys folder is given "
                          "(coordinator.keys_dir or COSIM_KEYS; make one with `cosim keys DIR`)")
    return CurveServer(directory)


def client_from_dir(directory: str | os.PathLike, name: str) -> CurveClient:
    return CurveClient(directory, name)
