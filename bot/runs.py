"""Run lifecycle rules. Every function takes a session, never commits, never calls Slack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import db
from bot.checklists import Template
from bot.models import (
    PROBE_ACTOR,
    Event,
    ItemState,
    ItemStatus,
    Message,
    ProbeResult,
    ProbeStatus,
    Run,
    RunStatus,
)
from bot.mrkdwn import is_slack_channel, mention
from bot.probes import Verdict

MAX_REASON = 500
MAX_NOTE = 500


class RunError(Exception):
    """A request the rules refuse; the text is safe and meant for the person who asked."""


@dataclass(frozen=True)
class Actor:
    """Who acts, when, and from which message (the audit trail's 'from where')."""

    user_id: str
    at: datetime
    channel_id: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None


def start(
    session: Session,
    template: Template,
    *,
    version: str,
    environment: str,
    channel_id: str,
    parts: int | None,
    actor: Actor,
    probes: bool = False,
    rollback_of: Run | None = None,
    rollback_to: str | None = None,
) -> Run:
    """Start a run of `template` in a channel, rendered as a parent message plus `parts` replies
    (None: a run kept outside Slack, such as one started from the terminal shell).

    With `probes`, every item that has a probe is queued for the probe runner.
    """
    run = Run(
        template_id=template.id,
        kind=template.kind,
        template_snapshot=template.model_dump(mode="json"),
        version=version,
        environment=environment,
        channel_id=channel_id,
        # One deployment (and one rollback) at a time per channel; maintenance runs of several cadences may overlap.
        active_slot=f"{channel_id}:{template.kind}" if template.kind in ("deploy", "rollback") else None,
        status=RunStatus.ACTIVE,
        started_by=actor.user_id,
        started_at=actor.at,
        rev=1,
        rollback_of=rollback_of.id if rollback_of else None,
        rollback_to=rollback_to,
    )
    current = active_run(session, channel_id, template.kind) if run.active_slot else None
    if current is not None:
        raise RunError(
            f"Run #{current.id} ({current.version} → {current.environment}) is still active in this channel. "
            "Finish it, or stop it with `/deploy abort <reason>`, before starting another."
        )
    try:
        with session.begin_nested():  # the unique active_slot settles two simultaneous starts
            session.add(run)
    except IntegrityError:
        raise RunError("Another run was started in this channel at the same moment; see `/deploy status`.") from None
    session.add_all(
        ItemState(
            run_id=run.id,
            item_id=item.id,
            position=n,
            required=item.required,
            status=ItemStatus.OPEN,
            probe_status=ProbeStatus.PENDING if probes and item.probe else None,
        )
        for n, item in enumerate(template.items)
    )
    if parts is not None:
        session.add_all(Message(run_id=run.id, part=p, channel_id=channel_id) for p in range(parts + 1))
    _record(session, run, actor, "run.started", data={"version": version, "environment": environment, "probes": probes})
    return run


def get_run(session: Session, run_id: int, *, lock: bool = False) -> Run:
    """Load a run or explain that it does not exist."""
    run: Run | None = db.load(session, Run, run_id, lock=lock)
    if run is None:
        raise RunError(f"Run #{run_id} does not exist. `/deploy list` shows the recent runs.")
    return run


def active_run(session: Session, channel_id: str, kind: str = "deploy") -> Run | None:
    """The active run of `kind` in a channel, if any."""
    return session.scalars(select(Run).where(Run.active_slot == f"{channel_id}:{kind}")).one_or_none()


def active_runs(session: Session) -> list[Run]:
    """Every active run, oldest first."""
    return list(session.scalars(select(Run).where(Run.status == RunStatus.ACTIVE).order_by(Run.id)))


def latest_deploy(session: Session, channel_id: str) -> Run | None:
    """The most recently started deployment in a channel, whatever its status."""
    return session.scalars(
        select(Run)
        .where(Run.channel_id == channel_id, Run.kind == "deploy")
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(1)
    ).first()


def previous_release(session: Session, run: Run) -> Run | None:
    """The last completed run of the same checklist and environment before this one."""
    return session.scalars(
        select(Run)
        .where(
            Run.template_id == run.template_id,
            Run.environment == run.environment,
            Run.status == RunStatus.COMPLETE,
            Run.id != run.id,
            Run.started_at < run.started_at,
        )
        .order_by(Run.started_at.desc())
        .limit(1)
    ).first()


def recent_runs(session: Session, limit: int = 10, channel_id: str | None = None) -> list[Run]:
    """The most recently started runs, newest first."""
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
    if channel_id is not None:
        query = query.where(Run.channel_id == channel_id)
    return list(session.scalars(query))


def mark_done(session: Session, run_id: int, item_id: str, actor: Actor) -> str | None:
    """Tick an item. Returns a note for the clicker when nothing changed, else None."""
    run, state = _lock_item(session, run_id, item_id, actor)
    if state.status == ItemStatus.DONE:
        who = "verified by deploybot" if state.verified_by_probe else f"done by {mention(state.changed_by)}"
        return f"Already {who}; nothing changed."
    if state.probe_status == ProbeStatus.FAILED:
        # Ticking over a failed probe is an override: keep who did it and what the probe said.
        _set(state, ItemStatus.DONE, actor)
        _changed(session, run, actor, "item.override", item_id, {"probe_reason": state.probe_reason})
        return None
    _set(state, ItemStatus.DONE, actor)
    _changed(session, run, actor, "item.done", item_id)
    return None


def reopen(session: Session, run_id: int, item_id: str, actor: Actor) -> str | None:
    """Untick an item (from done or N/A). Returns a note for the clicker when nothing changed."""
    run, state = _lock_item(session, run_id, item_id, actor)
    if state.status == ItemStatus.OPEN:
        return "That item is already open; nothing changed."
    previous = state.status
    _set(state, ItemStatus.OPEN, actor)
    _changed(session, run, actor, "item.reopened", item_id, {"was": previous})
    return None


def mark_na(session: Session, run_id: int, item_id: str, reason: str, actor: Actor) -> None:
    """Mark an item not applicable; a reason is required."""
    reason = reason.strip()
    if not reason:
        raise RunError("Say why this item does not apply: a reason is required for N/A.")
    if len(reason) > MAX_REASON:
        raise RunError(f"Keep the reason under {MAX_REASON} characters (it has {len(reason)}).")
    run, state = _lock_item(session, run_id, item_id, actor)
    _set(state, ItemStatus.NA, actor)
    state.na_reason = reason
    _changed(session, run, actor, "item.na", item_id, {"reason": reason})


def add_note(session: Session, run_id: int, item_id: str, text: str, actor: Actor) -> None:
    """Attach a note to an item; the latest note is shown, all are kept in the audit log."""
    text = text.strip()
    if not text:
        raise RunError("The note is empty; write something to add.")
    if len(text) > MAX_NOTE:
        raise RunError(f"Keep notes under {MAX_NOTE} characters (this one has {len(text)}).")
    run, state = _lock_item(session, run_id, item_id, actor)
    state.note, state.note_by, state.note_at = text, actor.user_id, actor.at
    state.note_count += 1
    _changed(session, run, actor, "item.note", item_id, {"text": text}, completes=False)


def record_probe(session: Session, run_id: int, item_id: str, verdict: Verdict, kind: str, at: datetime) -> None:
    """Store a probe's verdict; it ticks or fails the item unless a person already decided it."""
    # Lock the run first: an insert's foreign-key lock taken before it would deadlock with a twin.
    run = get_run(session, run_id, lock=True)
    session.add(
        ProbeResult(
            run_id=run_id,
            item_id=item_id,
            kind=kind,
            ok=verdict.ok,
            reason=verdict.reason,
            evidence=verdict.evidence,
            ms=verdict.ms,
            at=at,
        )
    )
    state = session.get(ItemState, (run_id, item_id))
    if state is None or not run.is_active:
        return
    state.probe_status = ProbeStatus.PASSED if verdict.ok else ProbeStatus.FAILED
    state.probe_reason, state.probe_at, state.probe_lease_until = verdict.reason, at, None
    actor = Actor(PROBE_ACTOR, at)
    data = {"reason": verdict.reason, "ms": verdict.ms}
    if verdict.ok and state.status == ItemStatus.OPEN:
        _set(state, ItemStatus.DONE, actor)
        _changed(session, run, actor, "item.verified", item_id, data)
    elif not verdict.ok and state.verified_by_probe:
        _set(state, ItemStatus.OPEN, actor)
        _changed(session, run, actor, "item.failed", item_id, data)
    else:
        _changed(session, run, actor, "item.verified" if verdict.ok else "item.failed", item_id, data)


def rerun_probes(session: Session, run_id: int, item_id: str | None, actor: Actor) -> int:
    """Queue the probes of one item, or of every probed item; returns how many."""
    run = _lock_active(session, run_id)
    _same_channel(run, actor)
    probed = {i.id for i in run.template.items if i.probe is not None}
    if item_id is not None and item_id not in probed:
        raise RunError("That item has no probe to re-run.")
    states = [s for s in run.items if s.item_id in probed and (item_id is None or s.item_id == item_id)]
    for state in states:
        state.probe_status, state.probe_lease_until = ProbeStatus.PENDING, None
    _changed(session, run, actor, "probe.rerun", item_id, {"items": len(states)}, completes=False)
    return len(states)


def complete_anyway(session: Session, run_id: int, actor: Actor) -> list[str]:
    """Complete a run with required items open, recording who overrode which items."""
    run = _lock_active(session, run_id)
    open_items = _open_required(session, run)
    run.overridden_items = open_items
    _finish(session, run, RunStatus.COMPLETE, actor)
    _changed(session, run, actor, "run.completed_anyway", None, {"open_items": open_items}, completes=False)
    return open_items


def fail(session: Session, run_id: int, reason: str, actor: Actor) -> Run:
    """Declare a deployment failed, with a reason; its rollback checklist is started next."""
    reason = reason.strip()
    if not reason:
        raise RunError("Say what went wrong: `/deploy fail <reason>`, e.g. `/deploy fail error rate 12% after deploy`.")
    run = _lock_active(session, run_id)
    if run.kind != "deploy":
        raise RunError(f"Run #{run.id} is a {run.kind} run; only a deployment can fail.")
    run.finish_reason = reason[:MAX_REASON]
    _finish(session, run, RunStatus.FAILED, actor)
    _changed(session, run, actor, "run.failed", None, {"reason": run.finish_reason}, completes=False)
    return run


def rollback_for(session: Session, run: Run) -> Run | None:
    """The latest rollback run started for a deployment, if any."""
    return session.scalars(select(Run).where(Run.rollback_of == run.id).order_by(Run.id.desc()).limit(1)).first()


def abort(session: Session, run_id: int, reason: str, actor: Actor) -> Run:
    """Stop a run for good, with a reason."""
    reason = reason.strip()
    if not reason:
        raise RunError("Say why: `/deploy abort <reason>`, e.g. `/deploy abort failed smoke tests`.")
    run = _lock_active(session, run_id)
    run.finish_reason = reason[:MAX_REASON]
    _finish(session, run, RunStatus.ABORTED, actor)
    _changed(session, run, actor, "run.aborted", None, {"reason": run.finish_reason}, completes=False)
    return run


def events_of(session: Session, run_id: int) -> list[Event]:
    """The audit trail of a run, oldest first."""
    return list(session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id)))


