"""The shipped checklists hold every seed item in its place; bad YAML is named by file, line and field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.checklists import ChecklistError, load_folder, load_template
from bot.markdown_import import import_markdown

ROOT = Path(__file__).resolve().parent.parent
SEED = Path(__file__).parent / "fixtures" / "production-deployment-checklist.md"


def seed_sections() -> dict[str, dict[str, list[str]]]:
    """Read the seed by hand: {## section: {### group: [item text, ...]}}, independent of the importer."""
    sections: dict[str, dict[str, list[str]]] = {}
    section = group = None
    for line in SEED.read_text().splitlines():
        if line.startswith("## "):
            section, group = line[3:], None
            sections[section] = {}
        elif line.startswith("### "):
            group = line[4:]
            sections[section][group] = []
        elif group and (m := re.match(r"- \[ \] (.+)$", line) or re.match(r"\d+\. (.+)$", line)):
            sections[section][group].append(m[1])
    return sections


def shipped(name: str) -> dict[str, list[str]]:
    """{group title: [item text (+ ': `command`' when it has one)]} of a shipped checklist file."""
    template = load_template(ROOT / "checklists" / name)
    return {
        group.title: [f"{i.text}: `{i.command}`" if i.command else i.text for i in group.items]
        for phase in template.phases
        for group in phase.groups
    }


def test_deploy_checklist_has_every_seed_item_in_its_group_and_wording() -> None:
    seed = seed_sections()
    template = load_template(ROOT / "checklists" / "production-deploy.yml")
    assert [p.title for p in template.phases] == ["Pre-Deployment", "Deployment", "Post-Deployment"]
    for phase in template.phases:
        assert {g.title: [i.text for i in g.items] for g in phase.groups} == seed[phase.title]
    assert len(template.items) == 89


def test_maintenance_and_rollback_checklists_match_the_seed() -> None:
    seed = seed_sections()
    assert shipped("maintenance.yml") == seed["Ongoing Maintenance"]
    assert shipped("rollback.yml") == seed["Rollback Plan"]
    steps = load_template(ROOT / "checklists" / "rollback.yml").phases[0].groups[1].items
    assert steps[0].command == "docker compose -f docker-compose.prod.yml down"


def test_the_shipped_folder_loads_and_ids_are_unique() -> None:
    templates = load_folder(ROOT / "checklists")
    assert set(templates) == {"production-deploy", "maintenance", "rollback"}
    ids = [i.id for i in templates["production-deploy"].items]
    assert len(ids) == len(set(ids))
    # The seed lists "Redis password is set" twice; both keep distinct, stable ids.
    assert {"redis-password-is-set", "redis-redis-password-is-set"} <= set(ids)


def test_import_keeps_structure_and_gives_stable_slugs() -> None:
    data = import_markdown(SEED.read_text(), phases=["Deployment"])
    assert [p["title"] for p in data["phases"]] == ["Deployment"]
    first = data["phases"][0]["groups"][0]["items"][0]
    assert first == {"id": "docker-and-docker-compose-are-installed", "text": "Docker and Docker Compose are installed"}
    assert import_markdown(SEED.read_text()) == import_markdown(SEED.read_text())


def test_import_refuses_a_missing_section() -> None:
    with pytest.raises(ChecklistError, match="Nope"):
        import_markdown(SEED.read_text(), phases=["Nope"])


BAD_FILES = {
    "unknown field": (
        """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: a
            text: A
            requird: false
""",
        r"bad\.yml:12 › phases\[0\] › groups\[0\] › items\[0\] › requird: unknown field",
    ),
    "bad slug": (
        """id: t
title: T
phases:
  - id: Not A Slug
    title: P
    groups: [{id: g, title: G, items: [{id: a, text: A}]}]
""",
        r"bad\.yml:4 › phases\[0\] › id: must be a slug",
    ),
    "duplicate item ids": (
        """id: t
title: T
phases:
  - id: p
    title: P
    groups: [{id: g, title: G, items: [{id: a, text: A}, {id: a, text: B}]}]
""",
        r"bad\.yml:\d+ › .*duplicate id 'a' among items",
    ),
    "unknown probe kind": (
        """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: a
            text: A
            probe: {kind: htp, url: "https://x"}
""",
        r"bad\.yml:12 › phases\[0\] › groups\[0\] › items\[0\] › probe: unknown kind 'htp' \(known kinds: http, ",
    ),
    "probe field": (
        """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: a
            text: A
            probe:
              kind: latency
              url: https://x
              requests: 5000
""",
        r"bad\.yml:15 › phases\[0\] › groups\[0\] › items\[0\] › probe › requests: Input should be less than or equal",
    ),
    "broken YAML": ("id: t\ntitle: [unclosed\n", r"bad\.yml:\d+: not valid YAML"),
    "missing items": (
        """id: t
title: T
phases:
  - id: p
    title: P
    groups: [{id: g, title: G}]
""",
        r"bad\.yml:6 › phases\[0\] › groups\[0\] › items: Field required",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_invalid_files_are_named_by_file_line_and_field(case: str, tmp_path: Path) -> None:
    text, expected = BAD_FILES[case]
    (tmp_path / "bad.yml").write_text(text)
    with pytest.raises(ChecklistError) as caught:
        load_folder(tmp_path)
    assert re.search(expected, str(caught.value)), str(caught.value)


def test_deploybot_check_command(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(ROOT / "checklists")], capture_output=True, text=True, cwd=ROOT
    )
    assert ok.returncode == 0, ok.stderr
    assert "production-deploy: 3 phase(s), 89 item(s)" in ok.stdout
    (tmp_path / "bad.yml").write_text(BAD_FILES["unknown field"][0])
    bad = subprocess.run([sys.executable, "-m", "bot", "check", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "bad.yml:12 › phases[0] › groups[0] › items[0] › requird: unknown field" in bad.stderr


def test_deploybot_import_command_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "imported.yml"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "import", str(SEED), "-o", str(out), "--section", "Pre-Deployment"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    template = load_template(out)
    assert [g.title for g in template.phases[0].groups] == list(seed_sections()["Pre-Deployment"])
    assert yaml.safe_load(out.read_text())["kind"] == "deploy"


def test_deploybot_check_of_one_file(tmp_path: Path) -> None:
    one = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(ROOT / "checklists" / "production-deploy.yml")],
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout == "ok  production-deploy: 3 phase(s), 89 item(s)\n"
    (tmp_path / "bad.yaml").write_text(BAD_FILES["unknown field"][0])
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "check", str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"{tmp_path / 'bad.yaml'}:12 › phases[0] › groups[0] › items[0] › requird: unknown")


def test_an_empty_folder_says_both_extensions_and_a_missing_path_says_folder_or_file(tmp_path: Path) -> None:
    with pytest.raises(ChecklistError, match=r"no checklist files \(\*\.yml or \*\.yaml\) found"):
        load_folder(tmp_path)
    with pytest.raises(ChecklistError, match="no such checklist folder or file"):
        load_folder(tmp_path / "missing")


def test_a_duplicate_item_id_is_reported_at_the_duplicate_with_every_other_fault(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: a
            text: A
          - id: a
            text: B
            requird: false
  - id: p
    title: Again
    schedule: {cron: "0 9 * * *", nudge_after: 1h, escalate_after: 2h}
    groups: [{id: g, title: G, items: [{id: b, text: B}]}]
"""
    )
    with pytest.raises(ChecklistError) as caught:
        load_folder(tmp_path)
    bad = tmp_path / "bad.yml"
    assert caught.value.errors == [
        f"{bad}:14 › phases[0] › groups[0] › items[1] › requird: unknown field (check the spelling; "
        "the README lists the allowed fields)",
        f"{bad}:15 › phases[1] › id: duplicate id 'p' among phases (first at phases[0] › id): ids must be unique",
        f"{bad}:17 › phases[1] › schedule: only maintenance checklists (kind: maintenance) have schedules",
        f"{bad}:12 › phases[0] › groups[0] › items[1] › id: duplicate id 'a' among items "
        "(first at phases[0] › groups[0] › items[0] › id): ids must be unique",
    ]


def test_an_id_used_by_another_file_names_that_file(tmp_path: Path) -> None:
    text = (ROOT / "checklists" / "rollback.yml").read_text()
    (tmp_path / "a.yml").write_text(text)
    (tmp_path / "b.yml").write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("id: "))
    with pytest.raises(ChecklistError) as caught:
        load_folder(tmp_path)
    assert caught.value.errors == [
        f"{tmp_path / 'b.yml'}:{line} › id: template id 'rollback' is already used by {tmp_path / 'a.yml'}: "
        "ids must be unique"
    ]


def deploybot_import(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "import", str(SEED), *args], capture_output=True, text=True, cwd=ROOT
    )


def test_the_seeds_three_checklists_import_into_one_folder_that_checks(tmp_path: Path) -> None:
    deploy = ["--section", "Pre-Deployment", "--section", "Deployment", "--section", "Post-Deployment"]
    for args in (
        [*deploy, "--id", "production-deploy"],
        ["--section", "Ongoing Maintenance", "--kind", "maintenance"],
        ["--section", "Rollback Plan", "--kind", "rollback"],
    ):
        result = deploybot_import(*args, "-o", str(tmp_path / f"{len(list(tmp_path.iterdir()))}.yml"))
        assert result.returncode == 0, result.stderr
    templates = load_folder(tmp_path)
    assert sorted(templates) == ["ongoing-maintenance", "production-deploy", "rollback-plan"]
    shipped_schedules = [p.schedule for p in load_template(ROOT / "checklists" / "maintenance.yml").phases]
    assert [(p.id, p.schedule) for p in templates["ongoing-maintenance"].phases] == list(
        zip(["daily", "weekly", "monthly", "quarterly"], shipped_schedules, strict=True)
    )
    checked = subprocess.run([sys.executable, "-m", "bot", "check", str(tmp_path)], capture_output=True, text=True)
    assert checked.returncode == 0 and "warn" not in checked.stdout, checked.stdout + checked.stderr


def test_a_maintenance_import_without_cadences_is_refused_with_the_hint() -> None:
    result = deploybot_import("--section", "Deployment", "--kind", "maintenance")
    assert result.returncode == 2 and result.stdout == ""
    assert "cannot tell how often Deployment › Docker Deployment" in result.stderr
    assert "Daily, Weekly, Monthly, Quarterly" in result.stderr and "--kind deploy" in result.stderr


def test_tasks_before_the_first_section_are_kept_in_a_phase_named_after_the_title() -> None:
    data = import_markdown("# Ops\n- [ ] Loose task\n## Later\n- [ ] Look\n")
    assert [(p["title"], [i["text"] for g in p["groups"] for i in g["items"]]) for p in data["phases"]] == [
        ("Ops", ["Loose task"]),
        ("Later", ["Look"]),
    ]


def test_an_import_says_what_it_skipped_and_offers_the_contacts(tmp_path: Path) -> None:
    result = deploybot_import("-o", str(tmp_path / "all.yml"))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("skipped ## Emergency Contacts: no tasks") and "contacts:` block" in lines[0]
    assert lines[1].startswith("skipped ## Notes: no tasks")
    block = yaml.safe_load("\n".join(lines[2:]))
    assert {team: entry["name"] for team, entry in block["contacts"].items()} == {
        "devops-team": "DevOps Team",
        "database-admin": "Database Admin",
        "security-team": "Security Team",
        "on-call-engineer": "On-Call Engineer",
    }
    assert "[Contact Info]" in result.stderr  # what the Markdown said, kept as a comment to fill in
    assert "skipped" not in deploybot_import("--section", "Rollback Plan").stderr
