"""Load a YAML file into a strict pydantic model, naming file, line and field for every fault."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bot.probes.specs import KINDS

Model = TypeVar("Model", bound=BaseModel)

SLUG = "must be a slug: lowercase letters, digits and dashes, at most 64 characters"
# What each pattern used in deploybot's files means, said for the person who wrote the file.
PATTERNS = {
    r"^[UW][A-Z0-9]{2,}$": "must be a Slack user id (U… or W…: profile › ⋮ › Copy member ID)",
    r"^S[A-Z0-9]{2,}$": "must be a Slack user group id (S…)",
    r"^[UWS][A-Z0-9]{2,}$": "must be a Slack user id (U… or W…) or user group id (S…)",
    r"^[CG][A-Z0-9]{4,}$": "must be a Slack channel id (C… or G…: channel details › About)",
    r"^[1-9][0-9]*[smh]$": "must be a duration such as 90s, 5m or 2h",
    r"^[A-Z_][A-Z0-9_]*$": "must be the name of an environment variable (A-Z, 0-9, _), not its value",
    r"^https?://": "must be an http:// or https:// URL",
}


class YamlError(Exception):
    """A YAML file is invalid; `errors` has one 'file:line › path: problem' per fault."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


Checks = Callable[[dict[str, Any]], list[tuple[tuple[str | int, ...], str]]]


def load_model(path: Path, model: type[Model], *, checks: Checks | None = None) -> Model:
    """Parse `path` and validate it as `model`, or raise YamlError listing every fault.

    `checks` finds faults across fields in the raw data, each at its own location: they are reported
    with the fields' faults, not after them, and on the line at fault rather than at the top.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlError([f"{path}: cannot read ({exc.strerror})"]) from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    if not isinstance(data, dict):
        raise YamlError([f"{path}:1: expected a mapping at the top"])
    located = [_at(path, root, loc, message) for loc, message in checks(data)] if checks else []
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        # A fault of the whole model (location empty) repeats what `checks` found at its line.
        errors = [_describe(path, root, err) for err in exc.errors() if not (located and not err["loc"])]
        raise YamlError(errors + located) from None
    if located:
        raise YamlError(located)
    return result


def trail(loc: tuple[Any, ...]) -> str:
    """A field's location as people read it: phases[0] › groups[1] › id."""
    return " › ".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(" › [", "[")


def _at(path: Path, root: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    node = _node_at(root, loc)
    line = node.start_mark.line + 1 if node is not None else 1
    return f"{path}:{line} › {trail(loc) or '(top)'}: {message}"


def line_of(path: Path, loc: tuple[Any, ...]) -> int:
    """The line of `path` that a field's location points at (1 when it cannot be read)."""
    try:
        node = _node_at(yaml.compose(path.read_text(encoding="utf-8")), loc)
    except (OSError, yaml.YAMLError):
        return 1
    return node.start_mark.line + 1 if node is not None else 1


def _describe(path: Path, root: yaml.Node | None, err: Any) -> str:
    # pydantic puts the probe's kind into the location of its fields; the YAML has no such level.
    loc = tuple(p for n, p in enumerate(err["loc"]) if not (n and err["loc"][n - 1] == "probe" and p in KINDS))
    about_a_name = loc[-1:] == ("[key]",)  # pydantic's marker for a mapping key, not its value
    loc = loc[:-1] if about_a_name else loc
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; the README lists the allowed fields)"
    elif err["type"] == "string_pattern_mismatch":
        message = PATTERNS.get(err["ctx"]["pattern"], SLUG)
    elif err["type"] == "union_tag_invalid":
        message = f"unknown kind {err['ctx']['tag']!r} (known kinds: {', '.join(KINDS)})"
    elif err["type"] == "union_tag_not_found":
        message = f"a probe needs a kind (one of: {', '.join(KINDS)})"
    return _at(path, root, loc, f"{'the name ' if about_a_name else ''}{message}")


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """Walk the YAML node tree along a pydantic error location, as deep as it goes.

    A field ends at its key's node, so a wrong field is reported on the line that names it.
    """
    key: yaml.Node | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            key, node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            key, node = None, node.value[part]
        else:
            break
    return key or node
