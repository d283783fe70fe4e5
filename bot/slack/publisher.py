"""Render runs into Slack messages: coalesced, one render per message at a time, retried until delivered."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot import db, export, paging, people, runs
from bot.contacts import Team
from bot.models import HomeTab, Message, Outbox, Run, RunStatus, SlackPost
from bot.pacing import Budget
from bot.paging import render as page_render
from bot.slack import answers
from bot.slack import blocks as render
from bot.slack.posting import Failure, Posted, Poster, attempt

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Failed renders are retried with doubling waits up to this; the row keeps the last error meanwhile.
MAX_BACKOFF = timedelta(minutes=10)
PASS_GAP = 0.05  # seconds between two passes, at least
# The Home tab is rendered at most this often, and kept current for people who opened it this recently.
HOME_INTERVAL = timedelta(seconds=1)
HOME_AUDIENCE = timedelta(days=30)
HomeRenderer = Callable[[Session, datetime], dict[str, Any]]
# Errors that retrying cannot fix until a person acts: whoever started the run hears about it, once.
NEEDS_A_PERSON = {
    "channel_not_found": "I cannot see that channel. In a private channel, invite me with `/invite @deploybot`.",
    "not_in_channel": "I am not in that channel. Invite me with `/invite @deploybot`.",
    "is_archived": "The channel is archived.",
    "restricted_action": "A workspace setting stops me from posting there.",
    "message_not_found": "The message was deleted.",
}


@dataclass(frozen=True)
class Rendering:
    message_id: int
    channel_id: str
    ts: str | None
    thread_ts: str | None
    rev: int
    blocks: list[dict[str, Any]]
    text: str
    content_hash: str
    unchanged: bool


class Publisher:
    """Keeps every run message in step with the database, from a background thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        client: WebClient,
        clock: Clock,
        *,
        min_interval: float = 1.0,
        poll_interval: float = 1.0,
        contacts: dict[str, Team] | None = None,
        home: HomeRenderer | None = None,
    ):
        self._sessions = sessions
        self._contacts = contacts or {}
        self._home = home
        self._home_rendered_at: datetime | None = None
        self._reader = db.read_only(sessions)
        self._client = client
        self._clock = clock
        # Spacing between two updates of one message: it is what turns a burst of clicks
        # into a few chat.update calls (Tier 3) while the last one still shows everything.
        self._min_interval = timedelta(seconds=min_interval)
        self._poll_interval = poll_interval
        self._leases = db.Leases(sessions, clock)
        self._poster = Poster(sessions, client, clock)
        # chat.update is Tier 3 for the whole workspace: every replica spends from one budget.
        self._updates = Budget(sessions, "chat.update")
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused_until: datetime | None = None
        self._deadline = 0.0  # when stopping: the monotonic time to give up flushing

    def wake(self) -> None:
        """Tell the publisher that something changed; it renders without waiting for the next poll."""
        self._wakeup.set()

    def start(self) -> None:
        self._leases.start()
        self._thread = threading.Thread(target=self._loop, name="publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 4.0) -> None:
        """Render what is still behind (the spacing between updates waived), then stop; give up after `timeout`."""
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout + 1)
        self._leases.stop()

    def _loop(self) -> None:
        while True:
            try:
                delay = self.publish_due()
            except Exception:
                log.exception("publisher pass failed; retrying")
                delay = self._poll_interval
            if self._stopping.is_set():
                if time.monotonic() >= self._deadline or self._nothing_left():
                    return
                delay = min(delay, PASS_GAP)
            self._wakeup.wait(delay)
            # A burst of clicks wakes us once per click; looking at most every PASS_GAP keeps the
            # publisher's queries from competing with the clicks themselves.
            self._stopping.wait(PASS_GAP)
            self._wakeup.clear()

    def _nothing_left(self) -> bool:
        """Whether a stop may end now: nothing behind, or no database to render from."""
        try:
            return self.pending() == 0
        except SQLAlchemyError:
            log.warning("stopping with renders left: the database does not answer")
            return True

    def publish_due(self) -> float:
        """Render every message that is behind and allowed to go now; return seconds until the next look."""
        now = self._clock()
        if self._paused_until and now < self._paused_until:
            return (self._paused_until - now).total_seconds()
        handled = 0
        for message_id in self._due(now):
            if self._paused_until and self._clock() < self._paused_until:
                break  # a 429 in this pass holds back the rest of it too
            if self._claim(message_id):
                try:
                    self._publish(message_id)
                finally:
                    self._leases.drop(Message, message_id)
                handled += 1
        handled += self._deliver_outbox(now)
        handled += self._publish_homes(now)
        if handled:
            return 0.0
        # Other replicas' changes show up at the next poll; our own deferred renders at their time.
        next_due = self._next_due(now)
        if next_due is None:
            return self._poll_interval
        return max(0.01, min(self._poll_interval, (next_due - now).total_seconds()))

    def pending(self) -> int:
        """How many messages are behind the database (posted or not), whatever their schedule."""
        with self._reader() as session:
            behind = session.scalar(select(func.count()).select_from(Message).where(_behind())) or 0
            unsent = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.sent_at.is_(None))) or 0
            return behind + unsent

    def _may_go(self, now: datetime) -> Any:
        """The messages that are behind and whose next allowed time has come."""
        # Shutting down: the spacing between updates is waived, a failure's back-off is not.
        waived = [Message.attempts == 0] if self._stopping.is_set() else []
        return _behind(), or_(Message.not_before.is_(None), Message.not_before <= now, *waived)

    def _due(self, now: datetime) -> list[int]:
        with self._reader() as session:
            query = (
                select(Message.id)
                .where(*self._may_go(now), db.unleased(Message, now))
                # Those kept waiting longest first: when the update budget is short, each gets its turn.
                .order_by(Message.not_before.asc().nulls_first(), Message.run_id, Message.part)
                .limit(50)
            )
            return list(session.scalars(query))

    def _next_due(self, now: datetime) -> datetime | None:
        with self._reader() as session:
            return session.scalar(
                select(Message.not_before)
                .where(_behind(), Message.not_before > now)
                .order_by(Message.not_before)
                .limit(1)
            )

    def _claim(self, message_id: int) -> bool:
        """Take the lease on one message if it is still due, so no other thread or replica renders it meanwhile."""
        with self._sessions.begin() as session:
            # Checked again in the claim itself: another replica may have rendered it since _due looked.
            return self._leases.take(session, Message, message_id, *self._may_go(self._clock()))

    def _publish(self, message_id: int) -> None:
        rendering = self._render(message_id)
        if rendering is None:
            return
        if rendering.unchanged:
            self._done(rendering, rendering.ts, sent=False)
            return
        if rendering.ts is None:
            self._post(rendering)
            return
        wait = self._updates.take(self._clock())
        if wait is not None:  # the workspace's update budget is spent: coalesce until then
            self._defer(message_id, wait)
            return
        _, failure = attempt(
            self._client.chat_update,
            channel=rendering.channel_id,
            ts=rendering.ts,
            blocks=rendering.blocks,
            text=rendering.text,
        )
        if failure is not None:
            if failure.status == 429:  # Slack's limit is the workspace's: every replica waits it out
                self._updates.pause(self._clock(), float(_header(failure.headers, "Retry-After") or 1))
            self._failed(rendering, failure)
            return
        self._done(rendering, rendering.ts, sent=True)

    def _post(self, rendering: Rendering) -> None:
        posted = self._poster.post(
            f"message:{rendering.message_id}",
            rendering.channel_id,
            rendering.thread_ts,
            blocks=rendering.blocks,
            text=rendering.text,
            unfurl_links=False,
            unfurl_media=False,
        )
        if posted.look_at is not None:
            self._defer(rendering.message_id, posted.look_at)
        elif posted.failure is not None:
            self._failed(rendering, posted.failure)
        elif posted.adopted:
            # An earlier attempt's message, showing what was rendered then: record it, update it next.
            with self._sessions.begin() as session:
                values = {"ts": posted.ts, "lease_until": None, "attempts": 0, "last_error": None}
                session.execute(update(Message).where(Message.id == rendering.message_id).values(values))
        else:
            self._done(rendering, posted.ts, sent=True)

    def _defer(self, message_id: int, until: datetime) -> None:
        """Hand a message back to be rendered at `until`; not a failure, so no back-off grows."""
        with self._sessions.begin() as session:
            session.execute(update(Message).where(Message.id == message_id).values(not_before=until, lease_until=None))

    def _render(self, message_id: int) -> Rendering | None:
        with self._reader() as session:
            message = session.get(Message, message_id)
            if message is None:
                return None
            thread_ts = None
            if message.page_id is not None:
                page = paging.get_page(session, message.page_id)
                (blocks, text), rev = page_render.alert(page, self._contacts), page.rev
                return self._rendering(message, None, rev, blocks, text)
            run = session.get(Run, message.run_id)
            assert run is not None
            if message.part == 0:
                names = people.names_of(session, [run.started_by, run.finished_by])
                blocks, text = render.parent_blocks(run, _comparison(session, run), names), render.message_text(run)
            else:
                earlier = session.scalars(
                    select(Message).where(Message.run_id == run.id, Message.part < message.part)
                ).all()
                if any(m.ts is None for m in earlier):
                    # Thread replies go out in order, after their parent: hand the lease back and wait.
                    self._release(message_id)
                    return None
                thread_ts = next(m.ts for m in earlier if m.part == 0)
                part = render.layout(run.template)[message.part - 1]
                blocks, text = render.part_blocks(run, part, message.part), render.message_text(run, part)
            return self._rendering(message, thread_ts, run.rev, blocks, text)

    @staticmethod
    def _rendering(
        message: Message, thread_ts: str | None, rev: int, blocks: list[dict[str, Any]], text: str
    ) -> Rendering:
        digest = hashlib.sha256(json.dumps([blocks, text], sort_keys=True).encode()).hexdigest()
        return Rendering(
            message_id=message.id,
            channel_id=message.channel_id,
            ts=message.ts,
            thread_ts=thread_ts,
            rev=rev,
            blocks=blocks,
            text=text,
            content_hash=digest,
            unchanged=message.ts is not None and digest == message.content_hash,
        )

    def _release(self, message_id: int) -> None:
        with self._sessions.begin() as session:
            session.execute(update(Message).where(Message.id == message_id).values(lease_until=None))

    def _done(self, rendering: Rendering, ts: str | None, *, sent: bool) -> None:
        now = self._clock()
        with self._sessions.begin() as session:
            message = session.get(Message, rendering.message_id)
            assert message is not None
            message.ts = ts
            message.rendered_rev = max(message.rendered_rev, rendering.rev)
            message.content_hash = rendering.content_hash
            message.lease_until = None
            message.attempts = 0
            message.last_error = None
            if sent:
                message.not_before = now + self._min_interval

    def _retry_delay(self, attempts: int, status: int, headers: Any, now: datetime) -> timedelta:
        if status == 429:
            wait = timedelta(seconds=float(_header(headers, "Retry-After") or 1))
            # Rate limits apply to the method, not the message: hold every render back.
            self._paused_until = now + wait
            return wait
        return min(timedelta(seconds=0.5 * 2 ** min(attempts - 1, 12)), MAX_BACKOFF)

    def _retry_later(self, row: Message | Outbox | HomeTab, failure: Failure, now: datetime) -> timedelta:
        """Record a failed attempt on its row, hand the lease back, and say how long it waits."""
        row.attempts += 1
        wait = self._retry_delay(row.attempts, failure.status, failure.headers, now)
        row.not_before = now + wait
        row.lease_until = None
        row.last_error = str(failure)
        return wait

    def _deliver_outbox(self, now: datetime) -> int:
        """Send nudges and other must-deliver messages, each once, retrying until Slack takes it."""
        with self._reader() as session:
            due = session.scalars(
                select(Outbox.id)
                .where(
                    Outbox.sent_at.is_(None),
                    or_(Outbox.not_before.is_(None), Outbox.not_before <= now),
                    db.unleased(Outbox, now),
                )
                .order_by(Outbox.id)
                .limit(20)
            ).all()
        sent = 0
        for outbox_id in due:
            try:
                sent += self._deliver(outbox_id, now)
            finally:
                self._leases.drop(Outbox, outbox_id)
        return sent

    def _deliver(self, outbox_id: int, now: datetime) -> bool:
        with self._sessions.begin() as session:
            if not self._leases.take(session, Outbox, outbox_id, Outbox.sent_at.is_(None)):
                return False
            row = session.get(Outbox, outbox_id)
            assert row is not None
            channel, text, blocks = row.channel_id, row.text, row.blocks
            answer = answers.Answer.of(row) if row.kind == answers.KIND else None
            thread_ts = None
            if row.run_id is not None:
                thread_ts = session.scalar(select(Message.ts).where(Message.run_id == row.run_id, Message.part == 0))
                if thread_ts is None:  # its run is not posted yet: wait for it
                    row.lease_until = None
                    return False
            elif row.reply_to is not None:
                thread_ts = session.scalar(select(SlackPost.ts).where(SlackPost.key == f"outbox:{row.reply_to}"))
                if thread_ts is None:  # the message it answers is not posted yet: wait for it
                    row.lease_until = None
                    return False
        if answer is not None:
            # Answers are ephemeral: a copy can only ever reach the one person, so no lookup is needed.
            refused = answers.send(self._client, answer, now)
            posted = Posted(failure=Failure(*refused) if refused else None)
        else:
            extra: dict[str, Any] = {"blocks": blocks, "unfurl_links": False, "unfurl_media": False} if blocks else {}
            posted = self._poster.post(f"outbox:{outbox_id}", channel, thread_ts, text=text, **extra)
        with self._sessions.begin() as session:
            row = session.get(Outbox, outbox_id)
            assert row is not None
            if posted.look_at is not None:
                row.lease_until, row.not_before = None, posted.look_at
            elif posted.failure is None:
                row.lease_until, row.sent_at = None, self._clock()
                return True
            else:
                self._retry_later(row, posted.failure, now)
                log.warning("outbox message %s failed (%s); retrying", outbox_id, posted.failure)
        return False

    def _publish_homes(self, now: datetime) -> int:
        """Republish the Home tab of everyone whose tab shows something else than the database now does."""
        if self._home is None or (self._home_rendered_at and now - self._home_rendered_at < HOME_INTERVAL):
            return 0
        self._home_rendered_at = now
        with self._reader() as session:
            if not session.scalar(select(HomeTab.user_id).where(HomeTab.opened_at >= now - HOME_AUDIENCE).limit(1)):
                return 0  # nobody looks: nothing to render
            view = self._home(session, now)
            digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()
            stale = session.scalars(
                select(HomeTab.user_id)
                .where(
                    HomeTab.opened_at >= now - HOME_AUDIENCE,
                    or_(HomeTab.content_hash.is_(None), HomeTab.content_hash != digest),
                    or_(HomeTab.not_before.is_(None), HomeTab.not_before <= now),
                    db.unleased(HomeTab, now),
                )
                .limit(50)
            ).all()
        published = 0
        for user_id in stale:
            with self._sessions.begin() as session:
                if not self._leases.take(session, HomeTab, user_id):
                    continue
            try:
                _, failure = attempt(self._client.views_publish, user_id=user_id, view=view)
            finally:
                self._leases.drop(HomeTab, user_id)
            with self._sessions.begin() as session:
                tab = session.get(HomeTab, user_id)
                assert tab is not None
                if failure is None:
                    tab.lease_until, tab.content_hash, tab.attempts, tab.last_error = None, digest, 0, None
                    published += 1
                else:
                    self._retry_later(tab, failure, now)
                    log.warning("Home tab of %s not published (%s); retrying", user_id, failure)
            if failure is not None and self._paused_until:
                break
        return published

    def _tell_starter(self, run_id: int, rendering: Rendering, error: str) -> None:
        with self._reader() as session:
            run = session.get(Run, run_id)
            assert run is not None
            starter, text = run.started_by, _describe_failure(run, rendering, error)
        try:
            self._client.chat_postMessage(channel=starter, text=text)
        except (SlackApiError, OSError) as exc:
            log.warning("could not tell the starter of run %s about %s: %s", run_id, error, type(exc).__name__)

    def _failed(self, rendering: Rendering, failure: Failure) -> None:
        with self._sessions.begin() as session:
            message = session.get(Message, rendering.message_id)
            assert message is not None
            wait = self._retry_later(message, failure, self._clock())
            first_failure, run_id = message.attempts == 1, message.run_id
        if first_failure and failure.error in NEEDS_A_PERSON and run_id is not None:
            self._tell_starter(run_id, rendering, failure.error)
        log.warning(
            "render of message %s failed (%s); retrying in %.1f s", rendering.message_id, failure, wait.total_seconds()
        )


def _comparison(session: Session, run: Run) -> str | None:
    """For a completed deployment: what it skipped, failed or overrode that the last release did not."""
    if run.kind != "deploy" or run.status != RunStatus.COMPLETE:
        return None
    other = runs.previous_release(session, run)
    return export.describe_changes(run, other, export.compare(run, other))


def _describe_failure(run: Run, rendering: Rendering, error: str) -> str:
    doing = "post" if rendering.ts is None else "update"
    return (
        f"I could not {doing} run #{run.id} ({run.version} → {run.environment}) in <#{run.channel_id}>: "
        f"Slack says `{error}`. {NEEDS_A_PERSON[error]} I keep retrying, so the run appears once that is fixed."
    )


def _behind() -> Any:
    return or_(Message.ts.is_(None), Message.rendered_rev < Message.wanted_rev)


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if key.lower() == name.lower():
            return str(value[0] if isinstance(value, list) else value)
    return None
