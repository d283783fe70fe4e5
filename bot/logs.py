"""Logging: one line per event, JSON with LOG_FORMAT=json, each line tagged with its request id, secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

MASK = "**********"
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@contextmanager
def request_scope(existing: str | None = None) -> Iterator[str]:
    """Tag every log line of one Slack request (HTTP or Socket Mode) with one id."""
    # An id handed in (a load balancer's X-Request-Id) is kept only if it is plainly an id.
    rid = request_id.get() or (existing if existing and _ID.fullmatch(existing) else uuid.uuid4().hex[:12])
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get() or "-"
        return True


class _Scrub(logging.Filter):
    """Last line of defence: a secret that reaches a log record anyway is replaced by a mask."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        text = message + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        if any(secret in text for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, MASK)
            record.msg, record.args = message, ()
            if record.exc_info:
                # The traceback text is rebuilt from the exception; keep only its masked summary.
                record.msg += " | " + _mask(logging.Formatter().formatException(record.exc_info), self.secrets)
                record.exc_info, record.exc_text = None, None
        return True


def _mask(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


class UtcFormatter(logging.Formatter):
    """Times in ISO 8601, UTC, with the offset written out: lines from replicas in any zone sort and compare."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(UtcFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Noise(logging.Filter):
    """Drop libraries' lines that say nothing to an operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Bolt reads SLACK_BOT_TOKEN from the environment by itself, then warns that the client deploybot
        # built from that same token wins.
        if record.name.startswith("slack_bolt") and "`token` will be unused" in str(record.msg):
            return False
        # Alembic's "Context impl SQLiteImpl." and the like; each migration it runs is worth a line.
        return not (
            record.name.startswith("alembic")
            and record.levelno < logging.WARNING
            and not record.getMessage().startswith("Running upgrade")
        )


def setup(log_format: str, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler()
    handler.addFilter(_Noise())
    handler.addFilter(_Context())
    handler.addFilter(_Scrub(secrets))
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # httpx logs every request at INFO, APScheduler every tick of its 30 s jobs: they would drown the log.
    for chatty in ("httpx", "apscheduler"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def quiet() -> None:
    """Only warnings and errors from here on: for commands that talk with a person in the terminal."""
    logging.getLogger().setLevel(logging.WARNING)


def scrub(secrets: Iterable[str]) -> None:
    """Add secrets learnt later (deploybot.yml's pager keys) to every handler's scrubber."""
    extra = list(secrets)
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, _Scrub):
                found.secrets = sorted(set(found.secrets) | {s for s in extra if len(s) >= 6}, key=len, reverse=True)
