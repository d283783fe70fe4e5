"""Item rules: tick, untick, N/A, note, a probe's verdict. Every function takes a session, never commits.

A click is what deploybot does most, and a person waits on each one. These rules therefore run as
statements built once and executed on the session's connection: the ORM's unit of work cost more
than the writes themselves (`python -m bench.ack` measures it). Run-wide changes stay in runs.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from bot import people, runs
from bot.models import (
    PROBE_ACTOR,
    Event,
    ItemState,
    ItemStatus,
    ProbeResult,
    ProbeStatus,
    Run,
    RunStatus,
    is_pipeline,
    verified_by_probe,
)
from bot.probes import Verdict
from bot.runs import MAX_NOTE, MAX_REASON, Actor, RunError, TextRefused, storable
from bot.say import Cmd, Who, say

_this_item = (ItemState.run_id == bindparam("run"), ItemState.item_id == bindparam("item"))

# Parameters are named apart from the columns: an UPDATE's SET clause claims the column names.
# Bumping an active run's revision takes its row lock (FOR NO KEY UPDATE, as db.load does) and says
# where the run is, in one round trip. Changes of one run queue here; a refused change rolls back.
_CLAIM_RUN = (
    update(Run)
    .where(Run.id == bindparam("run"), Run.status == RunStatus.ACTIVE)
    .values(rev=Run.rev + 1)
    .returning(Run.id, Run.channel_id, Run.rev, Run.open_phase)
)
_ITEM = select(ItemState.__table__).where(*_this_item)
_other = ItemState.__table__.alias("other")
_SET_STATUS = (
    update(ItemState)
    .where(*_this_item)
    .values(status=bindparam("to"), changed_by=bindparam("by"), changed_at=bindparam("at"), na_reason=bindparam("why"))
    # The phase of the first other required item still open (NULL: none), read in the same round
    # trip: it says both whether the run is complete and which phases are open.
    .returning(
        select(func.min(_other.c.phase))
        .where(
            _other.c.run_id == bindparam("run"),
            _other.c.required,
            _other.c.status == ItemStatus.OPEN,
            _other.c.item_id != bindparam("item"),
        )
        .scalar_subquery()
    )
)
_OPEN_PHASE = update(Run).where(Run.id == bindparam("run")).values(open_phase=bindparam("through"))
_SET_PROBE = (
    update(ItemState)
    .where(*_this_item)
    .values(
        probe_status=bindparam("verdict"),
        probe_reason=bindparam("why"),
        probe_at=bindparam("at"),
        probe_phase=bindparam("checked_in"),
        probe_lease_until=None,
    )
)
_SET_NOTE = (
    update(ItemState)
    .where(*_this_item)
    .values(
        note=bindparam("text"), note_by=bindparam("by"), note_at=bindparam("at"), note_count=ItemState.note_count + 1
    )
)
_SET_REPORT = (
    update(ItemState)
    .where(*_this_item)
    .values(
        report_status=bindparam("outcome"),
        report_by=bindparam("reporter"),
        report_at=bindparam("at"),
        report_url=bindparam("url"),
        report_summary=bindparam("summary"),
    )
)
_ADD_EVENT = insert(Event)
_ADD_PROBE_RESULT = insert(ProbeResult)
_RESOLVED_NOTHING = -1  # a change that resolved no item opens no phase and completes nothing


def mark_done(session: Session, run_id: int, item_id: str, actor: Actor) -> None:
    """Tick an item; ticking one already done is refused (and so changes nothing)."""
    conn, run, state = _lock_item(session, run_id, item_id, actor)
    if state["status"] == ItemStatus.DONE:
        by_probe = verified_by_probe(state["status"], state["changed_by"])
        who = say("verified by deploybot") if by_probe else say("done by ", Who(state["changed_by"]))
        raise RunError(say("Already ", who, "; nothing changed."))
    first_open = _set_status(conn, state, ItemStatus.DONE, actor)
    if state["probe_status"] == ProbeStatus.FAILED:
        # Ticking over a failed probe is an override: keep who did it and what the probe said.
        data = {"probe_reason": state["probe_reason"]}
        _changed(session, run, actor, "item.override", state, data, first_open=first_open)
    elif _pipeline_overridden(state, actor):
        # So is ticking what a pipeline reports before it reported it done: keep what it had said.
        data = {"reported_by": state["reported_by"], "reason": _pipeline_said(state)}
        _changed(session, run, actor, "item.override", state, data, first_open=first_open)
    else:
        _changed(session, run, actor, "item.done", state, first_open=first_open)


def reopen(session: Session, run_id: int, item_id: str, actor: Actor) -> None:
    """Untick an item (from done or N/A); unticking an open one is refused."""
    conn, run, state = _lock_item(session, run_id, item_id, actor)
    if state["status"] == ItemStatus.OPEN:
        raise RunError("That item is already open; nothing changed.")
    _set_status(conn, state, ItemStatus.OPEN, actor)
    _changed(session, run, actor, "item.reopened", state, {"was": state["status"]})


def mark_na(session: Session, run_id: int, item_id: str, reason: str, actor: Actor) -> None:
    """Mark an item not applicable; a reason is required."""
    reason = storable(reason.strip())
    if not reason:
        raise RunError("Say why this item does not apply: a reason is required for N/A.")
    if len(reason) > MAX_REASON:
        raise TextRefused(f"Keep the reason under {MAX_REASON} characters (it has {len(reason)}).")
    conn, run, state = _lock_item(session, run_id, item_id, actor)
    first_open = _set_status(conn, state, ItemStatus.NA, actor, reason)
    _changed(session, run, actor, "item.na", state, {"reason": reason}, first_open=first_open)


def add_note(session: Session, run_id: int, item_id: str, text: str, actor: Actor) -> None:
    """Attach a note to an item; the latest note is shown, all are kept in the audit log."""
    text = storable(text.strip())
    if not text:
        raise RunError("The note is empty; write something to add.")
    if len(text) > MAX_NOTE:
        raise TextRefused(f"Keep notes under {MAX_NOTE} characters (this one has {len(text)}).")
    conn, run, state = _lock_item(session, run_id, item_id, actor)
    conn.execute(_SET_NOTE, {"run": run_id, "item": item_id, "text": text, "by": actor.user_id, "at": actor.at})
    _changed(session, run, actor, "item.note", state, {"text": text})


REPORT_STATUSES = (ItemStatus.DONE, "failed", ItemStatus.NA)


class NotThisPipeline(RunError):
    """The item names another pipeline as its reporter."""


@dataclass(frozen=True)
class Report:
    """What a pipeline says about one item (already checked by bot.pipeline)."""

    status: str  # done | failed | na
    pipeline: str  # the token's name
    reason: str | None = None  # required for na
    evidence_url: str | None = None
    summary: str | None = None


def report(session: Session, run_id: int, item_id: str, said: Report, actor: Actor) -> None:
    """Record a pipeline's report: done and N/A resolve the item, failed reopens it; the evidence is kept either way."""
    conn, run, state = _lock_item(session, run_id, item_id, actor)
    named = state["reported_by"]
    if named not in (None, "ci") and named != said.pipeline:
        raise NotThisPipeline(
            f"Item '{item_id}' is reported by the pipeline '{named}', not by '{said.pipeline}': "
            "use that pipeline's token, or change `reported_by` in the checklist."
        )
    values = {"outcome": said.status, "reporter": actor.name, "at": actor.at}
    conn.execute(_SET_REPORT, {"run": run_id, "item": item_id, **values, "url": said.evidence_url,
                               "summary": said.summary})  # fmt: skip
    target = ItemStatus.OPEN if said.status == "failed" else said.status
    first_open: int | None = _RESOLVED_NOTHING
    # A repeated report (a retried CI job) keeps the item as it is and only refreshes the evidence.
    if state["status"] != target:
        resolved = _set_status(conn, state, target, actor, said.reason if target == ItemStatus.NA else None)
        first_open = resolved if target != ItemStatus.OPEN else _RESOLVED_NOTHING
    data = {"pipeline": said.pipeline, "status": said.status, "reason": said.reason,
            "evidence_url": said.evidence_url, "summary": said.summary, "was": state["status"]}  # fmt: skip
    kind = {ItemStatus.DONE: "item.done", ItemStatus.NA: "item.na"}.get(said.status, "item.failed")
    _changed(session, run, actor, kind, state, data, first_open=first_open)


