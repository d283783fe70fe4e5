"""`deploybot ci gate`: long-poll one run's gate, print each change as it happens, end with the gate's verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.ci.client import Api
from bot.ci.exits import CiError, Exit
from bot.ci.text import inert

LONGEST_POLL = 30  # seconds the server holds one request at most
EARLY_PAUSE = 1.0  # seconds before polling again after an unchanged answer came back at once (doubles to 4)
_ENDED = {"failed": "failed", "rolled_back": "was rolled back", "aborted": "was aborted"}
_CLOSE = {"Connection": "close"}
_MARK = {"done": "done", "na": "n/a", "failed": "FAILED", "open": "reopened"}

Item = dict[str, Any]


def wait_at_gate(
    api: Api,
    run_id: int,
    phase: str | None,
    timeout: float,
    out: TextIO,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Exit:
    """Wait until the gate of `phase` (the whole run if None) opens, fails or `timeout` seconds pass."""
    deadline = clock() + timeout
    params: dict[str, str | int] = {"phase": phase} if phase else {}
    answer = _poll(api, run_id, params, deadline, wait=0)
    gate, run = answer["gate"], answer["run"]
    say = _printer(out)
    scope = _scope(run, phase)
    say(f"run {run['id']}: {describe_run(run)}")
    if gate["state"] == "waiting":
        say(f"waiting for {len(gate['waiting_for'])} item(s) of {scope}:")
        for item in gate["waiting_for"]:
            say(f"  {_label(item)}{_reporter(item)}")
    seen = _items(run, phase)
    early = 0  # unchanged answers in a row that came back long before the wait asked for
    while gate["state"] == "waiting":
        remaining = deadline - clock()
        if remaining <= 0:
            names = ", ".join(f"#{item['number']}" for item in gate["waiting_for"])
            say(f"timed out after {_duration(timeout)}, still waiting for {names} of {scope}")
            return Exit.TIMED_OUT
        params["after"] = run["rev"]
        wait = min(LONGEST_POLL, max(1, math.ceil(remaining)))
        asked = clock()
        answer = _poll(api, run_id, params, deadline, wait)
        if answer["run"]["rev"] == run["rev"] and clock() - asked < wait / 2:
            # A replica with no room for another waiting gate answers at once: pause, or this loop
            # would spin on it (and then on the token's rate limit).
            early += 1
            sleep(max(0.0, min(deadline - clock(), EARLY_PAUSE * 2 ** min(early - 1, 2))))
        else:
            early = 0
        before = len(gate["waiting_for"])
        gate, run = answer["gate"], answer["run"]
        now = _items(run, phase)
        for item_id, item in now.items():
            if item_id in seen and _shown(seen[item_id]) != _shown(item):
                say(_change(item))
        seen = now
        if gate["state"] == "waiting" and len(gate["waiting_for"]) != before:
            say(f"  {len(gate['waiting_for'])} item(s) of {scope} left")
    return _verdict(gate, run, scope, say)


def describe_run(run: dict[str, Any]) -> str:
    """`v1.4.2 to production, active https://…`: the run in a few words."""
    where = f" {inert(run['url'], 300)}" if run.get("url") else ""
    return f"{inert(run['version'])} to {inert(run['environment'])}, {inert(run['status'])}{where}"


def _poll(api: Api, run_id: int, params: dict[str, str | int], deadline: float, wait: int) -> dict[str, Any]:
    """One gate request (held up to `wait` seconds by the server)."""
    # A connection per poll: between polls a pipeline holds none of the server's connections idle.
    query = {**params, "wait": wait}
    _, body = api.call("GET", f"runs/{run_id}/gate", params=query, deadline=deadline, wait=wait, headers=_CLOSE)
    if not isinstance(body.get("gate"), dict) or not isinstance(body.get("run"), dict):
        raise CiError(f"{api.url} answered the gate without a gate and a run: is it deploybot?", Exit.INVALID)
    return body


def _verdict(gate: dict[str, Any], run: dict[str, Any], scope: str, say: Callable[[str], None]) -> Exit:
    """Say how the gate ended; the exit code for it."""
    state = gate["state"]
    if state == "open":
        say(f"gate open: every required item of {scope} is done or N/A")
        return Exit.OK
    if state == "aborted" or run["status"] in _ENDED:
        say(f"gate closed: run {run['id']} {_ENDED.get(run['status'], 'was aborted')}")
        return Exit.RUN_ENDED
    if state == "failed":
        for item in gate.get("failed", []):
            say(f"gate closed: {_label(item)} failed{_detail(item)}")
        return Exit.ITEM_FAILED
    raise CiError(f"deploybot answered a gate state this client does not know: {inert(state)}", Exit.INVALID)


def _scope(run: dict[str, Any], phase: str | None) -> str:
    """The gate's phase by name, or the whole run."""
    if phase is None:
        return "the run"
    names = [p["name"] for p in run["phases"] if p["id"] == phase]
    return f"{inert(names[0])} (and the phases before it)" if names else inert(phase)


def _items(run: dict[str, Any], phase: str | None) -> dict[str, Item]:
    """The items the gate depends on: its phase's and those of the phases before it."""
    items: dict[str, Item] = {}
    for each in run["phases"]:
        items.update((item["id"], item) for item in each["items"])
        if each["id"] == phase:
            break
    return items


def _shown(item: Item) -> tuple[Any, ...]:
    """What a change line reports: a difference here is a change worth a line."""
    probe = item.get("probe") or {}
    return (
        item["status"],
        (item.get("by") or {}).get("id"),
        item.get("reported_by"),
        item.get("at"),
        probe.get("status"),
    )


def _change(item: Item) -> str:
    """One line: when, what became of which item, by whom, and why."""
    at = _clock_time(item.get("at"))
    probe = item.get("probe") or {}
    if item["status"] == "open" and probe.get("status") == "failed":
        return f"{at}probe failed  {_label(item)}: {inert(probe.get('detail') or '')}"
    mark = _MARK.get(item["status"], inert(item["status"]))
    who = _who(item)
    return f"{at}{mark}  {_label(item)}{f'  by {who}' if who else ''}{_detail(item)}"


def _label(item: Item) -> str:
    return f"#{item['number']} {inert(item['text'], 120)}"


def _reporter(item: Item) -> str:
    return f" (reported by {inert(item['reported_by'], 60)})" if item.get("reported_by") else ""


def _who(item: Item) -> str:
    by = item.get("by") or {}
    name, user = by.get("name"), by.get("id")
    if name and user and name != user:
        return f"{inert(name, 80)} ({inert(user, 40)})"
    return inert(name or user or item.get("reported_by") or "", 80)


def _detail(item: Item) -> str:
    """The reason, summary, evidence link and probe verdict an item carries, on the same line."""
    parts = [item.get("reason"), item.get("summary"), item.get("evidence_url")]
    probe = item.get("probe") or {}
    if probe.get("status") == "failed":
        parts.append(f"probe: {probe.get('detail') or 'failed'}")
    shown = [inert(part, 200) for part in parts if part]
    return f": {' | '.join(shown)}" if shown else ""


def _clock_time(at: object) -> str:
    """`HH:MM:SSZ ` of an ISO-8601 time, or nothing when there is none."""
    if not isinstance(at, str):
        return ""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%H:%M:%SZ} "


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _printer(out: TextIO) -> Callable[[str], None]:
    """Print one line and flush it: a CI log shows it while the job waits, not when it ends."""

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say
