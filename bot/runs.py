"""Run lifecycle rules. Every function takes a session, never commits, never calls Slack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import db, people, phases
from bot.checklists import Template
from bot.models import (
    Event,
    ItemState,
    ItemStatus,
    Message,
    ProbeStatus,
    Run,
    RunStatus,
)
from bot.say import Channel, Cmd, Said, Typed, Who, say
from bot.slack.mrkdwn import is_slack_channel

MAX_REASON = 500
# A channel runs one of these at a time: a deployment, or the rollback of one. Maintenance
# checklists (one per cadence) may run beside it.
SERIAL_KINDS = ("deploy", "rollback")
MAX_NOTE = 500
_BATCH = 50  # runs read at a time while looking back for a release


class RunError(Exception):
    """A request the rules refuse; the text is safe and meant for the person who asked.

    Given a `Said`, each surface renders it its own way; `str()` is the Slack rendering.
    """

    @property
    def message(self) -> Said | str:
        """What was said, as written: a `Said`, or plain text."""
        said = self.args[0] if self.args else ""
        return said if isinstance(said, Said) else str(said)


class TextRefused(RunError):
    """What the person typed cannot be kept as typed (too long, NUL); a form shows it under the text field."""


@dataclass(frozen=True)
class Actor:
    """Who acts, when, and from which message (the audit trail's 'from where')."""

    user_id: str
    at: datetime
    channel_id: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None
    name: str | None = None


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
    key: str | None = None,
) -> Run:
    """Start a run of `template` in a channel, rendered as a parent message plus `parts` replies
    (None: a run kept outside Slack, such as one started from the terminal shell).

    With `probes`, every item that has a probe is queued for the probe runner, or waits for its
    phase to open if that phase comes after the first one with a required item. `key` is the id a
    pipeline started the run with (see bot.pipeline.start).
    """
    open_phase = phases.open_at_start(template)
    phase_of = phases.of_items(template)
    run = Run(
        template_id=template.id,
        kind=template.kind,
        template_snapshot=template.model_dump(mode="json"),
        version=version,
        environment=environment,
        channel_id=channel_id,
        # One deployment or rollback at a time per channel: both take the same unique slot.
        active_slot=f"{channel_id}:deploy" if template.kind in SERIAL_KINDS else None,
        status=RunStatus.ACTIVE,
        started_by=actor.user_id,
        started_at=actor.at,
        rev=1,
        rollback_of=rollback_of.id if rollback_of else None,
        rollback_to=rollback_to,
        open_phase=open_phase,
        pipeline_key=key,
    )
    current = active_run(session, channel_id) if run.active_slot else None
    if current is not None:
        what = f"the rollback of {current.version}" if current.kind == "rollback" else current.version
        raise RunError(
            say(
                f"Run #{current.id} (",
                Typed(what),
                f" → {current.environment}) is still active in this channel. Finish it, or stop it with ",
                Cmd("abort <reason>"),
                ", before starting another.",
            )
        )
    try:
        with session.begin_nested():  # the unique active_slot settles two simultaneous starts
            session.add(run)
    except IntegrityError:
        raise RunError(
            say("Another run was started in this channel at the same moment; see ", Cmd("status"), ".")
        ) from None
    session.add_all(
        ItemState(
            run_id=run.id,
            item_id=item.id,
            position=n,
            phase=phase_of[item.id],
            required=item.required,
            status=ItemStatus.OPEN,
            probe_status=_first_probe_status(probes and item.probe is not None, phase_of[item.id], open_phase),
            reported_by=item.reported_by,
        )
        for n, item in enumerate(template.items)
    )
    if parts is not None:
        session.add_all(Message(run_id=run.id, part=p, channel_id=channel_id) for p in range(parts + 1))
    _record(
        session,
        run,
        actor,
        "run.started",
        {"version": version, "environment": environment, "checklist": template.id, "probes": probes}
        | ({"key": key} if key else {}),
    )
    return run


def get_run(session: Session, run_id: int, *, lock: bool = False) -> Run:
    """Load a run or explain that it does not exist."""
    run: Run | None = db.load(session, Run, run_id, lock=lock)
    if run is None:
        raise RunError(say(f"Run #{run_id} does not exist. ", Cmd("list"), " shows the recent runs."))
    return run


