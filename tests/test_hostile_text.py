"""Hostile text typed into every field reaches every output as typed, and never as a mention or a link."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from bot.models import ItemState, Message, Page, Run, RunStatus
from bot.printable import visible
from bot.slack import ids
from bot.slack.mrkdwn import escape
from tests.fake_slack import FakeSlack
from tests.slack_requests import select_values
from tests.test_home import open_home
from tests.test_paging import Paging, paging_bot

HOSTILE: list[str] = json.loads((Path(__file__).parent / "fixtures" / "hostile-text.json").read_text())
PEOPLE = {"U100", "U0DBA1", "U0DBA2", "U0ONCALL"}  # who acts, and who the contacts are
DM_TARGETS = {"U0DBA1", "U0DBA2", "U0ONCALL"}
# What Slack reads as a mention, a channel link, a special command or a link.
MARKUP = re.compile(r"<(?:[!@#]|[a-zA-Z][\w+.-]*:)[^>]*>?")
OWN_DATE = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[\d\- :A-Z]+>")
REFUSED_BY_SLACK_PATHS = ("Something went wrong",)  # an unexplained failure is no answer


def slack_sends(typed: str) -> str:
    """Slash-command text as Slack's servers deliver it: `&`, `<` and `>` as entities."""
    return escape(typed)


def accepted(typed: str, limit: int = 500) -> bool:
    """Whether deploybot should keep this as a reason, note or message (else refuse it, saying why)."""
    kept = typed.strip()
    return bool(kept) and "\x00" not in kept and len(kept) <= limit


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def foreign_markup(text: str, channels: set[str]) -> list[str]:
    """Mentions and links in `text` that deploybot did not write itself."""
    found = []
    for match in MARKUP.finditer(text):
        token = match.group()
        mention = re.fullmatch(r"<@(\w+)>", token)
        channel = re.fullmatch(r"<#(\w+)>", token)
        own = (
            OWN_DATE.fullmatch(token) is not None
            or (mention is not None and mention.group(1) in PEOPLE)
            or (channel is not None and channel.group(1) in channels)
        )
        if not own:
            found.append(token)
    return found


def shown_mrkdwn(text: str) -> str:
    """What Slack displays for mrkdwn text, formatting aside: its three entities decoded, once."""
    return re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], text)


