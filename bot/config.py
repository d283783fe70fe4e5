"""Settings: every environment variable read once, typed, with secrets masked; deploybot.yml validated."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.contacts import Team, UserOrGroupId, check_contacts
from bot.probes import VARIABLE
from bot.review.settings import ReviewSettings
from bot.yamlfile import YamlError, line_of, load_model

if TYPE_CHECKING:
    from bot.checklists import Template


class Secret:
    """A secret value that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


_WHERE = {
    "SLACK_BOT_TOKEN": "api.slack.com/apps › your app › OAuth & Permissions › Bot User OAuth Token (xoxb-…)",
    "SLACK_SIGNING_SECRET": "api.slack.com/apps › your app › Basic Information › App Credentials › Signing Secret",
}


class ConfigError(Exception):
    """The environment cannot run deploybot; the message says what to set and where to find it."""


@dataclass(frozen=True)
class Settings:
    slack_bot_token: Secret
    slack_signing_secret: Secret
    slack_app_token: Secret
    slack_api_url: str
    database_url: str
    config_path: Path
    checklists_path: Path
    host: str
    port: int
    log_format: str
    render_interval: float
    threads: int  # HTTP worker threads: few, since clicks are CPU-bound under one GIL
    # Pipeline gates that may long-poll at once; each gets a thread of its own beside `threads`.
    gate_waiters: int = 16
    api_per_minute: float = 120.0  # requests each pipeline token may make, shared by every replica
    # The whole environment, for probes' ${env:NAME}; kept out of repr because it holds secrets.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    # DEPLOYBOT_CONFIG was set: the file it names must exist (the default ./deploybot.yml is optional).
    config_named: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment once; nothing else in deploybot reads os.environ."""
        env = os.environ if env is None else env
        api_url = env.get("SLACK_API_URL", "https://slack.com/api/")
        port = _number(env, "PORT", "3000", int, "a TCP port from 0 to 65535")
        render_interval = _number(env, "DEPLOYBOT_RENDER_INTERVAL", "1.0", float, "seconds, at least 0")
        threads = _number(env, "DEPLOYBOT_THREADS", "6", int, "a count of threads, at least 1")
        if render_interval < 0:
            raise ConfigError(f"DEPLOYBOT_RENDER_INTERVAL must be seconds, at least 0, not {render_interval:g}")
        if threads < 1:
            raise ConfigError(f"DEPLOYBOT_THREADS must be a count of threads, at least 1, not {threads}")
        gate_waiters = _number(env, "DEPLOYBOT_GATE_WAITERS", "16", int, "a count of waiting gates, from 0 to 1000")
        if not 0 <= gate_waiters <= 1000:
            raise ConfigError(
                f"DEPLOYBOT_GATE_WAITERS must be a count of waiting gates, from 0 to 1000, not {gate_waiters}"
            )
        api_per_minute = _number(env, "DEPLOYBOT_API_PER_MINUTE", "120", float, "requests a minute, more than 0")
        if not 0 < api_per_minute < float("inf"):
            raise ConfigError(
                f"DEPLOYBOT_API_PER_MINUTE must be requests a minute, more than 0, not {api_per_minute:g}"
            )
        if not 0 <= port <= 65535:
            raise ConfigError(f"PORT must be a TCP port from 0 to 65535, not {port}")
        config = env.get("DEPLOYBOT_CONFIG", "")
        return cls(
            slack_bot_token=Secret(env.get("SLACK_BOT_TOKEN", "")),
            slack_signing_secret=Secret(env.get("SLACK_SIGNING_SECRET", "")),
            slack_app_token=Secret(env.get("SLACK_APP_TOKEN", "")),
            slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
            database_url=_database_url(env.get("DATABASE_URL") or "sqlite:///deploybot.db"),
            config_path=Path(config or "./deploybot.yml"),
            checklists_path=Path(env.get("DEPLOYBOT_CHECKLISTS", "./checklists")),
            host=env.get("HOST", "0.0.0.0"),
            port=port,
            log_format=env.get("LOG_FORMAT", "text"),
            render_interval=render_interval,
            threads=max(1, threads),
            gate_waiters=gate_waiters,
            api_per_minute=api_per_minute,
            environ=dict(env),
            config_named=bool(config),
        )

    def require_slack(self) -> None:
        """Fail with one message naming every missing Slack variable and where to get it."""
        missing = [
            name
            for name, value in (
                ("SLACK_BOT_TOKEN", self.slack_bot_token),
                ("SLACK_SIGNING_SECRET", self.slack_signing_secret),
            )
            if not value
        ]
        if missing:
            lines = [f"  {name}: {_WHERE[name]}" for name in missing]
            raise ConfigError(
                "deploybot cannot start: missing environment variable(s):\n"
                + "\n".join(lines)
                + "\nNo Slack app yet? Create one from manifest.yml at https://api.slack.com/apps "
                "(Create New App › From an app manifest), install it, then copy the values above.\n"
                "Optional: SLACK_APP_TOKEN (xapp-…, Basic Information › App-Level Tokens, scope "
                "connections:write) switches to Socket Mode."
            )

    @property
    def server_threads(self) -> int:
        """The HTTP server's pool: Slack's threads plus one per gate allowed to wait."""
        return self.threads + self.gate_waiters

    @property
    def connection_limit(self) -> int:
        """Open connections the server keeps: waitress's 100, plus room for every waiting gate and its re-poll."""
        return 100 + 2 * self.gate_waiters

    def secret_values(self) -> list[str]:
        """Every secret this process was given, for the log scrubber."""
        values = [self.slack_bot_token.reveal(), self.slack_signing_secret.reveal(), self.slack_app_token.reveal()]
        passwords = url_secrets(self.database_url) if "://" in self.database_url else []
        return [v for v in [*values, *passwords] if v]

    @property
    def database_url_masked(self) -> str:
        return masked_url(self.database_url)


