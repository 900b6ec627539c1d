"""A userspace TCP proxy that adds a one-way latency and counts bytes (no netem needed).

    python -m bench.delay_proxy --listen 127.0.0.1:7000 --to 127.0.0.1:5555 --delay-ms 5

Every accepted connection gets its own upstream connection and two pipes (one per direction).
A reader thread timestamps each chunk as it arrives; a writer thread sends it no earlier than
arrival + delay (time.sleep, microsecond resolution), in order. So each direction behaves like a
link with one-way latency `delay_ms` and unlimited bandwidth. TCP_NODELAY on both sides.
Bytes per direction are counted; `stats()` (or SIGUSR1 / exit in the CLI) reports them.
"""
from __future__ import annotations

import argparse
import collections
import json
import signal
import socket
import sys
import threading
import time


class _Pipe:
    def __init__(self, src: socket.socket, dst: socket.socket, delay_s: float, counter: list, lock):
        self.src, self.dst, self.delay_s = src, dst, delay_s
        self.q: collections.deque = collections.deque()
        self.cv = threading.Condition()
        self.counter, self.lock = counter, lock
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(1 << 16)
                if not data:
                    break
                with self.lock:
                    self.counter[0] += len(data)
                with self.cv:
                    self.q.append((time.perf_counter() + self.delay_s, data))
                    self.cv.notify()
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cv:
                    while not self.q and not self.closed:
                        self.cv.wait()
                    if not self.q:
                        break
                    due, data = self.q.popleft()
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
        except OSError:
            pass
        for s in (self.dst, self.src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class DelayProxy:
    """Listen on `listen` (host, port; port 0 = any), forward to `to` with `delay_ms` each way."""

    def __init__(self, to: tuple[str, int], delay_ms: float, listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.to, self.delay_s = to, delay_ms / 1000.0
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(listen)
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.up, self.down = [0], [0]        # bytes client → server, server → client
        self.connections = 0
        self.lock = threading.Lock()
        self._th = threading.Thread(target=self._accept, daemon=True)
        self._th.start()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.to)
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            _Pipe(c, u, self.delay_s, self.up, self.lock)
            _Pipe(u, c, self.delay_s, self.down, self.lock)

    def stats(self) -> dict:
        with self.lock:
            return {"bytes_up": self.up[0], "bytes_down": self.down[0], "connections": self.connections}

    def close(self) -> None:
        self.srv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--to", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    a = ap.parse_args()
    lh, lp = a.listen.rsplit(":", 1)
    th, tp = a.to.rsplit(":", 1)
    p = DelayProxy((th, int(tp)), a.delay_ms, (lh, int(lp)))
    print(f"delay proxy {lh}:{p.port} -> {a.to}, {a.delay_ms} ms each way", file=sys.stderr, flush=True)
    signal.signal(signal.SIGUSR1, lambda *_: print(json.dumps(p.stats()), flush=True))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    print(json.dumps(p.stats()), flush=True)


if __name__ == "__main__":
    main()
