"""manifest.yml is a valid Slack app manifest, checked offline against Slack's official schema."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

SCHEMAS = Path(__file__).parent / "fixtures" / "slack" / "manifest-schema"
MANIFEST = Path(__file__).resolve().parent.parent / "manifest.yml"
REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"


def validator() -> jsonschema.Draft7Validator:
    # The top-level schema refers to the versioned ones by URL; serve them from disk instead.
    registry = Registry().with_resources(
        (REMOTE + path.name, Resource.from_contents(json.loads(path.read_text())))
        for path in (SCHEMAS / "schemas").glob("*.json")
    )
    schema = json.loads((SCHEMAS / "manifest.schema.json").read_text())
    return jsonschema.Draft7Validator(schema, registry=registry)


def test_manifest_is_valid() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    errors = sorted(validator().iter_errors(manifest), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def test_manifest_declares_what_deploybot_uses() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/deploy"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands",
        "chat:write",
        "chat:write.public",
        "files:write",
        "usergroups:read",
        "channels:history",  # looking up posts whose outcome is unknown
        "groups:history",
        "channels:join",  # exports into public channels deploybot is not in
        "im:write",  # exports handed over privately, and page DMs opened
        "im:history",  # looking up page DMs whose outcome is unknown
    }


@pytest.mark.parametrize(
    "broken",
    [
        {"display_information": {}},  # the app needs a name
        {"settings": {"socket_mode_enabled": "yes"}},  # a string where a boolean belongs
    ],
)
def test_schema_rejects_broken_manifests(broken: dict) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest.update(broken)
    assert list(validator().iter_errors(manifest))
