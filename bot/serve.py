"""`deploybot run`'s HTTP server: waitress, stopped gracefully on SIGTERM without dropping a request already sent."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from waitress.channel import HTTPChannel
from waitress.server import create_server

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 4.0  # seconds for requests already sent; renders get their own few seconds after
T = TypeVar("T")


class _Channel(HTTPChannel):
    """Waitress's connection, remembering whether its client has sent anything yet."""

    heard = False

    def received(self, data: bytes) -> bool:
        self.heard = self.heard or bool(data)
        return bool(super().received(data))


class GracefulServer:
    """Serves until `drain()`: then it stops accepting, answers every request already sent, and returns from `run()`."""

    def __init__(self, app: Callable[..., Any], host: str, port: int, threads: int, connection_limit: int = 100):
        server: Any = create_server(app, host=host, port=port, threads=threads, connection_limit=connection_limit)
        server.channel_class = _Channel
        self._server = server
        self.port: int = server.effective_port

    def run(self) -> None:
        self._server.run()
        self._server.task_dispatcher.shutdown(timeout=1)

    def drain(self) -> None:
        """Begin a graceful stop from any thread (a signal handler included); `run()` returns when it is done."""
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _drain(self) -> None:
        try:
            accepted = self._in_loop(self._stop_accepting)
            if accepted:
                log.info("accepted %d connection(s) already waiting before closing the port", accepted)
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while self._in_loop(self._busy) and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._in_loop(self._busy):
                log.warning("stopping with requests still unanswered after %.0f s", DRAIN_TIMEOUT)
        except Exception:
            log.exception("the graceful stop failed; closing every connection")
        finally:
            self._in_loop(self._close_everything)  # ends the server's loop, so `run()` returns

    def _stop_accepting(self) -> int:
        """Take every connection the kernel has queued on the port, then close it; return how many were taken."""
        # Closing a listening socket resets the connections still in its backlog: clients that have
        # sent a whole request would see it fail. Waitress takes one per loop pass, so take them all.
        server = self._server
        server.accepting = False
        taken = 0
        while True:
            try:
                conn, addr = server.socket.accept()
            except InterruptedError:
                continue
            except ConnectionAbortedError:
                continue  # a client that gave up before being accepted
            except OSError:
                break  # nothing more queued (EAGAIN), or no descriptor left to take one with
            server.set_socket_options(conn)
            server.channel_class(server, conn, server.fix_addr(addr), server.adj, map=server._map)
            taken += 1
        server.del_channel()
        server.socket.close()
        return taken

    def _busy(self) -> bool:
        """Whether a request was sent and is not yet answered; run on the loop thread, which owns the sockets."""
        dispatcher = self._server.task_dispatcher
        if dispatcher.active_count or dispatcher.queue:
            return True
        return any(_unanswered(c) for c in self._channels())

    def _close_everything(self) -> None:
        for channel in list(self._server._map.values()):
            channel.close()

    def _channels(self) -> list[Any]:
        return [c for c in list(self._server._map.values()) if c is not self._server.trigger]

    def _in_loop(self, action: Callable[[], T]) -> T:
        """Run `action` on the server's own loop thread, which owns its sockets, and return its result."""
        answer: queue.Queue[tuple[T | None, BaseException | None]] = queue.Queue(maxsize=1)

        def run() -> None:
            try:
                answer.put((action(), None))
            except BaseException as exc:  # handed to the caller: the loop would only log it
                answer.put((None, exc))

        self._server.trigger.pull_trigger(run)
        result, failure = answer.get(timeout=DRAIN_TIMEOUT)
        if failure is not None:
            raise failure
        return result  # type: ignore[return-value]


def _unanswered(channel: Any) -> bool:
    """A request is unanswered while it is being read, run or written, or still unread in the socket."""
    if not getattr(channel, "connected", False):
        return False
    if channel.requests or channel.request is not None or channel.total_outbufs_len:
        return True
    # A client that connected just before the port closed may not have been read yet.
    return not getattr(channel, "heard", True) or _unread_bytes(channel.socket)


def _unread_bytes(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False