def _pipeline_overridden(state: RowMapping, actor: Actor) -> bool:
    return (
        state["reported_by"] is not None
        and state["report_status"] != ItemStatus.DONE
        and not is_pipeline(actor.user_id)
    )


def _pipeline_said(state: RowMapping) -> str:
    """Why a person's tick of a pipeline's item is an override: what the pipeline said, or that it said nothing."""
    if state["report_status"] == "failed":
        return f"{state['report_by']} reported it failed: {state['report_summary'] or 'no summary'}"
    if state["report_status"] == ItemStatus.NA:
        return f"{state['report_by']} reported it not applicable"
    return "ticked before the pipeline reported it"


def record_probe(session: Session, run_id: int, item_id: str, verdict: Verdict, kind: str, at: datetime) -> None:
    """Store a probe's verdict; it ticks or fails the item unless a person already decided it.

    A verdict taken before the item's phase opened is kept as evidence but decides nothing: the
    probe waits for its phase and runs again then.
    """
    conn = session.connection()
    # Claim the run first: an insert's foreign-key lock taken before it would deadlock with a twin.
    run = conn.execute(_CLAIM_RUN, {"run": run_id}).mappings().one_or_none()
    finished = session.get(Run, run_id) if run is None else None  # a finished run still keeps the evidence
    open_phase = run["open_phase"] if run is not None else finished.open_phase if finished is not None else None
    result = {"run_id": run_id, "item_id": item_id, "kind": kind, "ok": verdict.ok, "at": at, "ms": verdict.ms}
    if run is not None or finished is not None:
        conn.execute(
            _ADD_PROBE_RESULT,
            {**result, "reason": verdict.reason, "evidence": verdict.evidence, "open_phase": open_phase},
        )
    state = conn.execute(_ITEM, {"run": run_id, "item": item_id}).mappings().one_or_none()
    if state is None or run is None:
        return
    actor = Actor(PROBE_ACTOR, at)
    data = {"reason": verdict.reason, "ms": verdict.ms}
    early = state["phase"] > run["open_phase"]
    status = ProbeStatus.WAITING if early else ProbeStatus.PASSED if verdict.ok else ProbeStatus.FAILED
    values = {"verdict": status, "why": verdict.reason, "at": at, "checked_in": open_phase}
    conn.execute(_SET_PROBE, {"run": run_id, "item": item_id, **values})
    if early:
        if verified_by_probe(state["status"], state["changed_by"]):
            _set_status(conn, state, ItemStatus.OPEN, actor)
        _changed(session, run, actor, "probe.too_early", state, {**data, "ok": verdict.ok})
    elif verdict.ok and state["status"] == ItemStatus.OPEN:
        first_open = _set_status(conn, state, ItemStatus.DONE, actor)
        _changed(session, run, actor, "item.verified", state, data, first_open=first_open)
    elif not verdict.ok and verified_by_probe(state["status"], state["changed_by"]):
        _set_status(conn, state, ItemStatus.OPEN, actor)
        _changed(session, run, actor, "item.failed", state, data)
    else:
        _changed(session, run, actor, "item.verified" if verdict.ok else "item.failed", state, data)


