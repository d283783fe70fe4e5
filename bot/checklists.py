"""Checklist templates: schema and YAML loader with file:line errors (Markdown import: bot.markdown_import)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.probes.specs import ProbeSpec
from bot.yamlfile import YamlError, line_of, load_model, trail

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
# A token's name, and what an item's `reported_by` names: "ci" or e.g. "github-actions prod".
PIPELINE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 ._-]{0,62}[A-Za-z0-9._-])?")

# Keep every rendered line far below Slack's 3000-character section limit.
MAX_ITEM_TEXT = 300
MAX_HELP_TEXT = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Strict):
    id: Slug
    text: Annotated[str, Field(min_length=1, max_length=MAX_ITEM_TEXT)]
    required: bool = True
    help: Annotated[str, Field(max_length=MAX_HELP_TEXT)] | None = None
    command: Annotated[str, Field(max_length=MAX_HELP_TEXT)] | None = None
    probe: ProbeSpec | None = None
    # A pipeline reports this item through the API: `ci` (any token of the run's channel) or one token's name.
    reported_by: str | None = None

    @field_validator("reported_by")
    @classmethod
    def _names_a_pipeline(cls, value: str | None) -> str | None:
        if value is not None and not PIPELINE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} names no pipeline: write `ci` (any token of the run's channel) or a token's name "
                "such as 'github-actions prod' (letters, digits, spaces, '.', '_', '-'; up to 64)"
            )
        return value

    @model_validator(mode="after")
    def _one_checker(self) -> Item:
        if self.probe is not None and self.reported_by is not None:
            raise ValueError("an item is checked by a probe or reported by a pipeline, not both: drop one of them")
        return self


class Group(_Strict):
    id: Slug
    title: Annotated[str, Field(min_length=1, max_length=150)]
    items: Annotated[list[Item], Field(min_length=1)]


Duration = Annotated[str, Field(pattern=r"^\d+[mhd]$")]  # 30m, 8h, 3d
ChannelId = Annotated[str, Field(pattern=r"^[CG][A-Z0-9]{4,}$")]
UserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{4,}$")]


class Schedule(_Strict):
    """When a maintenance cadence is posted, where, and when it is overdue. Times are in deploybot.yml's zone."""

    cron: str  # five fields, e.g. "0 9 * * mon-fri"
    channel: ChannelId | None = None  # default: maintenance_channel in deploybot.yml
    owners: list[UserId] = []  # mentioned when the run is overdue
    environment: str = "production"  # whose variables its probes read
    nudge_after: Duration
    escalate_after: Duration
    escalate_to: Slug | None = None  # a team of deploybot.yml's contacts, paged at escalate_after; else @here
    catch_up: Duration = "6h"  # a slot missed while deploybot was down is still posted this late

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a cron expression ({exc}); e.g. '0 9 * * mon-fri'") from None
        return value


class Phase(_Strict):
    id: Slug
    title: Annotated[str, Field(min_length=1, max_length=150)]
    groups: Annotated[list[Group], Field(min_length=1)]
    schedule: Schedule | None = None  # maintenance checklists only: each scheduled phase is a cadence

    @property
    def items(self) -> list[Item]:
        return [item for group in self.groups for item in group.items]


PREVIOUS_VERSION = ("<previous-version>", "<previous-commit>")


class Template(_Strict):
    id: Slug
    title: Annotated[str, Field(min_length=1, max_length=150)]
    kind: Literal["deploy", "maintenance", "rollback"] = "deploy"
    description: Annotated[str, Field(max_length=MAX_HELP_TEXT)] | None = None
    phases: Annotated[list[Phase], Field(min_length=1)]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Template:
        if problems := template_problems(self):
            raise ValueError("; ".join(message for _, message in problems))
        return self

    def only(self, phase_id: str) -> Template:
        """This template cut down to one phase: what a maintenance cadence posts."""
        phase = next(p for p in self.phases if p.id == phase_id)
        return self.model_copy(
            update={"id": f"{self.id}-{phase.id}", "title": f"{phase.title} {self.title.lower()}", "phases": [phase]}
        )

    @property
    def items(self) -> list[Item]:
        return [item for phase in self.phases for item in phase.items]

    def with_previous_version(self, version: str) -> Template:
        """This template with `<previous-version>` (or the seed's `<previous-commit>`) filled in its commands."""
        data = self.model_dump(mode="json")
        for item in (i for phase in data["phases"] for group in phase["groups"] for i in group["items"]):
            for placeholder in PREVIOUS_VERSION:
                if item.get("command"):
                    item["command"] = item["command"].replace(placeholder, version)
        return Template.model_validate(data)

    def item(self, item_id: str) -> Item | None:
        return next((i for i in self.items if i.id == item_id), None)


