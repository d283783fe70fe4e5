"""Prometheus metrics, kept in memory per process and served as text on GET /metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.models import Page, PageDelivery, PageStatus, ProbeResult, ReminderSlot

# Acknowledgement latency buckets, in seconds: Slack's deadline is 3 s.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0)

HELP = {
    "requests": "Slack requests handled, by kind (command, block_actions, view_submission, event_callback…)",
    "requests_rejected": "Slack requests refused before any listener ran, by reason",
    "clicks": "Button and menu clicks, by action_id",
    "slack_api_calls": "Slack Web API calls, by method",
    "slack_api_errors": "Slack Web API calls that failed, by method and error",
    "slack_api_ratelimited": "Slack Web API calls answered 429, by method",
}

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Counters with labels and one latency histogram; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, Labels]] = Counter()
        self._ack_buckets = [0] * len(ACK_BUCKETS)
        self._ack_count = 0
        self._ack_sum = 0.0

    def count(self, name: str, **labels: str) -> None:
        with self._lock:
            self._counts[(name, tuple(sorted(labels.items())))] += 1

    def value(self, name: str, **labels: str) -> int:
        with self._lock:
            return self._counts[(name, tuple(sorted(labels.items())))]

    def observe_ack(self, seconds: float) -> None:
        with self._lock:
            self._ack_count += 1
            self._ack_sum += seconds
            for n, bound in enumerate(ACK_BUCKETS):
                if seconds <= bound:
                    self._ack_buckets[n] += 1

    def render(self, gauges: Mapping[str, float]) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            counts = sorted(self._counts.items())
            buckets, total, summed = list(self._ack_buckets), self._ack_count, self._ack_sum
        for name in sorted({name for (name, _), _ in counts}):
            lines += [f"# HELP deploybot_{name}_total {HELP.get(name, name)}", f"# TYPE deploybot_{name}_total counter"]
            lines += [f"deploybot_{n}_total{_labels(labels)} {v}" for (n, labels), v in counts if n == name]
        lines += [
            "# HELP deploybot_ack_seconds Time from receiving a Slack request to its acknowledgement",
            "# TYPE deploybot_ack_seconds histogram",
        ]
        lines += [f'deploybot_ack_seconds_bucket{{le="{b}"}} {c}' for b, c in zip(ACK_BUCKETS, buckets, strict=True)]
        lines += [
            f'deploybot_ack_seconds_bucket{{le="+Inf"}} {total}',
            f"deploybot_ack_seconds_sum {summed:.6f}",
            f"deploybot_ack_seconds_count {total}",
        ]
        typed: set[str] = set()
        for name, value in gauges.items():  # a name may carry labels: 'pages_sent{via="dm"}'
            base = name.split("{", 1)[0]
            if base not in typed:
                typed.add(base)
                lines.append(f"# TYPE deploybot_{base} gauge")
            lines.append(f"deploybot_{name} {value}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    escaped = (f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + ",".join(escaped) + "}"


def label_value(value: str) -> str:
    """A label value escaped for the exposition format."""
    return _escape(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class InstrumentedWebClient(WebClient):
    """A WebClient that counts its calls, errors and 429s by method."""

    def __init__(self, metrics: Metrics, **kwargs: Any):
        super().__init__(**kwargs)
        self._metrics = metrics

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            self.record(api_method, str(exc.response.get("error")), ratelimited=exc.response.status_code == 429)
            raise
        except OSError as exc:
            self.record(api_method, type(exc).__name__)
            raise
        self.record(api_method)
        return response

    def record(self, method: str, error: str | None = None, *, ratelimited: bool = False) -> None:
        """Count one call to Slack (a Web API method, or a post to a response_url) and how it failed."""
        self._metrics.count("slack_api_calls", method=method)
        if ratelimited:
            self._metrics.count("slack_api_ratelimited", method=method)
        if error is not None:
            self._metrics.count("slack_api_errors", method=method, error=error)


def database_gauges(session: Session) -> dict[str, float]:
    """Totals every replica shares, read from the database at scrape time."""
    gauges: dict[str, float] = {}
    for ok, n in session.execute(select(ProbeResult.ok, func.count()).group_by(ProbeResult.ok)):
        gauges[f'probe_results{{outcome="{"passed" if ok else "failed"}"}}'] = n
    slots = select(ReminderSlot.cadence, func.count()).where(ReminderSlot.status != "missed")
    for cadence, n in session.execute(slots.group_by(ReminderSlot.cadence)):
        gauges[f'reminders_posted{{cadence="{_escape(cadence)}"}}'] = n
    sent = select(PageDelivery.target, PageDelivery.action).where(PageDelivery.sent_at.is_not(None))
    counted: Counter[tuple[str, str]] = Counter((t.split(":", 1)[0], a) for t, a in session.execute(sent))
    for (via, action), n in sorted(counted.items()):
        gauges[f'pages_sent{{via="{via}",action="{action}"}}'] = n
    gauges["pages_open"] = (
        session.scalar(select(func.count()).select_from(Page).where(Page.status != PageStatus.RESOLVED)) or 0
    )
    return gauges
