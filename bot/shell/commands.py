"""`deploybot shell` commands: the same run rules as Slack, answered in plain terminal text."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from bot import export, items, paging, people, problems, runs
from bot.checklists import Item
from bot.models import ItemStatus, ProbeStatus, Run
from bot.paging.render import contacts_said
from bot.printable import visible
from bot.reminders import Reminders
from bot.runs import Actor, RunError
from bot.say import Names, Said, terminal
from bot.services import Services, parse_start
from bot.shell import picks
from bot.shell.liveness import Liveness
from bot.shell.text import item_text, one_item, progress_text, render, run_line

HELP = """Commands (the same as in Slack; items by their number in 'status'):
  start <version> [environment] [--checklist <name>]
                                  start a run here (environment defaults to production)
  status                          the run: numbered items, their commands and help, how it ended
  show N                          item N in full: command, help, probe, note
  tick N… | done N…               mark items done: 'tick 3', 'tick 3 4 5', 'tick 3-8', 'tick 3,4'
  tick N… --anyway                tick items whose probe failed (recorded as an override)
  untick N… | undo N… | reopen N… mark items open again
  na N… "reason"                  mark items not applicable, e.g. 'na 10 12 "no S3 in staging"'
  note N "text"                   add a note to item N
  complete-anyway ["reason"]      complete with required items open (asks for a reason)
  abort <reason>                  stop the run for good
  deployed [succeeded|failed]     report the deployment itself done: every phase's probes may run
  fail <reason> | rollback        declare the deployment failed / open the rollback checklist
  page <team> <message>           page a team (a running deploybot delivers it and escalates)
  ack P | resolve P               acknowledge or resolve page P
  contacts                        the emergency contacts
  reminders                       when each maintenance checklist is next posted
  remind <cadence>                post a maintenance checklist now, e.g. 'remind weekly'
  list                            recent runs: status, duration, who started them
  use <run>                       work on another run, e.g. a Slack run while Slack is down
  diff [run] [other run]          items newly N/A, failed or overridden since the last release
  export [md|csv|json]            print the run's full record
  help | quit
