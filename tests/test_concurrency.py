"""No lost ticks, messages that converge, coalesced updates, honoured 429s, retried failures, several replicas."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

from sqlalchemy import select

from bot.models import Event, ItemState, Message, Run
from bot.slack import blocks
from tests.conftest import Running, launched
from tests.slack_requests import SlackUser
from tests.test_slack_flow import CHANNEL, click_item, current, item_block, start


def converged(running: Running, parent_ts: str) -> None:
    """Every message in Slack shows exactly what the database says now."""
    with running.app.sessions() as session:
        run = session.scalars(select(Run)).one()
        parts = blocks.layout(run.template)
        rows = {m.part: m.ts for m in session.scalars(select(Message).where(Message.run_id == run.id))}
        expected = {rows[0]: blocks.parent_blocks(run)}
        expected |= {rows[n]: blocks.part_blocks(run, part, n) for n, part in enumerate(parts, 1)}
    shown = {m["ts"]: m["blocks"] for m in current(running, parent_ts)}
    assert shown == expected


def burst(users: list[SlackUser], clicks: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> list[int]:
    """Fire all clicks at once (each from its own thread, all released together); return the statuses."""
    gate = threading.Barrier(len(clicks))

    def fire(n: int) -> int:
        action_id, value, where = clicks[n]
        gate.wait()
        return users[n % len(users)].click(action_id, value, **where).status_code

    with ThreadPoolExecutor(len(clicks)) as pool:
        return list(pool.map(fire, range(len(clicks))))


def stale_clicks(
    messages: list[dict[str, Any]], item_ids: list[str]
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """One 'Done' click per item by its own user, every one from the messages as first posted."""
    out = []
    for n, item_id in enumerate(item_ids):
        message, block = item_block(messages, item_id)
        out.append(
            (
                block["accessory"]["action_id"],
                block["accessory"]["value"],
                {
                    "user": f"U{500 + n}",
                    "channel": CHANNEL,
                    "message_ts": message["ts"],
                    "thread_ts": message["thread_ts"],
                },
            )
        )
    return out


def thirty_items(messages: list[dict[str, Any]]) -> list[str]:
    """30 items spread over the three checklist messages."""
    ids = [b["block_id"][5:] for m in messages[1:] for b in m["blocks"] if b.get("block_id", "").startswith("item.")]
    return ids[::3][:30]


def test_thirty_users_thirty_items_at_once_from_stale_views(running: Running) -> None:
    messages = start(running)
    items = thirty_items(messages)
    statuses = burst([running.slack], stale_clicks(messages, items))
    assert statuses == [200] * 30
    with running.app.sessions() as session:
        done = {s.item_id: s.changed_by for s in session.scalars(select(ItemState).where(ItemState.status == "done"))}
        assert done == {item: f"U{500 + n}" for n, item in enumerate(items)}
        # A tick of an item a pipeline reports is recorded as an override of it.
        ticks = select(Event).where(Event.kind.in_(("item.done", "item.override")))
        assert len(session.scalars(ticks).all()) == 30
    running.settled()
    converged(running, messages[0]["ts"])
    final = current(running, messages[0]["ts"])
    for n, item in enumerate(items):
        assert f"<@U{500 + n}>" in item_block(final, item)[1]["text"]["text"]
    assert "*30 / 89* done" in str(final[0]["blocks"])


def test_a_burst_is_coalesced_into_a_few_spaced_updates(running: Running) -> None:
    messages = start(running)
    interval = 0.3  # DEPLOYBOT_RENDER_INTERVAL in the test settings
    assert running.app.settings.render_interval == interval
    before = len(running.fake.calls_of("chat.update"))
    began = time.monotonic()
    for action_id, value, where in stale_clicks(messages, thirty_items(messages)):
        assert running.slack.click(action_id, value, **where).status_code == 200
        time.sleep(0.04)  # a steady stream of clicks for about 1.5 s
    took = time.monotonic() - began
    running.settled()
    updates = running.fake.calls_of("chat.update")[before:]
    by_message: dict[str, list[float]] = defaultdict(list)
    for call in updates:
        by_message[call.args["ts"]].append(call.at)
    assert len(by_message) == 4  # the parent and the three checklist parts all changed
    for times in by_message.values():
        # One update per click would be up to 30 per message; spacing caps it.
        assert len(times) <= took / interval + 2, (len(times), took)
        assert all(b - a >= interval * 0.95 for a, b in pairwise(times)), times
    assert running.fake.overlaps == []
    converged(running, messages[0]["ts"])


def test_429_retry_after_is_honoured_and_the_message_still_converges(running: Running) -> None:
    messages = start(running)
    running.fake.fail("chat.update", 2, status=429, retry_after=2)
    click_item(running, messages, "all-tests-are-passing", user="U42")
    running.settled(timeout=20)
    attempts = [c for c in running.fake.calls if c.method == "chat.update"]
    assert [c.status for c in attempts[:2]] == [429, 429]
    for n, refused in enumerate(attempts[:2]):
        # Nothing goes to chat.update until Retry-After has passed, for this message or any other.
        assert all(later.at - refused.at >= 2.0 for later in attempts[n + 1 :])
    assert attempts[-1].status == 200
    converged(running, messages[0]["ts"])


def test_slack_outage_delays_messages_but_loses_none(running: Running) -> None:
    running.fake.fail("chat.postMessage", 3, status=503, retry_after=None, error="service_unavailable")
    running.slack.command("start v2.0.0 staging", channel=CHANNEL)
    running.settled(timeout=30)
    posts = running.fake.calls_of("chat.postMessage")
    assert len(posts) == 4  # parent + three parts, each posted once despite the failures
    running.fake.fail("chat.update", 3, status=500, retry_after=None, error="internal_error")
    messages = current(
        running,
        running.fake.calls_of("chat.postMessage")[0].args.get("ts")
        or next(ts for (_, ts), m in running.fake.messages.items() if not m["thread_ts"]),
    )
    click_item(running, messages, "all-tests-are-passing", user="U43")
    running.settled(timeout=30)
    converged(running, messages[0]["ts"])
    with running.app.sessions() as session:
        assert all(m.last_error is None and m.attempts == 0 for m in session.scalars(select(Message)))


def test_two_replicas_share_the_database_and_never_update_one_message_at_once(
    running: Running, database_url: str
) -> None:
    running.fake.latency = 0.05  # make overlapping updates likely, were they possible
    with launched(database_url, running.fake) as other:
        messages = start(running)
        statuses = burst([running.slack, other.slack], stale_clicks(messages, thirty_items(messages)))
        assert statuses == [200] * 30
        running.settled(timeout=30)
        converged(running, messages[0]["ts"])
        assert running.fake.overlaps == []
        assert len(running.fake.calls_of("chat.postMessage")) == 4


def test_a_render_interrupted_by_a_crash_is_finished_by_whoever_comes_next(running: Running, database_url: str) -> None:
    messages = start(running)
    running.app.publisher.stop()
    click_item(running, messages, "all-tests-are-passing", user="U44")
    with running.app.sessions.begin() as session:
        # A replica claimed the parent and died: its lease is in the past now.
        parent = session.scalars(select(Message).where(Message.part == 0)).one()
        parent.lease_until = running.app.publisher._clock().replace(year=2000)
    with launched(database_url, running.fake) as fresh:
        fresh.wait_for(lambda: fresh.app.publisher.pending() == 0, what="the new publisher to catch up")
        converged(running, messages[0]["ts"])


def test_a_channel_the_bot_cannot_post_in_is_explained_to_the_starter(running: Running) -> None:
    running.fake.fail("chat.postMessage", 2, status=200, retry_after=None, error="not_in_channel", channel="CPRIVATE")
    running.slack.command("start v5.0.0", channel="CPRIVATE", user="U61")
    running.settled(timeout=20)
    dms = [c.args for c in running.fake.calls_of("chat.postMessage") if c.args["channel"] == "U61"]
    assert len(dms) == 1  # told once, though it failed twice
    assert "I could not post run #1 (v5.0.0 → production) in <#CPRIVATE>: Slack says `not_in_channel`" in dms[0]["text"]
    assert "/invite @deploybot" in dms[0]["text"]
    assert len([c for c in running.fake.calls_of("chat.postMessage") if c.args["channel"] == "CPRIVATE"]) == 4


def test_a_30_second_slack_outage_delays_messages_but_loses_none(running: Running) -> None:
    messages = start(running)
    running.fake.outage(30)
    started = time.monotonic()
    for n, item_id in enumerate(["all-tests-are-passing", "code-is-reviewed-and-approved", "dependencies-are-updated"]):
        assert click_item(running, messages, item_id, user=f"U5{n}").status_code == 200  # acks need no Slack
    assert running.slack.command("start v2.0 staging", channel="C200").status_code == 200
    time.sleep(2)
    assert running.app.publisher.pending() > 0  # nothing got through meanwhile
    running.settled(timeout=90)
    assert time.monotonic() - started >= 29  # delayed by the outage…
    final = running.fake.thread(CHANNEL, messages[0]["ts"])
    for n, item_id in enumerate(["all-tests-are-passing", "code-is-reviewed-and-approved", "dependencies-are-updated"]):
        _, block = item_block(final, item_id)
        assert f"<@U5{n}>" in block["text"]["text"]  # …but nothing is lost
    assert [m for (ch, _), m in running.fake.messages.items() if ch == "C200" and not m["thread_ts"]]
    failures = [c for c in running.fake.calls if c.status == 503]
    assert failures and all(c.at < running.fake.down_until + 0.01 for c in failures)
