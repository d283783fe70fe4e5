"""Every action_id and callback_id, in one place: ids say what, values say which."""

ITEM_DONE = "item.done"
ITEM_REOPEN = "item.reopen"
NA_DIALOG = "item.na.open"
NOTE_DIALOG = "item.note.open"
COMPLETE_ANYWAY = "run.complete_anyway"

NA_VIEW = "item.na"
NOTE_VIEW = "item.note"

# Block and action ids inside the modals.
ITEM_FIELD = "item"
REASON_FIELD = "reason"
NOTE_FIELD = "note"