At a terminal: Tab completes commands, item numbers, runs, cadences and teams; Up recalls earlier lines."""

# Refused with a plain line: each of these takes items; their echo names what was done.
_ITEM_VERBS = {"tick": "done", "untick": "open again", "na": "N/A"}


@dataclass
class Reach:
    """What the shell reaches beyond the run rules: maintenance schedules, liveness, and how to ask."""

    reminders: Reminders | None = None
    liveness: Liveness | None = None
    # Asks the person at the terminal a question; None when reading a script (nobody to ask).
    ask: Callable[[str], str | None] | None = None
    names: Callable[[str], str | None] | None = None
    database_url: str = "sqlite://"  # named (password hidden) when the database stops answering


class Shell:
    """Reads commands, applies them through the same run rules as Slack, answers in text."""

    def __init__(self, services: Services, user: str, channel: str, reach: Reach | None = None):
        self.services = services
        self.user = user
        self.channel = channel
        self.reach = reach or Reach()
        self.run_id: int | None = None
        self.commands: dict[str, Callable[[list[str]], str]] = {
            "start": self.start, "status": self.status, "show": self.show,
            "tick": self.tick, "done": self.tick, "untick": self.untick, "undo": self.untick, "reopen": self.untick,
            "na": self.na, "note": self.note, "complete-anyway": self.complete_anyway, "abort": self.abort,
            "deployed": self.deployed, "fail": self.fail, "rollback": self.rollback,
            "page": self.page, "ack": self.ack, "resolve": self.resolve, "contacts": self.contacts,
            "reminders": self.reminders, "remind": self.remind,
            "list": self.recent, "use": self.use, "diff": self.diff, "export": self.export,
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
            return f"! I don't know '{visible(words[0])}'. 'help' lists the commands."
        try:
            return command(words[1:])
        except RunError as exc:
            return f"! {self.said(exc.message)}"
        except OperationalError as exc:
            # The session stays usable: the next command may find the database back.
            return f"! {problems.database(self.reach.database_url, exc)}. Nothing changed; try again."

    def said(self, message: Said | str) -> str:
        """A rule's message as terminal text."""
        names = self.reach.names
        return terminal(message, names) if names else terminal(message)

    def _actor(self) -> Actor:
        return Actor(self.user, self.services.clock(), self.channel, name=people.of_terminal_user(self.user))

    def _current(self) -> int:
        if self.run_id is None:
            with self.services.read() as session:
                run = runs.active_run(session, self.channel)
            if run is None:
                raise RunError(
                    "No active run here: 'start <version> [environment]', or 'use <run>' ('list' shows them)."
                )
            self.run_id = run.id
        return self.run_id

    def _items(self, run_id: int) -> list[Item]:
        with self.services.read() as session:
            return runs.get_run(session, run_id).template.items

    def _show(self, run_id: int) -> str:
        with self.services.read() as session:
            return render(runs.get_run(session, run_id))

    def _progress(self, run_id: int) -> str:
        with self.services.read() as session:
            return progress_text(runs.get_run(session, run_id))

    # --- runs ------------------------------------------------------------------------------------

    def start(self, args: list[str]) -> str:
        if not args:
            raise RunError("start <version> [environment] [--checklist <name>], e.g. 'start v1.2 staging'.")
        asked = parse_start(args)
        self.run_id = self.services.start_deploy(asked.version, asked.environment, self._actor(), asked.checklist)
        notes = []
        off = self.services.probes_off(asked.environment, self.services.deploy_template(self.channel, asked.checklist))
        if off is not None:
            notes.append(f"note: {self.said(off)}")
        notes += self._probe_notes()
        return "\n".join([self._show(self.run_id), *notes])

    def status(self, _args: list[str]) -> str:
        text = self._show(self._current())
        if self.reach.liveness is not None:
            text += f"\n\n{self.reach.liveness.footer()}"
        return text

    def show(self, args: list[str]) -> str:
        run_id = self._current()
        total = len(self._items(run_id))
        if len(args) != 1 or not args[0].isdigit() or not 1 <= int(args[0]) <= total:
            raise RunError(f"show N, with N an item number from 1 to {total}, e.g. 'show 3'.")
        with self.services.read() as session:
            return one_item(runs.get_run(session, run_id), int(args[0]))

    def complete_anyway(self, args: list[str]) -> str:
        run_id = self._current()
        with self.services.read() as session:
            run = runs.get_run(session, run_id)
            runs.ensure_active(run)
            open_items = _open_required(run)
        reason = " ".join(args).strip()
        if not reason:
            listing = _listing(open_items)
            question = f"{len(open_items)} required item(s) are open:\n{listing}\nReason (empty: keep going): "
            if self.reach.ask is None:
                raise RunError(
                    f"{len(open_items)} required item(s) are open. Say why you complete anyway: "
                    "'complete-anyway \"reason\"'. Nothing changed."
                )
            reason = (self.reach.ask(question) or "").strip()
            if not reason:
                return "Not completed: a reason is needed to complete anyway. Nothing changed."
        with self.services.change() as session:
            overridden = runs.complete_anyway(session, run_id, self._actor(), reason)
        return f"completed anyway with {len(overridden)} required item(s) open\n{self._progress(run_id)}"

    def abort(self, args: list[str]) -> str:
        run_id = self._current()
        with self.services.change() as session:
            runs.abort(session, run_id, " ".join(args), self._actor())
        return f"aborted run #{run_id}"

    def deployed(self, args: list[str]) -> str:
        if len(args) > 1:
            raise RunError("deployed [succeeded|failed], e.g. 'deployed' once the new version is live.")
        run_id = self._current()
        with self.services.change() as session:
            said = runs.deployment_reported(session, run_id, args[0].lower() if args else "succeeded", self._actor())
        return "\n".join([self.said(said), *self._probe_notes()])

    def fail(self, args: list[str]) -> str:
        failed, rollback = self.services.fail_deploy(self._current(), " ".join(args), self._actor())
        self.run_id = rollback
        return f"run #{failed} failed; now on its rollback, run #{rollback}\n{self._show(rollback)}"

    def rollback(self, _args: list[str]) -> str:
        self.run_id = self.services.rollback(self._actor())
        return self._show(self.run_id)

    def recent(self, _args: list[str]) -> str:
        now = self.services.clock()
        with self.services.read() as session:
            return "\n".join(run_line(r, now) for r in runs.recent_runs(session, 10)) or "no runs yet"

    def use(self, args: list[str]) -> str:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            raise RunError("use <run number>, e.g. 'use 12' (see 'list').")
        with self.services.read() as session:
            run = runs.get_run(session, int(args[0].lstrip("#")))
        self.run_id = run.id
        return self._show(run.id)

    def diff(self, args: list[str]) -> str:
        if len(args) > 2 or not all(a.lstrip("#").isdigit() for a in args):
            raise RunError("diff [run] [other run], e.g. 'diff' or 'diff 12 9' (see 'list').")
        numbers = [int(a.lstrip("#")) for a in args]
        with self.services.read() as session:
            run = runs.get_run(session, numbers[0] if numbers else self._current())
            other = runs.get_run(session, numbers[1]) if len(numbers) > 1 else runs.previous_release(session, run)
            changes = export.compare(run, other)
            lines = [visible(export.describe_changes(run, other, changes, limit=1000))]
            position = {item.id: n for n, item in enumerate(run.template.items, 1)}
            texts = {item.id: item.text for item in run.template.items}
            for kind, ids in changes.items():
                lines += [f"  newly {kind}: {position[i]}. {visible(texts[i])}" for i in ids]
        return "\n".join(lines)

    def export(self, args: list[str]) -> str:
        if len(args) > 1 or (args and args[0].lower() not in export.FORMATS):
            raise RunError(f"export [{'|'.join(export.FORMATS)}], e.g. 'export md' (Markdown, the default).")
        with self.services.read() as session:
            document = export.record(session, self._current())
        return export.render(document, args[0].lower() if args else "md", self.services.config.zone)

    # --- items -----------------------------------------------------------------------------------

    def tick(self, args: list[str]) -> str:
        anyway = "--anyway" in args
        return self._change_items("tick", [a for a in args if a != "--anyway"], ItemStatus.DONE, anyway=anyway)

    def untick(self, args: list[str]) -> str:
        return self._change_items("untick", args, ItemStatus.OPEN)

    def na(self, args: list[str]) -> str:
        numbers = [a for a in args if picks.looks_like_items(a)]
        reason_words = args[len(numbers) :] if args[: len(numbers)] == numbers else None
        if reason_words is None:
            raise RunError('na N… "reason": item numbers first, then the reason, e.g. na 10 12 "no S3 here".')
        if not " ".join(reason_words).strip():
            raise RunError('Say why: na N… "reason", e.g. na 10 "no S3 in staging". Nothing changed.')
        return self._change_items("na", numbers, ItemStatus.NA, " ".join(reason_words))

    def _change_items(self, verb: str, args: list[str], to: str, reason: str = "", *, anyway: bool = False) -> str:
        """Apply one verb to several items in one transaction: all of them, or (refused) none."""
        run_id = self._current()
        with self.services.read() as session:
            run = runs.get_run(session, run_id)
            template_items = run.template.items
            numbers = picks.parse(args, len(template_items), verb)
            status = {s.item_id: s.status for s in run.items}
            probe_failed = {s.item_id: s.probe_reason for s in run.items if s.probe_status == ProbeStatus.FAILED}
        chosen = [(n, template_items[n - 1]) for n in numbers]
        over_probe = [(n, i) for n, i in chosen if to == ItemStatus.DONE and i.id in probe_failed]
        if over_probe and not anyway:
            # Slack offers only "Done anyway (override)" on an item whose probe failed: so does the shell.
            failed = "\n".join(f"  {item_text(n, i)}: {visible(probe_failed[i.id] or 'no reason given')}"
                               for n, i in over_probe)  # fmt: skip
            picked = " ".join(str(n) for n, _ in over_probe)
            raise RunError(
                f"The probe of {len(over_probe)} of these failed:\n{failed}\n"
                f"Tick it over the probe with: tick {picked} --anyway (recorded as an override). Nothing changed."
            )
        same = [(n, i) for n, i in chosen if status[i.id] == to and to != ItemStatus.NA]
        todo = [(n, i) for n, i in chosen if (n, i) not in same]
        # Optional items first: resolving the last required item completes the run, and a finished run takes nothing.
        todo.sort(key=lambda pick: (pick[1].required, pick[0]))
        actor = self._actor()
        if todo:
            with self.services.change() as session:
                for _, item in todo:
                    if to == ItemStatus.DONE:
                        items.mark_done(session, run_id, item.id, actor)
                    elif to == ItemStatus.OPEN:
                        items.reopen(session, run_id, item.id, actor)
                    else:
                        items.mark_na(session, run_id, item.id, reason, actor)
        todo.sort()
        lines = [
            f"{_ITEM_VERBS[verb]}{' anyway, over its failed probe' if (n, i) in over_probe else ''}: {item_text(n, i)}"
            for n, i in todo
        ]
        already = "done" if to == ItemStatus.DONE else "open"
        lines += [f"already {already}, unchanged: {item_text(n, i)}" for n, i in same]
        lines.append(self._progress(run_id))
        if todo and to != ItemStatus.OPEN:
            lines += self._probe_notes()
        return "\n".join(lines)

    def note(self, args: list[str]) -> str:
        run_id = self._current()
        template_items = self._items(run_id)
        if not args or not args[0].isdigit() or not 1 <= int(args[0]) <= len(template_items):
            raise RunError(f'note N "text", with N an item number from 1 to {len(template_items)}, e.g. note 4 "ok".')
        number = int(args[0])
        with self.services.change() as session:
            items.add_note(session, run_id, template_items[number - 1].id, " ".join(args[1:]), self._actor())
        return f"noted on {item_text(number, template_items[number - 1])}"

    # --- people ----------------------------------------------------------------------------------

    def page(self, args: list[str]) -> str:
        if len(args) < 2:
            raise RunError('page <team> "message", e.g. page dba "migration stuck" (see \'contacts\').')
        team = args[0].lower()
        page_id = self.services.page(team, " ".join(args[1:]), self._actor(), run_id=self.run_id)
        liveness = self.reach.liveness
        if liveness is not None and not liveness.bot_alive():
            return f"page #{page_id} for {visible(team)} queued; no deploybot is running to deliver it"
        return f"page #{page_id} raised for {visible(team)}; the running deploybot notifies and escalates it"

    def ack(self, args: list[str]) -> str:
        with self.services.change() as session:
            return self.said(paging.acknowledge(session, _page_number(args), self._actor()))

    def resolve(self, args: list[str]) -> str:
        with self.services.change() as session:
            return self.said(paging.resolve(session, _page_number(args), self._actor()))

    def contacts(self, _args: list[str]) -> str:
        return self.said(contacts_said(self.services.config.contacts))

    def reminders(self, _args: list[str]) -> str:
        reminders = self.reach.reminders
        if reminders is None or not reminders.cadences:
            return "No maintenance schedules: add 'schedule:' to the phases of checklists/maintenance.yml."
        return "Maintenance checklists\n" + "\n".join(self.said(line) for line in reminders.status_lines())

    def remind(self, args: list[str]) -> str:
        reminders = self.reach.reminders
        if reminders is None or not reminders.cadences:
            raise RunError("No maintenance schedules are loaded: add 'schedule:' to checklists/maintenance.yml.")
        known = ", ".join(reminders.cadences)
        if len(args) != 1:
            raise RunError(f"remind <cadence>, e.g. 'remind weekly'. Cadences: {known}.")
        run_id = reminders.remind_now(args[0].lower(), self.user)
        text = f"Posted the {args[0].lower()} maintenance checklist as run #{run_id}"
        liveness = self.reach.liveness
        if liveness is not None and not liveness.bot_alive():
            return text + "; no deploybot is running to post it to Slack (it is posted when one starts)."
        return text + "; the running deploybot posts it to Slack."

    # --- what a running deploybot would do -------------------------------------------------------

    def _probe_notes(self) -> list[str]:
        """Say who runs the probes now queued; with no deploybot alive, run them here."""
        liveness = self.reach.liveness
        if liveness is None or self.run_id is None:
            return []
        note = liveness.probes_queued(self.run_id)
        return [note] if note else []


def _open_required(run: Run) -> list[tuple[int, str]]:
    return [
        (n, item.text)
        for n, item in enumerate(run.template.items, 1)
        if (s := run.state_of(item.id)) is not None and s.required and s.status == ItemStatus.OPEN
    ]


def _listing(open_items: list[tuple[int, str]], limit: int = 10) -> str:
    shown = [f"  {n}. {visible(text)}" for n, text in open_items[:limit]]
    if len(open_items) > limit:
        shown.append(f"  …and {len(open_items) - limit} more ('status' lists them)")
    return "\n".join(shown)


def _page_number(args: list[str]) -> int:
    if len(args) != 1 or not args[0].lstrip("#").isdigit():
        raise RunError("Give the page number, e.g. 'ack 3'.")
    return int(args[0].lstrip("#"))


__all__ = ["HELP", "Names", "Reach", "Shell"]
