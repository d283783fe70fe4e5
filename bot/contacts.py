"""Emergency contacts in deploybot.yml: teams, how to reach them, and how a page escalates."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

UserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
UserGroupId = Annotated[str, Field(pattern=r"^S[A-Z0-9]{2,}$")]
UserOrGroupId = Annotated[str, Field(pattern=r"^[UWS][A-Z0-9]{2,}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]
Duration = Annotated[str, Field(pattern=r"^[1-9][0-9]*[smh]$")]

PAGERDUTY_URL = "https://events.pagerduty.com"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagerDuty(_Strict):
    """PagerDuty Events API v2: the routing key is read from the environment variable named here."""

    routing_key_env: EnvName
    url: Annotated[str, Field(pattern=r"^https?://")] = PAGERDUTY_URL


class Webhook(_Strict):
    """A generic receiver: JSON bodies signed with HMAC-SHA256 using the secret in `secret_env`."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    secret_env: EnvName


class Team(_Strict):
    """Who answers for one area, and what happens when nobody acknowledges in time."""

    name: str = ""
    users: list[UserId] = []
    usergroup: UserGroupId | None = None
    phone: str | None = None  # shown to people, never dialled
    email: str | None = None
    ack_timeout: Duration = "5m"
    next: str | None = None  # the team paged when this one does not acknowledge
    repeat: Annotated[int, Field(ge=0, le=10)] = 0  # go through the whole chain again this many times
    pagerduty: PagerDuty | None = None
    webhook: Webhook | None = None

    @property
    def secret_names(self) -> list[str]:
        """The environment variables holding this team's pager secrets."""
        names = [self.pagerduty.routing_key_env] if self.pagerduty else []
        return names + ([self.webhook.secret_env] if self.webhook else [])

    @model_validator(mode="after")
    def _reachable(self) -> Team:
        if not (self.users or self.usergroup or self.pagerduty or self.webhook):
            raise ValueError("a team needs at least one of users, usergroup, pagerduty or webhook")
        return self


def seconds(duration: str) -> int:
    """'90s', '5m' or '2h' in seconds."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def escalation_chain(teams: dict[str, Team], first: str) -> list[str]:
    """The teams a page reaches in order: `first`, its `next`, theirs… then all again `repeat` times."""
    chain = [first]
    while (following := teams[chain[-1]].next) is not None and following not in chain:
        chain.append(following)
    return chain * (1 + teams[first].repeat)


def check_contacts(teams: dict[str, Team]) -> list[str]:
    """Problems a pydantic field check cannot see: a `next` that names no team."""
    return [
        f"contacts › {name} › next: unknown team {team.next!r} (teams: {', '.join(teams)})"
        for name, team in teams.items()
        if team.next is not None and team.next not in teams
    ]
