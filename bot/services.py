"""What listeners and surfaces share: sessions, templates, the publisher, the clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from bot import db, paging, runs
from bot.checklists import Template, iter_items
from bot.config import DeployConfig
from bot.models import Run, RunStatus
from bot.permissions import Gatekeeper, Refused
from bot.reminders import Reminders
from bot.runs import Actor, RunError
from bot.say import Cmd, Code, Said, Typed, join, say
from bot.slack.blocks import layout
from bot.slack.mrkdwn import clip, is_slack_channel

VERSION = re.compile(r"^[\w.+\-/]{1,64}$")
ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StartRequest:
    """What `start <version> [environment] [--checklist <name>]` asks for."""

    version: str
    environment: str
    checklist: str | None


def parse_start(words: list[str]) -> StartRequest:
    """Read start's words; `--checklist <name>` (or `--checklist=<name>`) may come anywhere after the version."""
    rest: list[str] = []
    checklist: str | None = None
    pending = False
    for word in words:
        if pending:
            checklist, pending = word, False
        elif word == "--checklist":
            pending = True
        elif word.startswith("--checklist="):
            checklist = word.partition("=")[2]
        elif word.startswith("--"):
            raise RunError(
                say(Code(word, typed=True), " is not an option of start; it takes ", Code("--checklist <name>"), ".")
            )
        else:
            rest.append(word)
    if pending or checklist == "":
        raise RunError(say("Say which checklist: ", Code("--checklist <name>"), "; ", Cmd("help"), " lists them."))
    return StartRequest(rest[0] if rest else "", " ".join(rest[1:]) or "production", checklist)


def check_start(version: str, environment: str, environments: Iterable[str]) -> None:
    """Refuse a version or environment a run cannot have, saying what to type instead."""
    usage = say(Cmd("start <version> [environment] [--checklist <name>]"), ", e.g. ", Cmd("start v1.4.2 production"))
    if not version:
        raise RunError(say("Say which version to deploy: ", usage, "."))
    if not VERSION.match(version):
        allowed = say(" is not a version: use letters, digits, ", Code("."), ", ", Code("-"), ", ", Code("+"))
        raise RunError(say(Code(version, typed=True), allowed, " and ", Code("/"), " (up to 64): ", usage, "."))
    if version.lower() in {"production", "staging", *environments}:
        # Without this, `/deploy start staging` would open a production run of a version called "staging".
        raise RunError(say(Code(version, typed=True), " is an environment, not a version: ", usage, "."))
    if not ENVIRONMENT.match(environment):
        raise RunError(
            say(
                Code(environment, typed=True),
                " is not an environment name: use one lowercase word such as ",
                Code("production"),
                " or ",
                Code("staging"),
                ".",
            )
        )


