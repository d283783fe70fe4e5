"""What listeners and surfaces share: sessions, templates, the publisher, the clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from bot import db, runs
from bot.blocks import layout
from bot.checklists import Template
from bot.config import DeployConfig
from bot.mrkdwn import escape, is_slack_channel
from bot.reminders import Reminders
from bot.runs import Actor, RunError

_VERSION = re.compile(r"^[\w.+\-/]{1,64}$")
_ENVIRONMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    sessions: sessionmaker[Session]
    templates: dict[str, Template]
    wake: Callable[[], None]  # tells the publisher and the probe runner that something changed
    config: DeployConfig = field(default_factory=DeployConfig)
    reminders: Reminders | None = None
    clock: Callable[[], datetime] = utcnow

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

    def start_deploy(self, version: str, environment: str, actor: Actor) -> int:
        """Start a deployment run in the actor's channel; the checklist goes to Slack if that is a Slack channel."""
        if not _VERSION.match(version):
            raise RunError(
                "Say which version to deploy: `/deploy start <version> [environment]`, "
                "e.g. `/deploy start v1.4.2 production` (letters, digits, `.`, `-`, `+`, `/`; up to 64)."
            )
        if not _ENVIRONMENT.match(environment):
            raise RunError(
                f"`{escape(environment)}` is not an environment name: use one lowercase word "
                "such as `production` or `staging`."
            )
        template = self.deploy_template()
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

    def deploy_template(self) -> Template:
        """The checklist `/deploy start` runs: `production-deploy`, else the only deploy checklist."""
        if "production-deploy" in self.templates:
            return self.templates["production-deploy"]
        deploys = [t for t in self.templates.values() if t.kind == "deploy"]
        if len(deploys) != 1:
            raise RunError(
                "No deployment checklist to start: add checklists/production-deploy.yml "
                "(`deploybot import checklist.md` makes one from a Markdown checklist)."
            )
        return deploys[0]