_N = TypeVar("_N", int, float)


def _number(env: Mapping[str, str], name: str, default: str, kind: type[_N], what: str) -> _N:
    """An environment variable read as a number, or an error naming it and what it should be."""
    raw = env.get(name, default)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, not {raw!r}") from None


def url_secrets(url: str) -> list[str]:
    """The secrets a database URL carries: its password, and any `?password=` style parameter."""
    parsed = make_url(url)
    found = [str(parsed.password or "")]
    for key, value in parsed.query.items():
        if _SECRET_PARAMETER.search(key):
            found += [value] if isinstance(value, str) else list(value)
    return [secret for secret in found if secret]


def masked_url(url: str) -> str:
    """A database URL fit to show: its password and secret parameters replaced by ***."""
    parsed = make_url(url)
    hidden = {key: "***" for key in parsed.query if _SECRET_PARAMETER.search(key)}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


_SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.IGNORECASE)


_DRIVERS = {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}
_URL_EXAMPLES = "e.g. postgresql://user:password@host:5432/deploybot or sqlite:///deploybot.db"


def _database_url(url: str) -> str:
    """DATABASE_URL checked; the bare postgres:// and postgresql:// (Heroku, Render, libpq) mean psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgres", "postgresql"):
        url = f"postgresql+psycopg://{rest}"
    try:
        driver = make_url(url).drivername
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL is not a database URL ({_URL_EXAMPLES}); fix DATABASE_URL") from None
    if driver not in _DRIVERS:
        raise ConfigError(
            f"DATABASE_URL names {driver}, which deploybot does not support: use PostgreSQL or SQLite "
            f"({_URL_EXAMPLES}); fix DATABASE_URL"
        )
    return url


Scalar = str | int | float | bool
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class Permissions(BaseModel):
    """Who may do what: Slack user ids (U…) or user group ids (S…). A missing or empty list means everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: list[UserOrGroupId] = []
    abort: list[UserOrGroupId] = []
    complete_anyway: list[UserOrGroupId] = []
    fail: list[UserOrGroupId] = []  # declare a deployment failed, open a rollback
    page: list[UserOrGroupId] = []
    # Checklist group id -> who may tick, untick or N/A its items (e.g. security: [S0SECURITY]).
    groups: dict[Name, list[UserOrGroupId]] = {}

    def granted(self, role: str) -> list[str]:
        """Who holds `role` ("start", …, or "group:<id>"); empty means everyone."""
        if role.startswith("group:"):
            return self.groups.get(role.removeprefix("group:"), [])
        return list(getattr(self, role))


