"""Slack's Block Kit limits as named constants, and a checker that reports every breach."""

from __future__ import annotations

from typing import Any

BLOCKS_PER_MESSAGE = 50
BLOCKS_PER_VIEW = 100  # modals and the Home tab
SECTION_TEXT = 3000
SECTION_FIELDS = 10
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_TEXT = 75
OPTION_TEXT = 75
BUTTON_VALUE = 2000
ACTION_ID = 255
BLOCK_ID = 255
CHECKBOX_OPTIONS = 10
OVERFLOW_OPTIONS = (2, 5)
SELECT_OPTIONS = 100
ACTIONS_ELEMENTS = 25
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3000
MODAL_TITLE = 24
MODAL_BUTTON = 24
PRIVATE_METADATA = 3000
MESSAGE_TEXT = 40_000
INPUT_LABEL = 2000


def check_blocks(blocks: list[dict[str, Any]], *, surface: str = "message") -> list[str]:
    """Return every way `blocks` breaks Slack's limits for a message, modal or home surface."""
    limit = BLOCKS_PER_MESSAGE if surface == "message" else BLOCKS_PER_VIEW
    errors = []
    if len(blocks) > limit:
        errors.append(f"{len(blocks)} blocks, more than the {limit} a {surface} may have")
    block_ids: set[str] = set()
    for n, block in enumerate(blocks):
        where = f"blocks[{n}] ({block.get('type')})"
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(f"{where}: duplicate block_id '{block_id}'")
            block_ids.add(block_id)
            errors += _too_long(where, "block_id", block_id, BLOCK_ID)
        errors += _check_block(where, block)
    return errors


def check_view(view: dict[str, Any]) -> list[str]:
    """Return every way a modal or Home tab view breaks Slack's limits."""
    errors = check_blocks(view.get("blocks", []), surface=view.get("type", "modal"))
    for key in ("title", "submit", "close"):
        if key in view:
            errors += _too_long("view", key, view[key]["text"], MODAL_TITLE)
    errors += _too_long("view", "private_metadata", view.get("private_metadata", ""), PRIVATE_METADATA)
    return errors


def _check_block(where: str, block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    errors: list[str] = []
    if kind == "section":
        if "text" in block:
            errors += _too_long(where, "text", block["text"]["text"], SECTION_TEXT)
        fields = block.get("fields", [])
        if len(fields) > SECTION_FIELDS:
            errors.append(f"{where}: {len(fields)} fields, more than {SECTION_FIELDS}")
        for field in fields:
            errors += _too_long(where, "field", field["text"], FIELD_TEXT)
        if "accessory" in block:
            errors += _check_element(f"{where}.accessory", block["accessory"])
    elif kind == "header":
        errors += _too_long(where, "text", block["text"]["text"], HEADER_TEXT)
    elif kind == "actions":
        elements = block.get("elements", [])
        if len(elements) > ACTIONS_ELEMENTS:
            errors.append(f"{where}: {len(elements)} elements, more than {ACTIONS_ELEMENTS}")
        action_ids = [e.get("action_id") for e in elements if e.get("action_id")]
        if len(action_ids) != len(set(action_ids)):
            errors.append(f"{where}: action_ids must be unique within a block")
        for element in elements:
            errors += _check_element(where, element)
    elif kind == "context":
        elements = block.get("elements", [])
        if len(elements) > CONTEXT_ELEMENTS:
            errors.append(f"{where}: {len(elements)} elements, more than {CONTEXT_ELEMENTS}")
        for element in elements:
            if "text" in element:
                errors += _too_long(where, "context text", element["text"], CONTEXT_TEXT)
    elif kind == "input":
        errors += _too_long(where, "label", block["label"]["text"], INPUT_LABEL)
        errors += _check_element(where, block["element"])
    return errors


def _check_element(where: str, element: dict[str, Any]) -> list[str]:
    kind = element.get("type")
    errors = _too_long(where, "action_id", element.get("action_id", ""), ACTION_ID)
    if kind == "button":
        errors += _too_long(where, "button text", element["text"]["text"], BUTTON_TEXT)
        errors += _too_long(where, "button value", element.get("value", ""), BUTTON_VALUE)
    options = list(element.get("options", []))
    for group in element.get("option_groups", []):
        options += group["options"]
        errors += _too_long(where, "option group label", group["label"]["text"], OPTION_TEXT)
    if kind == "checkboxes" and len(options) > CHECKBOX_OPTIONS:
        errors.append(f"{where}: {len(options)} checkbox options, more than {CHECKBOX_OPTIONS}")
    if kind == "overflow" and not OVERFLOW_OPTIONS[0] <= len(options) <= OVERFLOW_OPTIONS[1]:
        errors.append(f"{where}: overflow needs 2 to 5 options, has {len(options)}")
    if kind in ("static_select", "multi_static_select") and len(options) > SELECT_OPTIONS:
        errors.append(f"{where}: {len(options)} select options, more than {SELECT_OPTIONS}")
    for option in options:
        errors += _too_long(where, "option text", option["text"]["text"], OPTION_TEXT)
        errors += _too_long(where, "option value", option.get("value", ""), 150)
    return errors


def _too_long(where: str, what: str, text: str, limit: int) -> list[str]:
    if len(text) > limit:
        return [f"{where}: {what} has {len(text)} characters, more than {limit}"]
    return []
