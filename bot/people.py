"""People's names: kept with their ids whenever someone named acts, so a record can say who an id is."""

from __future__ import annotations

import pwd
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.models import MAX_NAME, Person

if TYPE_CHECKING:
    from bot.runs import Actor

# A name is one line of text: control characters (line breaks, escapes) become spaces.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAME_OF = select(Person.name).where(Person.user_id == bindparam("user"))


def clean(name: object) -> str | None:
    """A name as deploybot keeps it: text on one line, clipped; None when there is none."""
    if not isinstance(name, str):
        return None
    return " ".join(_CONTROL.sub(" ", name).split())[:MAX_NAME] or None


def from_slack_user(user: object) -> str | None:
    """The name in an interaction's `user` object (block_actions, view_submission): `name`, else `username`."""
    if not isinstance(user, dict):
        return None
    return clean(user.get("name")) or clean(user.get("username"))


def of_terminal_user(login: str) -> str | None:
    """A terminal user's full name from the system's user database (None: not a user of this system)."""
    # DEPLOYBOT_USER may name a Slack id (U0…): the system knows no name for it, so none is recorded.
    try:
        return clean(pwd.getpwnam(login).pw_gecos.split(",")[0])
    except KeyError:
        return None


def label(user_id: str, name: str | None) -> str:
    """How a record names someone: "Alice Smith (U0ALICE001)", or the id alone when it is all there is."""
    return f"{name} ({user_id})" if name and name != user_id else user_id


def remember(conn: Connection, actor: Actor) -> None:
    """Keep the actor's name, writing only when it is new or has changed (a click usually only reads)."""
    name = clean(actor.name)
    if name is None or conn.execute(_NAME_OF, {"user": actor.user_id}).scalar_one_or_none() == name:
        return
    conn.execute(_upsert(conn.dialect.name), {"user_id": actor.user_id, "name": name, "updated_at": actor.at})


def names_of(session: Session, user_ids: Iterable[str | None]) -> dict[str, str]:
    """The kept names of these user ids (ids without one are left out)."""
    wanted = {u for u in user_ids if u}
    if not wanted:
        return {}
    rows = session.execute(select(Person.user_id, Person.name).where(Person.user_id.in_(wanted)))
    return {user_id: name for user_id, name in rows}


def _upsert(dialect: str) -> Any:
    # Two first clicks of a new person may race: the second one updates instead of failing.
    if dialect == "postgresql":
        statement: Any = pg_insert(Person)
    elif dialect == "sqlite":
        statement = sqlite_insert(Person)
    else:
        raise RuntimeError(f"deploybot supports SQLite and PostgreSQL, not {dialect}")
    return statement.on_conflict_do_update(
        index_elements=[Person.user_id],
        set_={"name": statement.excluded.name, "updated_at": statement.excluded.updated_at},
    )
