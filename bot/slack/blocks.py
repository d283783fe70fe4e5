"""Block Kit renderers: pure functions from database state to Slack blocks."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import phases
from bot.checklists import Group, Item, Template
from bot.models import ItemState, ItemStatus, ProbeStatus, Run, RunStatus, is_pipeline
from bot.slack import ids, limits
from bot.slack.mrkdwn import escape, mention

Block = dict[str, Any]

# Each checklist part keeps two blocks for its header and its action buttons.
ITEM_BLOCKS_PER_PART = limits.BLOCKS_PER_MESSAGE - 2
BAR_WIDTH = 20
# Escaping can quintuple a reason or note ("&" becomes "&amp;"); clip what is shown.
USER_TEXT = 700
PROBE_TEXT = 300
REPORT_TEXT = 300
REPORT_LINK = 600
_ICONS = {ItemStatus.OPEN: "⬜", ItemStatus.DONE: "✅", ItemStatus.NA: "➖"}
_KIND_TITLES = {"deploy": "Deployment", "maintenance": "Maintenance", "rollback": "Rollback"}


@dataclass
class Part:
    """One threaded message of a run: a slice of one phase, whole groups where they fit."""

    title: str
    groups: list[tuple[Group, list[Item]]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(1 + len(items) for _, items in self.groups)

    @property
    def items(self) -> list[Item]:
        return [item for _, items in self.groups for item in items]


def layout(template: Template) -> list[Part]:
    """Split a template into message-sized parts; depends on the template only, never on state."""
    parts: list[Part] = []
    for phase in template.phases:
        phase_parts = [Part(phase.title)]
        for group in phase.groups:
            items = list(group.items)
            while items:
                room = ITEM_BLOCKS_PER_PART - phase_parts[-1].size - 1  # one block for the group title
                if room < 1 or (room < len(items) and phase_parts[-1].groups and len(items) <= 20):
                    # Start a new message rather than strand a short group's head in the old one.
                    phase_parts.append(Part(phase.title))
                    continue
                phase_parts[-1].groups.append((group, items[:room]))
                items = items[room:]
        if len(phase_parts) > 1:
            for n, part in enumerate(phase_parts, 1):
                part.title = f"{phase.title} ({n}/{len(phase_parts)})"
        parts += phase_parts
    return parts


def quote(text: str, limit: int = USER_TEXT) -> str:
    """Escape a person's text and clip it, never cutting an entity in half."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    return re.sub(r"&[a-z]*$", "", escaped[: limit - 1]) + "…"


def when(at: datetime) -> str:
    """A timestamp every reader sees in their own time zone."""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def duration(start: datetime, end: datetime) -> str:
    minutes = int((end - start).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def button(text: str, action_id: str, value: dict[str, Any], style: str | None = None) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": json.dumps(value, separators=(",", ":")),
    }
    if style:
        element["style"] = style
    return element


def _option(text: str, value: dict[str, Any]) -> Block:
    return {
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": json.dumps(value, separators=(",", ":")),
    }


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": text}


def section(text: str, **extra: Any) -> Block:
    # Clipped as a last resort: the callers keep their texts well under Slack's limit.
    return {"type": "section", "text": _mrkdwn(text[: limits.SECTION_TEXT]), **extra}


def context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text[: limits.CONTEXT_TEXT])]}


# --- the parent message ----------------------------------------------------------------------------


def progress(run: Run) -> tuple[int, int, int]:
    """(done, not applicable, total) over all items."""
    done = sum(s.status == ItemStatus.DONE for s in run.items)
    na = sum(s.status == ItemStatus.NA for s in run.items)
    return done, na, len(run.items)


def progress_bar(run: Run) -> str:
    done, na, total = progress(run)
    return bar(done + na, total)


def bar(resolved: int, total: int) -> str:
    """A fixed-width text bar: how many of `total` items are resolved."""
    filled = round(BAR_WIDTH * resolved / total) if total else BAR_WIDTH
    return "`" + "█" * filled + "░" * (BAR_WIDTH - filled) + "`"


def kind_title(kind: str) -> str:
    """'Deployment', 'Maintenance' or 'Rollback'."""
    return _KIND_TITLES.get(kind, kind.title())


