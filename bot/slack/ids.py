"""Every action_id and callback_id, in one place: ids say what, values say which."""

ITEM_DONE = "item.done"
ITEM_REOPEN = "item.reopen"
NA_DIALOG = "item.na.open"
NOTE_DIALOG = "item.note.open"
COMPLETE_ANYWAY = "run.complete_anyway"
ITEM_MENU = "item.menu"  # overflow on an item whose probe failed: value {"do": "done" | "rerun"}
RERUN_PROBES = "run.rerun_probes"
EXPORT = "run.export"  # overflow on a finished run: value {"format": "md" | "csv" | "json"}
FAIL_DIALOG = "run.fail.open"  # "Deployment failed…" on an active deployment: asks for the reason
PAGE_ONCALL = "run.page_oncall"  # on a rollback run: pages on-call about the failed deployment
PAGE_ACK = "page.ack"  # value {"page": id}
PAGE_RESOLVE = "page.resolve"

NA_VIEW = "item.na"
NOTE_VIEW = "item.note"
FAIL_VIEW = "run.fail"

# Block and action ids inside the modals.
ITEM_FIELD = "item"
REASON_FIELD = "reason"
NOTE_FIELD = "note"

KNOWN_ACTIONS = frozenset(
    {ITEM_DONE, ITEM_REOPEN, NA_DIALOG, NOTE_DIALOG, COMPLETE_ANYWAY, ITEM_MENU, RERUN_PROBES, EXPORT}
    | {FAIL_DIALOG, PAGE_ONCALL, PAGE_ACK, PAGE_RESOLVE}
)
