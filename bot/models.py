"""Database models: the single source of truth that Slack messages render."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bot.checklists import Template


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; deploybot stores UTC-aware timestamps only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class RunStatus:
    ACTIVE = "active"
    COMPLETE = "complete"
    ABORTED = "aborted"
    FAILED = "failed"  # a deployment that went wrong; its rollback run is under way
    ROLLED_BACK = "rolled_back"  # a failed deployment whose rollback checklist was finished


class ItemStatus:
    OPEN = "open"
    DONE = "done"
    NA = "na"


class ProbeStatus:
    WAITING = "waiting"  # its phase has not opened yet: the runner leaves it alone
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"


MAX_NAME = 80  # characters of a person's name kept (Slack's display names stop at 80)

# Who an item's change is attributed to when a probe, not a person, made it.
PROBE_ACTOR = "deploybot"


# Pipelines act as "ci:<token id>" (bot.tokens): no Slack user id looks like it.
PIPELINE_PREFIX = "ci:"


def is_pipeline(user_id: str | None) -> bool:
    """Whether a change was made by a pipeline through the API."""
    return user_id is not None and user_id.startswith(PIPELINE_PREFIX)


def verified_by_probe(status: str, changed_by: str | None) -> bool:
    """Whether an item is done because its probe passed (not because a person ticked it)."""
    return status == ItemStatus.DONE and changed_by == PROBE_ACTOR


class Run(Base):
    """One execution of a checklist template, with a frozen snapshot of that template."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_channel_started", "channel_id", "started_at"),
        # The insights read these columns of every run in a period: from the index alone, SQLite never
        # walks the snapshot stored before them in the row (tens of KiB per run).
        Index("ix_runs_period", "started_at", "kind", "environment", "status", "template_id", "finished_at"),
        Index("ix_runs_kind_environment", "kind", "environment"),  # the environments with deployments
        # A pipeline's retried start finds its run again; two replicas starting it at once make one.
        # A unique index, not a constraint: SQLite adds it without rebuilding the table.
        Index("uq_runs_channel_pipeline_key", "channel_id", "pipeline_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    # Loaded only when something renders it: a click never needs the whole checklist.
    template_snapshot: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    version: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[str] = mapped_column(String(32))
    # Set to "<channel>:<kind>" while active, NULL afterwards: a unique index then allows one
    # active run of a kind per channel without a partial index (NULLs never collide).
    active_slot: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.ACTIVE, index=True)
    started_by: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column(index=True)  # the Home tab's "last finished"
    finished_by: Mapped[str | None] = mapped_column(String(32))
    finish_reason: Mapped[str | None] = mapped_column(Text)
    # Required items still open when someone completed the run anyway.
    overridden_items: Mapped[list[Any] | None]
    # Bumped by every change; renders record the revision they showed.
    rev: Mapped[int] = mapped_column(Integer, default=1)
    # For a rollback run: the deployment it rolls back, and the version it goes back to, if known.
    rollback_of: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    rollback_to: Mapped[str | None] = mapped_column(String(64))
    # The last phase (index into the snapshot's phases) whose probes may run. It only moves forward:
    # when every required item before a phase is resolved, or when the deployment is reported.
    open_phase: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The key a pipeline started this run with (its CI run id); NULL for runs started by people.
    pipeline_key: Mapped[str | None] = mapped_column(String(128))

    # Loaded when a renderer asks for them; a click reads only the item it changes.
    items: Mapped[list[ItemState]] = relationship(back_populates="run", order_by="ItemState.position")

    @cached_property
    def template(self) -> Template:
        # The snapshot never changes once written; renderers ask for it many times per message.
        return Template.model_validate(self.template_snapshot)

    @property
    def is_active(self) -> bool:
        return self.status == RunStatus.ACTIVE

    def state_of(self, item_id: str) -> ItemState | None:
        # Renderers ask for every item of an 89-item run: index the loaded states once.
        index: dict[str, ItemState] | None = self.__dict__.get("_state_index")
        if index is None or len(index) != len(self.items):
            index = self.__dict__["_state_index"] = {s.item_id: s for s in self.items}
        return index.get(item_id)