class Flow:
    """One person typing one hostile string into every field, in a channel of its own."""

    def __init__(self, paging: Paging, n: int, typed: str):
        self.paging, self.n, self.typed = paging, n, typed
        self.kept = typed.strip()
        self.channel = f"C{n:03d}HOSTILE"
        self.answers: list[str] = []

    @property
    def slack(self) -> Any:
        return self.paging.bot.slack

    def command(self, text: str) -> dict[str, Any]:
        response = self.slack.command(slack_sends(text), channel=self.channel)
        assert response.status_code == 200, response.text
        answer = response.json()
        self.answers.append(answer["text"])
        assert not answer["text"].startswith(REFUSED_BY_SLACK_PATHS), (self.typed, answer)
        return dict(answer)

    def submit(self, callback_id: str, run_id: int, values: dict[str, Any]) -> httpx.Response:
        metadata = json.dumps({"run": run_id, "channel": self.channel, "message": None})
        response = self.slack.submit(callback_id, metadata, values)
        assert response.status_code == 200, response.text
        if response.content:
            errors = response.json()["errors"]
            self.answers += list(errors.values())
            assert not any(e.startswith(REFUSED_BY_SLACK_PATHS) for e in errors.values()), (self.typed, errors)
        return response

    def run_in_channel(self, kind: str = "deploy") -> tuple[int, list[str]]:
        """The active run of `kind` here, and its items' ids."""
        with self.paging.bot.app.sessions() as session:
            active = (Run.channel_id == self.channel, Run.kind == kind, Run.status == RunStatus.ACTIVE)
            run = session.scalars(select(Run).where(*active)).one()
            return run.id, [item.id for item in run.template.items]

    def try_start(self, args: str, version: str, environment: str) -> None:
        """A start with typed arguments: refused, or started with exactly what was typed (then aborted)."""
        answer = self.command(f"start {args}")["text"]
        if answer.startswith("Run #"):
            run_id = int(answer.removeprefix("Run #").split(" ")[0])
            with self.paging.bot.app.sessions() as session:
                run = session.get(Run, run_id)
                assert run is not None and (run.version, run.environment) == (version, environment)
            self.command("abort trying what a version or environment may be")
        else:
            assert "version" in answer or "environment" in answer or "not an option of start" in answer, answer

    def play(self) -> None:
        """Every field a person types into, in the order a person would."""
        self.command(self.typed)  # not a subcommand: answered with help, naming what was typed
        self.command(f"page {self.typed} please")  # not a team
        self.command(f"remind {self.typed}")  # not a cadence
        # start's words are split on any whitespace: the first is the version, the rest the environment.
        words = self.kept.split() or [""]
        self.try_start(self.typed, words[0], " ".join(words[1:]) or "production")
        self.try_start(f"v1.{self.n} {self.typed}", f"v1.{self.n}", " ".join(self.kept.split()) or "production")

        self.command(f"start v2.{self.n} production")
        run_id, items = self.run_in_channel()
        first, second = items[0], items[1]
        self.slack.click(ids.NA_DIALOG, {"run": run_id, "part": 1}, channel=self.channel)
        self.submit(ids.NA_VIEW, run_id, select_values(first, ids.REASON_FIELD, self.typed))
        self.submit(ids.NOTE_VIEW, run_id, select_values(second, ids.NOTE_FIELD, self.typed))
        self.command(f"page dba {self.typed}")
        if self.n % 2:
            self.command(f"fail {self.typed}")
        else:
            field = {ids.REASON_FIELD: {ids.REASON_FIELD: {"type": "plain_text_input", "value": self.typed}}}
            self.submit(ids.FAIL_VIEW, run_id, field)
        if accepted(self.typed):
            rollback, _ = self.run_in_channel("rollback")
            response = self.slack.click(ids.PAGE_ONCALL, {"run": rollback}, channel=self.channel)
            assert response.status_code == 200
            for fmt in ("md", "csv", "json"):
                self.slack.click(ids.EXPORT, {"run": run_id, "format": fmt}, channel=self.channel)
        else:
            self.command(f"fail {self.n}: the reason above was refused")
        self.command("abort the rollback is not needed here")  # one deployment or rollback at a time per channel
        self.command(f"start v3.{self.n} production")
        self.command(f"abort {self.typed}")
        if not accepted(self.typed):
            self.command("abort the reason above was refused")
        self.run_id, self.items = run_id, (first, second)

    def check_stored(self) -> None:
        """What was typed is what is kept (ends trimmed), or nothing is kept and the answer says why."""
        ok = accepted(self.typed)
        with self.paging.bot.app.sessions() as session:
            states = {
                s.item_id: s
                for s in session.scalars(
                    select(ItemState).where(ItemState.run_id == self.run_id, ItemState.item_id.in_(self.items))
                )
            }
            runs = {
                r.version: r
                for r in session.scalars(select(Run).where(Run.channel_id == self.channel, Run.kind == "deploy"))
            }
            pages = list(session.scalars(select(Page).where(Page.channel_id == self.channel).order_by(Page.id)))
        first, second = self.items
        assert states[first].na_reason == (self.kept if ok else None), self.typed
        assert states[second].note == (self.kept if ok else None), self.typed
        failed, aborted = runs[f"v2.{self.n}"], runs[f"v3.{self.n}"]
        assert failed.finish_reason == (self.kept if ok else f"{self.n}: the reason above was refused")
        assert aborted.finish_reason == (self.kept if ok else "the reason above was refused")
        assert [p.team for p in pages] == (["dba", "oncall"] if ok else [])
        if ok:
            assert pages[0].text == self.kept
            assert pages[1].text.startswith(f"Deployment v2.{self.n} → production failed: {self.kept}. Rollback:")
        else:
            assert any("NUL" in a or "Say " in a or "Keep " in a or "empty" in a for a in self.answers), self.answers

    def check_shown(self, fake: FakeSlack) -> None:
        """Every field shows what was typed, escaped once."""
        if not accepted(self.typed):
            return
        with self.paging.bot.app.sessions() as session:
            messages = {
                (m.run_id, m.page_id, m.part): m.ts
                for m in session.scalars(select(Message).where(Message.channel_id == self.channel))
            }
            pages = list(session.scalars(select(Page).where(Page.channel_id == self.channel).order_by(Page.id)))
            aborted = session.scalars(select(Run).where(Run.version == f"v3.{self.n}")).one()
        escaped = escape(self.kept)
        short = len(escaped) <= 700  # longer texts are shown clipped
        shown = self.kept if short else self.kept[:100]

        def message(run_id: int | None, page_id: int | None, part: int) -> dict[str, Any]:
            return fake.messages[(self.channel, messages[(run_id, page_id, part)])]

        parts = [message(self.run_id, None, n) for n in (1, 2, 3, 4) if (self.run_id, None, n) in messages]
        item_blocks = {b.get("block_id"): b for m in parts for b in m["blocks"]}
        first, second = self.items
        assert "N/A by <@U100> " in item_blocks[f"item.{first}"]["text"]["text"]
        assert shown in shown_mrkdwn(item_blocks[f"item.{first}"]["text"]["text"]), self.typed
        assert shown in shown_mrkdwn(item_blocks[f"item.{second}"]["text"]["text"]), self.typed
        failed_parent = message(self.run_id, None, 0)["blocks"]
        assert shown in shown_mrkdwn(failed_parent[3]["text"]["text"]), self.typed
        aborted_parent = message(aborted.id, None, 0)["blocks"]
        assert shown in shown_mrkdwn(aborted_parent[3]["text"]["text"]), self.typed
        alert = message(None, pages[0].id, 0)
        assert shown in shown_mrkdwn(alert["blocks"][1]["text"]["text"]), self.typed
        # The fallback `text` of the alert and of every DM: escaped once, like the blocks.
        assert shown_mrkdwn(alert["text"]) == f"Page for Database Admin: {self.kept}", self.typed
        for user in ("U0DBA1", "U0DBA2"):
            texts = [shown_mrkdwn(m["text"]) for m in fake.posted_to(user)]
            assert f"Page for Database Admin: {self.kept}" in texts, self.typed

    def check_exports(self, fake: FakeSlack) -> None:
        """The exports keep the text as typed: JSON and CSV as data, Markdown with its markup escaped."""
        from bot.export import markdown_text

        if not accepted(self.typed):
            return
        exported = {
            f["title"].rsplit("(", 1)[-1].rstrip(")"): f["content"].decode()
            for f in fake.files
            if f["title"].startswith(f"Run #{self.run_id} ")
        }
        first, second = self.items
        document = json.loads(exported["json"])
        items = {i["id"]: i for i in document["items"]}
        assert items[first]["na_reason"] == self.kept and items[second]["notes"][0]["text"] == self.kept
        assert document["run"]["finish_reason"] == self.kept
        rows = {row["item"]: row for row in csv.DictReader(io.StringIO(exported["csv"]))}
        # A spreadsheet cell shows every character, those a screen would act on as their codes.
        shown = "\r\n".join(visible(line) for line in self.kept.split("\r\n"))
        assert rows[first]["na_reason"] == shown and rows[second]["notes"] == f"primary-owner (U100): {shown}"
        assert f"N/A: {markdown_text(self.kept)}" in exported["md"]
        assert f"Reason: {markdown_text(self.kept)}" in exported["md"]


