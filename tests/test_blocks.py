"""Renderers are pure and stay inside Slack's limits, for the full seed and a 300-item checklist."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.checklists import Template, load_template
from bot.models import ItemState, ItemStatus, Run, RunStatus
from bot.slack import blocks, fit, ids, modals
from bot.slack.limits import check_blocks

ROOT = Path(__file__).resolve().parent.parent
SEED = load_template(ROOT / "checklists" / "production-deploy.yml")
T0 = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


def synthetic(items: int, per_group: int = 37) -> Template:
    """A big checklist: `items` items with long texts, in groups of `per_group`, over three phases."""
    groups = [
        {
            "id": f"g{g}",
            "title": f"Group {g} " + "x" * 100,
            "items": [
                {"id": f"i{g}-{n}", "text": f"Item {g}.{n} " + "w" * 280, "help": "h" * 500, "command": "c" * 500}
                for n in range(min(per_group, items - g * per_group))
            ],
        }
        for g in range(-(-items // per_group))
    ]
    thirds = [groups[i::3] for i in range(3)]
    return Template.model_validate(
        {
            "id": "big",
            "title": "Big",
            "phases": [{"id": f"p{n}", "title": f"Phase {n}", "groups": gs} for n, gs in enumerate(thirds) if gs],
        }
    )


def make_run(
    template: Template, status: str = ItemStatus.OPEN, *, note: str | None = None, run_status: str = RunStatus.ACTIVE
) -> Run:
    run = Run(
        id=7,
        kind=template.kind,
        template_snapshot=template.model_dump(mode="json"),
        version="v1.4.2",
        environment="production",
        channel_id="C1",
        started_by="U1",
        started_at=T0,
        status=run_status,
        rev=1,
        overridden_items=None,
    )
    run.items = [
        ItemState(
            item_id=i.id,
            position=n,
            required=i.required,
            status=status,
            changed_by="U2" if status != ItemStatus.OPEN else None,
            changed_at=T0 + timedelta(minutes=5) if status != ItemStatus.OPEN else None,
            na_reason="not used here" if status == ItemStatus.NA else None,
            note=note,
            note_by="U3" if note else None,
            note_at=T0 if note else None,
            note_count=1 if note else 0,
        )
        for n, i in enumerate(template.items)
    ]
    return run


def all_messages(run: Run) -> list[list[dict]]:
    parts = blocks.layout(run.template)
    return [blocks.parent_blocks(run)] + [blocks.part_blocks(run, p, n) for n, p in enumerate(parts, 1)]


def texts(block: dict) -> list[str]:
    """Every text string inside a block, found without the limits module."""
    found = []
    if isinstance(block, dict):
        for key, value in block.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found += texts(value)
    elif isinstance(block, list):
        for value in block:
            found += texts(value)
    return found


@pytest.mark.parametrize("template", [SEED, synthetic(300)], ids=["seed", "synthetic-300"])
@pytest.mark.parametrize("status", [ItemStatus.OPEN, ItemStatus.DONE, ItemStatus.NA])
def test_every_message_fits_slacks_limits(template: Template, status: str) -> None:
    run = make_run(template, status, note="<!channel> " + "&" * 490)
    for message in all_messages(run):
        assert len(message) <= 50
        for block in message:
            if block["type"] == "section" and "text" in block:
                assert len(block["text"]["text"]) <= 3000
            if block["type"] == "header":
                assert len(block["text"]["text"]) <= 150
            for element in [*block.get("elements", []), block.get("accessory", {})]:
                if element.get("type") == "button":
                    assert len(element["text"]["text"]) <= 75
                    assert len(element["value"]) <= 2000
        assert check_blocks(message) == []
    for part in blocks.layout(template):
        modal = modals.item_modal(run, part, ids.NOTE_VIEW, na=False)
        options = [o for g in modal["blocks"][1]["element"]["option_groups"] for o in g["options"]]
        assert len(options) <= 100
        assert all(len(o["text"]["text"]) <= 75 for o in options)


@pytest.mark.parametrize(
    "template", [SEED, synthetic(300), synthetic(300, per_group=120)], ids=["seed", "synthetic-300", "groups-of-120"]
)
def test_layout_shows_every_item_once_in_checklist_order(template: Template) -> None:
    parts = blocks.layout(template)
    assert [i.id for p in parts for i in p.items] == [i.id for i in template.items]
    assert all(p.size <= 48 for p in parts)


def test_the_seed_renders_as_a_parent_and_one_message_per_phase() -> None:
    parts = blocks.layout(SEED)
    assert [p.title for p in parts] == ["Pre-Deployment", "Deployment", "Post-Deployment"]


def test_a_ticked_item_shows_who_and_when_next_to_its_text() -> None:
    run = make_run(SEED, ItemStatus.DONE)
    part = blocks.layout(SEED)[0]
    item_block = next(
        b
        for b in blocks.part_blocks(run, part, 1)
        if b.get("block_id") == "item.production-server-cloud-account-is-ready"
    )
    text = item_block["text"]["text"]
    assert text.startswith("✅ Production server/cloud account is ready")
    assert "<@U2>" in text
    assert f"<!date^{int((T0 + timedelta(minutes=5)).timestamp())}^" in text
    assert item_block["accessory"]["action_id"] == ids.ITEM_REOPEN
    assert json.loads(item_block["accessory"]["value"]) == {
        "run": 7,
        "item": "production-server-cloud-account-is-ready",
    }


def test_open_items_offer_done_and_finished_runs_offer_nothing() -> None:
    active = blocks.part_blocks(make_run(SEED), blocks.layout(SEED)[0], 1)
    assert {b["accessory"]["action_id"] for b in active if "accessory" in b} == {ids.ITEM_DONE}
    assert active[-1]["type"] == "actions"
    done = make_run(SEED, ItemStatus.DONE, run_status=RunStatus.COMPLETE)
    finished = blocks.part_blocks(done, blocks.layout(SEED)[0], 1)
    assert not [b for b in finished if "accessory" in b or b["type"] == "actions"]


def test_people_cannot_inject_mentions_through_notes_or_reasons() -> None:
    run = make_run(SEED, ItemStatus.NA, note="<!channel> look <@U999|boss>")
    run.items[0].na_reason = "<!here> ping"
    text = blocks.part_blocks(run, blocks.layout(SEED)[0], 1)[2]["text"]["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<@U999" not in text
    assert "&lt;!channel&gt;" in text and "&lt;!here&gt; ping" in text


def test_parent_shows_progress_and_the_seed_footer_on_completion() -> None:
    run = make_run(SEED, ItemStatus.DONE, run_status=RunStatus.COMPLETE)
    run.finished_at, run.finished_by = T0 + timedelta(minutes=42), "U2"
    message = "\n".join(texts(blocks.parent_blocks(run)))
    assert "89 / 89" in message and "█" * 20 in message
    assert "complete* in 42 min" in message
    assert "*Last Updated*" in message and "*Deployed By*: <@U1>" in message and "*Version*: v1.4.2" in message


def test_parent_of_an_active_run_counts_open_required_items() -> None:
    run = make_run(SEED)
    for state in run.items[:10]:
        state.status = ItemStatus.DONE
    message = "\n".join(texts(blocks.parent_blocks(run)))
    assert "*10 / 89* done" in message
    assert "79 required items still open" in message  # the one optional item is among the ten done


def test_override_lists_the_open_items() -> None:
    run = make_run(SEED, run_status=RunStatus.COMPLETE)
    run.finished_at, run.finished_by = T0 + timedelta(hours=2, minutes=3), "U9"
    run.overridden_items = [i.id for i in SEED.items[:12]]
    message = "\n".join(texts(blocks.parent_blocks(run)))
    assert "completed anyway* by <@U9> in 2 h 03 min, with 12 required item(s) open" in message
    assert "• Production server/cloud account is ready" in message
    assert "…and 2 more" in message


def test_limits_checker_reports_each_breach() -> None:
    too_many = [{"type": "divider"}] * 51
    assert check_blocks(too_many) == ["51 blocks, more than the 50 a message may have"]
    long_button = {
        "type": "actions",
        "elements": [{"type": "button", "text": {"type": "plain_text", "text": "b" * 76}, "action_id": "a"}],
    }
    assert "button text has 76 characters" in check_blocks([long_button])[0]
    boxes = {
        "type": "actions",
        "elements": [
            {
                "type": "checkboxes",
                "action_id": "c",
                "options": [{"text": {"type": "mrkdwn", "text": str(n)}, "value": str(n)} for n in range(11)],
            }
        ],
    }
    assert "11 checkbox options" in check_blocks([boxes])[0]
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}
    assert "3001 characters" in check_blocks([long_section])[0]
    overflow = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "x"},
        "accessory": {
            "type": "overflow",
            "action_id": "o",
            "options": [{"text": {"type": "plain_text", "text": "1"}, "value": "1"}],
        },
    }
    assert "overflow needs 2 to 5 options" in check_blocks([overflow])[0]


def test_template_limit_check_passes_for_shipped_and_flags_impossible_ones() -> None:
    assert fit.check_template_limits(SEED) == []
    assert fit.check_template_limits(synthetic(300)) == []
