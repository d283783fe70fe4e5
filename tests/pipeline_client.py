"""A pipeline's side of /api/v1/ for tests: tokens made in the database, requests over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from bot import tokens
from bot.services import utcnow

CHANNEL = "C100"


def make_token(
    sessions: sessionmaker[Session],
    name: str = "github-actions prod",
    channel: str = CHANNEL,
    environment: str | None = None,
) -> str:
    with sessions.begin() as session:
        return tokens.create(session, name, channel, environment, utcnow())


class Pipeline:
    """Calls the API with one token, as a CI job would."""

    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=40)

    def start(self, key: str = "ci-run-1", **extra: Any) -> httpx.Response:
        return self.http.post(
            "/api/v1/runs", json={"version": "v1.4.2", "environment": "production", "key": key, **extra}
        )

    def report(self, run_id: int, item: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/api/v1/runs/{run_id}/items/{item}", json=body)

    def deployed(self, run_id: int, **body: Any) -> httpx.Response:
        return self.http.post(f"/api/v1/runs/{run_id}/deployment", json=body)

    def gate(self, run_id: int, **params: Any) -> httpx.Response:
        return self.http.get(f"/api/v1/runs/{run_id}/gate", params=params)

    def close(self) -> None:
        self.http.close()
