"""Command line: deploybot run | check | probe | import | export | diff | stats | shell | token | ci | db upgrade."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot import checklists, db, logs, problems
from bot.ci import cli as ci_cli
from bot.config import ConfigError, Settings, deploy_config, load_deploy_config
from bot.runs import RunError
from bot.say import terminal
from bot.yamlfile import YamlError

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploybot", description="Your deployment checklist, live in Slack.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve Slack (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT)")
    check = sub.add_parser("check", help="validate the checklist folder (or one file) and Slack's limits")
    check.add_argument(
        "folder",
        nargs="?",
        type=Path,
        help="a folder or one checklist file; default: DEPLOYBOT_CHECKLISTS or ./checklists",
    )
    imp = sub.add_parser("import", help="turn a Markdown task-list checklist into checklist YAML")
    imp.add_argument("markdown", type=Path)
    imp.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    imp.add_argument("--kind", choices=["deploy", "maintenance", "rollback"], default="deploy")
    imp.add_argument("--section", action="append", default=[], help="only this ## section (repeatable)")
    imp.add_argument("--id", help="the checklist id (default: from the section imported, else the # title)")
    probe = sub.add_parser("probe", help="run a checklist's probes now; exit status 1 when any fails")
    probe.add_argument("--env", required=True, help="environment from deploybot.yml, e.g. production")
    probe.add_argument("--checklist", default="production-deploy", help="checklist id (default production-deploy)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    probe.add_argument("-v", "--verbose", action="store_true", help="log each request to standard error")
    export = sub.add_parser("export", help="the full record of a run: items, who, when, notes, probes, audit")
    export.add_argument("run", type=_run_id)
    export.add_argument("--format", choices=["md", "csv", "json"], default="md")
    export.add_argument("-o", "--output", type=Path, help="write here instead of standard output")
    diff = sub.add_parser("diff", help="items N/A, failed or overridden in a run but not in the last release")
    diff.add_argument("run", type=_run_id)
    diff.add_argument(
        "other", type=_run_id, nargs="?", help="default: the previous completed run, same checklist and environment"
    )
    stats = sub.add_parser("stats", help="delivery figures and checklist health, as a table or JSON")
    stats.add_argument("--environment", help="one environment (default: every environment together)")
    stats.add_argument("--period", default="30d", help="how far back from now: days or weeks, e.g. 30d, 12w")
    stats.add_argument("--json", action="store_true", help="print JSON whose keys name each figure")
    sub.add_parser("shell", help="use deploybot from this terminal, without Slack")
    from bot import token_command

    token_command.add_parser(sub)
    database = sub.add_parser("db", help="database maintenance")
    database.add_argument("action", choices=["upgrade"])
    ci_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "ci":  # runs in a pipeline: none of deploybot's own settings apply there
        return ci_cli.run(args, os.environ)

    settings: Settings | None = None
    try:
        settings = Settings.from_env()
        logs.setup(settings.log_format, settings.secret_values())
        if args.command == "probe":
            # The table (or JSON) is the output: a log line per request would bury it, unless asked for.
            logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
            logging.getLogger("httpx").setLevel(logging.INFO if args.verbose else logging.WARNING)
        if args.command == "check":
            return _check(settings, args.folder or settings.checklists_path)
        if args.command == "import":
            return _import(args.markdown, args.output, args.kind, args.section, args.id)
        if args.command == "probe":
            return _probe(settings, args.env, args.checklist, args.json)
        if args.command == "export":
            return _export(settings, args.run, args.format, args.output)
        if args.command == "diff":
            return _diff(settings, args.run, args.other)
        if args.command == "stats":
            return _stats(settings, args.environment, args.period, args.json)
        if args.command == "shell":
            from bot.shell import run_shell

            logs.quiet()  # a terminal conversation: warnings only on standard error
            return run_shell(settings, sys.stdin, sys.stdout)
        if args.command == "token":
            from bot import token_command
            from bot.services import utcnow

            return token_command.run(settings, args, utcnow, print)
        if args.command == "db":
            db.upgrade(db.make_engine(settings.database_url))
            print(f"database at {settings.database_url_masked} is up to date")
            return 0
        return _run(settings)
    except RunError as exc:
        print(terminal(exc.message), file=sys.stderr)  # a terminal: no Slack markup
        return 2
    except (ConfigError, YamlError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except OperationalError as exc:
        # The configured database is unreachable, missing, or refuses deploybot's credentials.
        if settings is None:
            raise
        print(problems.database(settings.database_url, exc), file=sys.stderr)
        return 2


def _check(settings: Settings, folder: Path) -> int:
    from bot.app import load_checklists

    templates = load_checklists(Settings.from_env({"DEPLOYBOT_CHECKLISTS": str(folder)}))
    for template in templates.values():
        print(f"ok  {template.id}: {len(template.phases)} phase(s), {len(template.items)} item(s)")
    if folder.is_file():  # one file: what the rest of the folder starts is not known here
        return 0
    # deploybot.yml's channel defaults must name deploy checklists of this folder.
    config = deploy_config(settings)
    config.check_checklists(templates)
    source = settings.config_path if settings.config_path.exists() else f"no {settings.config_path.name}"
    print(f"ok  {source}: {config.review.describe(config.timezone)}")
    for warning in checklists.unstartable(templates):
        print(f"warn  {warning}")
    return 0


def _probe(settings: Settings, environment: str, checklist: str, as_json: bool) -> int:
    """Exit 1 when a probe fails, 2 when the configuration cannot be right (then no probe runs)."""
    from bot.app import load_checklists
    from bot.probes import Variables, unresolved
    from bot.probes.report import probe_table, render

    templates = load_checklists(settings)
    if not settings.config_path.exists():
        raise ConfigError(
            f"{settings.config_path} does not exist: probes read their environment's variables from it "
            "(copy deploybot.example.yml there, or point DEPLOYBOT_CONFIG at yours)"
        )
    config = load_deploy_config(settings.config_path)
    if checklist not in templates:
        raise ConfigError(f"no checklist '{checklist}' in {settings.checklists_path} (have: {', '.join(templates)})")
    if environment not in config.environments:
        known = ", ".join(config.environments) or "none"
        raise ConfigError(f"environment '{environment}' is not in {settings.config_path} (known: {known})")
    template = templates[checklist]
    specs = {item.id: item.probe for item in template.items if item.probe is not None}
    problems = unresolved(specs, Variables(environment, config.variables(environment), os.environ))
    if problems:
        raise ConfigError(f"{len(problems)} probe(s) of {checklist} cannot run:\n  " + "\n  ".join(problems))
    rows = probe_table(template, config, environment)
    print(render(rows, as_json))
    return 1 if any(not row["ok"] for row in rows) else 0


def _export(settings: Settings, run_id: int, fmt: str, output: Path | None) -> int:
    from bot import export

    # Only the Markdown shows times in the team's zone: JSON and CSV are UTC, so a bad zone cannot block them.
    zone = deploy_config(settings).zone if fmt == "md" else None
    with _reading(settings) as session:
        document = export.record(session, run_id)
    _emit(export.render(document, fmt, zone), output)
    return 0


def _diff(settings: Settings, run_id: int, other_id: int | None) -> int:
    from bot import export, runs

    with _reading(settings) as session:
        run = runs.get_run(session, run_id)
        other = runs.get_run(session, other_id) if other_id else runs.previous_release(session, run)
        changes = export.compare(run, other)
        print(export.describe_changes(run, other, changes, limit=1000))
        for kind, ids in changes.items():
            for item_id in ids:
                print(f"  newly {kind}: {item_id}")
    return 0


def _stats(settings: Settings, environment: str | None, period: str, as_json: bool) -> int:
    from bot.insights import report, text
    from bot.services import utcnow

    report.parse_period(period)  # a typo is answered before the database is opened
    with _reading(settings) as session:
        found = report.build(session, environment=environment, period=period, now=utcnow())
    sys.stdout.write(text.json_text(found) if as_json else text.as_table(found))
    return 0


def _import(markdown: Path, output: Path | None, kind: str, sections: list[str], template_id: str | None) -> int:
    from bot.markdown_import import import_document

    try:
        text = markdown.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{markdown}: no such file; give the path of a Markdown checklist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{markdown}: cannot read it as UTF-8 text ({exc})") from None
    try:
        imported = import_document(text, kind=kind, phases=sections, template_id=template_id)
    except checklists.ChecklistError as exc:
        raise checklists.ChecklistError([f"{markdown}: {error}" for error in exc.errors]) from None
    try:
        checklists.Template.model_validate(imported.data)
    except ValidationError as exc:
        where = [(".".join(map(str, err["loc"])), err["msg"]) for err in exc.errors()]
        raise checklists.ChecklistError(
            [f"{markdown}: the import would be invalid at {at}: {msg}" for at, msg in where]
        ) from None
    _emit(yaml.safe_dump(imported.data, sort_keys=False, allow_unicode=True, width=120), output)
    # Said on standard error, so the YAML on standard output stays clean.
    for line in imported.skipped:
        print(f"skipped {line}", file=sys.stderr)
    if imported.contacts:
        print(imported.contacts_block(), end="", file=sys.stderr)
    return 0


def _run_id(text: str) -> int:
    """A run id as argparse reads it: a whole number a database column can hold."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a run id: give the run's number, e.g. 12") from None
    if not 0 < value < 2**63:
        raise argparse.ArgumentTypeError(f"run #{value} does not exist: run ids are positive numbers")
    return value


