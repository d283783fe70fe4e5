"""Events API: a person opening deploybot's App Home."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from bot import db
from bot.models import HomeTab
from bot.services import Services


class Events:
    def __init__(self, services: Services):
        self.services = services

    def home_opened(self, event: dict[str, Any]) -> None:
        """Remember who looks at the Home tab; the publisher (re)publishes it for them."""
        user = event.get("user")
        if event.get("tab") != "home" or not isinstance(user, str):
            return
        now = self.services.clock()
        with self.services.change() as session:
            values = {"user_id": user, "opened_at": now, "attempts": 0}
            if not db.insert_once(session, HomeTab, values, key=HomeTab.user_id):
                session.execute(update(HomeTab).where(HomeTab.user_id == user).values(opened_at=now, content_hash=None))
