"""create_app(settings): wires database, Slack clients, listeners, publisher and HTTP surface."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import httpx
from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot import checklists, db, logs
from bot.api import PipelineApi
from bot.api.auth import Auth
from bot.api.gates import GateWatcher
from bot.config import DeployConfig, Settings, deploy_config, what_is_off
from bot.heartbeat import Beating
from bot.insights.cache import Briefly
from bot.insights.gauges import delivery_gauges
from bot.insights.slack import home_section
from bot.metrics import InstrumentedWebClient, Metrics, database_gauges
from bot.paging.senders import Senders
from bot.paging.worker import PageWorker
from bot.permissions import Gatekeeper
from bot.probes.runner import ProbeRunner
from bot.reminders import Reminders
from bot.review.schedule import Reviews
from bot.services import Services, utcnow
from bot.slack.fit import check_template_limits
from bot.slack.home import home_view
from bot.slack.identity import BotIdentity
from bot.slack.listeners import ObservedApp, register_listeners
from bot.slack.posting import Poster
from bot.slack.publisher import Publisher
from bot.web import WebApp

log = logging.getLogger(__name__)

# How long the Home tab's insights and the delivery gauges are reused before being read again.
INSIGHTS_TTL = timedelta(seconds=30)


@dataclass
class Deploybot:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    bolt: App
    publisher: Publisher
    probes: ProbeRunner
    reminders: Reminders
    pager: PageWorker
    identity: BotIdentity
    metrics: Metrics = field(default_factory=Metrics)
    # In Socket Mode: whether the socket is up (GET /healthz reports it); None in HTTP mode.
    socket_connected: Callable[[], bool] | None = None
    # What deploybot.yml leaves off (open permissions, no contacts, no probes), said wherever people look.
    notices: list[str] = field(default_factory=list)
    reviews: Reviews | None = None  # the weekly review in each deployment channel
    # The delivery figures as gauges, recomputed at most every few seconds (see bot/insights/gauges.py).
    delivery_gauges: Callable[[Session], dict[str, float]] | None = None
    # This replica's heartbeat in the database, while its workers run (the shell reads it).
    heartbeat: Beating | None = None
    api: PipelineApi | None = None  # /api/v1/ for pipelines

    @cached_property
    def web(self) -> WebApp:
        return WebApp(
            self.bolt,
            self.settings.slack_signing_secret,
            readiness=self.readiness,
            gauges=self.gauges,
            metrics=self.metrics,
            liveness=self.liveness,
            api=self.api,
        )

    @cached_property
    def _reader(self) -> sessionmaker[Session]:
        return db.read_only(self.sessions)

    def gauges(self) -> dict[str, float]:
        with self._reader() as session:
            gauges = {"render_backlog": float(self.publisher.pending()), **database_gauges(session)}
            if self.delivery_gauges is not None:
                gauges.update(self.delivery_gauges(session))
        if self.socket_connected is not None:
            gauges["socket_mode_connected"] = float(self.socket_connected())
        return gauges

    def liveness(self) -> str | None:
        """Why this process is not alive, if it is not: in Socket Mode, a lost socket."""
        if self.socket_connected is not None and not self.socket_connected():
            return "Socket Mode connection to Slack is down (reconnecting)"
        return None

    def start_workers(self, *, reminders: bool = True) -> None:
        """Start the background publisher, probe runner and (unless told not to) the reminder ticker."""
        for notice in self.notices:  # said once the process is about to serve, not before a fatal error
            log.warning("%s", notice)
        self.publisher.start()
        self.probes.start()
        self.pager.start()
        self.heartbeat = Beating(self.sessions, utcnow)
        self.heartbeat.start()
        if reminders:
            self.reminders.start()
            if self.reviews is not None:
                self.reviews.start()

    def stop_workers(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.api is not None:
            self.api.gates.stop()
        self.identity.stop()
        self.reminders.stop()
        if self.reviews is not None:
            self.reviews.stop()
        self.pager.stop()
        self.probes.stop()
        self.publisher.stop()

    def check_slack(self) -> None:
        """Start learning the bot's identity from Slack in the background; /readyz says 503 until it is known."""
        self.identity.start()

    def readiness(self) -> tuple[list[str], list[str]]:
        """What stops this process from serving, and what an operator should know although it serves."""
        problems: list[str] = []
        notices = [f"note: {notice}" for notice in self.notices]
        try:
            if not db.is_current(self.engine):
                problems.append("database schema is not at the latest migration (run `deploybot db upgrade`)")
        except Exception as exc:
            problems.append(f"database unreachable: {type(exc).__name__}")
        if self.identity.known is None:
            # Requests need no Slack call, so Slack being down must not take every replica out of rotation;
            # a refused token is a configuration error, and no replica can deliver anything with it.
            if self.identity.refused:
                problems.append(self.identity.problem)
            else:
                notices.append(f"note: {self.identity.problem}; requests are served and kept meanwhile")
        return problems, notices