Location = tuple[str | int, ...]


def _get(node: Any, key: str) -> Any:
    """A field of raw YAML data or of a validated model alike."""
    return node.get(key) if isinstance(node, dict) else getattr(node, key, None)


def _listed(node: Any, key: str) -> list[Any]:
    value = _get(node, key)
    return value if isinstance(value, list) else []


def template_problems(template: Any) -> list[tuple[Location, str]]:
    """Every fault across fields (duplicate ids, schedules outside maintenance), each at the field at fault.

    Works on raw YAML data as well as on a Template, so a file's faults are all found in one pass.
    """
    problems: list[tuple[Location, str]] = []
    phase_ids: list[tuple[Any, Location]] = []
    item_ids: list[tuple[Any, Location]] = []
    kind = _get(template, "kind") or "deploy"
    for p, phase in enumerate(_listed(template, "phases")):
        phase_ids.append((_get(phase, "id"), ("phases", p, "id")))
        if kind != "maintenance" and _get(phase, "schedule") is not None:
            problems.append(
                (("phases", p, "schedule"), "only maintenance checklists (kind: maintenance) have schedules")
            )
        group_ids: list[tuple[Any, Location]] = []
        for g, group in enumerate(_listed(phase, "groups")):
            group_ids.append((_get(group, "id"), ("phases", p, "groups", g, "id")))
            for i, item in enumerate(_listed(group, "items")):
                item_ids.append((_get(item, "id"), ("phases", p, "groups", g, "items", i, "id")))
        problems += _duplicates(f"groups of phase '{_get(phase, 'id')}'", group_ids)
    return [*_duplicates("phases", phase_ids), *problems, *_duplicates("items", item_ids)]


def _duplicates(what: str, ids: list[tuple[Any, Location]]) -> list[tuple[Location, str]]:
    """Each repeat of an id, at the repeat, naming where the id was first used."""
    first: dict[str, Location] = {}
    found = []
    for ident, loc in ids:
        if not isinstance(ident, str):
            continue
        if ident in first:
            found.append(
                (loc, f"duplicate id '{ident}' among {what} (first at {trail(first[ident])}): ids must be unique")
            )
        else:
            first[ident] = loc
    return found


class ChecklistError(YamlError):
    """One or more checklist files are invalid; `errors` has one 'file:line › path: problem' per fault."""


def load_template(path: Path) -> Template:
    """Load and validate one checklist YAML file."""
    try:
        return load_model(path, Template, checks=template_problems)
    except YamlError as exc:
        raise ChecklistError(exc.errors) from None


def load_folder(folder: Path) -> dict[str, Template]:
    """Load every *.yml and *.yaml in `folder` (or the one file `folder` names), keyed by template id;
    report all faults at once."""
    if folder.is_file():
        paths = [folder]
    elif folder.is_dir():
        paths = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    else:
        raise ChecklistError([f"{folder}: no such checklist folder or file (set DEPLOYBOT_CHECKLISTS)"])
    templates: dict[str, Template] = {}
    errors: list[str] = []
    sources: dict[str, Path] = {}
    for path in paths:
        try:
            template = load_template(path)
        except ChecklistError as exc:
            errors.extend(exc.errors)
            continue
        if template.id in sources:
            errors.append(
                f"{path}:{line_of(path, ('id',))} › id: template id '{template.id}' is already used by "
                f"{sources[template.id]}: ids must be unique"
            )
            continue
        sources[template.id] = path
        templates[template.id] = template
    if not paths:
        errors.append(f"{folder}: no checklist files (*.yml or *.yaml) found")
    if errors:
        raise ChecklistError(errors)
    return templates


def unstartable(templates: dict[str, Template]) -> list[str]:
    """Warnings about checklists, or phases of them, that nothing in deploybot will ever start."""
    warnings = []
    rollbacks = [t.id for t in templates.values() if t.kind == "rollback"]
    for extra in rollbacks[1:]:
        warnings.append(
            f"{extra}: never started: `/deploy fail` and `/deploy rollback` run the first rollback checklist, "
            f"{rollbacks[0]}"
        )
    for template in templates.values():
        if template.kind != "maintenance":
            continue
        idle = [p.id for p in template.phases if p.schedule is None]
        if len(idle) == len(template.phases):
            warnings.append(f"{template.id}: never started: no phase has a `schedule:`, so reminders never post it")
        elif idle:
            warnings.append(f"{template.id}: phase(s) {', '.join(idle)} never started: they have no `schedule:`")
    return warnings


def iter_items(template: Template) -> Iterator[tuple[Phase, Group, Item]]:
    """Yield every item with its phase and group, in checklist order."""
    for phase in template.phases:
        for group in phase.groups:
            for item in group.items:
                yield phase, group, item
