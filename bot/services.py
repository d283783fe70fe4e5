"""What listeners and surfaces share: sessions, templates, the publisher, the clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.checklists import Template
from bot.config import DeployConfig
from bot.reminders import Reminders
from bot.runs import RunError


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
        with self.sessions() as session:
            yield session

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
