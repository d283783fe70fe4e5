"""A local stand-in for Slack's Socket Mode: a WebSocket server speaking its envelope protocol.

The app asks the (fake) Web API's apps.connections.open for a URL, connects, receives `hello`,
then envelopes (`slash_commands`, `interactive`, `events_api`), and answers each with
{"envelope_id": ..., "payload": ...} — the acknowledgement.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

HELLO = {
    "type": "hello",
    "num_connections": 1,
    "debug_info": {"host": "applink-local", "build_number": 10, "approximate_connection_time": 18060},
    "connection_info": {"app_id": "A111"},
}


@dataclass
class SocketModeServer:
    url: str = ""
    connections: list[ServerConnection] = field(default_factory=list)
    acks: dict[str, queue.Queue[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    connected: threading.Event = field(default_factory=threading.Event)

    def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = True) -> str:
        """Deliver one envelope to the connected app; returns its id."""
        envelope_id = str(uuid.uuid4())
        with self.lock:
            self.acks[envelope_id] = queue.Queue()
            connection = self.connections[-1]
        envelope = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
        }
        connection.send(json.dumps(envelope))
        return envelope_id

    def ack_of(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The app's acknowledgement of an envelope (fails if none arrives in time)."""
        return self.acks[envelope_id].get(timeout=timeout)

    def disconnect_all(self) -> None:
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            connection.close()


@contextmanager
def socket_mode_server() -> Iterator[SocketModeServer]:
    state = SocketModeServer()

    def handler(connection: ServerConnection) -> None:
        with state.lock:
            state.connections.append(connection)
        connection.send(json.dumps(HELLO))
        state.connected.set()
        try:
            for raw in connection:
                message = json.loads(raw)
                envelope_id = message.get("envelope_id")
                with state.lock:
                    waiting = state.acks.get(envelope_id)
                if waiting is not None:
                    waiting.put(message)
        except ConnectionClosed:
            pass

    with serve(handler, "127.0.0.1", 0) as server:
        port = server.socket.getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/link/?ticket=local"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield state
        finally:
            server.shutdown()
            thread.join(5)
