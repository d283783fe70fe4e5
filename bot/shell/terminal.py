"""The interactive terminal: line editing, a history file, and Tab completion (prompt_toolkit)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from sqlalchemy.exc import SQLAlchemyError

from bot import runs
from bot.runs import RunError
from bot.shell.commands import Shell
from bot.shell.text import run_line

PROMPT = "deploybot> "
# Commands whose arguments are item numbers, run numbers, a cadence or a team.
_TAKES_ITEMS = {"tick", "done", "untick", "undo", "reopen", "na", "note", "show"}
_TAKES_RUNS = {"use", "diff"}


def history_path(env: Mapping[str, str]) -> Path:
    """DEPLOYBOT_HISTORY, else $XDG_STATE_HOME/deploybot/shell_history, else ~/.local/state/deploybot/shell_history."""
    if env.get("DEPLOYBOT_HISTORY"):
        return Path(env["DEPLOYBOT_HISTORY"]).expanduser()
    state = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return state / "deploybot" / "shell_history"


class ShellCompleter(Completer):
    """Completes the command word, then what that command takes, from the database as it is now."""

    def __init__(self, shell: Shell):
        self.shell = shell

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        before = document.text_before_cursor.lstrip().removeprefix("/deploy ").lstrip()
        words = before.split()
        typing = "" if before.endswith(" ") or not words else words[-1]
        done = words if before.endswith(" ") else words[:-1]
        if not done:
            choices = [(name, "") for name in sorted(self.shell.commands)]
        else:
            try:
                choices = self._arguments(done[0].lower(), len(done))
            except (SQLAlchemyError, RunError):
                return  # the database is away or the run is gone: no suggestions; the command will say why
        for value, meta in choices:
            if value.startswith(typing):
                yield Completion(value, start_position=-len(typing), display_meta=meta[:60])

    def _arguments(self, command: str, position: int) -> list[tuple[str, str]]:
        shell = self.shell
        if command in _TAKES_ITEMS and (command != "note" or position == 1):
            return self._items()
        if command in _TAKES_RUNS and position <= 2:
            now = shell.services.clock()
            with shell.services.read() as session:
                return [(str(r.id), run_line(r, now)) for r in runs.recent_runs(session, 20)]
        if command == "remind" and position == 1:
            return [(c, "") for c in (shell.reach.reminders.cadences if shell.reach.reminders else [])]
        if command == "page" and position == 1:
            return [(t, "") for t in shell.services.config.contacts]
        if command == "start" and position == 2:
            return [(e, "") for e in (shell.services.config.environments or ["production", "staging"])]
        if command == "export" and position == 1:
            return [(f, "") for f in ("md", "csv", "json")]
        if command == "deployed" and position == 1:
            return [("succeeded", ""), ("failed", "")]
        return []

    def _items(self) -> list[tuple[str, str]]:
        """(number, text) of the current run's items; none without a run."""
        shell = self.shell
        if shell.run_id is None:
            with shell.services.read() as session:
                active = runs.active_run(session, shell.channel)
            if active is None:
                return []
            shell.run_id = active.id
        with shell.services.read() as session:
            return [(str(n), item.text) for n, item in enumerate(runs.get_run(session, shell.run_id).template.items, 1)]


def prompt_session(shell: Shell, env: Mapping[str, str]) -> PromptSession[str]:
    """A prompt with the history file (made private to its owner) and the completer."""
    path = history_path(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)  # reasons and notes typed here are the team's business only
    return PromptSession(history=FileHistory(str(path)), completer=ShellCompleter(shell), complete_while_typing=False)


def ask(question: str) -> str | None:
    """Ask the person at the terminal (the last line is the prompt); None if they leave with Ctrl-D or Ctrl-C."""
    context, _, prompt = question.rpartition("\n")
    if context:
        # Printed once, above the prompt: a many-line prompt would be redrawn on every key.
        print(context, flush=True)
    answer_session: PromptSession[str] = PromptSession()
    try:
        return answer_session.prompt(prompt)
    except (EOFError, KeyboardInterrupt):
        return None
