"""The worked CI examples in docs/ci: valid YAML, the whole loop, every `deploybot ci` line accepted by the CLI."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.ci import cli
from bot.ci.exits import CiError
from tests.conftest import ROOT

EXAMPLES = sorted((ROOT / "docs" / "ci").glob("*.yml"))
# Anything the CI fills in ($VAR, ${VAR}, ${{ expression }}) stands for a plausible value.
_FILLED_IN = re.compile(r"\$\{\{[^}]*\}\}|\$\{\w+\}|\$\w+")
CI_ENV = {"GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "42", "DEPLOYBOT_RUN": "7"}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="deploybot")
    cli.add_parser(top.add_subparsers(dest="command", required=True))
    return top


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def invocations(document: Any) -> list[list[str]]:
    """Each `deploybot ci …` in the document's scripts, as the shell would split its words."""
    found = []
    for script in strings(document):
        for line in script.replace("\\\n", " ").splitlines():
            for start in [m.start() for m in re.finditer(r"deploybot ci ", line)]:
                words = shlex.shlex(
                    _FILLED_IN.sub("https://ci.example.com/1", line[start:]), posix=True, punctuation_chars=True
                )
                words.whitespace_split = True
                command = []
                for word in words:
                    if set(word) <= set("|&;<>()"):
                        break
                    command.append(word)
                found.append(command[1:])  # without "deploybot"
    return found


def test_there_are_examples_for_github_actions_and_gitlab() -> None:
    assert [path.name for path in EXAMPLES] == ["github-actions.yml", "gitlab-ci.yml"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_invocation_parses_and_the_loop_is_whole(example: Path) -> None:
    document = yaml.safe_load(example.read_text())
    commands = invocations(document)
    steps = []
    for argv in commands:
        args = parser().parse_args(argv)
        try:
            cli._request_body(args, CI_ENV)
            cli._timeout(getattr(args, "timeout", "1m"))
        except CiError as exc:
            raise AssertionError(f"{example.name}: `deploybot {' '.join(argv)}`: {exc}") from None
        steps.append(" ".join(argv[:2] + ([args.phase] if args.ci_command == "gate" else [])))
        if args.ci_command == "report":
            steps[-1] += f" {args.item} {args.status}"
        if args.ci_command == "deployed":
            steps[-1] = f"ci deployed {args.status}"
    order = [
        "ci start",
        "ci report all-tests-are-passing done",
        "ci report production-images-are-built-successfully done",
        "ci gate pre-deployment",
        "ci deployed started",
        "ci report database-migrations-are-run done",
        "ci deployed succeeded",
        "ci gate post-deployment",
    ]
    positions = [steps.index(step) for step in order]
    assert positions == sorted(positions), steps
    assert "ci deployed failed" in steps and "ci report all-tests-are-passing failed" in steps


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_reported_items_and_gated_phases_exist_in_the_shipped_checklist(example: Path) -> None:
    checklist = yaml.safe_load((ROOT / "checklists" / "production-deploy.yml").read_text())
    phases = {phase["id"] for phase in checklist["phases"]}
    items = {item["id"] for phase in checklist["phases"] for group in phase["groups"] for item in group["items"]}
    for argv in invocations(yaml.safe_load(example.read_text())):
        args = parser().parse_args(argv)
        if args.ci_command == "report":
            assert args.item in items, argv
        if args.ci_command == "gate":
            assert args.phase in phases, argv


def test_a_wrong_invocation_is_caught() -> None:
    document = {"script": ["deploybot ci report all-tests-are-passing done --evidence-url ftp://x"]}
    [argv] = invocations(document)
    with pytest.raises(CiError, match="--evidence-url must start with http"):
        cli._request_body(parser().parse_args(argv), CI_ENV)
    with pytest.raises(SystemExit):  # argparse's answer to a wrong choice: usage and exit status 2
        parser().parse_args(invocations({"run": "deploybot ci deployed finished"})[0])
