"""A hand-built history of runs, items, probes, reminders and pages whose figures are known by hand.

Every expected number in tests/test_insights.py is worked out from the comments here, not by the
code under test. The period under test is 2026-11-02 00:00 to 2026-11-30 00:00 UTC: four weeks,
Monday to Monday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from bot.models import Event, ItemState, Page, ProbeResult, ReminderSlot, Run

START = datetime(2026, 11, 2, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)

# Three phases: pre (p1, p2 required; p3 optional), deploy (d1), post (q1, q2).
DEPLOY_CHECKLIST: dict[str, Any] = {
    "id": "deploy",
    "title": "Deploy",
    "kind": "deploy",
    "phases": [
        {
            "id": "pre",
            "title": "Pre-Deployment",
            "groups": [
                {
                    "id": "g1",
                    "title": "Setup",
                    "items": [
                        {"id": "p1", "text": "Servers are ready"},
                        {"id": "p2", "text": "Secrets are set"},
                        {"id": "p3", "text": "S3 credentials are configured", "required": False},
                    ],
                }
            ],
        },
        {
            "id": "deploy",
            "title": "Deployment",
            "groups": [{"id": "g2", "title": "Ship", "items": [{"id": "d1", "text": "Health check passes"}]}],
        },
        {
            "id": "post",
            "title": "Post-Deployment",
            "groups": [
                {
                    "id": "g3",
                    "title": "Verify",
                    "items": [{"id": "q1", "text": "Error rate is normal"}, {"id": "q2", "text": "Backups run"}],
                }
            ],
        },
    ],
}
PHASE_OF = {"p1": 0, "p2": 0, "p3": 0, "d1": 1, "q1": 2, "q2": 2}
REQUIRED = {"p1", "p2", "d1", "q1", "q2"}


def at(text: str) -> datetime:
    """'11-02 10:00' as a UTC time in 2026."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


class History:
    """Adds rows as they would be after the fact, with the times a test needs."""

    def __init__(self, session: Session, shift: timedelta):
        self.session = session
        self.shift = shift  # every time moves by this much: a history ending now, for surfaces that use the clock

    def at(self, text: str) -> datetime:
        return at(text) + self.shift

    def run(
        self,
        started: str,
        status: str,
        finished: str | None = None,
        *,
        environment: str = "production",
        kind: str = "deploy",
        reason: str | None = None,
        rollback_of: Run | None = None,
        overridden: list[str] | None = None,
        items: dict[str, tuple[str, ...]] | None = None,
    ) -> Run:
        """A run; with `items` (item -> (status, time[, N/A reason])), its item states: unlisted ones open."""
        run = Run(
            template_id=kind,
            kind=kind,
            template_snapshot={**DEPLOY_CHECKLIST, "id": kind, "kind": kind},
            version="v1",
            environment=environment,
            channel_id="C0HISTORY1",
            status=status,
            started_by="U1",
            started_at=self.at(started),
            finished_at=self.at(finished) if finished else None,
            finish_reason=reason,
            rollback_of=rollback_of.id if rollback_of else None,
            rev=1,
        )
        if overridden is not None:  # left unset otherwise, as deploybot leaves it: NULL, not JSON null
            run.overridden_items = overridden
        self.session.add(run)
        self.session.flush()
        for n, item_id in enumerate(PHASE_OF if items is not None else []):
            state, when, *reason = (items or {}).get(item_id, ("open", ""))
            self.session.add(
                ItemState(
                    run_id=run.id,
                    item_id=item_id,
                    position=n,
                    phase=PHASE_OF[item_id],
                    required=item_id in REQUIRED,
                    status=state,
                    changed_by="U1" if when else None,
                    changed_at=self.at(when) if when else None,
                    na_reason=reason[0] if reason else None,
                )
            )
        self.session.flush()
        return run

    def event(self, run: Run, kind: str, item_id: str, when: str) -> None:
        self.session.add(Event(run_id=run.id, item_id=item_id, kind=kind, user_id="U1", at=self.at(when), data={}))

    def probe(self, run: Run, item_id: str, ok: bool, when: str) -> None:
        self.session.add(
            ProbeResult(
                run_id=run.id, item_id=item_id, kind="http", ok=ok, reason="", evidence={}, ms=1.0, at=self.at(when)
            )
        )

    def slot(self, cadence: str, due: str, status: str, run: Run | None = None, nudge: str | None = None) -> None:
        self.session.add(
            ReminderSlot(
                cadence=cadence,
                local_time=self.at(due).isoformat(),
                due_at=self.at(due),
                status=status,
                run_id=run.id if run else None,
                nudge_at=self.at(nudge) if nudge else None,
            )
        )

    def page(self, created: str, acked: str | None, run: Run | None, key: str) -> None:
        self.session.add(
            Page(
                team="dba",
                text="help",
                run_id=run.id if run else None,
                chain=["dba"],
                status="acknowledged" if acked else "open",
                dedup_key=key,
                paged_by="U1",
                created_at=self.at(created),
                acked_by="U2" if acked else None,
                acked_at=self.at(acked) if acked else None,
            )
        )


