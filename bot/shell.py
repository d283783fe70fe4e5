"""`deploybot shell`: the same runs from a terminal — to try deploybot before Slack, or while Slack is down."""

from __future__ import annotations

import getpass
import re
import shlex
from collections.abc import Callable
from typing import TextIO

from bot import db, export, items, paging, people, runs
from bot.app import load_checklists
from bot.checklists import iter_items
from bot.config import Settings, deploy_config
from bot.models import ItemStatus, ProbeStatus, Run
from bot.mrkdwn import unescape
from bot.paging.render import contacts_text as render_contacts
from bot.runs import Actor, RunError
from bot.services import Services, parse_start, utcnow

HELP = """Commands (the same as /deploy in Slack, plus item numbers):
  start <version> [environment] [--checklist <name>]
                                  start a run here (environment defaults to production)
  status                          the run, with numbered items
  tick N | untick N               mark item N done, or open again
  na N "reason"                   mark item N not applicable
  note N "text"                   add a note to item N
  complete-anyway | abort <reason>
  deployed [succeeded|failed]     report the deployment itself done: every phase's probes may run
  fail <reason> | rollback        declare the deployment failed / open the rollback checklist
  page <team> <message>           page a team (a running deploybot sends it and escalates)
  ack P | resolve P               acknowledge or resolve page P
  contacts                        the emergency contacts
  list                            recent runs
  use <run>                       work on another run, e.g. a Slack run while Slack is down
  export [md|csv|json]            print the run's full record
  help | quit"""

_MARK = {ItemStatus.DONE: "[x]", ItemStatus.NA: "[n/a]", ItemStatus.OPEN: "[ ]"}
# Characters a terminal acts on instead of showing: C0 and C1 controls (escape sequences, carriage
# returns) and the bidirectional overrides and isolates that reorder what is displayed.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """A person's text for the terminal: control characters made visible, later lines indented."""
    visible = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.replace("\r\n", "\n"))
    return visible.replace("\n", "\n             ")


def render(run: Run) -> str:
    """A run as readable text, items numbered in checklist order."""
    from bot.blocks import status_line

    lines = [
        f"Run #{run.id} · {status_line(run)}",
        f"Started by {run.started_by} at {run.started_at:%Y-%m-%d %H:%M} UTC",
    ]
    phase = group = None
    for number, (p, g, item) in enumerate(iter_items(run.template), 1):
        if p.title != phase:
            phase = p.title
            lines += ["", phase]
        if g.title != group:
            group = g.title
            lines.append(f"  {group}")
        state = run.state_of(item.id)
        assert state is not None
        line = f"    {number:>3}. {_MARK[state.status]} {item.text}" + ("" if item.required else " (optional)")
        if state.changed_by and state.changed_at:
            line += f" — {state.changed_by} {state.changed_at:%H:%M}"
        if state.na_reason:
            line += f": {shown(state.na_reason)}"
        if state.probe_status:
            said = shown(state.probe_reason or "checking")
            if state.probe_status == ProbeStatus.WAITING:
                said = "runs when its phase opens"
            line += f" [probe {state.probe_status}: {said}]"
        lines.append(line)
        if state.note:
            lines.append(f"           note ({state.note_by}): {shown(state.note)}")
    return "\n".join(lines)