def status_line(run: Run) -> str:
    """One line of text saying where a run stands, for summaries and notifications."""
    done, na, total = progress(run)
    label = kind_title(run.kind)
    na_text = f", {na} N/A" if na else ""
    return f"{label} {run.version} → {run.environment}: {run.status}, {done}/{total} done{na_text}"


def parent_blocks(run: Run, comparison: str | None = None, names: Mapping[str, str] | None = None) -> list[Block]:
    """The run's summary message: who, what, where, how far, how it ended, and (when given) how it
    compares with the last release. `names` names who Slack cannot mention (a pipeline, a terminal user)."""
    names = names or {}
    done, na, total = progress(run)
    label = kind_title(run.kind)
    status = {
        RunStatus.ACTIVE: ":large_blue_circle: In progress",
        RunStatus.COMPLETE: ":white_check_mark: Complete",
        RunStatus.ABORTED: ":octagonal_sign: Aborted",
        RunStatus.FAILED: ":x: Failed",
        RunStatus.ROLLED_BACK: ":leftwards_arrow_with_hook: Rolled back",
    }.get(run.status, run.status)
    title = (
        f"{run.template.title} — {run.version}"
        if run.kind == "maintenance"
        else f"{label} {run.version} → {run.environment}"
    )
    header = title[: limits.HEADER_TEXT]
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "section",
            "fields": [
                _mrkdwn(f"*Version*\n{escape(run.version)}{_rollback_target(run)}"),
                _mrkdwn(f"*Environment*\n{escape(run.environment)}"),
                _mrkdwn(f"*Started by*\n{mention(run.started_by, names.get(run.started_by))} {when(run.started_at)}"),
                _mrkdwn(f"*Status*\n{status}"),
            ],
        },
        section(
            f"{progress_bar(run)}  *{done} / {total}* done"
            + (f" · {na} N/A" if na else "")
            + _open_required_text(run)
            + _probe_summary(run)
        ),
    ]
    blocks += _outcome_blocks(run, label, names)
    if comparison:
        blocks.append(context(f":scales: {comparison}"[: limits.CONTEXT_TEXT]))
    if not run.is_active:
        value = {"run": run.id}
        blocks.append({"type": "actions", "block_id": "export", "elements": [{
            "type": "overflow", "action_id": ids.EXPORT,
            "options": [_option(f"Export as {name}", {**value, "format": fmt})
                        for fmt, name in (("md", "Markdown"), ("csv", "CSV"), ("json", "JSON"))],
        }]})  # fmt: skip
    if run.is_active:
        blocks.append(
            {
                "type": "actions",
                "block_id": "run",
                "elements": [
                    {
                        **button("Complete anyway…", ids.COMPLETE_ANYWAY, {"run": run.id}, "danger"),
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Complete anyway?"},
                            "text": _mrkdwn(
                                "Required items are still open. Completing records you as the person "
                                "who overrode them, and lists them in the run."
                            ),
                            "confirm": {"type": "plain_text", "text": "Complete anyway"},
                            "deny": {"type": "plain_text", "text": "Keep going"},
                            "style": "danger",
                        },
                    },
                    *([button("Re-run probes", ids.RERUN_PROBES, {"run": run.id})] if _has_probes(run) else []),
                    *(
                        [button("Deployment failed…", ids.FAIL_DIALOG, {"run": run.id}, "danger")]
                        if run.kind == "deploy"
                        else []
                    ),
                    *(
                        [button("Page on-call", ids.PAGE_ONCALL, {"run": run.id}, "danger")]
                        if run.kind == "rollback"
                        else []
                    ),
                ],
            }
        )
    blocks.append(context(f"Run #{run.id} · the checklist is in the thread below"))
    return blocks


def _rollback_target(run: Run) -> str:
    if run.kind != "rollback":
        return ""
    if run.rollback_to:
        return f"\nback to *{escape(run.rollback_to)}*"
    return f"\nback to the previous version (no earlier complete deployment to {escape(run.environment)} on record)"


def _probe_summary(run: Run) -> str:
    statuses = [i.probe_status for i in run.items if i.probe_status]
    if not statuses:
        if run.is_active and any(item.probe for item in run.template.items):
            return f"\n:mag: Probes are off: add environment `{run.environment}` to deploybot.yml to turn them on"
        return ""
    parts = [f"{statuses.count(ProbeStatus.PASSED)} passed", f"{statuses.count(ProbeStatus.FAILED)} failed"]
    if pending := statuses.count(ProbeStatus.PENDING):
        parts.append(f"{pending} checking")
    if waiting := statuses.count(ProbeStatus.WAITING):
        parts.append(f"{waiting} waiting for their phase")
    return "\n:mag: Probes: " + " · ".join(parts)


