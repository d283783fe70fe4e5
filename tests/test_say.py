"""Messages written once: Slack gets mrkdwn, a terminal gets plain text with nothing to interpret."""

from __future__ import annotations

from bot.runs import RunError
from bot.say import Channel, Cmd, Code, Group, Icon, Strong, Typed, Who, say, slack, terminal

HOSTILE = "<!channel> & \x1b[2J\u202eevil"


def test_each_part_renders_for_slack_and_for_a_terminal() -> None:
    message = say(
        "Run #3 (", Typed(HOSTILE), ") by ", Who("U0BOB00001"), " and ", Who("alice"), ": see ", Cmd("abort <reason>"),
        ", ", Code("--checklist <name>"), ", ", Code(HOSTILE, typed=True), ", ", Strong("Team"), " ",
        Group("S0DEVOPS01"), " in ", Channel("C0123"), " ", Icon("telephone_receiver"), " 555 ", Icon("tada"), " ok",
    )  # fmt: skip
    assert (
        slack(message)
        == str(message)
        == (
            "Run #3 (&lt;!channel&gt; &amp; \x1b[2J\u202eevil) by <@U0BOB00001> and *alice*: "
            "see `/deploy abort <reason>`, `--checklist <name>`, `&lt;!channel&gt; &amp; \x1b[2J\u202eevil`, "
            "*Team* <!subteam^S0DEVOPS01> in <#C0123> :telephone_receiver: 555 :tada: ok"
        )
    )
    assert terminal(message) == (
        "Run #3 (<!channel> & \\u001b[2J\\u202eevil) by U0BOB00001 and alice: see 'abort <reason>', "
        "'--checklist <name>', '<!channel> & \\u001b[2J\\u202eevil', Team user group S0DEVOPS01 in #C0123 "
        "phone: 555 ok"
    )


def test_a_terminal_shows_people_by_name_when_it_knows_them() -> None:
    names = {"U0BOB00001": "Bob Smith"}.get
    assert terminal(say("done by ", Who("U0BOB00001"), ", ", Who("U0NOBODY01"), ", ", Who(None)), names) == (
        "done by Bob Smith, U0NOBODY01, someone"
    )


def test_a_refusal_carries_its_message_and_says_it_in_mrkdwn_to_slack() -> None:
    error = RunError(say("Say why: ", Cmd("abort <reason>"), "."))
    assert str(error) == "Say why: `/deploy abort <reason>`."
    assert terminal(error.message) == "Say why: 'abort <reason>'."
    assert RunError("plain words").message == "plain words"