class Shell:
    """Reads commands, applies them through the same run rules as Slack, answers in text."""

    def __init__(self, services: Services, user: str, channel: str):
        self.services = services
        self.user = user
        self.channel = channel
        self.run_id: int | None = None
        self.commands: dict[str, Callable[[list[str]], str]] = {
            "start": self.start, "status": self.status, "tick": self.tick, "done": self.tick, "untick": self.untick,
            "reopen": self.untick, "na": self.na, "note": self.note, "complete-anyway": self.complete_anyway,
            "abort": self.abort, "list": self.recent, "use": self.use, "export": self.export,
            "fail": self.fail, "rollback": self.rollback, "page": self.page, "ack": self.ack, "resolve": self.resolve,
            "contacts": lambda _args: render_contacts(self.services.config.contacts),
            "deployed": self.deployed,
            "help": lambda _args: HELP,
        }  # fmt: skip

    def handle(self, line: str) -> str:
        """Answer one line of input."""
        line = line.strip().removeprefix("/deploy").strip()
        if not line:
            return ""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return f'! {exc} (quote text with "...")'
        command = self.commands.get(words[0].lower())
        if command is None:
            return f"! I don't know '{words[0]}'.\n{HELP}"
        try:
            return command(words[1:])
        except RunError as exc:
            # Refusals are written for Slack, where a person's text is escaped; the terminal shows it as typed.
            return f"! {unescape(str(exc))}"

    def _actor(self) -> Actor:
        return Actor(self.user, self.services.clock(), self.channel, name=people.of_terminal_user(self.user))

    def _current(self) -> int:
        if self.run_id is None:
            with self.services.read() as session:
                run = runs.active_run(session, self.channel)
            if run is None:
                raise RunError("No active run here: `start <version> [environment]`, or `use <run>`.")
            self.run_id = run.id
        return self.run_id

    def _item(self, args: list[str]) -> tuple[int, str]:
        run_id = self._current()
        with self.services.read() as session:
            items = runs.get_run(session, run_id).template.items
        if not args or not args[0].isdigit() or not 1 <= int(args[0]) <= len(items):
            raise RunError(f"Give an item number from 1 to {len(items)} (see `status`).")
        return run_id, items[int(args[0]) - 1].id

    def _show(self, run_id: int) -> str:
        with self.services.read() as session:
            return render(runs.get_run(session, run_id))

    def start(self, args: list[str]) -> str:
        if not args:
            raise RunError("start <version> [environment] [--checklist <name>], e.g. `start v1.2 staging`.")
        asked = parse_start(args)
        self.run_id = self.services.start_deploy(asked.version, asked.environment, self._actor(), asked.checklist)
        return self._show(self.run_id)

    def status(self, _args: list[str]) -> str:
        return self._show(self._current())

    def tick(self, args: list[str]) -> str:
        run_id, item_id = self._item(args)
        with self.services.change() as session:
            items.mark_done(session, run_id, item_id, self._actor())
        return f"done: {item_id}\n{self._progress(run_id)}"

    def untick(self, args: list[str]) -> str:
        run_id, item_id = self._item(args)
        with self.services.change() as session:
            items.reopen(session, run_id, item_id, self._actor())
        return f"open again: {item_id}\n{self._progress(run_id)}"

    def na(self, args: list[str]) -> str:
        run_id, item_id = self._item(args)
        with self.services.change() as session:
            items.mark_na(session, run_id, item_id, " ".join(args[1:]), self._actor())
        return f"N/A: {item_id}\n{self._progress(run_id)}"

    def note(self, args: list[str]) -> str:
        run_id, item_id = self._item(args)
        with self.services.change() as session:
            items.add_note(session, run_id, item_id, " ".join(args[1:]), self._actor())
        return f"noted on {item_id}"

    def complete_anyway(self, _args: list[str]) -> str:
        run_id = self._current()
        with self.services.change() as session:
            open_items = runs.complete_anyway(session, run_id, self._actor())
        return f"completed anyway with {len(open_items)} required item(s) open\n{self._progress(run_id)}"

    def abort(self, args: list[str]) -> str:
        run_id = self._current()
        with self.services.change() as session:
            runs.abort(session, run_id, " ".join(args), self._actor())
        return f"aborted run #{run_id}"

    def deployed(self, args: list[str]) -> str:
        if len(args) > 1:
            raise RunError("deployed [succeeded|failed], e.g. `deployed` once the new version is live.")
        run_id = self._current()
        with self.services.change() as session:
            return runs.deployment_reported(session, run_id, args[0].lower() if args else "succeeded", self._actor())

    def fail(self, args: list[str]) -> str:
        failed, rollback = self.services.fail_deploy(self._current(), " ".join(args), self._actor())
        self.run_id = rollback
        return f"run #{failed} failed; now on its rollback, run #{rollback}\n{self._show(rollback)}"

    def rollback(self, _args: list[str]) -> str:
        self.run_id = self.services.rollback(self._actor())
        return self._show(self.run_id)

    def page(self, args: list[str]) -> str:
        if len(args) < 2:
            raise RunError('page <team> "message", e.g. `page dba "migration stuck"` (see `contacts`).')
        page_id = self.services.page(args[0].lower(), " ".join(args[1:]), self._actor(), run_id=self.run_id)
        return f"page #{page_id} raised for {args[0].lower()}; a running deploybot notifies and escalates it"

    def ack(self, args: list[str]) -> str:
        with self.services.change() as session:
            return unescape(paging.acknowledge(session, self._page(args), self._actor()))

    def resolve(self, args: list[str]) -> str:
        with self.services.change() as session:
            return unescape(paging.resolve(session, self._page(args), self._actor()))

    def _page(self, args: list[str]) -> int:
        if not args or not args[0].isdigit():
            raise RunError("Give the page number, e.g. `ack 3`.")
        return int(args[0])

    def recent(self, _args: list[str]) -> str:
        with self.services.read() as session:
            recent = runs.recent_runs(session, 10)
            return (
                "\n".join(f"#{r.id} {r.version} → {r.environment} · {r.status} · {r.channel_id}" for r in recent)
                or "no runs yet"
            )

    def use(self, args: list[str]) -> str:
        if not args or not args[0].isdigit():
            raise RunError("use <run number>, e.g. `use 12` (see `list`).")
        with self.services.read() as session:
            run = runs.get_run(session, int(args[0]))
        self.run_id = run.id
        return self._show(run.id)

    def export(self, args: list[str]) -> str:
        with self.services.read() as session:
            document = export.record(session, self._current())
        return export.render(document, args[0] if args else "md", self.services.config.zone)

    def _progress(self, run_id: int) -> str:
        from bot.blocks import status_line

        with self.services.read() as session:
            return status_line(runs.get_run(session, run_id))


def run_shell(settings: Settings, stdin: TextIO, stdout: TextIO) -> int:
    """Read commands until end of input or `quit`."""
    # Configuration first: a mistake there is reported before the database is created or migrated.
    config, templates = deploy_config(settings), load_checklists(settings)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    # Changes made here reach Slack through a running deploybot's publisher, which polls the database.
    services = Services(
        sessions=db.make_sessions(engine), templates=templates, wake=lambda: None, clock=utcnow, config=config
    )
    user = settings.environ.get("DEPLOYBOT_USER") or getpass.getuser()
    shell = Shell(services, user, settings.environ.get("DEPLOYBOT_SHELL_CHANNEL", "shell"))
    interactive = stdin.isatty()
    stdout.write(f"deploybot shell — you are {user}. Type `help`.\n")
    while True:
        if interactive:
            stdout.write("deploybot> ")
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip() in ("quit", "exit"):
            break
        answer = shell.handle(line)
        if answer:
            stdout.write(answer + "\n")
    engine.dispose()
    return 0
