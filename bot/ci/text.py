"""Text from the server made safe for a CI log, and durations as people write them."""

from __future__ import annotations

import re

# Characters a terminal or a CI log viewer acts on instead of showing: C0 and C1 controls (escape
# sequences, carriage returns that overwrite a line, newlines that would let a name start a line of
# its own, where `::set-output` or GitLab's `section_start:` are read as commands), the Unicode line
# separators, and the bidirectional overrides and isolates that reorder what is displayed.
_ACTIVE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LONGEST = 200
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def inert(text: object, limit: int = _LONGEST) -> str:
    """One line of plain text: active characters shown as `\\uXXXX`, clipped to `limit` characters."""
    line = _ACTIVE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(text))
    return line if len(line) <= limit else line[: limit - 1] + "…"


def seconds(text: str) -> float:
    """`30m`, `1h30m`, `90s` or `90` (seconds) as seconds; ValueError naming the accepted forms."""
    value = text.strip().lower()
    if value.isdigit():
        return float(value)
    match = _DURATION.fullmatch(value)
    if not value or match is None:
        raise ValueError(f"{text!r} is not a duration: write it as 90 (seconds), 90s, 30m or 1h30m")
    hours, minutes, secs = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + secs)