def active_run(session: Session, channel_id: str) -> Run | None:
    """The channel's active deployment or rollback, if any."""
    # By status, not by slot: a database from before deployments and rollbacks shared one slot
    # may still hold one of each.
    return session.scalars(
        select(Run)
        .where(Run.channel_id == channel_id, Run.status == RunStatus.ACTIVE, Run.kind.in_(SERIAL_KINDS))
        .order_by(Run.id)
        .limit(1)
    ).first()


def active_runs(session: Session, channel_id: str | None = None) -> list[Run]:
    """Every active run (of one channel, if given), oldest first."""
    query = select(Run).where(Run.status == RunStatus.ACTIVE).order_by(Run.id)
    if channel_id is not None:
        query = query.where(Run.channel_id == channel_id)
    return list(session.scalars(query))


def latest_deploy(session: Session, channel_id: str) -> Run | None:
    """The most recently started deployment in a channel, whatever its status."""
    return session.scalars(
        select(Run)
        .where(Run.channel_id == channel_id, Run.kind == "deploy")
        .order_by(Run.started_at.desc(), Run.id.desc())
        .limit(1)
    ).first()


def previous_release(session: Session, run: Run, *, fully: bool = False) -> Run | None:
    """The last completed run of the same checklist and environment before this one.

    With `fully`, skip runs completed anyway with required items open: a rollback goes back to a
    release that passed its whole checklist.
    """
    query = (
        select(Run)
        .where(
            Run.template_id == run.template_id,
            Run.environment == run.environment,
            Run.status == RunStatus.COMPLETE,
            Run.id != run.id,
            Run.started_at < run.started_at,
        )
        .order_by(Run.started_at.desc(), Run.id.desc())
    )
    if not fully:
        return session.scalars(query.limit(1)).first()
    for offset in count(0, _BATCH):
        batch = list(session.scalars(query.offset(offset).limit(_BATCH)))
        found = next((r for r in batch if not r.overridden_items), None)
        if found is not None or len(batch) < _BATCH:
            return found
    return None  # unreachable: count() never ends


