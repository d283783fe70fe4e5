"""Probe timings are the target's: warm-up outside the clock, a stated percentile, timed probes alone."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter
from sqlalchemy import select

from bot.models import ItemState
from bot.probes import Variables, prepare, run_all, run_probe
from bot.probes.specs import ProbeSpec
from bot.probes.web import _percentile
from tests.conftest import ROOT, ShiftedClock, launched
from tests.fake_slack import FakeSlack
from tests.probe_servers import http_server
from tests.test_slack_flow import CHANNEL

SPEC = TypeAdapter(ProbeSpec)


@dataclass
class Logged:
    """A target that keeps its own log: when each request entered and left the handler, by group."""

    burst_limit: int = 20
    cold_seconds: float = 0.0
    plain_seconds: float = 0.2
    log: list[tuple[str, float, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[str, int] = field(default_factory=dict)
    # The server handles each connection in a thread of its own: a thread-local number names the connection.
    connections: dict[str, set[int]] = field(default_factory=dict)
    _connection: threading.local = field(default_factory=threading.local)
    _opened: Iterator[int] = field(default_factory=itertools.count)

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        group = path.strip("/").split("/")[0]
        entered = time.monotonic()
        with self._lock:
            seen = self._counts[group] = self._counts.get(group, 0) + 1
            if not hasattr(self._connection, "number"):
                self._connection.number = next(self._opened)
            self.connections.setdefault(group, set()).add(self._connection.number)
        status = 200
        if group == "plain":
            time.sleep(self.plain_seconds)  # long enough that anything sent meanwhile overlaps it
        elif group == "cold" and seen == 1:
            time.sleep(self.cold_seconds)
        elif group == "burst" and seen > self.burst_limit:
            status = 429
        with self._lock:
            self.log.append((group, entered, time.monotonic()))
        return status, {"Content-Type": "text/plain"}, b"ok"

    def requests(self, group: str) -> list[tuple[float, float]]:
        with self._lock:
            return [(start, end) for name, start, end in self.log if name == group]


@pytest.fixture
def target() -> Iterator[tuple[Logged, str]]:
    service = Logged()
    with http_server(service.route) as url:
        yield service, url


def suite(url: str) -> dict[str, dict[str, Any]]:
    """Six ordinary probes, two timed ones and a burst, in an order that mixes them."""
    specs: dict[str, dict[str, Any]] = {
        "burst": {"kind": "rate_limit", "url": f"{url}/burst/", "max_requests": 60, "within": 20},
        "latency": {"kind": "latency", "url": f"{url}/timed/", "requests": 5, "p95_ms": 60_000},
        "budget": {"kind": "http", "url": f"{url}/budget/", "max_ms": 60_000},
    }
    for n in range(6):
        specs[f"plain-{n}"] = {"kind": "http", "url": f"{url}/plain/{n}"}
    return specs


def assert_isolated(service: Logged) -> None:
    """Timed requests overlap nothing else and follow every ordinary one; the burst comes last of all."""
    plain, timed = service.requests("plain"), service.requests("timed") + service.requests("budget")
    burst = service.requests("burst")
    others = plain + burst
    for start, end in timed:
        assert all(end < other_start or other_end < start for other_start, other_end in others), (start, end)
    assert max(end for _, end in plain) < min(start for start, _ in timed)
    assert max(end for _, end in timed) < min(start for start, _ in burst)
    assert len(plain) == 6 and len(timed) == 7 and burst, service.log  # 5 counted + 1 warm-up, and the budget
    # Nor do they share connections: the idle ones the others leave in a pool would be checked on every request.
    ordinary, alone = service.connections["plain"], service.connections["timed"] | service.connections["budget"]
    assert not ordinary & alone and not (ordinary | alone) & service.connections["burst"], service.connections


# --- percentiles and warm-up ---------------------------------------------------------------------------


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    random.Random(14).shuffle(values)
    # Nearest rank: p95 of 20 values is the 19th smallest; the maximum is p100.
    assert _percentile(values, 95) == 19.0
    assert _percentile(values, 50) == 10.0
    assert _percentile(values, 100) == 20.0
    assert _percentile([7.0], 95) == 7.0
    assert _percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 95) == 10.0


def test_latency_does_not_count_its_warm_up_request(target: tuple[Logged, str]) -> None:
    service, url = target
    service.cold_seconds = 1.5  # the target's first answer after a deployment: a cold cache, a JIT
    spec = SPEC.validate_python({"kind": "latency", "url": f"{url}/cold/", "requests": 5, "p95_ms": 1000})
    verdict = asyncio.run(run_probe(spec, Variables("production", {}, {})))
    assert len(service.requests("cold")) == 6  # one warm-up, five counted
    assert verdict.evidence["requests"] == 5
    assert verdict.evidence["max_ms"] < 1500, verdict.evidence
    assert verdict.ok, verdict.reason


# --- the reported time is the target's -----------------------------------------------------------------


def test_an_http_probe_reports_its_request_time_not_its_own(target: tuple[Logged, str]) -> None:
    _, url = target
    spec = SPEC.validate_python({"kind": "http", "url": f"{url}/budget/"})
    verdict = asyncio.run(run_probe(spec, Variables("production", {}, {})))
    # Variable expansion, the client and its pool are set up before the clock starts.
    assert verdict.ok and verdict.ms == verdict.evidence["ms"], verdict


FIRST_PROBE_IN_A_FRESH_PROCESS = """
import asyncio, json, sys
from pydantic import TypeAdapter
from bot.probes import Variables, run_probe
from bot.probes.specs import ProbeSpec
from tests.probe_servers import http_server, ok

