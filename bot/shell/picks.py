"""Item numbers as people type them: `3`, `3 4 5`, `3-8`, `3,4`, `3,5-7`."""

from __future__ import annotations

import re

from bot.runs import RunError

_SPEC = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*,?$")
EXAMPLES = "e.g. '3', '3 4 5', '3-8' or '3,4'"


def looks_like_items(word: str) -> bool:
    """Whether a word is an item number, a range or a comma list of them."""
    return bool(_SPEC.match(word))


def parse(words: list[str], total: int, command: str) -> list[int]:
    """Item numbers (1-based, in the order given, each once) or a refusal naming what is wrong; all or nothing."""
    if not words:
        raise RunError(f"Say which item(s): '{command} N', {EXAMPLES} ('status' numbers them).")
    numbers: list[int] = []
    for word in words:
        if not looks_like_items(word):
            raise RunError(f"'{word}' is not an item number or range: '{command}' takes {EXAMPLES}. Nothing changed.")
        for piece in filter(None, word.split(",")):
            first, _, last = piece.partition("-")
            low, high = int(first), int(last or first)
            if low > high:
                raise RunError(f"'{piece}' counts backwards: write it '{high}-{low}'. Nothing changed.")
            for number in (low, high):
                if not 1 <= number <= total:
                    raise RunError(f"There is no item {number}: items go from 1 to {total}. Nothing changed.")
            numbers += [n for n in range(low, high + 1) if n not in numbers]
    return numbers