@contextmanager
def _reading(settings: Settings) -> Iterator[Session]:
    """A read-only session on the configured database, for one command."""
    engine = db.make_engine(settings.database_url)
    try:
        with db.read_only(db.make_sessions(engine))() as session:
            yield session
    finally:
        engine.dispose()


def _emit(text: str, output: Path | None) -> None:
    """Write to `output` if given, else to standard output."""
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise RunError(
                f"Cannot write {output}: {exc.strerror or exc}. Give a path in a folder that exists."
            ) from None
        print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def _run(settings: Settings) -> int:
    from bot.app import create_app
    from bot.serve import GracefulServer

    settings.require_slack()
    deploybot = create_app(settings)
    try:  # before anything else starts: a taken port is a one-line answer, not a half-started bot
        server = GracefulServer(
            deploybot.web, settings.host, settings.port, settings.server_threads, settings.connection_limit
        )
    except (OSError, ValueError) as exc:  # waitress says ValueError for a HOST it cannot parse
        raise problems.port(settings.host, settings.port, exc) from None
    db.upgrade(deploybot.engine)
    log.info("database %s is up to date", settings.database_url_masked)
    deploybot.check_slack()
    deploybot.start_workers()
    # What startup built lives as long as the process: keep it out of the collector's full passes,
    # each of which otherwise stops every thread, a click's included, for 60-90 ms on this heap.
    gc.collect()
    gc.freeze()
    socket_mode = None
    connecting = threading.Event()  # set: stop trying to open the socket
    if settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_mode = SocketModeHandler(deploybot.bolt, settings.slack_app_token.reveal())
        deploybot.socket_connected = socket_mode.client.is_connected
        threading.Thread(target=_open_socket, args=(socket_mode, connecting), name="socket-mode", daemon=True).start()
    log.info("serving on http://%s:%s (POST /slack/events, GET /healthz /readyz /metrics)", settings.host, server.port)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: finishing in-flight requests and renders, then stopping", signal.Signals(signum).name)
        connecting.set()
        if socket_mode is not None:
            socket_mode.close()  # type: ignore[no-untyped-call]
        if deploybot.api is not None:
            deploybot.api.gates.stop()  # waiting gates answer now, within the drain's few seconds
        server.drain()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    finally:
        deploybot.stop_workers()
        log.info("stopped")
    return 0


def _open_socket(handler: Any, stopping: threading.Event) -> None:
    """Open the Socket Mode connection, retrying while Slack does not answer; the client reconnects by itself after."""
    wait = 1.0
    while not stopping.is_set():
        try:
            handler.connect()
        except Exception as exc:  # an outage shows as API errors, refused connections or WebSocket failures
            log.warning("cannot open the Socket Mode connection yet (%s); retrying in %.0f s", type(exc).__name__, wait)
            stopping.wait(wait)
            wait = min(2 * wait, 30.0)
        else:
            log.info("connected to Slack in Socket Mode")
            return


if __name__ == "__main__":
    sys.exit(main())