# --- internals -------------------------------------------------------------------------------------


def _lock_active(session: Session, run_id: int) -> Run:
    # The row lock serializes concurrent changes of one run on PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already serializes every writer.
    return ensure_active(get_run(session, run_id, lock=True))


def ensure_active(run: Run) -> Run:
    """Refuse any change to a finished run, saying how and by whom it ended."""
    if not run.is_active:
        raise RunError(_finished_message(run))
    return run


def _lock_item(session: Session, run_id: int, item_id: str, actor: Actor) -> tuple[Run, ItemState]:
    run = _lock_active(session, run_id)
    _same_channel(run, actor)
    # One row, not the whole checklist: a click touches a single item.
    state = session.get(ItemState, (run.id, item_id))
    if state is None:
        raise RunError(
            f"Run #{run.id} has no item '{item_id}'. The message may be out of date: "
            "`/deploy status` shows the current checklist."
        )
    return run, state


def _same_channel(run: Run, actor: Actor) -> None:
    """A Slack click acts only on its own channel's run (the terminal shell picks runs by number)."""
    if actor.channel_id and is_slack_channel(actor.channel_id) and actor.channel_id != run.channel_id:
        raise RunError(f"That button belongs to run #{run.id} in <#{run.channel_id}>; nothing changed.")


