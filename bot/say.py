"""Messages the rules write once, rendered per surface: Slack mrkdwn, or plain text for a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.printable import visible
from bot.slack.mrkdwn import escape, mention

# Emoji that carry meaning in a terminal line keep it as a word; the others are decoration.
_ICON_WORDS = {"telephone_receiver": "phone:", "email": "email:", "warning": "warning:"}


@dataclass(frozen=True)
class Cmd:
    """A deploybot command, as typed after `/deploy` in Slack or at the shell's prompt."""

    text: str


@dataclass(frozen=True)
class Code:
    """A literal to type or look for (an option, a file, a cron line); `typed` text is a person's."""

    text: str
    typed: bool = False


@dataclass(frozen=True)
class Typed:
    """Text a person typed: escaped for Slack, made visible for a terminal."""

    text: str


@dataclass(frozen=True)
class Strong:
    """Words to stand out (bold in Slack)."""

    text: str
    typed: bool = False


@dataclass(frozen=True)
class Who:
    """A person, by user id (a Slack id, or a terminal user's name)."""

    user_id: str | None


@dataclass(frozen=True)
class Group:
    """A Slack user group, by id."""

    group_id: str


@dataclass(frozen=True)
class Channel:
    """A channel, by id."""

    channel_id: str


@dataclass(frozen=True)
class Icon:
    """An emoji shortcode, e.g. Icon("telephone_receiver")."""

    name: str


Part = str | Cmd | Code | Typed | Strong | Who | Group | Channel | Icon


@dataclass(frozen=True)
class Said:
    """A user-facing sentence (or several lines) made of plain text and structured parts."""

    parts: tuple[Part, ...]

    def __str__(self) -> str:
        return slack(self)

    def __add__(self, other: Said | Part) -> Said:
        return Said(self.parts + (other.parts if isinstance(other, Said) else (other,)))


def say(*parts: Part | Said) -> Said:
    """A message from its parts; a nested message is spliced in."""
    flat: list[Part] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Said) else (part,))
    return Said(tuple(flat))


def join(messages: Iterable[Said | Part], separator: str) -> Said:
    """Messages joined by a plain separator, e.g. one per line."""
    joined: list[Part | Said] = []
    for n, message in enumerate(messages):
        if n:
            joined.append(separator)
        joined.append(message)
    return say(*joined)


def slack(message: Said | str) -> str:
    """Render for Slack (mrkdwn): people as mentions, commands as `/deploy …`, typed text escaped."""
    if isinstance(message, str):
        return message
    return "".join(_slack_part(part) for part in message.parts)


def _slack_part(part: Part) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, Cmd):
        return f"`/deploy {part.text}`"
    if isinstance(part, Code):
        return f"`{escape(part.text) if part.typed else part.text}`"
    if isinstance(part, Typed):
        return escape(part.text)
    if isinstance(part, Strong):
        return f"*{escape(part.text) if part.typed else part.text}*"
    if isinstance(part, Who):
        return mention(part.user_id)
    if isinstance(part, Group):
        return f"<!subteam^{part.group_id}>"
    if isinstance(part, Channel):
        return f"<#{part.channel_id}>"
    return f":{part.name}:"


Names = Callable[[str], str | None]


def _no_names(_user_id: str) -> str | None:
    return None


def terminal(message: Said | str, names: Names = _no_names) -> str:
    """Render for a terminal: plain words, people by name when known (else their id), nothing to interpret."""
    if isinstance(message, str):
        return visible(message)
    out: list[str] = []
    dropped = False
    for part in message.parts:
        text = _terminal_part(part, names)
        if dropped and text.startswith(" "):
            text = text[1:]  # a dropped emoji takes its separating space with it
        dropped = isinstance(part, Icon) and not text
        out.append(text)
    return "".join(out)


def _terminal_part(part: Part, names: Names) -> str:
    if isinstance(part, str):
        return visible(part)
    if isinstance(part, Cmd | Code):
        return f"'{visible(part.text)}'"
    if isinstance(part, Typed | Strong):
        return visible(part.text)
    if isinstance(part, Who):
        if not part.user_id:
            return "someone"
        return visible(names(part.user_id) or part.user_id)
    if isinstance(part, Group):
        return f"user group {visible(part.group_id)}"
    if isinstance(part, Channel):
        return f"#{visible(part.channel_id)}"
    return _ICON_WORDS.get(part.name, "")