def _has_probes(run: Run) -> bool:
    return any(i.probe_status for i in run.items)


def _open_required_text(run: Run) -> str:
    if not run.is_active:
        return ""
    open_required = sum(s.required and s.status == ItemStatus.OPEN for s in run.items)
    return f"\n{open_required} required item{'s' if open_required != 1 else ''} still open"


def _outcome_blocks(run: Run, label: str, names: Mapping[str, str]) -> list[Block]:
    if run.is_active or run.finished_at is None:
        return []
    finisher = mention(run.finished_by, names.get(run.finished_by or ""))
    took = duration(run.started_at, run.finished_at)
    reason = quote(run.finish_reason or "")
    if run.status == RunStatus.ABORTED:
        text = f":octagonal_sign: *Aborted* by {finisher} after {took}: _{reason}_"
    elif run.status == RunStatus.FAILED:
        text = (
            f":x: *Deployment failed*, declared by {finisher} after {took}: _{reason}_\n"
            "The rollback checklist is posted in this channel."
        )
    elif run.status == RunStatus.ROLLED_BACK:
        text = f":leftwards_arrow_with_hook: *Rolled back.* Declared failed by {finisher} after {took}: _{reason}_"
    elif run.overridden_items:
        texts = {i.id: i.text for i in run.template.items}
        shown = [texts.get(i, i) for i in run.overridden_items[:10]]
        more = len(run.overridden_items) - len(shown)
        listing = "\n".join(f"• {t}" for t in shown) + (f"\n• …and {more} more" if more > 0 else "")
        text = (
            f":warning: *{label} completed anyway* by {finisher} in {took}, with "
            f"{len(run.overridden_items)} required item(s) open:\n{listing}"
        )
    else:
        text = f":tada: *{label} complete* in {took}."
    deployer = mention(run.started_by, names.get(run.started_by))
    footer = (
        f"*Last Updated*: {when(run.finished_at)}  ·  *Deployed By*: {deployer}  ·  *Version*: {escape(run.version)}"
    )
    return [section(text[: limits.SECTION_TEXT]), context(footer)]


# --- the checklist parts ---------------------------------------------------------------------------


def part_blocks(run: Run, part: Part, number: int) -> list[Block]:
    """One threaded checklist message: a header, its groups and items, and its action buttons."""
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text", "text": part.title[:150]}}]
    for group, items in part.groups:
        blocks.append(section(f"*{group.title}*"))
        for item in items:
            state = run.state_of(item.id)
            assert state is not None, f"run {run.id} lacks item {item.id}"
            blocks.append(_item_block(run, item, state))
    if run.is_active:
        value = {"run": run.id, "part": number}
        blocks.append(
            {
                "type": "actions",
                "block_id": f"part.{number}",
                "elements": [
                    button("Mark N/A…", ids.NA_DIALOG, value),
                    button("Add note…", ids.NOTE_DIALOG, value),
                ],
            }
        )
    return blocks


def _item_block(run: Run, item: Item, state: ItemState) -> Block:
    lines = [_item_line(run, item, state)]
    if item.command:
        lines.append(f"`{item.command}`")
    if item.help and state.status == ItemStatus.OPEN and state.report_status is None:
        lines.append(f"_{item.help}_")
    if state.overrode_probe:
        lines.append(f":warning: done although its probe failed: {quote(state.probe_reason or '', PROBE_TEXT)}")
    elif state.overrode_pipeline:
        lines.append(f":warning: ticked by a person, not reported done by {_pipeline_name(state)} (override)")
    if state.report_status is not None and (evidence := _evidence(state)):
        lines.append(evidence)
    elif state.status == ItemStatus.DONE and state.probe_status == ProbeStatus.PASSED:
        lines.append(f":mag: {quote(state.probe_reason or '', PROBE_TEXT)}{_checked(run, state)}")
    if state.note and state.note_by and state.note_at:
        earlier = f" _(+{state.note_count - 1} earlier)_" if state.note_count > 1 else ""
        lines.append(f":memo: {mention(state.note_by)} {when(state.note_at)}: {quote(state.note)}{earlier}")
    block = section("\n".join(lines), block_id=f"item.{item.id}")
    if run.is_active:
        value = {"run": run.id, "item": item.id}
        if state.status == ItemStatus.OPEN and state.probe_status == ProbeStatus.FAILED:
            block["accessory"] = {
                "type": "overflow",
                "action_id": ids.ITEM_MENU,
                "options": [
                    _option("Done anyway (override)", {**value, "do": "done"}),
                    _option("Re-run the probe", {**value, "do": "rerun"}),
                ],
            }
        elif state.status == ItemStatus.OPEN:
            block["accessory"] = button("Done", ids.ITEM_DONE, value, "primary")
        else:
            block["accessory"] = button("Undo" if state.status == ItemStatus.DONE else "Reopen", ids.ITEM_REOPEN, value)
    return block