def _finished_message(run: Run) -> str:
    who = f" by {mention(run.finished_by)}" if run.finished_by else ""
    if run.status == RunStatus.ABORTED:
        return f"Run #{run.id} ({run.version}) was aborted{who}: {run.finish_reason}. Nothing changed."
    if run.status in (RunStatus.FAILED, RunStatus.ROLLED_BACK):
        return (
            f"Run #{run.id} ({run.version}) was declared failed{who}: {run.finish_reason}. Nothing changed; "
            "its rollback checklist is in this channel (`/deploy rollback` opens one)."
        )
    return f"Run #{run.id} ({run.version}) is already {run.status}{who}. Nothing changed."


def _set(state: ItemState, status: str, actor: Actor) -> None:
    state.status = status
    state.changed_by = actor.user_id if status != ItemStatus.OPEN else None
    state.changed_at = actor.at if status != ItemStatus.OPEN else None
    state.na_reason = None


def _open_required(session: Session, run: Run) -> list[str]:
    session.flush()
    return list(
        session.scalars(
            select(ItemState.item_id)
            .where(ItemState.run_id == run.id, ItemState.required, ItemState.status == ItemStatus.OPEN)
            .order_by(ItemState.position)
        )
    )


def _finish(session: Session, run: Run, status: str, actor: Actor) -> None:
    run.status = status
    run.active_slot = None
    run.finished_at = actor.at
    run.finished_by = actor.user_id
    if run.kind == "rollback" and run.rollback_of is not None and status == RunStatus.COMPLETE:
        # Finishing the rollback checklist is what makes the failed deployment "rolled back".
        failed = get_run(session, run.rollback_of, lock=True)
        if failed.status in (RunStatus.FAILED, RunStatus.COMPLETE, RunStatus.ABORTED):
            previous = failed.status
            failed.status = RunStatus.ROLLED_BACK
            _changed(
                session, failed, actor, "run.rolled_back", None, {"rollback": run.id, "was": previous}, completes=False
            )


