"""Runs as terminal text: the numbered checklist, one item in full, one line per run."""

from __future__ import annotations

from datetime import datetime

from bot.checklists import Item, iter_items
from bot.models import ItemState, ItemStatus, ProbeStatus, Run, RunStatus
from bot.printable import visible
from bot.slack.blocks import duration, kind_title, progress

INDENT = "             "
_MARK = {ItemStatus.DONE: "[x]", ItemStatus.NA: "[n/a]", ItemStatus.OPEN: "[ ]"}


def shown(text: str) -> str:
    """A person's text for the terminal: control characters made visible, later lines indented."""
    return visible(text).replace("\n", "\n" + INDENT)


def stamp(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def status_word(run: Run) -> str:
    """How a run stands, in words: 'in progress', 'completed anyway', 'rolled back', ..."""
    if run.status == RunStatus.COMPLETE and run.overridden_items:
        return "completed anyway"
    return {
        RunStatus.ACTIVE: "in progress",
        RunStatus.COMPLETE: "completed",
        RunStatus.ABORTED: "aborted",
        RunStatus.FAILED: "failed",
        RunStatus.ROLLED_BACK: "rolled back",
    }.get(run.status, run.status)


def title(run: Run) -> str:
    """'Deployment v1.4.2 → production', 'Rollback of v1.4.2 → production (back to v1.4.1)', ..."""
    if run.kind == "rollback":
        back = f" (back to {visible(run.rollback_to)})" if run.rollback_to else " (back to the previous version)"
        return f"Rollback of {visible(run.version)} → {run.environment}{back}"
    if run.kind == "maintenance":
        return f"{visible(run.template.title)} — {visible(run.version)}"
    return f"{kind_title(run.kind)} {visible(run.version)} → {run.environment}"


def progress_text(run: Run) -> str:
    """'Deployment v1.2 → staging: in progress, 3/89 done, 1 N/A'."""
    done, na, total = progress(run)
    return f"{title(run)}: {status_word(run)}, {done}/{total} done" + (f", {na} N/A" if na else "")


def outcome(run: Run) -> str | None:
    """How a finished run ended, who said so, after how long, and why."""
    if run.is_active or run.finished_at is None:
        return None
    took = duration(run.started_at, run.finished_at)
    who = visible(run.finished_by or "someone")
    why = f": {shown(run.finish_reason)}" if run.finish_reason else ""
    if run.status == RunStatus.ABORTED:
        return f"ABORTED by {who} after {took}{why}"
    if run.status == RunStatus.FAILED:
        return f"FAILED: declared failed by {who} after {took}{why}. Its rollback checklist is the next run."
    if run.status == RunStatus.ROLLED_BACK:
        return f"ROLLED BACK: declared failed by {who} after {took}{why}"
    if run.overridden_items:
        return (
            f"COMPLETED ANYWAY by {who} after {took}{why}, with {len(run.overridden_items)} required item(s) open "
            "(marked [ ] below)"
        )
    return f"Completed in {took}."


def render(run: Run) -> str:
    """A run as readable text, items numbered in checklist order, with their commands and help."""
    lines = [
        f"Run #{run.id} · {progress_text(run)}",
        f"Started by {visible(run.started_by)} at {stamp(run.started_at)}",
    ]
    if (ended := outcome(run)) is not None:
        lines.append(ended)
    phase = group = None
    for number, (p, g, item) in enumerate(iter_items(run.template), 1):
        if p.title != phase:
            phase = p.title
            lines += ["", visible(phase)]
        if g.title != group:
            group = g.title
            lines.append(f"  {visible(group)}")
        state = run.state_of(item.id)
        assert state is not None
        lines.append(item_line(number, item, state))
        lines += _details(item, state)
    return "\n".join(lines)


def item_line(number: int, item: Item, state: ItemState) -> str:
    """`  12. [x] Text (optional) — alice 14:02: reason [probe passed: …]`."""
    line = f"    {number:>3}. {_MARK[state.status]} {visible(item.text)}" + ("" if item.required else " (optional)")
    if state.changed_by and state.changed_at:
        line += f" — {visible(state.changed_by)} {state.changed_at:%H:%M}"
    if state.na_reason:
        line += f": {shown(state.na_reason)}"
    if state.probe_status:
        said = shown(state.probe_reason or "checking")
        if state.probe_status == ProbeStatus.WAITING:
            said = "runs when its phase opens"
        line += f" [probe {state.probe_status}: {said}]"
    return line


def _details(item: Item, state: ItemState) -> list[str]:
    # As in Slack: the command always, the help while the item is open.
    lines = []
    if item.command:
        lines.append(f"{INDENT}$ {shown(item.command)}")
    if item.help and state.status == ItemStatus.OPEN:
        lines.append(f"{INDENT}{shown(item.help)}")
    if state.note:
        lines.append(f"{INDENT}note ({visible(state.note_by or 'someone')}): {shown(state.note)}")
    return lines


def item_text(number: int, item: Item) -> str:
    """'3. SSL certificate is obtained …' for echoes."""
    return f"{number}. {visible(item.text)}"


def one_item(run: Run, number: int) -> str:
    """One item in full: where it sits, its state, command, help, probe, note."""
    phase, group, item = list(iter_items(run.template))[number - 1]
    state = run.state_of(item.id)
    assert state is not None
    lines = [f"Run #{run.id} · {visible(phase.title)} › {visible(group.title)}", item_line(number, item, state)]
    if item.command:
        lines.append(f"{INDENT}$ {shown(item.command)}")
    if item.help:
        lines.append(f"{INDENT}{shown(item.help)}")
    if state.note:
        lines.append(f"{INDENT}note ({visible(state.note_by or 'someone')}): {shown(state.note)}")
        if state.note_count > 1:
            lines.append(f"{INDENT}({state.note_count - 1} earlier note(s): see 'export')")
    return "\n".join(lines)


def run_line(run: Run, now: datetime) -> str:
    """One line of `list`: number, what, how it stands, how long, who started it and when."""
    took = duration(run.started_at, run.finished_at or now) + (" so far" if run.is_active else "")
    where = f" · in {visible(run.channel_id)}" if run.channel_id else ""
    return (
        f"#{run.id} {title(run)} · {status_word(run)} · {took} · "
        f"started by {visible(run.started_by)} {stamp(run.started_at)}{where}"
    )
