"""Pipeline rules: start a run by key, report items and the deployment, read a gate. Take a session, never commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import items, runs
from bot.checklists import Template
from bot.items import Report
from bot.models import ItemState, ItemStatus, ProbeStatus, Run, RunStatus
from bot.runs import Actor, RunError
from bot.services import ENVIRONMENT, VERSION, start_rollback

MAX_KEY = 128
MAX_SUMMARY = 200
MAX_URL = 500  # a CI job's page; keeps an item's section far below Slack's 3000 characters
DEPLOYMENT_STATUSES = ("started", "succeeded", "failed")
GATE_STATES = ("waiting", "open", "failed", "aborted")


class Invalid(RunError):
    """A request that cannot be right as sent (HTTP 400)."""


class Forbidden(RunError):
    """A token reaching beyond its channel or environment (HTTP 403)."""


class NotFound(RunError):
    """No such run or item (HTTP 404)."""


def check_start(version: Any, environment: Any, key: Any) -> tuple[str, str, str]:
    """A start's version, environment and key, or a plain refusal."""
    if not isinstance(version, str) or not VERSION.match(version):
        raise Invalid("Give \"version\" as letters, digits, '.', '-', '+' or '/' (up to 64), e.g. \"v1.4.2\".")
    if not isinstance(environment, str) or not ENVIRONMENT.match(environment):
        raise Invalid('Give "environment" as one lowercase word such as "production" or "staging".')
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY or not key.isprintable():
        raise Invalid(
            f'Give "key": your CI run\'s id (printable text up to {MAX_KEY} characters), so a retry finds its run.'
        )
    return version, environment, key.strip()


def by_key(session: Session, channel_id: str, key: str) -> Run | None:
    """The run a pipeline started in a channel with this key, if any."""
    return session.scalars(select(Run).where(Run.channel_id == channel_id, Run.pipeline_key == key)).first()


def start(
    session: Session,
    template: Template,
    *,
    key: str,
    version: str,
    environment: str,
    channel_id: str,
    parts: int | None,
    probes: bool,
    actor: Actor,
) -> tuple[Run, bool]:
    """Start a run for a pipeline's key, or find the one that key already started: (run, whether it is new)."""
    found = by_key(session, channel_id, key)
    if found is not None:
        return _same_start(found, key, version, environment), False
    try:
        run = runs.start(
            session, template, version=version, environment=environment, channel_id=channel_id,
            parts=parts, actor=actor, probes=probes, key=key,
        )  # fmt: skip
    except RunError:
        # Another replica may have started this very key a moment ago: its run is committed by now.
        found = by_key(session, channel_id, key)
        if found is not None:
            return _same_start(found, key, version, environment), False
        raise
    return run, True


def _same_start(run: Run, key: str, version: str, environment: str) -> Run:
    """The run a retried start finds again; a key reused for another release gets no one else's run."""
    if (run.version, run.environment) != (version, environment):
        raise RunError(
            f"Key {key!r} started run #{run.id} for {run.version} → {run.environment}, not {version} → "
            f"{environment}: give each release its own key. Nothing changed."
        )
    return run


def find_item(run: Run, ref: str) -> ItemState:
    """An item of a run by its id or by its number (1-based, in checklist order)."""
    if ref.isdigit() and 1 <= int(ref) <= len(run.items):
        return run.items[int(ref) - 1]
    state = run.state_of(ref)
    if state is None:
        raise NotFound(
            f"Run #{run.id} has no item '{ref}': give an item id such as 'all-tests-are-passing' "
            f"or a number from 1 to {len(run.items)} (GET /api/v1/runs/{run.id} lists them)."
        )
    return state


def read_report(body: dict[str, Any], pipeline: str) -> Report:
    """A pipeline's report of an item, checked: status, reason for N/A, an http(s) evidence URL, a one-line summary."""
    status = body.get("status")
    if status not in items.REPORT_STATUSES:
        raise Invalid('Give "status": "done", "failed" or "na".')
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise Invalid('Give "reason" as text.')
    reason = runs.storable(reason.strip()) if reason else None
    if status == ItemStatus.NA and not reason:
        raise Invalid('Say why the item does not apply: "reason" is required with "status": "na".')
    if reason and len(reason) > runs.MAX_REASON:
        raise Invalid(f'Keep "reason" under {runs.MAX_REASON} characters (it has {len(reason)}).')
    return Report(status, pipeline, reason, evidence_url(body.get("evidence_url")), summary(body.get("summary")))


