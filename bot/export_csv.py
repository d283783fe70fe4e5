"""The CSV record of a run: one row per item, each row saying which run it belongs to."""

from __future__ import annotations

import csv
import io
from typing import Any

from bot import people
from bot.printable import visible

# The header is an interface: spreadsheets and scripts read columns by name, so columns are only
# ever added at the end. The run's columns come first, so the rows of several runs concatenated
# stay apart.
COLUMNS = (
    "run_id",
    "checklist",
    "version",
    "environment",
    "run_status",
    "number",
    "phase",
    "group",
    "item",
    "text",
    "required",
    "status",
    "by",
    "by_name",
    "at",
    "na_reason",
    "notes",
    "probe_status",
    "probe_reason",
    "overridden_by",
    "overridden_by_name",
    "probe_at",
    "probe_open_phase",
    "command",
    "help",
    "run_outcome",
    "run_finished_by",
    "run_finished_by_name",
    "run_finished_at",
    "run_finish_reason",
    "run_open_at_completion",
    "reported_by",
    "report_status",
    "report_by",
    "report_at",
    "evidence_url",
    "report_summary",
)

# A cell starting with one of these is a formula to a spreadsheet (=SUM(…), @cmd|…); an apostrophe
# in front makes it text, as OWASP advises for CSV exports. JSON keeps the text exactly as typed.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render(document: dict[str, Any]) -> str:
    """One row per item, every cell a spreadsheet shows as text."""
    run = document["run"]
    finisher = run["finished_by"] or {}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for item in document["items"]:
        probe = item["probe"] or {}
        report = item.get("report") or {}
        by = item["by"] or {}
        overrider = (item["override"] or {}).get("by") or {}
        row = {
            "run_id": run["id"],
            "checklist": run["checklist"],
            "version": run["version"],
            "environment": run["environment"],
            "run_status": run["status"],
            "number": item["number"],
            "phase": item["phase"],
            "group": item["group"],
            "item": item["id"],
            "text": item["text"],
            "required": item["required"],
            "status": item["status"],
            "by": by.get("id"),
            "by_name": by.get("name"),
            "at": item["at"],
            "na_reason": item["na_reason"],
            "notes": " | ".join(f"{label(n['by'])}: {n['text']}" for n in item["notes"]),
            "probe_status": probe.get("status"),
            "probe_reason": probe.get("reason"),
            "overridden_by": overrider.get("id"),
            "overridden_by_name": overrider.get("name"),
            "probe_at": probe.get("at"),
            "probe_open_phase": probe.get("open_phase"),
            "command": item["command"],
            "help": item["help"],
            # Each row carries how its run ended, so a row read alone still tells a run completed
            # anyway, or declared failed, and by whom and why.
            "run_outcome": outcome(run),
            "run_finished_by": finisher.get("id"),
            "run_finished_by_name": finisher.get("name"),
            "run_finished_at": run["finished_at"],
            "run_finish_reason": run["finish_reason"],
            "run_open_at_completion": len(run["completed_anyway_with_open"]),
            "reported_by": report.get("reported_by"),
            "report_status": report.get("status"),
            "report_by": report.get("by"),
            "report_at": report.get("at"),
            "evidence_url": report.get("evidence_url"),
            "report_summary": report.get("summary"),
        }
        writer.writerow([cell(row[column]) for column in COLUMNS])
    return out.getvalue()


def outcome(run: dict[str, Any]) -> str:
    """How the run ended, in words a spreadsheet filter can pick: completed anyway is not completed."""
    if run["status"] == "complete" and run["completed_anyway_with_open"]:
        return "completed anyway"
    return str(run["status"]).replace("_", " ")


def label(person: dict[str, Any] | None) -> str:
    """A person of the document as a record names them (empty: nobody)."""
    return people.label(person["id"], person["name"]) if person else ""


def cell(value: Any) -> Any:
    """A value as a cell: None empty, text shown as typed (no terminal escapes), never run as a formula."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = "\r\n".join(visible(line) for line in value.split("\r\n"))  # a CSV cell keeps its line breaks
    return f"'{value}" if value.startswith(_FORMULA_START) else value
