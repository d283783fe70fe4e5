"""Numbers as people read them: spans of time, rates, counts; plain text for every surface."""

from __future__ import annotations


def span(seconds: float | None) -> str:
    """'45 s', '12 min', '3 h 20 min', '2 d 4 h'; an em dash when there is nothing to show."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def rate(value: float | None) -> str:
    """A fraction as a percentage ('12.5%'); an em dash when undefined."""
    return "—" if value is None else f"{100 * value:.1f}%".replace(".0%", "%")


def times(n: int) -> str:
    """'once', 'twice', '3 times'."""
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def plural(n: int, noun: str) -> str:
    """'1 run', '3 runs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def runs_read(read: int, in_period: int) -> str:
    """'12 runs', or 'the latest 250 of 9,980 runs' when health read a sample."""
    return plural(read, "run") if read >= in_period else f"the latest {read} of {in_period:,} runs"
