"""What each audit event says, in words a person reads: items by number and text, reasons as typed."""

from __future__ import annotations

from typing import Any

_WAS = {"done": "done", "na": "N/A", "open": "open"}


def item_label(item: dict[str, Any]) -> str:
    """An item as people find it in the checklist: "10. AWS S3 credentials are configured"."""
    return f"{item['number']}. {item['text']}"


def ranges(numbers: list[int]) -> str:
    """Item numbers, runs of them shortened: 2–9, 11, 13–40."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def describe(event: dict[str, Any], items: dict[str, dict[str, Any]]) -> str:
    """One event of the export document in words (plain text; the caller escapes it for its format)."""
    kind, data = event["kind"], event.get("data") or {}
    about = event.get("item")
    item = item_label(items[about]) if about in items else about or "an item"
    reason = data.get("reason")
    page = f"page #{event['page']}" if event.get("page") else "the page"
    match kind:
        case "run.started":
            probes = ", probes on" if data.get("probes") else ""
            return (
                f"started the run: {data.get('version')} → {data.get('environment')} "
                f"(checklist {data.get('checklist')}{probes})"
            )
        case "item.done" | "item.failed" | "item.na" if "pipeline" in data:
            status = {"done": "done", "failed": "failed", "na": "not applicable"}.get(data.get("status") or "", kind)
            said = f": {data['summary']}" if data.get("summary") else f": {reason}" if reason else ""
            evidence = f" (evidence: {data['evidence_url']})" if data.get("evidence_url") else ""
            return f"reported {item} {status}{said}{evidence}"
        case "item.done":
            return f"ticked {item}"
        case "item.reopened":
            return f"reopened {item} (it was {_WAS.get(data.get('was') or '', data.get('was'))})"
        case "item.na":
            return f"marked {item} N/A: {reason}"
        case "item.note":
            return f"added a note to {item}: {data.get('text')}"
        case "item.override" if "reported_by" in data:
            return f"ticked {item}, which its pipeline ({data['reported_by']}) reports, by hand: {reason}"
        case "item.override":
            return f"ticked {item} although its probe failed: {data.get('probe_reason')}"
        case "item.verified":
            return f"probe passed for {item}: {reason}{_ms(data)}"
        case "item.failed":
            return f"probe failed for {item}: {reason}{_ms(data)}"
        case "probe.too_early":
            verdict = "passed" if data.get("ok") else "failed"
            return f"probe of {item} {verdict} before its phase opened: {reason} (kept as evidence; ticks nothing)"
        case "probe.rerun":
            waiting = f", {data['waiting']} wait for their phase" if data.get("waiting") else ""
            return f"re-ran the probe of {item}" if about else f"re-ran {data.get('items')} probe(s){waiting}"
        case "phase.opened":
            return f"{data.get('title')} opened ({data.get('probes', 0)} probe(s) queued)"
        case "deployment.reported":
            return f"reported the deployment {data.get('outcome')} ({data.get('probes', 0)} probe(s) queued)"
        case "run.completed":
            return "completed the run (every required item done or N/A)"
        case "run.completed_anyway":
            open_items = [items[i]["number"] for i in data.get("open_items") or [] if i in items]
            why = f"; reason: {reason}" if reason else ""
            return (
                f"completed the run anyway with {len(data.get('open_items') or [])} required item(s) open"
                + (f": {ranges(open_items)}" if open_items else "")
                + why
            )
        case "run.aborted":
            return f"aborted the run: {reason}"
        case "run.failed":
            return f"declared the deployment failed: {reason}"
        case "run.rolled_back":
            return f"rolled back by run #{data.get('rollback')} (the deployment was {data.get('was')})"
        case "page.raised":
            return f"paged {data.get('team')} ({page}): {data.get('text')}"
        case "page.notified":
            return f"{page}: {data.get('action')} sent to {data.get('target')} (level {data.get('level')})"
        case "page.notify_failed":
            return f"{page}: {data.get('action')} could not reach {data.get('target')}: {data.get('error')}"
        case "page.escalated":
            return f"{page} escalated to {data.get('team')} (level {data.get('level')})"
        case "page.unanswered":
            return f"{page} went unanswered at its last level"
        case "page.acknowledged":
            return f"acknowledged {page}"
        case "page.resolved":
            return f"resolved {page}"
    # An event this version does not know yet (a newer deploybot wrote it): its kind and data as they are.
    details = ", ".join(f"{key}: {value}" for key, value in data.items())
    return f"{kind}" + (f" {item}" if about else "") + (f" ({details})" if details else "")


def _ms(data: dict[str, Any]) -> str:
    ms = data.get("ms")
    return f" ({ms:.0f} ms)" if isinstance(ms, int | float) else ""
