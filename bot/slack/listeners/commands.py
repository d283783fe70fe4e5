"""The /deploy slash command: parse, apply, answer (ephemeral unless said otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack

from bot import people, runs
from bot.insights import report as insights_report
from bot.insights import slack as insights_slack
from bot.models import ItemStatus, Run
from bot.paging import render
from bot.runs import Actor, RunError
from bot.services import Services, parse_start
from bot.slack import blocks
from bot.slack.mrkdwn import escape, mention, unescape

HELP = """*deploybot* — your deployment checklist, live in this channel.
• `/deploy start <version> [environment] [--checklist <name>]` — post a new run (environment: `production` unless given)
• `/deploy status` — where the run in this channel stands (or every active run)
• `/deploy list` — the recent runs in this channel, with status and duration
• `/deploy abort [#run] <reason>` — stop the active run in this channel (say which when several are)
• `/deploy fail <reason>` — declare the deployment failed and post the rollback checklist
• `/deploy rollback` — the rollback checklist for the latest deployment in this channel
• `/deploy page <team> <message>` — page a team; it escalates until someone acknowledges
• `/deploy contacts` — the emergency contacts, and where a page escalates
• `/deploy stats [environment] [period]` — delivery figures and checklist health (period `30d`, `12w`…; default 30d)
• `/deploy reminders` — when each maintenance checklist is next posted, and how the last one went
• `/deploy remind <daily|weekly|monthly|quarterly>` — post a maintenance checklist now
• `/deploy help` — this message
Tick items with *Done*; *Mark N/A…* and *Add note…* are under each part of the checklist."""


@dataclass(frozen=True)
class Reply:
    """An answer with blocks, and the text Slack shows where blocks are not shown (notifications)."""

    text: str
    blocks: list[dict[str, Any]]


def parse_stats_args(words: list[str]) -> tuple[str | None, str]:
    """`[environment] [period]`, in either order: (environment or None for all, period)."""
    periods = [w for w in words if insights_report.is_period(w)]
    names = [w for w in words if not insights_report.is_period(w)]
    if len(periods) > 1 or len(names) > 1:
        raise RunError(
            "Say at most one environment and one period: `/deploy stats [environment] [period]`, "
            "e.g. `/deploy stats production 12w`."
        )
    return (names[0] if names else None), (periods[0] if periods else insights_report.DEFAULT_PERIOD)


class Commands:
    def __init__(self, services: Services):
        self.services = services
        self.subcommands: dict[str, Callable[[dict[str, Any], str], str | Reply]] = {
            "start": self.start,
            "status": self.status,
            "list": self.list,
            "abort": self.abort,
            "fail": self.fail,
            "rollback": self.rollback,
            "page": self.page,
            "contacts": lambda _command, _args: render.contacts_text(self.services.config.contacts),
            "reminders": self.reminders,
            "stats": self.stats,
            "remind": self.remind,
            "help": lambda command, _args: self.help(command),
        }

    def deploy(self, ack: Ack, command: dict[str, Any]) -> None:
        # Slack sends "&", "<" and ">" in command text as entities: decoded here, once, so what is
        # stored is what the person typed, and each output escapes it once for its own format.
        name, _, args = unescape(command.get("text") or "").strip().partition(" ")
        handler = self.subcommands.get(name.lower())
        if handler is None:
            prefix = f"I don't know `/deploy {escape(name)}`.\n\n" if name else ""
            ack(response_type="ephemeral", text=prefix + self.help(command))
            return
        reply = handler(command, args.strip())
        if isinstance(reply, Reply):
            ack(response_type="ephemeral", text=reply.text, blocks=reply.blocks)
        else:
            ack(response_type="ephemeral", text=reply)

    def _actor(self, command: dict[str, Any]) -> Actor:
        return Actor(
            user_id=command["user_id"],
            at=self.services.clock(),
            channel_id=command["channel_id"],
            name=people.clean(command.get("user_name")),
        )

    def help(self, command: dict[str, Any]) -> str:
        """The commands, and the deploy checklists `start` can run here (the channel's default marked)."""
        default = self.services.default_checklist(command.get("channel_id"))
        listed = [
            f"`{t.id}` ({escape(t.title)}){' — the default here' if t.id == default else ''}"
            for t in self.services.deploy_checklists()
        ]
        if not listed:
            return HELP + "\n\nNo deploy checklist yet: add checklists/production-deploy.yml."
        return HELP + "\n\n*Deploy checklists* (`--checklist <name>`): " + ", ".join(listed)

    def start(self, command: dict[str, Any], args: str) -> str:
        asked = parse_start(args.split())
        run_id = self.services.start_deploy(asked.version, asked.environment, self._actor(command), asked.checklist)
        template = self.services.deploy_template(command["channel_id"], asked.checklist)
        off = self.services.probes_off(asked.environment, template)
        return (
            f"Run #{run_id} started: {escape(asked.version)} → {escape(asked.environment)} ({escape(template.title)}). "
            "The checklist is on its way to this channel." + (f"\n{off}" if off else "")
        )

    def status(self, command: dict[str, Any], _args: str) -> str:
        with self.services.read() as session:
            here = runs.active_runs(session, command["channel_id"])
            if here:
                return "\n\n".join(_describe(run, detail=True) for run in here)
            active = runs.active_runs(session)
            if not active:
                return "No deployment is running. Start one with `/deploy start <version> [environment]`."
            return "No run in this channel. Active runs:\n" + "\n".join(
                f"• <#{r.channel_id}> {_describe(r)}" for r in active
            )

    def list(self, command: dict[str, Any], _args: str) -> str:
        with self.services.read() as session:
            recent = runs.recent_runs(session, 10, channel_id=command["channel_id"])
        if not recent:
            return "No runs in this channel yet. Start one with `/deploy start <version> [environment]`."
        now = self.services.clock()
        lines = []
        for run in recent:
            took = blocks.duration(run.started_at, run.finished_at or now)
            state = run.status + (" (overridden)" if run.overridden_items else "")
            lines.append(
                f"• *#{run.id}* {escape(run.version)} → {run.environment} · {state} · {took}"
                f"{' so far' if run.is_active else ''} · {mention(run.started_by)} {blocks.when(run.started_at)}"
            )
        return "*Recent runs in this channel*\n" + "\n".join(lines)

    def stats(self, command: dict[str, Any], args: str) -> Reply:
        environment, period = parse_stats_args(args.split())
        with self.services.read() as session:
            report = insights_report.build(session, environment=environment, period=period, now=self.services.clock())
        return Reply(insights_slack.stats_text(report), insights_slack.stats_blocks(report))

    def reminders(self, command: dict[str, Any], _args: str) -> str:
        reminders = self.services.reminders
        if reminders is None or not reminders.cadences:
            return "No maintenance schedules: add `schedule:` to the phases of checklists/maintenance.yml."
        return "*Maintenance checklists*\n" + "\n".join(map(str, reminders.status_lines()))

    def remind(self, command: dict[str, Any], args: str) -> str:
        if self.services.reminders is None:
            raise RunError("No maintenance schedules are loaded.")
        if not args:
            raise RunError("Say which: `/deploy remind daily` (or weekly, monthly, quarterly).")
        cadence = args.split()[0].lower()
        if cadence not in self.services.reminders.cadences:
            known = ", ".join(self.services.reminders.cadences) or "none"
            raise RunError(f"There is no cadence '{escape(cadence)}'. Cadences: {known}.")
        run_id = self.services.reminders.remind_now(cadence, command["user_id"], people.clean(command.get("user_name")))
        return f"Posted the {cadence} maintenance checklist as run #{run_id}."

    def fail(self, command: dict[str, Any], args: str) -> str:
        failed, rollback = self.services.fail_deploy(None, args, self._actor(command))
        return f"Run #{failed} marked failed. The rollback checklist (run #{rollback}) is on its way to this channel."

    def rollback(self, command: dict[str, Any], _args: str) -> str:
        rollback = self.services.rollback(self._actor(command))
        return f"Rollback checklist started as run #{rollback}; it is on its way to this channel."

    def page(self, command: dict[str, Any], args: str) -> str:
        team, _, text = args.partition(" ")
        if not team:
            raise RunError("Say whom and why: `/deploy page <team> <message>`; `/deploy contacts` lists the teams.")
        page_id = self.services.page(team.lower(), text, self._actor(command))
        return f"Page #{page_id} sent to {team.lower()}. It escalates until someone acknowledges it."

    def abort(self, command: dict[str, Any], args: str) -> str:
        self.services.require("abort", self._actor(command))
        with self.services.change() as session:
            run, reason = _abort_target(runs.active_runs(session, command["channel_id"]), args)
            runs.abort(session, run.id, reason, self._actor(command))
            return f"Run #{run.id} ({escape(run.version)}) aborted."


def _abort_target(active: list[Run], args: str) -> tuple[Run, str]:
    """The run `/deploy abort [#run] <reason>` stops in a channel, and the reason; several active runs need `#run`."""
    first, _, rest = args.partition(" ")
    if first.startswith("#") and first[1:].isdigit():
        run = next((r for r in active if r.id == int(first[1:])), None)
        if run is None:
            raise RunError(f"Run {first} is not active in this channel. `/deploy status` lists the active runs.")
        return run, rest
    if not active:
        raise RunError("No active run in this channel to abort. `/deploy status` lists active runs.")
    if len(active) > 1:
        listed = ", ".join(f"#{r.id} ({escape(blocks.kind_title(r.kind))} {escape(r.version)})" for r in active)
        raise RunError(
            f"{len(active)} runs are active in this channel: {listed}. "
            f"Say which: `/deploy abort #{active[0].id} <reason>`."
        )
    return active[0], args


def _describe(run: Run, *, detail: bool = False) -> str:
    started = f"started by {mention(run.started_by)} {blocks.when(run.started_at)}"
    text = f"*Run #{run.id}* {escape(blocks.status_line(run))} · {started}"
    if not detail:
        return text
    template = run.template
    open_required = [
        item.text
        for item in template.items
        if (s := run.state_of(item.id)) is not None and s.required and s.status == ItemStatus.OPEN
    ]
    if open_required:
        shown = "\n".join(f"  ⬜ {t}" for t in open_required[:8])
        more = f"\n  …and {len(open_required) - 8} more" if len(open_required) > 8 else ""
        text += f"\n{len(open_required)} required item(s) open, next:\n{shown}{more}"
    return text
