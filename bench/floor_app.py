"""The framework's floor: a bare Bolt app, one listener, on the same server stack as deploybot (waitress).

Run as: python -m bench.floor_app (reads SLACK_SIGNING_SECRET, SLACK_API_URL, PORT like deploybot).
With FLOOR_DATABASE_URL the listener first writes one row in one committed transaction, through
deploybot's own engine settings: the least any bot pays whose acknowledged click is durable.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert
from waitress.server import create_server

from bot import db

clicks = Table(
    "bench_floor_clicks",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("user_id", String(32)),
    Column("action_id", String(64)),
    Column("at", DateTime(timezone=True)),
)


def main() -> None:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,
        token_verification_enabled=False,
    )
    database_url = os.environ.get("FLOOR_DATABASE_URL")
    engine = db.make_engine(database_url) if database_url else None
    if engine is not None:
        clicks.create(engine, checkfirst=True)

    @app.action(re.compile(".*"))
    def listener(ack: Any, body: dict[str, Any]) -> None:
        if engine is not None:
            row = {"user_id": body["user"]["id"], "action_id": body["actions"][0]["action_id"], "at": datetime.now(UTC)}
            with engine.begin() as conn:
                conn.execute(insert(clicks), row)
        ack()

    handler = SlackRequestHandler(app)
    server: Any = create_server(handler, host="127.0.0.1", port=int(os.environ["PORT"]), threads=16)
    server.run()


if __name__ == "__main__":
    main()
