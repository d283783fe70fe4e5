"""Exit codes of `deploybot ci`, one per outcome a pipeline may want to branch on."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What a `deploybot ci` command ended with (the README's table lists them)."""

    OK = 0  # done; the gate is open
    INVALID = 2  # wrong arguments, or a request the server refused as invalid (400/404/409/413)
    UNAUTHORIZED = 3  # DEPLOYBOT_TOKEN missing, or refused (401/403)
    RUN_ENDED = 4  # the run failed, was rolled back or aborted
    ITEM_FAILED = 5  # an item was reported failed, or its probe failed
    TIMED_OUT = 6  # the gate did not open within --timeout
    UNREACHABLE = 7  # deploybot did not answer (connection refused, 5xx, 429) until the time ran out


class CiError(Exception):
    """A command cannot go on: `str(error)` is the one line to print, `code` the exit status."""

    def __init__(self, message: str, code: Exit):
        super().__init__(message)
        self.code = code