def build(session: Session, shift: timedelta = timedelta()) -> dict[str, Run]:
    """The whole history, moved by `shift`; returns the runs by name for the tests that need them."""
    h = History(session, shift)
    runs: dict[str, Run] = {}

    def items(**entries: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        return entries

    def na(reason: str, when: str) -> tuple[str, ...]:
        return ("na", when, reason)

    # R1: complete, 1 h. pre resolved 10:20 (20 min), deploy 10:30 (10 min), post 11:00 (30 min).
    # q2, the checklist's last required item, is resolved last, at the run's end: last by design.
    runs["R1"] = h.run(
        "11-02 10:00",
        "complete",
        "11-02 11:00",
        items=items(
            p1=("done", "11-02 10:10"),
            p2=("done", "11-02 10:20"),
            p3=na("No S3 here", "11-02 10:05"),
            d1=("done", "11-02 10:30"),
            q1=("done", "11-02 10:50"),
            q2=("done", "11-02 11:00"),
        ),
    )
    # R2: declared failed at 10:30 (30 min run), rolled back by RB2, completed 11:10: restored in 40 min.
    # pre 15 min, deploy 10 min; post never resolved.
    runs["R2"] = h.run(
        "11-09 10:00",
        "rolled_back",
        "11-09 10:30",
        reason="error rate 12%",
        items=items(
            p1=("done", "11-09 10:05"),
            p2=("done", "11-09 10:15"),
            p3=na("no s3 here.", "11-09 10:01"),
            d1=("done", "11-09 10:25"),
        ),
    )
    runs["RB2"] = h.run("11-09 10:31", "complete", "11-09 11:10", kind="rollback", rollback_of=runs["R2"])
    # R3: failed at 12:00 (2 h), its rollback never completed: a failure without a restore time.
    # p2 still open: no phase time at all.
    runs["R3"] = h.run(
        "11-16 10:00",
        "failed",
        "11-16 12:00",
        reason="smoke tests red",
        items=items(p1=("done", "11-16 10:30"), p3=na("Not using S3", "11-16 10:02"), d1=("done", "11-16 11:00")),
    )
    runs["RB3"] = h.run("11-16 12:05", "aborted", "11-16 12:30", kind="rollback", rollback_of=runs["R3"])
    # R4: aborted: not a deployment.
    runs["R4"] = h.run("11-23 10:00", "aborted", "11-23 10:10", reason="wrong version")
    # R5: starts Sunday 23:00 inside the period, ends after it: counted in it. 2 h.
    # pre 20 min, deploy 30 min, post 70 min; q1 last, ahead of q2 (the checklist's own last).
    runs["R5"] = h.run(
        "11-29 23:00",
        "complete",
        "11-30 01:00",
        items=items(
            p1=("done", "11-29 23:10"),
            p2=("done", "11-29 23:20"),
            p3=na("No S3 here", "11-29 23:01"),
            d1=("done", "11-29 23:50"),
            q1=("done", "11-30 01:00"),
            q2=("done", "11-30 00:30"),
        ),
    )
    # R6: starts just before the period (Sunday 23:00), ends inside it: not counted in it. 2 h.
    runs["R6"] = h.run("11-01 23:00", "complete", "11-02 01:00")
    # R7: still active.
    runs["R7"] = h.run("11-25 10:00", "active")
    # Staging: S1 complete in 30 min; S2 completed anyway with q1 open, 10 min.
    runs["S1"] = h.run("11-03 09:00", "complete", "11-03 09:30", environment="staging")
    runs["S2"] = h.run("11-04 09:00", "complete", "11-04 09:10", environment="staging", overridden=["q1"])

    # Overrides of a failed probe: q1 twice (R1, R5), d1 once (R5).
    h.event(runs["R1"], "item.override", "q1", "11-02 10:50")
    h.event(runs["R5"], "item.override", "q1", "11-30 00:30")
    h.event(runs["R5"], "item.override", "d1", "11-29 23:50")
    # d1's probe: fail, pass (R1: flips within the run), fail (R2), pass (R5): 3 flips in 4 results.
    h.probe(runs["R1"], "d1", False, "11-02 10:20")
    h.probe(runs["R1"], "d1", True, "11-02 10:29")
    h.probe(runs["R2"], "d1", False, "11-09 10:24")
    h.probe(runs["R5"], "d1", True, "11-29 23:49")
    # p1's probe always passes: steady.
    for name in ("R1", "R2", "R5"):
        h.probe(runs[name], "p1", True, f"{runs[name].started_at - shift:%m-%d %H:%M}")

    # Maintenance: daily slots on 10 (done in time), 11 (missed), 12 (still open past its nudge),
    # 13 (done after its nudge); a manual posting is not a slot.
    m1 = h.run("11-10 09:00", "complete", "11-10 10:00", kind="maintenance")
    m3 = h.run("11-12 09:00", "active", kind="maintenance")
    m4 = h.run("11-13 09:00", "complete", "11-14 09:00", kind="maintenance")
    h.slot("daily", "11-10 09:00", "posted", m1, nudge="11-10 17:00")
    h.slot("daily", "11-11 09:00", "missed")
    h.slot("daily", "11-12 09:00", "posted", m3, nudge="11-12 17:00")
    h.slot("daily", "11-13 09:00", "posted", m4, nudge="11-13 17:00")
    h.slot("weekly", "11-09 10:00", "manual", None)

    # Pages: one from R2, acknowledged after 10 min; one with no run, never acknowledged.
    h.page("11-09 10:35", "11-09 10:45", runs["R2"], "page-1")
    h.page("11-16 11:00", None, None, "page-2")
    session.flush()
    return runs
