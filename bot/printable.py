"""Text a person typed, made safe to show on a screen: every character visible, none acted on."""

from __future__ import annotations

import re

# Characters a reader's screen acts on instead of showing: controls other than tab and line break
# (terminal escapes, carriage returns), and the bidirectional overrides and isolates that reorder
# what is displayed ("(U0ALICE001)" included).
INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with every character a screen would act on written out as its code, e.g. `\\u001b`."""
    return INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.replace("\r\n", "\n"))
