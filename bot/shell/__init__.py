"""`deploybot shell`: the same runs from a terminal — to try deploybot before Slack, or while Slack is down."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from bot import db, people
from bot.app import load_checklists
from bot.config import Settings, deploy_config
from bot.reminders import Reminders
from bot.services import Services, utcnow
from bot.shell.commands import HELP, Reach, Shell
from bot.shell.liveness import Liveness

__all__ = ["HELP", "Reach", "Shell", "open_shell", "run_shell"]


@contextmanager
def open_shell(settings: Settings) -> Iterator[Shell]:
    """A shell on the configured database and checklists; what it started is stopped on leaving."""
    # Configuration first: a mistake there is reported before the database is created or migrated.
    config, templates = deploy_config(settings), load_checklists(settings)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    # Changes made here reach Slack through a running deploybot's publisher, which polls the database.
    services = Services(
        sessions=db.make_sessions(engine), templates=templates, wake=lambda: None, clock=utcnow, config=config
    )
    liveness = Liveness(services, settings.environ)
    reminders = Reminders(services.sessions, templates, config, utcnow, lambda: None)
    user = settings.environ.get("DEPLOYBOT_USER") or getpass.getuser()
    channel = settings.environ.get("DEPLOYBOT_SHELL_CHANNEL", "shell")
    try:
        reach = Reach(reminders, liveness, database_url=settings.database_url, names=_names(services))
        yield Shell(services, user, channel, reach)
    finally:
        liveness.stop()
        engine.dispose()


def _names(services: Services) -> Callable[[str], str | None]:
    """A person's kept name by their id, so the terminal says who rather than which id."""

    def name_of(user_id: str) -> str | None:
        with services.read() as session:
            return people.names_of(session, [user_id]).get(user_id)

    return name_of


def run_shell(settings: Settings, stdin: TextIO, stdout: TextIO) -> int:
    """Read commands until end of input or `quit`: at a terminal with editing and history, else line by line."""
    with open_shell(settings) as shell:
        stdout.write(f"deploybot shell — you are {shell.user}. Type 'help'.\n")
        if stdin.isatty() and stdout.isatty():
            _interactive(shell, settings, stdout)
        else:
            _scripted(shell, stdin, stdout)
    return 0


def _scripted(shell: Shell, stdin: TextIO, stdout: TextIO) -> None:
    """One command per line, no prompt, nobody to ask: what a script or a pipe gives."""
    for line in stdin:
        if line.strip() in ("quit", "exit"):
            break
        answer = shell.handle(line)
        if answer:
            stdout.write(answer + "\n")
            stdout.flush()


def _interactive(shell: Shell, settings: Settings, stdout: TextIO) -> None:
    from bot.shell.terminal import PROMPT, ask, prompt_session

    shell.reach.ask = ask
    session = prompt_session(shell, settings.environ)
    while True:
        try:
            line = session.prompt(PROMPT)
        except KeyboardInterrupt:
            continue  # Ctrl-C drops the line being typed, as in a shell
        except EOFError:
            break
        if line.strip() in ("quit", "exit"):
            break
        answer = shell.handle(line)
        if answer:
            stdout.write(answer + "\n")
            stdout.flush()