def load_checklists(settings: Settings) -> dict[str, checklists.Template]:
    """Load the checklist folder and refuse any template that cannot render within Slack's limits."""
    templates = checklists.load_folder(settings.checklists_path)
    errors = [
        f"{settings.checklists_path}/{template.id}: {problem}"
        for template in templates.values()
        for problem in check_template_limits(template)
    ]
    if errors:
        raise checklists.ChecklistError(errors)
    return templates


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    templates: dict[str, checklists.Template] | None = None,
) -> Deploybot:
    """Build a deploybot from settings; no network I/O happens here."""
    engine = db.make_engine(settings.database_url)
    sessions = db.make_sessions(engine)
    token = settings.slack_bot_token.reveal()
    metrics = Metrics()
    client = slack_client(settings, metrics, retrying=True)
    config = deploy_config(settings)
    notices = [notice] if (notice := what_is_off(config, settings.config_path)) else []
    logs.scrub(settings.environ.get(name, "") for name in config.secret_names())
    _warn_about_missing_secrets(config, settings)
    # The publisher and the pager keep their retry schedules in the database, so their clients never sleep.
    worker_client = slack_client(settings, metrics, retrying=False)
    identity = BotIdentity(worker_client, token)

    # Figures over 30 days move slowly; the Home tab and /metrics ask for them every second or scrape.
    home_insights = Briefly(INSIGHTS_TTL, home_section)
    delivery = Briefly(INSIGHTS_TTL, delivery_gauges)

    def render_home(session: Session, now: datetime) -> dict[str, Any]:
        return home_view(session, now, reminders, config.contacts, notices, home_insights.get(session, now))

    publisher = Publisher(
        sessions,
        worker_client,
        clock,
        min_interval=settings.render_interval,
        contacts=config.contacts,
        home=render_home,
    )
    # Bolt asks Slack who the bot is on a process's first request, and drops that request while
    # Slack is down; `identity.authorize` answers from what is held instead. The client is shown to
    # Bolt without its token, else Bolt warns that `authorize` makes the token unused.
    client.token = None
    bolt = ObservedApp(
        metrics,
        client=client,
        # Bolt passes arguments by their names, which a bound method's `self` would spoil.
        authorize=lambda enterprise_id, team_id: identity.authorize(enterprise_id, team_id),
        process_before_response=True,  # the change is committed before Slack hears the ack
        request_verification_enabled=False,  # WebApp verifies signatures before Bolt sees a byte
        token_verification_enabled=False,
        ignoring_self_events_enabled=False,
    )
    client.token = token

    def shared_client(context: BoltContext, next: Callable[[], None]) -> None:
        # Bolt builds a plain WebClient per request; listeners get the counted one instead.
        context["client"] = client
        next()

    bolt.use(shared_client)
    probes = ProbeRunner(sessions, config, settings.environ, clock, publisher.wake)
    poster = Poster(sessions, worker_client, clock)
    senders = Senders(config, worker_client, poster, httpx.Client(timeout=10), settings.environ)
    pager = PageWorker(sessions, config, senders, clock, publisher.wake)

    def wake() -> None:
        publisher.wake()
        probes.wake()
        pager.wake()

    templates = templates if templates is not None else load_checklists(settings)
    reminders = Reminders(sessions, templates, config, clock, wake)
    gate = Gatekeeper(config.permissions, lambda group: client.usergroups_users_list(usergroup=group)["users"])
    services = Services(
        sessions=sessions,
        templates=templates,
        wake=wake,
        clock=clock,
        config=config,
        reminders=reminders,
        gate=gate,
    )
    register_listeners(bolt, services)
    auth = Auth(sessions, clock, per_minute=settings.api_per_minute)
    api = PipelineApi(services, auth, GateWatcher(engine, settings.gate_waiters))
    deploybot = Deploybot(
        settings,
        engine,
        sessions,
        bolt,
        publisher,
        probes,
        reminders,
        pager,
        identity,
        metrics,
        notices=notices,
        reviews=Reviews(sessions, config, clock, publisher.wake),
        api=api,
    )
    deploybot.delivery_gauges = lambda session: delivery.get(session, clock())
    return deploybot


def slack_client(settings: Settings, metrics: Metrics, *, retrying: bool) -> WebClient:
    """A Slack Web API client counted in /metrics; every client deploybot uses comes from here.

    `retrying` clients retry 429s, 5xx and network errors a few times in place (for requests that
    answer a person); the others fail at once, for workers that keep their retries as rows.
    """
    handlers: list[RetryHandler] = (
        [
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=1),
        ]
        if retrying
        else []
    )
    return InstrumentedWebClient(
        metrics,
        token=settings.slack_bot_token.reveal(),
        base_url=settings.slack_api_url,
        timeout=10,
        retry_handlers=handlers,
    )


def _warn_about_missing_secrets(config: DeployConfig, settings: Settings) -> None:
    """Name (never show) each pager secret deploybot.yml refers to that the environment lacks."""
    for name, team in config.contacts.items():
        for variable in team.secret_names:
            if not settings.environ.get(variable):
                log.error("contacts › %s needs the environment variable %s; pages to it will fail", name, variable)
