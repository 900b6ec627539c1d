"""A userspace TCP proxy for network-fault tests (the kernel here has no netem).

    with TcpProxy("127.0.0.1", 5555, delay_ms=5, jitter_ms=5) as px:   # listens on px.port
        ... point nodes at tcp://127.0.0.1:{px.port} ...
        px.cut()      # stop forwarding, hold every connection open (a partition; TCP survives)
        px.heal()     # forward again: what was held flows, in order
        px.reset()    # abort every connection with RST (ZeroMQ reconnects by itself)

Each chunk read from one side is released to the other after `delay_ms + U(0, jitter_ms)`, but
never before the chunk read before it (order is preserved, as TCP would). The proxy runs an
asyncio loop in a daemon thread; control methods are thread-safe. Loopback only.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0, delay_ms: float = 0.0,
                 jitter_ms: float = 0.0, seed: int = 0):
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        self.rng = random.Random(seed)
        self.port: int | None = None
        self.stats = {"connections": 0, "bytes": 0, "resets": 0, "cuts": 0}
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---- control (any thread) -----------------------------------------------------------
    def start(self) -> int:
        if self._thread is not None:          # idempotent: `with px:` after `px.start()`
            return self.port
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self.port

    def set_delay(self, delay_ms: float, jitter_ms: float = 0.0) -> None:
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms

    def cut(self) -> None:
        self.stats["cuts"] += 1
        self._call(self._open.clear)

    def heal(self) -> None:
        self._call(self._open.set)

    def reset(self) -> None:
        self.stats["resets"] += 1
        self._call(self._reset_all)

    def close(self) -> None:
        if self._loop is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn) -> None:
        done = threading.Event()

        def run():
            fn()
            done.set()
        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # ---- the loop -----------------------------------------------------------------------
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._open = asyncio.Event()
        self._open.set()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.listen_port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        self._reset_all()
        for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            t.cancel()

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(c_writer)
            return
        self.stats["connections"] += 1
        pair = (c_writer, s_writer)
        self._conns.add(pair)
        try:
            await asyncio.gather(self._pump(c_reader, s_writer), self._pump(s_reader, c_writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(pair)
            _abort(c_writer)
            _abort(s_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        last = 0.0

        async def read_side():
            nonlocal last
            while True:
                data = await reader.read(65536)
                if not data:
                    queue.put_nowait(None)
                    return
                release = max(last, loop.time() + (self.delay_ms + self.rng.uniform(0, self.jitter_ms)) / 1000)
                last = release
                queue.put_nowait((release, data))

        async def write_side():
            while True:
                item = await queue.get()
                if item is None:
                    writer.close()
                    return
                release, data = item
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()          # cut: hold everything, keep the connection
                writer.write(data)
                self.stats["bytes"] += len(data)
                await writer.drain()

        reader_task = asyncio.ensure_future(read_side())
        try:
            await write_side()
        finally:
            reader_task.cancel()

    def _reset_all(self) -> None:
        for pair in list(self._conns):
            for w in pair:
                _abort(w)
        self._conns.clear()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a middlebox dropping the connection would."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()