def _checked(run: Run, state: ItemState) -> str:
    """When a probe's verdict was taken and which phase the run had opened then."""
    title = phases.title(run.template, state.probe_phase)
    if title is None or state.probe_at is None:
        return ""  # a verdict from before deploybot recorded phases
    return f"  ·  checked {when(state.probe_at)}, {title} open"


def _pipeline_name(state: ItemState) -> str:
    """Who reports an item: "CI" for any pipeline of the channel, else the named pipeline."""
    return "CI" if state.reported_by in (None, "ci") else f"*{escape(state.reported_by)}*"


def _evidence(state: ItemState) -> str:
    """The pipeline's evidence link and one-line summary; a link only to http(s), never a mention."""
    said = f"_{quote(state.report_summary, REPORT_TEXT)}_" if state.report_summary else ""
    url = escape(state.report_url or "")
    # A link cannot be clipped like text: one too long once escaped is named, not shown.
    link = (f"<{url}|evidence>" if len(url) <= REPORT_LINK else "evidence: a link too long to show") if url else ""
    return ":link: " + "  ·  ".join(part for part in (link, said) if part) if link or said else ""


def _item_line(run: Run, item: Item, state: ItemState) -> str:
    icon = _ICONS[state.status]
    optional = "" if item.required else " _(optional)_"
    if state.status == ItemStatus.OPEN and state.report_status == "failed" and state.report_at:
        by = quote(state.report_by or "CI", 100)
        return f":x: {item.text}{optional}  ·  *{by}* reported it failed {when(state.report_at)}"
    if state.status == ItemStatus.OPEN and state.reported_by is not None and state.probe_status is None:
        return f"{icon} {item.text}{optional}  ·  _waiting for {_pipeline_name(state)}_"
    if state.status == ItemStatus.OPEN:
        if state.probe_status == ProbeStatus.PENDING:
            return f":hourglass_flowing_sand: {item.text}{optional}  ·  _checking…_"
        if state.probe_status == ProbeStatus.FAILED and state.probe_at:
            reason = quote(state.probe_reason or "", PROBE_TEXT)
            against = f" ({title} open)" if (title := phases.title(run.template, state.probe_phase)) else ""
            return f":x: {item.text}{optional}  ·  probe failed {when(state.probe_at)}{against}: {reason}"
        if state.probe_status == ProbeStatus.WAITING:
            return f"{icon} {item.text}{optional}  ·  _probe waits for this phase_"
        return f"{icon} {item.text}{optional}"
    if not state.changed_at:
        return f"{icon} {item.text}{optional}"
    if state.verified_by_probe:
        return f"{icon} {item.text}{optional}  ·  verified by deploybot {when(state.changed_at)}"
    by = f"*{quote(state.report_by or 'CI', 100)}*" if is_pipeline(state.changed_by) else mention(state.changed_by)
    who = f"{by} {when(state.changed_at)}"
    if state.status == ItemStatus.NA:
        return f"{icon} ~{item.text}~{optional}  ·  N/A by {who}: _{quote(state.na_reason or '')}_"
    return f"{icon} {item.text}{optional}  ·  {who}"


def message_text(run: Run, part: Part | None = None) -> str:
    """The fallback Slack shows in notifications; Slack reads it as mrkdwn, so it is escaped like the blocks."""
    return escape(status_line(run) if part is None else f"{part.title} — {status_line(run)}")
