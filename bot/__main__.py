"""Command line: deploybot run | check | import | db upgrade."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from bot import checklists, db
from bot.config import ConfigError, Settings

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploybot", description="Your deployment checklist, live in Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT)")
    check = sub.add_parser("check", help="validate the checklist folder and Slack's limits")
    check.add_argument("folder", nargs="?", type=Path, help="default: DEPLOYBOT_CHECKLISTS or ./checklists")
    imp = sub.add_parser("import", help="turn a Markdown task-list checklist into checklist YAML")
    imp.add_argument("markdown", type=Path)
    imp.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    imp.add_argument("--kind", choices=["deploy", "maintenance", "rollback"], default="deploy")
    imp.add_argument("--section", action="append", default=[], help="only this ## section (repeatable)")
    database = sub.add_parser("db", help="database maintenance")
    database.add_argument("action", choices=["upgrade"])
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
        _setup_logging(settings.log_format)
        if args.command == "check":
            return _check(args.folder or settings.checklists_path)
        if args.command == "import":
            return _import(args.markdown, args.output, args.kind, args.section)
        if args.command == "db":
            db.upgrade(db.make_engine(settings.database_url))
            print(f"database at {settings.database_url_masked} is up to date")
            return 0
        return _run(settings)
    except (ConfigError, checklists.ChecklistError) as exc:
        print(exc, file=sys.stderr)
        return 2


def _check(folder: Path) -> int:
    from bot.app import load_checklists

    settings = Settings.from_env({"DEPLOYBOT_CHECKLISTS": str(folder)})
    templates = load_checklists(settings)
    for template in templates.values():
        print(f"ok  {template.id}: {len(template.phases)} phase(s), {len(template.items)} item(s)")
    return 0


def _import(markdown: Path, output: Path | None, kind: str, sections: list[str]) -> int:
    data = checklists.import_markdown(markdown.read_text(encoding="utf-8"), kind=kind, phases=sections)
    checklists.Template.model_validate(data)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    if output:
        output.write_text(text, encoding="utf-8")
        print(f"wrote {output} ({sum(len(g['items']) for p in data['phases'] for g in p['groups'])} items)")
    else:
        sys.stdout.write(text)
    return 0


def _run(settings: Settings) -> int:
    from waitress.server import create_server

    from bot.app import create_app

    settings.require_slack()
    deploybot = create_app(settings)
    db.upgrade(deploybot.engine)
    log.info("database %s is up to date", settings.database_url_masked)
    deploybot.check_slack()
    deploybot.publisher.start()
    socket_mode = None
    if settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_mode = SocketModeHandler(deploybot.bolt, settings.slack_app_token.reveal())
        socket_mode.connect()  # type: ignore[no-untyped-call]
        log.info("connected to Slack in Socket Mode")
    server: Any = create_server(deploybot.web, host=settings.host, port=settings.port, threads=16)
    log.info(
        "serving on http://%s:%s (POST /slack/events, GET /healthz /readyz /metrics)", settings.host, settings.port
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.close()
        if socket_mode is not None:
            socket_mode.close()  # type: ignore[no-untyped-call]
        deploybot.publisher.stop()
        log.info("stopped")
    return 0


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


if __name__ == "__main__":
    sys.exit(main())