inside = []
TIMED = {("_send", "web.py"), ("http", "web.py"), ("tls", "net.py"), ("dns", "net.py")}

def hook(event, args):
    # An import while a probe's clock runs (its check on the stack) is deploybot's time, not the target's.
    if event != "import":
        return
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if (code.co_name, code.co_filename.rsplit("/", 1)[-1]) in TIMED:
            inside.append(args[0])
            return
        frame = frame.f_back

with http_server(ok()) as url:
    specs = [
        TypeAdapter(ProbeSpec).validate_python({"kind": "http", "url": "http://127.0.0.1:" + sys.argv[1]}),
        TypeAdapter(ProbeSpec).validate_python({"kind": "http", "url": url + "/health"}),
        TypeAdapter(ProbeSpec).validate_python({"kind": "tls", "host": "127.0.0.1", "port": int(sys.argv[1])}),
        TypeAdapter(ProbeSpec).validate_python(
            {"kind": "dns", "name": "example.test", "server": "127.0.0.1:" + sys.argv[1], "timeout": 1}
        ),
    ]
    sys.addaudithook(hook)
    verdicts = [asyncio.run(run_probe(spec, Variables("production", {}, {}))) for spec in specs]
print(json.dumps({"ok": [v.ok for v in verdicts], "imported_while_timed": sorted(set(inside))}))
"""


def test_the_first_probes_of_a_process_import_nothing_while_their_clocks_run() -> None:
    # The first probe meets a closed port (no request is ever timed), the second a live server; then the
    # first TLS and DNS probes of the process (against the closed port: they fail, but import nothing timed).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = str(closed.getsockname()[1])
        result = subprocess.run(
            [sys.executable, "-c", FIRST_PROBE_IN_A_FRESH_PROCESS, port],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer == {"ok": [False, True, False, False], "imported_while_timed": []}


# --- timed and burst probes run alone, after the others --------------------------------------------------


def test_timed_probes_and_bursts_run_alone_after_the_others_in_a_suite(target: tuple[Logged, str]) -> None:
    service, url = target
    specs = {name: SPEC.validate_python(spec) for name, spec in suite(url).items()}
    verdicts = asyncio.run(run_all(specs, Variables("production", {}, {})))
    assert list(verdicts) == list(specs)  # reported in the suite's order, whatever order they ran in
    assert all(v.ok for v in verdicts.values()), verdicts
    assert_isolated(service)


def test_the_background_runner_runs_timed_probes_and_bursts_alone_after_the_others(
    tmp_path: Path, fake_slack: FakeSlack, database_url: str, target: tuple[Logged, str]
) -> None:
    service, url = target
    items = [
        {"id": name, "text": f"Probe {name}", "probe": {**spec, "url": spec["url"].replace(url, "${api_url}")}}
        for name, spec in suite(url).items()
    ]
    checklist = {
        "id": "production-deploy",
        "title": "Release",
        "phases": [{"id": "post", "title": "Post-Deployment", "groups": [{"id": "g", "title": "G", "items": items}]}],
    }
    folder = tmp_path / "checklists"
    folder.mkdir()
    (folder / "production-deploy.yml").write_text(yaml.safe_dump(checklist))
    config = tmp_path / "deploybot.yml"
    config.write_text(yaml.safe_dump({"environments": {"production": {"api_url": url}}}))
    with launched(database_url, fake_slack, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(config)) as bot:
        bot.slack.command("start v2.0.0 production", channel=CHANNEL)

        def verdicts() -> dict[str, str | None]:
            with bot.app.sessions() as session:
                return {s.item_id: s.probe_status for s in session.scalars(select(ItemState))}

        bot.wait_for(lambda: all(v not in (None, "pending") for v in verdicts().values()), 60, "every verdict")
        assert set(verdicts().values()) == {"passed"}, verdicts()
    assert_isolated(service)


def test_a_missing_ca_file_fails_its_own_probe_not_the_suite(target: tuple[Logged, str], tmp_path: Path) -> None:
    _, url = target
    specs = {
        "pinned": SPEC.validate_python({"kind": "http", "url": f"{url}/plain/0", "ca_file": str(tmp_path / "no.pem")}),
        "plain": SPEC.validate_python({"kind": "http", "url": f"{url}/plain/1"}),
    }
    verdicts = asyncio.run(run_all(specs, Variables("production", {}, {})))
    assert not verdicts["pinned"].ok and verdicts["plain"].ok, verdicts


# --- the command line ------------------------------------------------------------------------------------


def deploybot_probe(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "probe", "--env", "production", *args],
        env={**os.environ, "DEPLOYBOT_CHECKLISTS": str(tmp_path / "checklists"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def folder(tmp_path: Path, target: tuple[Logged, str]) -> Path:
    items = [
        {"id": "health", "text": "Health", "probe": {"kind": "http", "url": "${api_url}/plain/1"}},
        {"id": "fast", "text": "Fast", "probe": {"kind": "latency", "url": "${api_url}/timed/", "requests": 20}},
    ]
    checklist = {
        "id": "production-deploy",
        "title": "Release",
        "phases": [{"id": "post", "title": "Post", "groups": [{"id": "g", "title": "G", "items": items}]}],
    }
    (tmp_path / "checklists").mkdir()
    (tmp_path / "checklists" / "production-deploy.yml").write_text(yaml.safe_dump(checklist))
    (tmp_path / "deploybot.yml").write_text(yaml.safe_dump({"environments": {"production": {"api_url": target[1]}}}))
    return tmp_path


def test_deploybot_probe_prints_its_table_alone_and_logs_only_with_verbose(folder: Path) -> None:
    quiet = deploybot_probe(folder, DEPLOYBOT_CONFIG=str(folder / "deploybot.yml"))
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert quiet.stderr == ""
    assert quiet.stdout.splitlines()[-1] == "2 probe(s), 0 failed"
    verbose = deploybot_probe(folder, "-v", DEPLOYBOT_CONFIG=str(folder / "deploybot.yml"))
    assert verbose.returncode == 0
    assert "HTTP Request: GET" in verbose.stderr and "HTTP Request" not in verbose.stdout
    assert verbose.stdout.splitlines()[-1] == "2 probe(s), 0 failed"


def test_a_configuration_that_cannot_be_right_exits_2_before_any_probe_runs(
    folder: Path, target: tuple[Logged, str]
) -> None:
    service, _ = target
    missing = deploybot_probe(folder, DEPLOYBOT_CONFIG=str(folder / "nope.yml"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert f"{folder / 'nope.yml'} does not exist" in missing.stderr

    (folder / "typo.yml").write_text(yaml.safe_dump({"environments": {"production": {"api_ulr": "http://x"}}}))
    undefined = deploybot_probe(folder, DEPLOYBOT_CONFIG=str(folder / "typo.yml"))
    assert undefined.returncode == 2 and undefined.stdout == ""
    assert "2 probe(s) of production-deploy cannot run:" in undefined.stderr
    assert "health: ${api_url} is not defined for environment 'production'" in undefined.stderr

    (folder / "empty.yml").write_text(yaml.safe_dump({"environments": {}}))
    unknown = deploybot_probe(folder, DEPLOYBOT_CONFIG=str(folder / "empty.yml"))
    assert unknown.returncode == 2 and "environment 'production' is not in" in unknown.stderr
    assert service.log == []  # nothing was sent anywhere


def test_a_timed_probe_queued_past_its_lease_is_not_claimed_twice(
    tmp_path: Path, fake_slack: FakeSlack, database_url: str
) -> None:
    held, arrived = threading.Event(), []
    service = Logged()

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path.startswith("/hold"):
            arrived.append(path)
            held.wait(30)  # an ordinary probe still running: the timed one waits for its turn
        return service.route(method, path, headers)

    items = [
        {"id": "held", "text": "Held", "probe": {"kind": "http", "url": "${api_url}/hold/"}},
        {"id": "budget", "text": "Budget", "probe": {"kind": "http", "url": "${api_url}/budget/", "max_ms": 60_000}},
    ]
    checklist = {
        "id": "production-deploy",
        "title": "Release",
        "phases": [{"id": "p", "title": "P", "groups": [{"id": "g", "title": "G", "items": items}]}],
    }
    clock = ShiftedClock()
    with http_server(route) as url:
        folder = tmp_path / "checklists"
        folder.mkdir()
        (folder / "production-deploy.yml").write_text(yaml.safe_dump(checklist))
        config = tmp_path / "deploybot.yml"
        config.write_text(yaml.safe_dump({"environments": {"production": {"api_url": url}}}))
        with launched(
            database_url, fake_slack, clock=clock, DEPLOYBOT_CHECKLISTS=str(folder), DEPLOYBOT_CONFIG=str(config)
        ) as bot:
            bot.slack.command("start v2.0.0 production", channel=CHANNEL)
            bot.wait_for(lambda: len(arrived) == 1, 30, "the first run's ordinary probe to reach the target")
            # The first run's budget probe waits for its turn past its 90 s lease. A second run makes the
            # runner claim again (its ordinary probe arriving shows it did): the queued probe stays claimed once.
            clock.advance(seconds=300)
            bot.slack.command("start v2.0.1 production", channel="C200")
            bot.wait_for(lambda: len(arrived) == 2, 30, "the second run's ordinary probe to reach the target")
            held.set()

            def statuses() -> list[str | None]:
                with bot.app.sessions() as session:
                    return [s.probe_status for s in session.scalars(select(ItemState))]

            bot.wait_for(lambda: all(s not in (None, "pending") for s in statuses()), 30, "every verdict")
    assert len(service.requests("budget")) == 2, service.log  # one per run


def test_the_system_trust_store_is_loaded_before_any_tls_probe_starts_its_clock() -> None:
    from bot.probes import _registry, net

    _registry.cache_clear()
    net._tls12_context.cache_clear()
    prepare()
    assert net._tls12_context.cache_info().currsize == 1  # the system's, ready for the first `tls` probe