def _changed(
    session: Session,
    run: Run,
    actor: Actor,
    kind: str,
    item_id: str | None,
    data: dict[str, Any] | None = None,
    *,
    completes: bool = True,
) -> None:
    """Record the event, complete the run if nothing required is open, and ask for a render."""
    _record(session, run, actor, kind, item_id, data)
    if completes and run.is_active and _all_required_resolved(session, run, item_id):
        _finish(session, run, RunStatus.COMPLETE, actor)
        _record(session, run, actor, "run.completed")
    run.rev += 1
    # This statement's autoflush writes the whole change at once: one flush per click.
    session.execute(update(Message).where(Message.run_id == run.id).values(wanted_rev=run.rev))


def _all_required_resolved(session: Session, run: Run, changed: str | None) -> bool:
    """Whether no required item is open — asked without flushing: the changed item is judged in memory."""
    with session.no_autoflush:
        if changed is not None:
            state = session.get(ItemState, (run.id, changed))  # from the identity map: no query
            if state is not None and state.required and state.status == ItemStatus.OPEN:
                return False
        others = select(ItemState.item_id).where(
            ItemState.run_id == run.id, ItemState.required, ItemState.status == ItemStatus.OPEN
        )
        if changed is not None:
            others = others.where(ItemState.item_id != changed)
        return not session.scalar(select(others.exists()))


def _record(
    session: Session,
    run: Run,
    actor: Actor,
    kind: str,
    item_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(event(actor, kind, data, run_id=run.id, item_id=item_id))


def event(actor: Actor, kind: str, data: dict[str, Any] | None = None, **about: Any) -> Event:
    """An audit event: who did `kind`, when, from which message; `about` names the run, item or page."""
    return Event(
        kind=kind,
        user_id=actor.user_id,
        at=actor.at,
        channel_id=actor.channel_id,
        message_ts=actor.message_ts,
        data=data or {},
        **about,
    )
