"""The chat.update budget every replica spends from, and the 429 pause they share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import db
from bot.pacing import BURST, Budget


def replicas(database_url: str, count: int) -> list[Budget]:
    """One budget per replica, each with its own engine, all on the same database."""
    engines = [db.make_engine(database_url) for _ in range(count)]
    db.upgrade(engines[0])
    return [Budget(db.make_sessions(engine), "chat.update", per_minute=60, burst=BURST) for engine in engines]


def test_a_429_seen_by_one_replica_holds_every_replica_back_for_its_retry_after(database_url: str) -> None:
    first, second = replicas(database_url, 2)
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert first.take(now) is None and second.take(now) is None  # a full bucket grants both
    first.pause(now, 6.0)
    for budget in (first, second):
        wait = budget.take(now + timedelta(seconds=5.9))
        assert wait is not None and wait == now + timedelta(seconds=6), wait
    assert second.take(now + timedelta(seconds=6)) is None
    assert first.take(now + timedelta(seconds=6)) is not None  # one token a second at 60 a minute


def test_the_budget_grants_a_burst_then_its_rate_across_replicas(database_url: str) -> None:
    budgets = replicas(database_url, 3)
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    granted = [budgets[n % 3].take(now) is None for n in range(int(BURST) + 3)]
    assert granted == [True] * int(BURST) + [False] * 3
    assert budgets[1].take(now + timedelta(seconds=1)) is None