@dataclass
class Services:
    sessions: sessionmaker[Session]
    templates: dict[str, Template]
    wake: Callable[[], None]  # tells the publisher and the probe runner that something changed
    config: DeployConfig = field(default_factory=DeployConfig)
    reminders: Reminders | None = None
    clock: Callable[[], datetime] = utcnow
    gate: Gatekeeper | None = None  # None: everyone may do everything

    def __post_init__(self) -> None:
        # A channel default naming no deploy checklist is refused before anything runs.
        self.config.check_checklists(self.templates)

    @contextmanager
    def change(self) -> Iterator[Session]:
        """One transaction for a change; committed before the caller acknowledges, then rendered."""
        with self.sessions.begin() as session:
            yield session
        self.wake()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @cached_property
    def _reader(self) -> sessionmaker[Session]:
        return db.read_only(self.sessions)

    def start_deploy(self, version: str, environment: str, actor: Actor, checklist: str | None = None) -> int:
        """Start a deployment run in the actor's channel; the checklist goes to Slack if that is a Slack channel.

        `checklist` names the deploy checklist; else the channel's default in deploybot.yml, else the default one.
        """
        check_start(version, environment, self.config.environments)
        self.require("start", actor, version=version, environment=environment)
        template = self.deploy_template(actor.channel_id, checklist)
        channel = actor.channel_id or ""
        with self.change() as session:
            run = runs.start(
                session,
                template,
                version=version,
                environment=environment,
                channel_id=channel,
                parts=len(layout(template)) if is_slack_channel(channel) else None,
                actor=actor,
                # Probes aim only at environments the operator declared in deploybot.yml.
                probes=environment in self.config.environments,
            )
            return run.id

    def probes_off(self, environment: str, template: Template) -> Said | None:
        """Why the probes of a run in `environment` will not run, if it has probes: no such environment is set up."""
        if environment in self.config.environments or not any(item.probe for item in template.items):
            return None
        known = ", ".join(self.config.environments) or "none"
        return say(
            "Probes are off for '",
            Typed(environment),
            f"' (known: {known}): add environment ",
            Code(environment, typed=True),
            " to deploybot.yml to turn them on.",
        )

    def require(self, role: str, actor: Actor, doing: str | None = None, **detail: object) -> None:
        """Refuse (and record the refusal) unless the actor may take `role`."""
        if self.gate is None:
            return
        try:
            self.gate.require(role, actor.user_id, doing)
        except Refused:
            with self.sessions.begin() as session:
                runs.add_event(session, actor, "permission.refused", {"role": role, **detail})
            raise

    def require_item(self, run_id: int, item_id: str, actor: Actor) -> None:
        """Refuse a tick, untick or N/A of an item whose checklist group is reserved to some people."""
        if self.gate is None or not self.gate.guards_groups:
            return  # nothing to look up: clicks stay one-row transactions
        with self.read() as session:
            run = runs.get_run(session, run_id)
            template = self.templates.get(run.template_id) or run.template
            found = next(((g.id, g.title) for _, g, i in iter_items(template) if i.id == item_id), None)
        if found is not None:
            group_id, title = found
            self.require(f"group:{group_id}", actor, f"tick the items of *{title}*", run=run_id, item=item_id)

    def page(self, team: str, text: str, actor: Actor, *, run_id: int | None = None) -> int:
        """Page a team from the actor's channel; the page belongs to the channel's active deployment, if any."""
        self.require("page", actor, team=team)
        with self.change() as session:
            if run_id is None and actor.channel_id:
                active = runs.active_run(session, actor.channel_id)
                run_id = active.id if active else None
            return paging.raise_page(session, self.config, team, text, actor, run_id=run_id).id

    def page_oncall(self, rollback_run_id: int, actor: Actor) -> int:
        """One click on a rollback run: page on-call about the failed deployment."""
        team = "oncall" if "oncall" in self.config.contacts else next(iter(self.config.contacts), "oncall")
        with self.read() as session:
            run = runs.get_run(session, rollback_run_id)
            failed = runs.get_run(session, run.rollback_of) if run.rollback_of else run
        head = f"Deployment {failed.version} → {failed.environment} failed: "
        tail = f". Rollback: run #{run.id}."
        # The reason was accepted at its own limit; the page's limit must not refuse the click that quotes it.
        reason = clip(failed.finish_reason or "see the channel", paging.MAX_TEXT - len(head) - len(tail))
        return self.page(team, f"{head}{reason}{tail}", actor, run_id=run.id)

    def fail_deploy(self, run_id: int | None, reason: str, actor: Actor) -> tuple[int, int]:
        """Declare a deployment failed and post its rollback checklist; returns (failed run, rollback run)."""
        self.require("fail", actor)
        with self.change() as session:
            if run_id is None:
                active = runs.active_run(session, actor.channel_id or "")
                if active is None:
                    raise RunError(
                        say("No deployment is running in this channel. ", Cmd("rollback"), " rolls back the last one.")
                    )
                run_id = active.id
            failed = runs.fail(session, run_id, reason, actor)
            return failed.id, self._start_rollback(session, failed, actor).id

    def rollback(self, actor: Actor) -> int:
        """The rollback checklist for the latest deployment in the actor's channel; failing it if still running."""
        self.require("fail", actor)
        with self.change() as session:
            latest = runs.latest_deploy(session, actor.channel_id or "")
            if latest is None:
                raise RunError(
                    say("No deployment in this channel to roll back. ", Cmd("list"), " shows the runs here.")
                )
            if latest.status == RunStatus.ROLLED_BACK:
                raise RunError(say(f"Run #{latest.id} (", Typed(latest.version), ") is already rolled back."))
            existing = runs.rollback_for(session, latest)
            if existing is not None and existing.is_active:
                raise RunError(f"Run #{existing.id}, the rollback of run #{latest.id}, is in progress in this channel.")
            if latest.is_active:
                runs.fail(session, latest.id, "rolled back with /deploy rollback", actor)
            return self._start_rollback(session, latest, actor).id

    def _start_rollback(self, session: Session, failed: Run, actor: Actor) -> Run:
        return start_rollback(session, self.templates, failed, actor)

    def deploy_checklists(self) -> list[Template]:
        """Every checklist `/deploy start` can run, in id order."""
        return sorted((t for t in self.templates.values() if t.kind == "deploy"), key=lambda t: t.id)

    def default_checklist(self, channel_id: str | None) -> str | None:
        """The deploy checklist a start without `--checklist` runs in this channel, if there is one."""
        if channel_id and channel_id in self.config.channels:
            return self.config.channels[channel_id].checklist
        deploys = [t.id for t in self.deploy_checklists()]
        if "production-deploy" in deploys:
            return "production-deploy"
        return deploys[0] if len(deploys) == 1 else None

    def deploy_template(self, channel_id: str | None = None, chosen: str | None = None) -> Template:
        """The checklist a start runs: the one `chosen`, else the channel's default, else `production-deploy`
        or the only deploy checklist."""
        deploys = {t.id: t for t in self.deploy_checklists()}
        if not deploys:
            raise RunError(
                "No deployment checklist to start: add checklists/production-deploy.yml "
                "(`deploybot import checklist.md` makes one from a Markdown checklist)."
            )
        name = chosen.lower() if chosen else self.default_checklist(channel_id)
        listed = join((Code(t) for t in deploys), ", ")
        if name is None:
            raise RunError(
                say("Say which checklist: ", Code("--checklist <name>"), ". Deploy checklists: ", listed, ".")
            )
        if name not in deploys:
            raise RunError(
                say(
                    "No deploy checklist ",
                    Code(name, typed=True),
                    ". Deploy checklists: ",
                    listed,
                    " — e.g. ",
                    Cmd("start <version> [environment] --checklist <name>"),
                    ".",
                )
            )
        return deploys[name]


def start_rollback(session: Session, templates: dict[str, Template], failed: Run, actor: Actor) -> Run:
    """Start the rollback checklist of a failed deployment, back to its last fully complete release."""
    rollbacks = [t for t in templates.values() if t.kind == "rollback"]
    if not rollbacks:
        raise RunError("No rollback checklist: add checklists/rollback.yml (kind: rollback).")
    template = rollbacks[0]
    previous = runs.previous_release(session, failed, fully=True)
    if previous is not None:
        template = template.with_previous_version(previous.version)
    return runs.start(
        session,
        template,
        version=failed.version,
        environment=failed.environment,
        channel_id=failed.channel_id,
        parts=len(layout(template)) if is_slack_channel(failed.channel_id) else None,
        actor=actor,
        rollback_of=failed,
        rollback_to=previous.version if previous else None,
    )