def evidence_url(value: Any) -> str | None:
    """An evidence link: http or https only, so Slack never shows a javascript: or file: link."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise Invalid(f'Give "evidence_url" as an http or https URL up to {MAX_URL} characters.')
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or not value.isprintable():
        raise Invalid('"evidence_url" must be an http:// or https:// URL, e.g. the CI job\'s page.')
    if any(c in value for c in " <>|"):
        raise Invalid('"evidence_url" must not contain spaces, "<", ">" or "|": percent-encode them.')
    return value


def summary(value: Any) -> str | None:
    """A one-line summary up to 200 characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid('Give "summary" as text.')
    value = runs.storable(value.strip())
    if "\n" in value or "\r" in value:
        raise Invalid('Keep "summary" to one line: put the details behind "evidence_url".')
    if len(value) > MAX_SUMMARY:
        raise Invalid(f'Keep "summary" under {MAX_SUMMARY} characters (it has {len(value)}).')
    return value or None


def report_item(session: Session, run_id: int, ref: str, said: Report, actor: Actor) -> None:
    """Record a pipeline's report of one item (by id or number)."""
    run = runs.get_run(session, run_id)
    runs.ensure_active(run)
    items.report(session, run.id, find_item(run, ref).item_id, said, actor)


def report_deployment(
    session: Session, templates: dict[str, Template], run_id: int, body: dict[str, Any], actor: Actor
) -> None:
    """Record the deployment: started, succeeded (all probes run), or failed (the run fails and rolls back)."""
    status = body.get("status")
    if status not in DEPLOYMENT_STATUSES:
        raise Invalid('Give "status": "started", "succeeded" or "failed".')
    evidence = {"evidence_url": evidence_url(body.get("evidence_url")), "summary": summary(body.get("summary"))}
    run = runs.get_run(session, run_id)
    if status == "failed" and run.status in (RunStatus.FAILED, RunStatus.ROLLED_BACK):
        return  # a retried report: the run failed already and its rollback is posted
    if status == "started":
        runs.deployment_started(session, run.id, actor, evidence)
        return
    runs.deployment_reported(session, run.id, status, actor, evidence)
    if status == "failed":
        # What "Deployment failed…" in Slack does: fail the run, then post its rollback checklist.
        said = f": {evidence['summary']}" if evidence["summary"] else ""
        failed = runs.fail(session, run.id, f"the deployment failed ({actor.name}){said}", actor)
        start_rollback(session, templates, failed, actor)


@dataclass(frozen=True)
class Gate:
    """Whether a pipeline may go on past a phase (or the whole run), and what it waits for."""

    phase: str | None
    state: str  # waiting | open | failed | aborted
    waiting_for: list[ItemState]
    failed: list[ItemState]


def gate(run: Run, phase_id: str | None) -> Gate:
    """The gate of one phase (with the phases before it), or of the whole run without a phase."""
    through = len(run.template.phases) - 1
    if phase_id is not None:
        ids = [p.id for p in run.template.phases]
        if phase_id not in ids:
            raise NotFound(f"Run #{run.id} has no phase '{phase_id}': its phases are {', '.join(ids)}.")
        through = ids.index(phase_id)
    considered = [s for s in run.items if s.phase <= through]
    failed = [s for s in considered if is_failed(s)]
    waiting = [s for s in considered if s.required and s.status == ItemStatus.OPEN]
    if run.status == RunStatus.ABORTED:
        state = "aborted"
    elif run.status in (RunStatus.FAILED, RunStatus.ROLLED_BACK) or (failed and run.is_active):
        state = "failed"
    elif waiting and run.is_active:
        state = "waiting"
    else:
        state = "open"  # every required item resolved, or the run completed (anyway)
    return Gate(phase_id, state, waiting, failed)


def is_failed(state: ItemState) -> bool:
    """An item still open that its pipeline reported failed or whose probe failed."""
    return state.status == ItemStatus.OPEN and (
        state.report_status == "failed" or state.probe_status == ProbeStatus.FAILED
    )
