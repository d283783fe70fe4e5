"""`deploybot run`'s HTTP server: waitress, stopped gracefully on SIGTERM."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress.server import create_server

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 4.0  # seconds for in-flight requests; renders get their own few seconds after


class GracefulServer:
    """Serves until `drain()`: then it stops accepting, lets in-flight requests finish, and returns from `run()`."""

    def __init__(self, app: Callable[..., Any], host: str, port: int, threads: int):
        server: Any = create_server(app, host=host, port=port, threads=threads)
        self._server = server
        self.port: int = server.effective_port

    def run(self) -> None:
        self._server.run()
        self._server.task_dispatcher.shutdown(timeout=1)

    def drain(self) -> None:
        """Begin a graceful stop from any thread (a signal handler included); `run()` returns when it is done."""
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _drain(self) -> None:
        self._in_loop(self._stop_accepting)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._busy():
            log.warning("stopping with requests still in flight after %.0f s", DRAIN_TIMEOUT)
        self._in_loop(self._close_everything)

    def _busy(self) -> bool:
        dispatcher = self._server.task_dispatcher
        channels = [c for c in list(self._server._map.values()) if c is not self._server.trigger]
        # A request is in flight while a worker runs it, or its answer is still being written.
        return bool(dispatcher.active_count or dispatcher.queue) or any(
            getattr(c, "requests", None) or getattr(c, "total_outbufs_len", 0) for c in channels
        )

    def _stop_accepting(self) -> None:
        self._server.accepting = False
        self._server.del_channel()
        self._server.socket.close()

    def _close_everything(self) -> None:
        for channel in list(self._server._map.values()):
            channel.close()

    def _in_loop(self, action: Callable[[], None]) -> None:
        """Run `action` on the server's own loop thread, which owns its sockets."""
        self._server.trigger.pull_trigger(action)
