"""`deploybot ci start|report|deployed|gate`: arguments, environment, and what each command prints."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import quote

from bot.ci.client import Api
from bot.ci.exits import CiError, Exit
from bot.ci.gate import describe_run, wait_at_gate
from bot.ci.text import inert, seconds

ITEM_STATUSES = ("done", "failed", "na")
DEPLOYMENT_STATUSES = ("started", "succeeded", "failed")
SUMMARY_LIMIT = 200
_DEFAULT_RETRY = "2m"
EXIT_HELP = """exit status:
  0  done; the gate is open
  2  wrong arguments, or a request deploybot refused as invalid (400, 404, 409, 413)
  3  DEPLOYBOT_TOKEN missing, or refused (401, 403)
  4  the run failed, was rolled back or aborted
  5  an item failed (reported failed, or its probe failed)
  6  the gate did not open within --timeout
  7  deploybot unreachable (connection errors, 5xx, 429) until the time ran out"""
_DEFAULT_GATE = "30m"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `ci` and its commands to deploybot's subcommands."""
    ci: argparse.ArgumentParser = sub.add_parser(
        "ci",
        help="from a pipeline: start a run, report items and the deployment, wait at a gate",
        description="Talks to a running deploybot at DEPLOYBOT_URL with the token in DEPLOYBOT_TOKEN.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = ci.add_subparsers(dest="ci_command", required=True)
    start = commands.add_parser("start", help="start a run (once per pipeline run); prints its id on the last line")
    start.add_argument("--version", required=True, help="the version being deployed, e.g. v1.4.2")
    start.add_argument("--environment", required=True, help="e.g. production")
    start.add_argument("--checklist", help="a deploy checklist id; default: the channel's")
    start.add_argument("--channel", help="a Slack channel id; default: the token's channel")
    start.add_argument(
        "--key",
        help="what makes a retried pipeline find its run again; default: the CI's run id "
        "(GITHUB_REPOSITORY and GITHUB_RUN_ID, or CI_PROJECT_ID and CI_PIPELINE_ID) and the environment",
    )
    report = commands.add_parser("report", help="report one checklist item: done, failed, or N/A with a reason")
    report.add_argument("item", help="the item's id (e.g. all-tests-are-passing) or its number as Slack shows it")
    report.add_argument("status", choices=ITEM_STATUSES)
    report.add_argument("--reason", help="why the item does not apply (required with na)")
    report.add_argument("--evidence-url", help="http(s) link to the proof: the CI job, a test report, an image")
    report.add_argument("--summary", help=f"one line, at most {SUMMARY_LIMIT} characters")
    deployed = commands.add_parser("deployed", help="report the deployment: started, succeeded or failed")
    deployed.add_argument("status", choices=DEPLOYMENT_STATUSES)
    deployed.add_argument("--evidence-url", help="http(s) link to the deploy job or release")
    deployed.add_argument("--summary", help=f"one line, at most {SUMMARY_LIMIT} characters")
    gate = commands.add_parser(
        "gate",
        help="wait until a phase's required items are done or N/A",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gate.add_argument("--phase", help="a phase id, e.g. pre-deployment; default: the whole run")
    for command in (report, deployed, gate):
        command.add_argument("--run", help="the run id `start` printed; default: DEPLOYBOT_RUN")
    for command in (start, report, deployed):
        command.add_argument(
            "--timeout",
            default=_DEFAULT_RETRY,
            help=f"how long to retry while deploybot is unreachable ({_DEFAULT_RETRY})",
        )
    gate.add_argument("--timeout", default=_DEFAULT_GATE, help=f"how long to wait, e.g. 90s, 30m, 1h ({_DEFAULT_GATE})")
    return ci


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Carry out one `deploybot ci` command; its exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    # httpx logs each request at INFO: the command's own lines are the output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        timeout = _timeout(args.timeout)
        body = _request_body(args, env)  # every argument checked before anything is sent
        api = _connect(env)
        try:
            return int(_dispatch(api, args, env, body, timeout, out))
        finally:
            api.close()
    except CiError as exc:
        print(f"deploybot ci {args.ci_command}: {exc}", file=err, flush=True)
        return int(exc.code)


def _dispatch(
    api: Api, args: argparse.Namespace, env: Mapping[str, str], body: dict[str, Any], timeout: float, out: TextIO
) -> Exit:
    deadline = time.monotonic() + timeout
    if args.ci_command == "start":
        status, answer = api.call("POST", "runs", body=body, deadline=deadline)
        run = answer["run"]
        verb = "started" if status == 201 else f"already started for {inert(body['key'])}:"
        print(f"{verb} run {run['id']}: {describe_run(run)}", file=out)
        print(run["id"], file=out, flush=True)
        return Exit.OK
    run_id = _run_id(args.run, env)
    if args.ci_command == "report":
        path = f"runs/{run_id}/items/{quote(args.item, safe='')}"  # an id is a slug; anything else stays one segment
        _, answer = api.call("POST", path, body=body, deadline=deadline)
        item = _find(answer["run"], args.item)
        shown = f"#{item['number']} {inert(item['text'], 120)}" if item else inert(args.item)
        print(f"run {run_id}: {shown} reported {args.status}", file=out, flush=True)
        return Exit.OK
    if args.ci_command == "deployed":
        _, answer = api.call("POST", f"runs/{run_id}/deployment", body=body, deadline=deadline)
        run = answer["run"]
        print(f"run {run_id}: deployment {args.status} reported; {describe_run(run)}", file=out, flush=True)
        return Exit.OK
    return wait_at_gate(api, run_id, args.phase, timeout, out, time.monotonic, time.sleep)


def _request_body(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """The JSON the command sends, or CiError(INVALID) saying which argument is wrong."""
    if args.ci_command == "gate":
        if args.phase is not None and not args.phase.strip():
            raise CiError("--phase is empty: give a phase id such as pre-deployment, or leave it out", Exit.INVALID)
        return {}
    if args.ci_command == "start":
        key = args.key if args.key is not None else default_key(env, args.environment)
        if not key or not key.strip():
            raise CiError(
                "no --key, and no CI run id in the environment (GITHUB_RUN_ID, CI_PIPELINE_ID): "
                "give --key with something unique to this pipeline run, so a retried job finds its run",
                Exit.INVALID,
            )
        body = {"version": args.version, "environment": args.environment, "key": key}
        body |= {name: getattr(args, name) for name in ("checklist", "channel") if getattr(args, name) is not None}
        return body
    body = {"status": args.status}
    if getattr(args, "reason", None) is not None:
        body["reason"] = args.reason
    elif args.ci_command == "report" and args.status == "na":
        raise CiError("na needs --reason: say why the item does not apply to this deployment", Exit.INVALID)
    if args.evidence_url is not None:
        if not args.evidence_url.startswith(("http://", "https://")):
            raise CiError("--evidence-url must start with http:// or https://, e.g. the CI job's URL", Exit.INVALID)
        body["evidence_url"] = args.evidence_url
    if args.summary is not None:
        if "\n" in args.summary.strip() or len(args.summary) > SUMMARY_LIMIT:
            raise CiError(f"--summary must be one line of at most {SUMMARY_LIMIT} characters", Exit.INVALID)
        body["summary"] = args.summary
    return body


def default_key(env: Mapping[str, str], environment: str) -> str | None:
    """The CI's own id of this pipeline run (the same when a job is retried), with the environment."""
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        return f"github:{env['GITHUB_REPOSITORY']}:{env['GITHUB_RUN_ID']}:{environment}"
    if env.get("CI_PROJECT_ID") and env.get("CI_PIPELINE_ID"):
        return f"gitlab:{env['CI_PROJECT_ID']}:{env['CI_PIPELINE_ID']}:{environment}"
    return None


def _connect(env: Mapping[str, str]) -> Api:
    """A client for DEPLOYBOT_URL with DEPLOYBOT_TOKEN, or CiError naming what is missing."""
    url = env.get("DEPLOYBOT_URL", "").strip().rstrip("/").removesuffix("/api/v1").rstrip("/")
    if not url:
        raise CiError(
            "DEPLOYBOT_URL is not set: the address deploybot serves on, e.g. https://deploybot.example.com",
            Exit.INVALID,
        )
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise CiError(
            f"DEPLOYBOT_URL {inert(url, 100)!r} is not an http(s) address, e.g. https://deploybot.example.com",
            Exit.INVALID,
        )
    token = env.get("DEPLOYBOT_TOKEN", "").strip()
    if not token:
        raise CiError(
            "DEPLOYBOT_TOKEN is not set: an operator creates a token with `deploybot token create --name NAME "
            "--channel CHANNEL`; store it as a CI secret",
            Exit.UNAUTHORIZED,
        )
    if not (token.isascii() and token.isprintable()) or " " in token:
        # Said without the value: a pasted secret may be half of something else.
        raise CiError("DEPLOYBOT_TOKEN holds spaces or characters no token has: paste it again", Exit.UNAUTHORIZED)
    return Api(url, token)


def _run_id(given: str | None, env: Mapping[str, str]) -> int:
    value = given if given is not None else env.get("DEPLOYBOT_RUN", "")
    if not value.strip():
        raise CiError(
            "which run? give --run ID (the id `deploybot ci start` printed) or set DEPLOYBOT_RUN", Exit.INVALID
        )
    if not value.strip().isdigit() or int(value) < 1:
        source = "--run" if given is not None else "DEPLOYBOT_RUN"
        raise CiError(
            f"{source} {inert(value, 40)!r} is not a run id: it is the number `deploybot ci start` printed",
            Exit.INVALID,
        )
    return int(value)


def _timeout(text: str) -> float:
    try:
        return seconds(text)
    except ValueError as exc:
        raise CiError(f"--timeout {exc}", Exit.INVALID) from None


def _find(run: dict[str, Any], item: str) -> dict[str, Any] | None:
    for phase in run["phases"]:
        for each in phase["items"]:
            if item in (each["id"], str(each["number"])):
                return dict(each)
    return None