def recent_runs(session: Session, limit: int = 10, channel_id: str | None = None) -> list[Run]:
    """The most recently started runs, newest first."""
    query = select(Run).order_by(Run.started_at.desc(), Run.id.desc()).limit(limit)
    if channel_id is not None:
        query = query.where(Run.channel_id == channel_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Rerun:
    """What a re-run queued, and the titles of the phases whose probes still wait."""

    queued: int
    waiting: list[str]

    @property
    def note(self) -> str | None:
        """What to tell the person who asked, if something was left out."""
        return phases.waiting_text(self.waiting) if self.waiting else None


def rerun_probes(session: Session, run_id: int, item_id: str | None, actor: Actor) -> Rerun:
    """Queue the probes of one item, or of every probed item of the open phases."""
    run = _lock_active(session, run_id)
    same_channel(run.id, run.channel_id, actor)
    probed = {i.id for i in run.template.items if i.probe is not None}
    if item_id is not None and item_id not in probed:
        raise RunError("That item has no probe to re-run.")
    states = [s for s in run.items if s.item_id in probed and (item_id is None or s.item_id == item_id)]
    ready = [s for s in states if s.phase <= run.open_phase]
    waiting = sorted({s.phase for s in states if s.phase > run.open_phase})
    titles = [run.template.phases[p].title for p in waiting]
    if not ready:
        raise RunError(phases.waiting_text(titles) + " Nothing was re-run.")
    for state in ready:
        state.probe_status, state.probe_lease_until = ProbeStatus.PENDING, None
    _changed(session, run, actor, "probe.rerun", {"items": len(ready), "waiting": len(states) - len(ready)}, item_id)
    return Rerun(len(ready), titles)


DEPLOYMENT_OUTCOMES = ("succeeded", "failed")


def deployment_started(session: Session, run_id: int, actor: Actor, evidence: dict[str, Any] | None = None) -> None:
    """Record that the deployment itself began (a pipeline says so, with its evidence)."""
    run = _lock_active(session, run_id)
    same_channel(run.id, run.channel_id, actor)
    if run.kind != "deploy":
        raise RunError(f"Run #{run.id} is a {run.kind} run; only a deployment is deployed. Nothing changed.")
    _changed(session, run, actor, "deployment.started", {**(evidence or {})})


def deployment_reported(
    session: Session, run_id: int, outcome: str, actor: Actor, evidence: dict[str, Any] | None = None
) -> Said:
    """Record that the deployment itself happened; a successful one opens every phase's probes."""
    if outcome not in DEPLOYMENT_OUTCOMES:
        raise RunError(f"Say how the deployment went: {' or '.join(DEPLOYMENT_OUTCOMES)}. Nothing changed.")
    run = _lock_active(session, run_id)
    same_channel(run.id, run.channel_id, actor)
    if run.kind != "deploy":
        raise RunError(f"Run #{run.id} is a {run.kind} run; only a deployment is deployed. Nothing changed.")
    last = len(run.template.phases) - 1
    queued = 0
    if outcome == "succeeded" and run.open_phase < last:
        # The deployment happened: whatever is left unticked before it, what follows it can be checked.
        queued = open_waiting(session.connection(), run.id, last)
        run.open_phase = last
    _changed(session, run, actor, "deployment.reported", {"outcome": outcome, "probes": queued, **(evidence or {})})
    if outcome == "failed":
        return say(
            "Noted: the deployment of ",
            Typed(run.version),
            " failed. ",
            Cmd("fail <reason>"),
            f" declares run #{run.id} failed.",
        )
    return say(
        "Noted: ", Typed(run.version), f" is deployed. {queued} probe(s) queued; every phase of run #{run.id} is open."
    )


def open_waiting(conn: Connection, run_id: int, through: int) -> int:
    """Queue the waiting probes of every phase up to `through`; how many were queued."""
    return conn.execute(_OPEN_WAITING, {"run": run_id, "through": through}).rowcount


def complete_anyway(session: Session, run_id: int, actor: Actor, reason: str | None = None) -> list[str]:
    """Complete a run with required items open, recording who overrode which items (and why, when said)."""
    if reason is not None:
        reason = storable(reason.strip())
        _check_reason(reason)
    run = _lock_active(session, run_id)
    open_items = _open_required(session, run)
    run.overridden_items = open_items
    if reason:
        run.finish_reason = reason
    _finish(session, run, RunStatus.COMPLETE, actor)
    data: dict[str, Any] = {"open_items": open_items, **({"reason": reason} if reason else {})}
    _changed(session, run, actor, "run.completed_anyway", data)
    return open_items


def fail(session: Session, run_id: int, reason: str, actor: Actor) -> Run:
    """Declare a deployment failed, with a reason; its rollback checklist is started next."""
    reason = storable(reason.strip())
    if not reason:
        raise RunError(
            say("Say what went wrong: ", Cmd("fail <reason>"), ", e.g. ", Cmd("fail error rate 12% after deploy"), ".")
        )
    _check_reason(reason)
    run = _lock_active(session, run_id)
    if run.kind != "deploy":
        raise RunError(f"Run #{run.id} is a {run.kind} run; only a deployment can fail.")
    run.finish_reason = reason
    _finish(session, run, RunStatus.FAILED, actor)
    _changed(session, run, actor, "run.failed", {"reason": run.finish_reason})
    return run


def rollback_for(session: Session, run: Run) -> Run | None:
    """The latest rollback run started for a deployment, if any."""
    return session.scalars(select(Run).where(Run.rollback_of == run.id).order_by(Run.id.desc()).limit(1)).first()


def abort(session: Session, run_id: int, reason: str, actor: Actor) -> Run:
    """Stop a run for good, with a reason."""
    reason = storable(reason.strip())
    if not reason:
        raise RunError(say("Say why: ", Cmd("abort <reason>"), ", e.g. ", Cmd("abort failed smoke tests"), "."))
    _check_reason(reason)
    run = _lock_active(session, run_id)
    run.finish_reason = reason
    _finish(session, run, RunStatus.ABORTED, actor)
    _changed(session, run, actor, "run.aborted", {"reason": run.finish_reason})
    return run


def storable(text: str) -> str:
    """Refuse text the database cannot keep as typed (PostgreSQL refuses NUL in text columns)."""
    if "\x00" in text:
        raise TextRefused("That text contains a NUL character (\\0), which deploybot cannot store; nothing changed.")
    return text


def _check_reason(reason: str) -> None:
    # Refused rather than clipped: what is kept is what was typed.
    if len(reason) > MAX_REASON:
        raise TextRefused(f"Keep the reason under {MAX_REASON} characters (it has {len(reason)}).")


def events_of(session: Session, run_id: int) -> list[Event]:
    """The audit trail of a run, oldest first."""
    return list(session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id)))


