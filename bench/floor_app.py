"""The framework's floor: a bare Bolt app, one no-op listener, on the same server stack as deploybot (waitress).

Run as: python -m bench.floor_app (reads SLACK_SIGNING_SECRET, SLACK_API_URL, PORT like deploybot).
"""

from __future__ import annotations

import os
import re
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress.server import create_server


def main() -> None:
    client = WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,
        token_verification_enabled=False,
    )

    @app.action(re.compile(".*"))
    def noop(ack: Any) -> None:
        ack()

    handler = SlackRequestHandler(app)
    server: Any = create_server(handler, host="127.0.0.1", port=int(os.environ["PORT"]), threads=16)
    server.run()


if __name__ == "__main__":
    main()