class ItemState(Base):
    """The current state of one item of one run; its history lives in `events`."""

    __tablename__ = "item_states"
    # Phase times and checklist health read a run's items from this index alone (bot/insights).
    __table_args__ = (Index("ix_item_states_run_phase", "run_id", "required", "phase", "changed_at", "status"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int]
    phase: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # index into the snapshot's phases
    required: Mapped[bool]
    status: Mapped[str] = mapped_column(String(8), default=ItemStatus.OPEN)
    changed_by: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime | None]
    na_reason: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    note_by: Mapped[str | None] = mapped_column(String(32))
    note_at: Mapped[datetime | None]
    note_count: Mapped[int] = mapped_column(Integer, default=0)
    # The item's probe, if it has one: its latest verdict, and a lease while it runs.
    probe_status: Mapped[str | None] = mapped_column(String(8), index=True)
    probe_reason: Mapped[str | None] = mapped_column(Text)
    probe_at: Mapped[datetime | None]
    probe_lease_until: Mapped[datetime | None]
    # The run's open_phase when the latest verdict was taken: what it was checked against.
    probe_phase: Mapped[int | None] = mapped_column(Integer)
    # Items a pipeline reports (the checklist's `reported_by`), and its latest report with the evidence.
    reported_by: Mapped[str | None] = mapped_column(String(64))
    report_status: Mapped[str | None] = mapped_column(String(8))  # done | failed | na
    report_by: Mapped[str | None] = mapped_column(String(80))  # "CI: <token name>"
    report_at: Mapped[datetime | None]
    report_url: Mapped[str | None] = mapped_column(Text)
    report_summary: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="items")

    @property
    def verified_by_probe(self) -> bool:
        return verified_by_probe(self.status, self.changed_by)

    @property
    def overrode_probe(self) -> bool:
        """A person marked it done although its probe failed."""
        return (
            self.status == ItemStatus.DONE
            and self.changed_by != PROBE_ACTOR
            and self.probe_status == ProbeStatus.FAILED
        )

    @property
    def overrode_pipeline(self) -> bool:
        """A person marked done an item a pipeline reports, which the pipeline had not reported done."""
        return (
            self.status == ItemStatus.DONE
            and self.reported_by is not None
            and not is_pipeline(self.changed_by)
            and self.report_status != ItemStatus.DONE
        )


class Event(Base):
    """Append-only audit log: who did what to which run, item or page, when, and from which message."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    # The name the actor had when they acted: a later change of name does not rewrite the audit trail.
    user_name: Mapped[str | None] = mapped_column(String(MAX_NAME))
    at: Mapped[datetime]
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Person(Base):
    """The name Slack (or the terminal, or a pipeline token) last gave a user id, so records show who that is."""

    __tablename__ = "people"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    updated_at: Mapped[datetime]


class ProbeResult(Base):
    """Append-only record of every probe execution, with its evidence."""

    __tablename__ = "probe_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    ok: Mapped[bool]
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]]
    ms: Mapped[float]
    at: Mapped[datetime]
    open_phase: Mapped[int | None] = mapped_column(Integer)  # the run's open_phase when it was taken


class ReminderSlot(Base):
    """One scheduled (or manual) posting of a maintenance cadence; the unique key makes it happen once."""

    __tablename__ = "reminder_slots"
    __table_args__ = (UniqueConstraint("cadence", "local_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cadence: Mapped[str] = mapped_column(String(64))
    local_time: Mapped[str] = mapped_column(String(32))  # wall-clock time in the team's zone, ISO
    due_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(8))  # posted | missed | manual
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    nudge_at: Mapped[datetime | None]
    escalate_at: Mapped[datetime | None]
    nudged_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]


class Outbox(Base):
    """A Slack message that must be delivered (a nudge, an escalation): kept until Slack took it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))  # post in its thread
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    not_before: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # An answer to one person (kind "answer"): through the request's response_url while it is
    # valid, else privately in the channel; see bot/slack/answers.py. NULL kind: a message to the channel.
    kind: Mapped[str | None] = mapped_column(String(16))
    response_url: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    user_id: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    # A message with Block Kit (the weekly review), frozen when it was composed: retries send the same.
    blocks: Mapped[list[Any] | None]
    # Post in the thread of another outbox message (the review's Discuss thread) once that one is posted.
    reply_to: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"))