def _lock_item(session: Session, run_id: int, item_id: str, actor: Actor) -> tuple[Connection, RowMapping, RowMapping]:
    """Claim an active run of the actor's channel and read one of its items (one row, not the checklist)."""
    conn = session.connection()
    run = conn.execute(_CLAIM_RUN, {"run": run_id}).mappings().one_or_none()
    if run is None:
        raise RunError(runs.finished_message(runs.get_run(session, run_id)))  # get_run says if it does not exist
    runs.same_channel(run["id"], run["channel_id"], actor)
    state = conn.execute(_ITEM, {"run": run_id, "item": item_id}).mappings().one_or_none()
    if state is None:
        raise RunError(
            say(
                f"Run #{run_id} has no item '{item_id}'. The message may be out of date: ",
                Cmd("status"),
                " shows the current checklist.",
            )
        )
    return conn, run, state


def _set_status(
    conn: Connection, state: RowMapping, status: str, actor: Actor, na_reason: str | None = None
) -> int | None:
    """Set an item's status; the phase of the first other required item of its run still open (None: none)."""
    kept = status != ItemStatus.OPEN  # an open item was changed by nobody
    first_open: int | None = conn.execute(
        _SET_STATUS,
        {
            "run": state["run_id"],
            "item": state["item_id"],
            "to": status,
            "by": actor.user_id if kept else None,
            "at": actor.at if kept else None,
            "why": na_reason,
        },
    ).scalar_one()
    return first_open


def _changed(
    session: Session,
    run: RowMapping,
    actor: Actor,
    kind: str,
    state: RowMapping,
    data: dict[str, Any] | None = None,
    *,
    first_open: int | None = _RESOLVED_NOTHING,
) -> None:
    """Record the event, ask for a render, and follow a resolution on.

    `first_open` is the phase of the first required item still open after the change that
    resolved this one: every phase up to it is open now, and None means the run is complete.
    """
    conn = session.connection()
    people.remember(conn, actor)
    conn.execute(_ADD_EVENT, runs.event_values(actor, kind, data, run_id=run["id"], item_id=state["item_id"]))
    runs.want_render(conn, run["id"], run["rev"])
    if first_open is None:
        runs.complete(session, runs.get_run(session, run["id"]), actor)
    elif first_open > run["open_phase"]:
        _open_phases(session, run, first_open, actor)


def _open_phases(session: Session, run: RowMapping, through: int, actor: Actor) -> None:
    """Open every phase up to `through`: queue their waiting probes, and say so in the audit trail."""
    conn = session.connection()
    conn.execute(_OPEN_PHASE, {"run": run["id"], "through": through})
    queued = runs.open_waiting(conn, run["id"], through)
    # Twice a run at most: reading the checklist for the phase's name costs nothing that matters.
    phase = runs.get_run(session, run["id"]).template.phases[through]
    data = {"phase": phase.id, "title": phase.title, "probes": queued}
    conn.execute(_ADD_EVENT, runs.event_values(actor, "phase.opened", data, run_id=run["id"]))
