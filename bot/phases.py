"""Which phases of a run are open: an item's probe runs only once its phase is.

A phase opens when every required item of the phases before it is resolved (done or N/A), or when
the deployment is reported. Once open it stays open: unticking an earlier item does not take back
a probe already queued, and a verdict keeps the phase it was taken against.
"""

from __future__ import annotations

from bot.checklists import Template


def of_items(template: Template) -> dict[str, int]:
    """Each item's phase, as an index into the template's phases."""
    return {item.id: n for n, phase in enumerate(template.phases) for item in phase.items}


def open_at_start(template: Template) -> int:
    """The last phase open when a run starts: the first one holding a required item.

    A maintenance checklist's phases are cadences, not steps, so all of them are open at once.
    """
    last = len(template.phases) - 1
    if template.kind == "maintenance":
        return last
    return next((n for n, phase in enumerate(template.phases) if any(i.required for i in phase.items)), last)


def title(template: Template, index: int | None) -> str | None:
    """A phase's title by index (None when the index is unknown or out of range)."""
    if index is None or not 0 <= index < len(template.phases):
        return None
    return template.phases[index].title


def waiting_text(titles: list[str]) -> str:
    """Why some probes were not run: their phases have not opened."""
    names = " and ".join(titles)
    return (
        f"{names} probes wait for {'its phase' if len(titles) == 1 else 'their phases'}: they run once every "
        "required item before it is resolved, or when the deployment is reported."
    )