def complete(session: Session, run: Run, actor: Actor) -> None:
    """Complete a run whose last required item was just resolved (the caller asked for the render)."""
    _finish(session, run, RunStatus.COMPLETE, actor)
    _record(session, run, actor, "run.completed")


def ensure_active(run: Run) -> Run:
    """Refuse any change to a finished run, saying how and by whom it ended."""
    if not run.is_active:
        raise RunError(finished_message(run))
    return run


def same_channel(run_id: int, channel_id: str, actor: Actor) -> None:
    """A Slack click acts only on its own channel's run (the terminal shell picks runs by number)."""
    if actor.channel_id and is_slack_channel(actor.channel_id) and actor.channel_id != channel_id:
        raise RunError(say(f"That button belongs to run #{run_id} in ", Channel(channel_id), "; nothing changed."))


def finished_message(run: Run) -> Said:
    """Why a finished run refuses changes: how it ended, by whom."""
    head = say(f"Run #{run.id} (", Typed(run.version), ")")
    who = say(" by ", Who(run.finished_by)) if run.finished_by else say()
    if run.status == RunStatus.ABORTED:
        return say(head, " was aborted", who, ": ", Typed(run.finish_reason or ""), ". Nothing changed.")
    if run.status in (RunStatus.FAILED, RunStatus.ROLLED_BACK):
        return say(
            head,
            " was declared failed",
            who,
            ": ",
            Typed(run.finish_reason or ""),
            ". Nothing changed; ",
            "its rollback checklist is in this channel (",
            Cmd("rollback"),
            " opens one).",
        )
    return say(head, f" is already {run.status}", who, ". Nothing changed.")


def want_render(conn: Connection, run_id: int, rev: int) -> None:
    """Mark every message of the run as behind revision `rev`: the publisher renders it after commit."""
    conn.execute(_WANT_RENDER, {"run": run_id, "rev": rev})


def event_values(actor: Actor, kind: str, data: dict[str, Any] | None = None, **about: Any) -> dict[str, Any]:
    """An audit event's columns: who did `kind`, when, from which message; `about` names the run, item or page."""
    return {
        "kind": kind,
        "user_id": actor.user_id,
        "at": actor.at,
        "channel_id": actor.channel_id,
        "message_ts": actor.message_ts,
        "user_name": people.clean(actor.name),
        "data": data or {},
        **about,
    }


def event(actor: Actor, kind: str, data: dict[str, Any] | None = None, **about: Any) -> Event:
    """An audit event, as a row to add to the session."""
    return Event(**event_values(actor, kind, data, **about))


def add_event(session: Session, actor: Actor, kind: str, data: dict[str, Any] | None = None, **about: Any) -> None:
    """Record an audit event, and the actor's name with their id (records show both)."""
    people.remember(session.connection(), actor)
    session.add(event(actor, kind, data, **about))


# --- internals -------------------------------------------------------------------------------------

_OPEN_WAITING = (
    update(ItemState)
    .where(
        ItemState.run_id == bindparam("run"),
        ItemState.probe_status == ProbeStatus.WAITING,
        ItemState.phase <= bindparam("through"),
    )
    .values(probe_status=ProbeStatus.PENDING, probe_lease_until=None)
)
_WANT_RENDER = update(Message).where(Message.run_id == bindparam("run")).values(wanted_rev=bindparam("rev"))


def _first_probe_status(probed: bool, phase: int, open_phase: int) -> str | None:
    if not probed:
        return None
    return ProbeStatus.PENDING if phase <= open_phase else ProbeStatus.WAITING


def _lock_active(session: Session, run_id: int) -> Run:
    # The row lock serializes concurrent changes of one run on PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already serializes every writer.
    return ensure_active(get_run(session, run_id, lock=True))


def _open_required(session: Session, run: Run) -> list[str]:
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
            _changed(session, failed, actor, "run.rolled_back", {"rollback": run.id, "was": previous})


def _changed(
    session: Session, run: Run, actor: Actor, kind: str, data: dict[str, Any], item_id: str | None = None
) -> None:
    """Record a run-wide change and ask for a render."""
    _record(session, run, actor, kind, data, item_id)
    run.rev += 1
    want_render(session.connection(), run.id, run.rev)


def _record(
    session: Session,
    run: Run,
    actor: Actor,
    kind: str,
    data: dict[str, Any] | None = None,
    item_id: str | None = None,
) -> None:
    add_event(session, actor, kind, data, run_id=run.id, item_id=item_id)