class Message(Base):
    """One Slack message that renders part of a run (or a page's alert), and how far its rendering has caught up."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("run_id", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    page_id: Mapped[int | None] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    part: Mapped[int]  # 0 is the parent message; 1.. are the checklist parts in its thread
    channel_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32), index=True)
    wanted_rev: Mapped[int] = mapped_column(Integer, default=1)
    rendered_rev: Mapped[int] = mapped_column(Integer, default=0)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Earliest time the next render may go out: spacing between updates and 429/5xx back-off.
    not_before: Mapped[datetime | None] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class PageStatus:
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Page(Base):
    """A call for help to a team, escalating along its chain until someone acknowledges."""

    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    team: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    channel_id: Mapped[str | None] = mapped_column(String(32))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"), index=True)
    # The escalation chain as it was when paged: team names, one per level.
    chain: Mapped[list[Any]]
    level: Mapped[int] = mapped_column(Integer, default=0)
    # When the next level is paged if nobody acknowledges; NULL once acknowledged or exhausted.
    escalate_at: Mapped[datetime | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default=PageStatus.OPEN)
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)  # one incident in external pagers
    paged_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    acked_by: Mapped[str | None] = mapped_column(String(32))
    acked_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[datetime | None]
    rev: Mapped[int] = mapped_column(Integer, default=1)
    # Read by the alert's renderer: a pager that failed for good is shown there, not only logged.
    deliveries: Mapped[list[PageDelivery]] = relationship(order_by="PageDelivery.id", viewonly=True)

    @property
    def is_open(self) -> bool:
        return self.status == PageStatus.OPEN


class PageDelivery(Base):
    """One notification of a page: a DM, a PagerDuty event or a webhook call, sent once, retried until taken."""

    __tablename__ = "page_deliveries"
    # The unique key is what keeps replicas from notifying anyone twice.
    __table_args__ = (UniqueConstraint("page_id", "level", "target", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("pages.id", ondelete="CASCADE"), index=True)
    level: Mapped[int]
    target: Mapped[str] = mapped_column(String(80))  # "dm:U123", "usergroup:S123", "pagerduty:dba", "webhook:dba"
    action: Mapped[str] = mapped_column(String(16))  # trigger | acknowledge | resolve
    created_at: Mapped[datetime]
    not_before: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    failed_at: Mapped[datetime | None]  # given up: an answer retrying cannot change
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Where a DM went, so acknowledging and resolving can update it in place.
    channel_id: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))


class HomeTab(Base):
    """A person's App Home tab: deploybot republishes it when what it shows changes."""

    __tablename__ = "home_tabs"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))  # what Slack shows now; NULL: publish
    not_before: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class SlackPost(Base):
    """One chat.postMessage deploybot must make once: when an attempt started, and the ts Slack gave it.

    An attempt started but never answered may have been stored by Slack; the key, carried in the
    message's metadata, is how deploybot finds it again before posting anew.
    """

    __tablename__ = "slack_posts"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime | None]  # an attempt whose outcome is not known yet; NULL: none
    look_after: Mapped[datetime | None]  # when Slack is done with that attempt, stored or not
    ts: Mapped[str | None] = mapped_column(String(32))


class SlackBudget(Base):
    """A token bucket shared by every replica, so the calls of one Slack method stay within its rate limit."""

    __tablename__ = "slack_budgets"

    method: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime]


class ReviewSlot(Base):
    """One weekly review of one channel; the unique key makes it happen once across replicas."""

    __tablename__ = "review_slots"
    __table_args__ = (UniqueConstraint("channel_id", "local_time"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    local_time: Mapped[str] = mapped_column(String(32))  # wall-clock time in the team's zone, ISO
    due_at: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(8))  # posted | late | missed
    claimed_at: Mapped[datetime]
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))


class Heartbeat(Base):
    """A running `deploybot run` replica says it is alive here every few seconds; the shell reads it."""

    __tablename__ = "heartbeats"

    replica: Mapped[str] = mapped_column(String(128), primary_key=True)  # host:pid
    started_at: Mapped[datetime] = mapped_column(primary_key=True)  # tells a reused pid apart
    beat_at: Mapped[datetime] = mapped_column(index=True)


class ApiToken(Base):
    """A pipeline's bearer token for /api/v1/: only a hash of the secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    environment: Mapped[str | None] = mapped_column(String(64))  # NULL: every environment of the channel
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 hex of the whole token
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None