def every_outbound_text(paging: Paging, flows: list[Flow]) -> Iterator[tuple[str, str]]:
    """(where, text) for every call to Slack and every answer deploybot gave in a response."""
    for call in paging.bot.fake.calls:
        for text in strings(call.args):
            yield call.method, text
    for flow in flows:
        for answer in flow.answers:
            yield "response", answer


def test_hostile_text_in_every_field_is_kept_as_typed_and_never_a_mention(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    assert len(HOSTILE) > 40
    with paging_bot(database_url, fake_slack, tmp_path) as paging:
        bot = paging.bot
        open_home(bot)
        flows = [Flow(paging, n, typed) for n, typed in enumerate(HOSTILE)]
        for flow in flows:
            flow.play()
        paging.delivered()
        bot.settled(timeout=120)
        bot.told()
        with bot.app.sessions() as session:
            last = max(session.scalars(select(Run.id)))
        bot.wait_for(lambda: f"*#{last}*" in json.dumps(fake_slack.homes.get("U100")), what="the Home tab")

        channels = {f.channel for f in flows}
        leaks = [
            (where, token, text[:200])
            for where, text in every_outbound_text(paging, flows)
            for token in foreign_markup(text, channels)
        ]
        assert leaks == []

        for flow in flows:
            flow.check_stored()
            flow.check_shown(fake_slack)
            flow.check_exports(fake_slack)

        # Nobody else was notified: DMs reach the contacts only, no user group was looked up.
        dm_channels = {
            fake_slack.conversation(c.args["channel"])
            for c in fake_slack.calls_of("chat.postMessage")
            if c.args["channel"] not in channels
        }
        assert dm_channels == {fake_slack.im(user) for user in DM_TARGETS}
        assert fake_slack.calls_of("usergroups.users.list") == []

        kept_pages = sum(accepted(t) for t in HOSTILE)
        for receiver in (paging.pagerduty, paging.webhook):
            bodies = receiver.accepted()
            assert len(bodies) == kept_pages
            for received in bodies:
                raw = received.body.decode()
                assert MARKUP.search(raw) is None, raw[:300]
        with bot.app.sessions() as session:
            texts = {p.dedup_key: p.text for p in session.scalars(select(Page).where(Page.team == "dba"))}
        for received in paging.pagerduty.accepted():
            event = received.json
            assert event["payload"]["custom_details"]["text"] == texts[event["dedup_key"]]
            summary = event["payload"]["summary"]
            assert MARKUP.search(summary) is None
            assert summary.replace("\u2060", "") == f"Page for Database Admin: {texts[event['dedup_key']]}"[:1024]
        for received in paging.webhook.accepted():
            page = received.json["page"]
            assert page["text"] == texts[page["dedup_key"]]


def test_slash_command_text_is_decoded_once_and_escaped_once(
    database_url: str, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    with paging_bot(database_url, fake_slack, tmp_path) as paging:
        bot = paging.bot
        # The person typed "replica lag & disk"; Slack sends it as "replica lag &amp; disk".
        assert bot.slack.command("page dba replica lag &amp; disk", channel="C100").status_code == 200
        assert bot.slack.command("start v1.0 production", channel="C100").status_code == 200
        abort = bot.slack.command("abort lag &lt;5s &amp;&amp; disk &gt; 90%", channel="C100")
        assert abort.status_code == 200 and abort.json()["text"].startswith("Run #")
        paging.delivered()
        bot.settled()
        with bot.app.sessions() as session:
            page = session.scalars(select(Page)).one()
            run = session.scalars(select(Run)).one()
        assert page.text == "replica lag & disk"
        assert run.finish_reason == "lag <5s && disk > 90%"

        alert = paging.alert()
        assert alert["blocks"][1]["text"]["text"].startswith("*replica lag &amp; disk*")
        assert alert["text"] == "Page for Database Admin: replica lag &amp; disk"
        assert paging.dms("U0DBA1")[0]["text"] == "Page for Database Admin: replica lag &amp; disk"
        assert "&amp;amp;" not in json.dumps([alert, paging.dms("U0DBA1")])
        parent = next(m for m in fake_slack.messages.values() if m["blocks"][0]["text"]["text"].startswith("Deploy"))
        assert "_lag &lt;5s &amp;&amp; disk &gt; 90%_" in parent["blocks"][3]["text"]["text"]
        event = paging.pagerduty.accepted()[0].json
        assert event["payload"]["summary"] == "Page for Database Admin: replica lag & disk"
        assert event["payload"]["custom_details"]["text"] == "replica lag & disk"


def test_the_shell_keeps_hostile_text_as_typed_and_shows_it_inert(database_url: str) -> None:
    from tests.test_shell_export import shell

    # One command per line: texts with line breaks cannot be typed on one line of the shell.
    typed = [t for t in HOSTILE if "\n" not in t and "\r" not in t]
    script = ["start v1.0 production"]
    script += [f"note {n} {shlex.quote(t)}" for n, t in enumerate(typed, 1)]
    script += [f"na {n} {shlex.quote(t)}" for n, t in enumerate(typed, 45)]
    script += ["start v9 '<!channel> & co'", "status"]
    out = shell(database_url, "\n".join(script) + "\n")

    assert "! '<!channel> & co' is not an environment name" in out  # refusals show what was typed
    status = out[out.rindex("Run #1 ·") :]
    # Nothing a terminal acts on reaches it raw: no escape sequences, carriage returns or bidi overrides.
    assert re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", status) is None
    assert "\\u202eRTL override\\u202c" in status and "note (alice): <!channel>" in status
    engine = create_engine(database_url)
    with Session(engine) as session:
        states = list(session.scalars(select(ItemState).where(ItemState.run_id == 1).order_by(ItemState.position)))
        kept = [(s.note, s.na_reason) for s in states]
    engine.dispose()
    for n, text in enumerate(typed):
        note, reason = kept[n][0], kept[n + 44][1]
        assert (note, reason) == ((text.strip(),) * 2 if accepted(text) else (None, None)), text
    assert "! That text contains a NUL character" in out and "! The note is empty" in out


def test_the_markdown_export_shows_a_persons_markup_as_text() -> None:
    from bot import export

    typed = "lag > 5s & [docs](https://evil.example) *now*\n# not a heading\n- nor a list"
    someone = {"id": "U1", "name": None}
    item = {"number": 1, "phase": "Deploy", "group": "DB", "id": "db", "text": "Migrations ran", "status": "na"}
    item |= {"by": someone, "at": "2026-12-01T10:00:00+00:00", "na_reason": typed, "probe": None, "override": None}
    item |= {"required": True, "command": None, "help": None}
    item["notes"] = [{"by": someone, "at": "2026-12-01T10:01:00+00:00", "text": "<!channel> `x`"}]
    run = {"id": 1, "title": "Deploy", "version": "v1", "environment": "production", "status": "aborted"}
    run |= {"started_by": someone, "started_at": "2026-12-01T09:00:00+00:00", "finish_reason": "1. a_b"}
    run |= {"completed_anyway_with_open": [], "finished_by": someone, "finished_at": "2026-12-01T11:00:00+00:00"}
    footer = {"last_updated": "2026-12-01T11:00:00+00:00", "deployed_by": someone, "version": "v1"}
    lines = export.render({"run": run, "footer": footer, "items": [item], "events": []}, "md").splitlines()

    assert "Reason: 1. a\\_b" in lines
    at = lines.index(next(line for line in lines if "N/A:" in line))
    assert lines[at].endswith(" — N/A: lag \\> 5s \\& \\[docs\\](https\\://evil.example) \\*now\\*\\")
    assert lines[at + 1 : at + 3] == ["    \\# not a heading\\", "    \\- nor a list"]
    assert lines[at + 3].endswith(": \\<!channel\\> \\`x\\`")