class ChannelSettings(BaseModel):
    """What one channel does differently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The deploy checklist `/deploy start` runs here when no `--checklist` is given.
    checklist: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class DeployConfig(BaseModel):
    """deploybot.yml: environments for probes, emergency contacts, permissions. Secrets stay in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"  # IANA name: maintenance schedules are in this zone
    maintenance_channel: Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{4,}$")] | None = None
    environments: dict[Name, dict[str, Scalar]] = {}
    contacts: dict[Name, Team] = {}
    permissions: Permissions = Permissions()
    channels: dict[Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{4,}$")], ChannelSettings] = {}
    review: ReviewSettings = ReviewSettings()  # the weekly review in each deployment channel
    _source: Path | None = PrivateAttr(default=None)  # the file it was read from, for file:line errors

    @model_validator(mode="after")
    def _known_teams(self) -> DeployConfig:
        if problems := check_contacts(self.contacts):
            raise ValueError("; ".join(problems))
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_names(self) -> set[str]:
        """The environment variables deploybot.yml reads secrets from: pager keys and ${env:NAME}."""
        names = {name for team in self.contacts.values() for name in team.secret_names}
        for variables in self.environments.values():
            for value in variables.values():
                names |= {name for from_env, name in VARIABLE.findall(str(value)) if from_env}
        return names

    def check_checklists(self, templates: Mapping[str, Template]) -> None:
        """Refuse a channel default that is not a deploy checklist, naming file, line and the deploy checklists."""
        deploys = [t.id for t in templates.values() if t.kind == "deploy"]
        errors = []
        for channel, chosen in self.channels.items():
            if chosen.checklist in deploys:
                continue
            where = (
                f"{self._source}:{line_of(self._source, ('channels', channel, 'checklist'))}" if self._source else ""
            )
            errors.append(
                f"{where or 'deploybot.yml'} › channels › {channel} › checklist: '{chosen.checklist}' is not a "
                f"deploy checklist (deploy checklists: {', '.join(deploys) or 'none'})"
            )
        if errors:
            raise YamlError(errors)

    def variables(self, environment: str) -> dict[str, str]:
        """The variables of one environment as text; an unknown environment has none."""
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in self.environments.get(environment, {}).items()
        }


def load_deploy_config(path: Path, *, required: bool = False) -> DeployConfig:
    """Read deploybot.yml if it exists (optional unless `required`); refuse it when it is invalid."""
    if not path.exists():
        if required:
            raise ConfigError(
                f"{path} does not exist: DEPLOYBOT_CONFIG names it. Fix the path in DEPLOYBOT_CONFIG, "
                "or unset DEPLOYBOT_CONFIG to run without deploybot.yml (copy deploybot.example.yml to start one)."
            )
        return DeployConfig()
    config = load_model(path, DeployConfig)
    config._source = path
    return config


def deploy_config(settings: Settings) -> DeployConfig:
    """deploybot.yml as the settings name it: required when DEPLOYBOT_CONFIG is set, else optional."""
    return load_deploy_config(settings.config_path, required=settings.config_named)


_ROLES = {"start": "start", "abort": "abort", "complete_anyway": "complete anyway", "fail": "fail", "page": "page"}


def what_is_off(config: DeployConfig, path: Path) -> str | None:
    """One sentence saying what deploybot.yml leaves off (open permissions, no contacts, no probes), if anything."""
    open_roles = [words for role, words in _ROLES.items() if not config.permissions.granted(role)]
    off = []
    if open_roles:
        listed = ", ".join(open_roles[:-1]) + (" and " if len(open_roles) > 1 else "") + open_roles[-1]
        off.append(f"everyone may {listed}")
    if not config.contacts:
        off.append("no contacts")
    if not config.environments:
        off.append("probes off")
    if not off:
        return None
    source = str(path) if path.exists() else f"no {path.name}"
    return f"{source}: {'; '.join(off)}"
