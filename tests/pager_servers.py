"""Loopback stand-ins for PagerDuty's Events API v2 and a webhook receiver: they record what they get."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (then `default`), recording every request."""

    url: str = ""
    default: int = 202
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self, status: int, times: int = 1, **headers: str) -> None:
        with self.lock:
            self.script += [(status, headers)] * times

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]


@contextmanager
def receiver(default: int = 202) -> Iterator[Receiver]:
    """A receiver on a free loopback port; PagerDuty answers 202 with a JSON status, as it does."""
    state = Receiver(default=default)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                status, headers = state.script.pop(0) if state.script else (state.default, {})
                state.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            answer = json.dumps({"status": "success" if status < 300 else "error", "message": "recorded"}).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
