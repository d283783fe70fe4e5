"""Who may do what, from deploybot.yml `permissions:`; refusals are audited."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bot.config import Permissions
from bot.runs import RunError
from bot.say import Group, Said, Who, join, say
from bot.slack.mrkdwn import is_slack_user

log = logging.getLogger(__name__)

GROUP_TTL = 60.0  # seconds a user group's member list is trusted before it is asked again

ROLE_NAMES = {
    "start": "start a deployment",
    "abort": "abort a run",
    "complete_anyway": "complete a run anyway",
    "fail": "declare a deployment failed or roll it back",
    "page": "page a team",
}


class Gatekeeper:
    """Answers "may this user do that?"; user groups are resolved through Slack and cached briefly."""

    def __init__(self, permissions: Permissions, group_members: Callable[[str], list[str]]):
        self._permissions = permissions
        self._group_members = group_members
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def allowed(self, role: str, user_id: str) -> bool:
        granted = self._permissions.granted(role)
        if not granted:
            return True  # nobody listed: everyone in the channel may
        if not is_slack_user(user_id):
            return True  # the terminal shell: its users already hold the database
        if user_id in granted:
            return True
        return any(user_id in self._members(group) for group in granted if group.startswith("S"))

    def require(self, role: str, user_id: str, doing: str | None = None) -> None:
        """Raise a refusal that says who may, unless `user_id` may take `role`."""
        if not self.allowed(role, user_id):
            who = join((Group(g) if g.startswith("S") else Who(g) for g in self._permissions.granted(role)), ", ")
            where = role.replace("group:", "groups › ")
            doing = doing or ROLE_NAMES.get(role, role)
            raise Refused(
                role, say("Only ", who, f" may {doing} (deploybot.yml › permissions › {where}); nothing changed.")
            )

    @property
    def guards_groups(self) -> bool:
        return bool(self._permissions.groups)

    def _members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(group)
        if cached and time.monotonic() - cached[0] < GROUP_TTL:
            return cached[1]
        try:
            members = frozenset(self._group_members(group))
        except Exception as exc:  # Slack unreachable or the scope missing: refuse rather than guess
            log.warning("could not list the members of user group %s: %s", group, type(exc).__name__)
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group] = (time.monotonic(), members)
        return members


class Refused(RunError):
    """A permission refusal; the listener records it in the audit log."""

    def __init__(self, role: str, text: Said):
        super().__init__(text)
        self.role = role
