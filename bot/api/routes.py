"""/api/v1/ routes: a token is checked before any routing, then each route calls the pipeline rules."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot import db, logs, pipeline, tokens
from bot.api import render
from bot.api.auth import Auth, Refusal
from bot.api.gates import GateWatcher, SharedAnswers
from bot.items import NotThisPipeline
from bot.models import Run
from bot.pipeline import Forbidden, Invalid, NotFound
from bot.runs import RunError, TextRefused
from bot.say import terminal
from bot.services import Services
from bot.slack.blocks import layout
from bot.slack.mrkdwn import is_slack_channel
from bot.tokens import Caller

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_WAIT = 30.0
Answer = tuple[int, list[tuple[str, str]], str]
_GateAnswer = tuple[str, str, int, dict[str, Any]]  # the run's channel, environment and rev; the body
_JSON = ("Content-Type", "application/json")


class PipelineApi:
    """Answers every /api/ request: 401 before routing, then the route, as JSON."""

    def __init__(self, services: Services, auth: Auth, gates: GateWatcher):
        self._services = services
        self._auth = auth
        self.gates = gates
        self._shared: SharedAnswers[_GateAnswer] = SharedAnswers()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Answer]]] = [
            ("POST", re.compile(r"/api/v1/runs"), self._start),
            ("GET", re.compile(r"/api/v1/runs/([0-9]{1,12})"), self._run),
            ("POST", re.compile(r"/api/v1/runs/([0-9]{1,12})/items/([^/]{1,64})"), self._item),
            ("POST", re.compile(r"/api/v1/runs/([0-9]{1,12})/deployment"), self._deployment),
            ("GET", re.compile(r"/api/v1/runs/([0-9]{1,12})/gate"), self._gate),
        ]

    def __call__(self, environ: dict[str, Any]) -> Answer:
        try:
            return self._answer_request(environ)
        except OperationalError:
            log.warning("a pipeline API request found the database unreachable (503)")
            return _error(503, "deploybot cannot reach its database right now; try again in a few seconds.")
        except Exception:
            # Logged without the request: its headers hold the token.
            log.exception("a pipeline API request failed (500)")
            return _error(500, f"deploybot failed to answer; quote request id {logs.request_id.get()} to its operator.")

    def _answer_request(self, environ: dict[str, Any]) -> Answer:
        caller = self._auth.caller(environ)
        if isinstance(caller, Refusal):
            return _json(caller.status, caller.body, list(caller.headers))
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return _error(413, f"The request body must be at most {MAX_BODY // 1024} KiB of JSON.")
        raw = environ["wsgi.input"].read(length) if length else b""
        for verb, pattern, handler in self._routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            if verb != method:
                return _error(405, f"{path} takes {verb}, not {method}.", [("Allow", verb)])
            try:
                body = _body(raw) if method == "POST" else {}
                return handler(caller, body, environ, *found.groups())
            except (Invalid, TextRefused) as refused:
                return _error(400, terminal(refused.message))
            except (Forbidden, NotThisPipeline) as refused:
                return _error(403, terminal(refused.message))
            except NotFound as refused:
                return _error(404, terminal(refused.message))
            except RunError as refused:  # the run's state refuses it: finished, another run active, ...
                return _error(409, terminal(refused.message))
        return _error(404, f"No endpoint {path}: the API is under /api/v1/runs (see the README's Pipelines section).")

    # --- routes ------------------------------------------------------------------------------------

    def _start(self, caller: Caller, body: dict[str, Any], _environ: dict[str, Any]) -> Answer:
        version, environment, key = pipeline.check_start(body.get("version"), body.get("environment"), body.get("key"))
        channel = body.get("channel") or caller.channel_id
        if channel != caller.channel_id:
            raise Forbidden(
                f"This token starts runs in channel {caller.channel_id} only; make a token for that channel."
            )
        _check_environment(caller, environment)
        template = self._template(channel, body.get("checklist"))
        actor = caller.actor(self._services.clock())
        with self._services.change() as session:
            run, created = pipeline.start(
                session, template, key=key, version=version, environment=environment, channel_id=channel,
                parts=len(layout(template)) if is_slack_channel(channel) else None,
                probes=environment in self._services.config.environments, actor=actor,
            )  # fmt: skip
            run_id = run.id
        return self._answer(caller, run_id, 201 if created else 200)

    def _run(self, caller: Caller, _body: dict[str, Any], _environ: dict[str, Any], run_id: str) -> Answer:
        return self._answer(caller, int(run_id))

    def _item(self, caller: Caller, body: dict[str, Any], _environ: dict[str, Any], run_id: str, ref: str) -> Answer:
        said = pipeline.read_report(body, caller.name)
        with self._services.change() as session:
            self._reachable(session, caller, int(run_id))
            pipeline.report_item(session, int(run_id), ref, said, caller.actor(self._services.clock()))
        return self._answer(caller, int(run_id))

    def _deployment(self, caller: Caller, body: dict[str, Any], _environ: dict[str, Any], run_id: str) -> Answer:
        with self._services.change() as session:
            self._reachable(session, caller, int(run_id))
            actor = caller.actor(self._services.clock())
            pipeline.report_deployment(session, self._services.templates, int(run_id), body, actor)
        return self._answer(caller, int(run_id))

    def _gate(self, caller: Caller, _body: dict[str, Any], environ: dict[str, Any], run_id: str) -> Answer:
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        after, wait = _whole(query, "after"), _seconds(query)
        phase = query.get("phase") or None
        channel, environment, rev, gate = self._gate_now(int(run_id), phase)
        _check_reach(caller, int(run_id), channel, environment)
        if after is not None and after == rev and gate["gate"]["state"] == "waiting" and wait > 0:
            # No database connection is held while waiting: the watcher reads the revision for us.
            seen = self.gates.wait(int(run_id), rev, wait)
            if not self._still_live(caller):  # revoked while it waited: the gate must not open for it
                return _json(401, {"error": "unauthorized"})
            # Every gate of this run woken by the same change shares one read of it.
            answer = self._shared.get((int(run_id), phase), seen or rev, lambda: self._gate_at(int(run_id), phase))
            channel, environment, rev, gate = answer
        return _json(200, gate)

    # --- helpers -----------------------------------------------------------------------------------

    def _gate_now(self, run_id: int, phase: str | None) -> _GateAnswer:
        """The gate as it is: the run's channel and environment (for the caller's reach), its rev, the body."""
        with self._services.read() as session:
            run: Run | None = db.load(session, Run, run_id)
            if run is None:
                raise NotFound(f"Run #{run_id} does not exist: start one with POST /api/v1/runs.")
            gate = pipeline.gate(run, phase)
            body = {"gate": render.gate_json(gate, run), "run": render.run_json(session, run)}
            return run.channel_id, run.environment, run.rev, body

    def _still_live(self, caller: Caller) -> bool:
        with self._services.read() as session:
            return tokens.is_live(session, caller.id)

    def _gate_at(self, run_id: int, phase: str | None) -> tuple[int, _GateAnswer]:
        answer = self._gate_now(run_id, phase)
        return answer[2], answer

    def _answer(self, caller: Caller, run_id: int, status: int = 200) -> Answer:
        with self._services.read() as session:
            run = self._reachable(session, caller, run_id)
            return _json(status, {"run": render.run_json(session, run)})

    def _reachable(self, session: Session, caller: Caller, run_id: int) -> Run:
        run: Run | None = db.load(session, Run, run_id)
        if run is None:
            raise NotFound(f"Run #{run_id} does not exist: start one with POST /api/v1/runs.")
        _check_reach(caller, run_id, run.channel_id, run.environment)
        return run

    def _template(self, channel: str, chosen: Any) -> Any:
        if chosen is not None and not isinstance(chosen, str):
            raise Invalid('Give "checklist" as the name of a deploy checklist, e.g. "production-deploy".')
        try:
            return self._services.deploy_template(channel, chosen)
        except RunError:
            names = ", ".join(t.id for t in self._services.deploy_checklists()) or "none"
            which = repr(chosen) if chosen else "chosen by default"
            raise Invalid(f"No deploy checklist {which} to start: the deploy checklists are {names}.") from None


def _check_reach(caller: Caller, run_id: int, channel_id: str, environment: str) -> None:
    if channel_id != caller.channel_id:
        raise Forbidden(
            f"Run #{run_id} is not in this token's channel ({caller.channel_id}): use that channel's token."
        )
    _check_environment(caller, environment)


def _check_environment(caller: Caller, environment: str) -> None:
    if caller.environment is not None and environment != caller.environment:
        raise Forbidden(
            f"This token touches {caller.environment} runs only, not {environment}: use a token for {environment}."
        )


def _body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        body = None
    if not isinstance(body, dict):
        raise Invalid('Send a JSON object as the body, e.g. {"status": "done"}, with Content-Type: application/json.')
    return body


def _whole(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 12:
        raise Invalid(f"Give {name} as a whole number: the run's rev from the previous answer.")
    return int(value)


def _seconds(query: dict[str, str]) -> float:
    value = query.get("wait", "0") or "0"
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise Invalid(f"Give wait as seconds from 0 to {MAX_WAIT:g}.")
    return min(seconds, MAX_WAIT)


def _json(status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> Answer:
    return status, [_JSON, ("Cache-Control", "no-store"), *(headers or [])], json.dumps(body, ensure_ascii=False)


def _error(status: int, sentence: str, headers: list[tuple[str, str]] | None = None) -> Answer:
    return _json(status, {"error": sentence}, headers)
