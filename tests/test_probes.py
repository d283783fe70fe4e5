"""Every probe kind against real servers on loopback: each verdict and each failure reason."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from bot.checklists import load_template
from bot.probes import Variables, Verdict, run_all, run_probe
from bot.probes.specs import ProbeSpec
from tests.conftest import POSTGRES_URL
from tests.probe_servers import Certificates, dns_server, http_server, ok

SPEC = TypeAdapter(ProbeSpec)


def check(spec: dict[str, Any], values: dict[str, str] | None = None, env: dict[str, str] | None = None) -> Verdict:
    variables = Variables("staging", values or {}, env or {})
    return asyncio.run(run_probe(SPEC.validate_python(spec), variables))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


def slow(seconds: float, status: int = 200) -> Any:
    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        time.sleep(seconds)
        return status, {}, b"slow"

    return route


# --- http, latency ---------------------------------------------------------------------------------


def test_http_status_body_json_and_budget() -> None:
    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/health":
            return 200, {"Content-Type": "application/json"}, b'{"status": "ok", "checks": {"db": "up"}}'
        return 500, {}, b"boom"

    with http_server(route) as url:
        passed = check(
            {"kind": "http", "url": "${api_url}/health", "json_field": "checks.db", "json_equals": "up"},
            {"api_url": url},
        )
        assert passed.ok and passed.reason.startswith("200 OK in ")
        assert passed.evidence["status"] == 200 and passed.evidence["json"] == {"checks.db": "up"}
        assert (
            check({"kind": "http", "url": f"{url}/health", "json_field": "status", "json_equals": "down"}).reason
            == "status is 'ok', expected 'down'"
        )
        assert (
            check({"kind": "http", "url": f"{url}/health", "body_contains": "pong"}).reason
            == "the body does not contain 'pong'"
        )
        failed = check({"kind": "http", "url": f"{url}/other"})
        assert not failed.ok and failed.reason == f"{url}/other answered 500, expected 200"
    with http_server(slow(0.8)) as url:
        verdict = check({"kind": "http", "url": url, "max_ms": 500})
        assert not verdict.ok and "over the 500 ms budget" in verdict.reason


def test_http_unreachable_and_timeout() -> None:
    port = free_port()
    refused = check({"kind": "http", "url": f"http://127.0.0.1:{port}/"})
    assert not refused.ok and "connection refused" in refused.reason
    with http_server(slow(2)) as url:
        late = check({"kind": "http", "url": url, "timeout": 0.3})
        assert not late.ok and late.reason == "no answer within 0.3 s"


def test_latency_percentiles_against_the_budget() -> None:
    with http_server(ok()) as url:
        fast = check({"kind": "latency", "url": url, "requests": 5})
        assert fast.ok and fast.evidence["requests"] == 5 and fast.evidence["p95_ms"] < 500
    with http_server(slow(0.8)) as url:
        slow_one = check({"kind": "latency", "url": url, "requests": 2, "p95_ms": 500})
        assert not slow_one.ok and "over the 500 ms budget (2 requests)" in slow_one.reason
        assert int(slow_one.reason.split()[1]) >= 800  # "p95 812 ms …": at least the server's delay


def test_latency_requests_are_bounded() -> None:
    with pytest.raises(ValueError, match="less than or equal to 50"):
        SPEC.validate_python({"kind": "latency", "url": "http://x", "requests": 1000})


# --- tls -------------------------------------------------------------------------------------------


def test_tls_valid_and_expiring_soon(certs: Certificates) -> None:
    with http_server(ok(), certs.context("valid")) as url:
        port = int(url.rsplit(":", 1)[1])
        verdict = check(
            {"kind": "tls", "host": "127.0.0.1", "server_name": "localhost", "port": port, "ca_file": certs.ca_file}
        )
    assert verdict.ok, verdict.reason
    assert verdict.evidence["protocol"] in ("TLSv1.2", "TLSv1.3") and 88 <= verdict.evidence["days_left"] <= 90
    with http_server(ok(), certs.context("soon")) as url:
        port = int(url.rsplit(":", 1)[1])
        soon = check(
            {
                "kind": "tls",
                "host": "127.0.0.1",
                "server_name": "localhost",
                "port": port,
                "ca_file": certs.ca_file,
                "min_days": 14,
            }
        )
    assert not soon.ok and "fewer than 14" in soon.reason and soon.evidence["days_left"] in (9, 10)


def test_https_http_probe_uses_the_configured_ca(certs: Certificates) -> None:
    with http_server(ok(), certs.context("valid")) as url:
        url = url.replace("127.0.0.1", "localhost")
        assert check({"kind": "http", "url": url, "ca_file": certs.ca_file}).ok


def test_http_follows_redirects_only_when_told() -> None:
    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (301, {"Location": "/new"}, b"") if path == "/old" else (200, {}, b"new")

    with http_server(route) as url:
        assert check({"kind": "http", "url": f"{url}/old"}).reason == f"{url}/old answered 301, expected 200"
        followed = check({"kind": "http", "url": f"{url}/old", "follow_redirects": True, "body_contains": "new"})
        assert followed.ok, followed.reason
        assert followed.evidence["redirects"] == ["/new"] and followed.evidence["final_url"] == f"{url}/new"


def test_http_header_assertions() -> None:
    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/app.js":
            body = gzip.compress(b"console.log(1)")
            return 200, {"Content-Encoding": "gzip", "Cache-Control": "public, max-age=31536000"}, body
        return 200, {"Cache-Control": "no-store"}, b"plain"

    with http_server(route) as url:
        wanted = {"Content-Encoding": "gzip|br", "Cache-Control": r"max-age=\d{4,}"}
        good = check({"kind": "http", "url": f"{url}/app.js", "expect_headers": wanted})
        assert good.ok, good.reason
        assert good.evidence["headers"] == {"Content-Encoding": "gzip", "Cache-Control": "public, max-age=31536000"}
        bad = check({"kind": "http", "url": f"{url}/logo.png", "expect_headers": wanted})
        assert not bad.ok
        assert bad.reason == (
            "no Content-Encoding header (expected one matching 'gzip|br'); "
            "Cache-Control is 'no-store', which does not match 'max-age=\\\\d{4,}'"
        )


def test_the_shipped_static_assets_probe_wants_compression_and_caching() -> None:
    template = load_template(Path(__file__).parent.parent / "checklists" / "production-deploy.yml")
    item = template.item("static-assets-load-quickly")
    assert item is not None and item.probe is not None

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/tuned.js" and "gzip" in headers.get("accept-encoding", ""):
            return 200, {"Content-Encoding": "gzip", "Cache-Control": "max-age=600"}, gzip.compress(b"x" * 4096)
        return 200, {"Cache-Control": "no-cache"}, b"x" * 4096

    with http_server(route) as url:
        for path, passes in (("/tuned.js", True), ("/plain.js", False)):
            variables = Variables("production", {"static_asset_url": url + path}, {})
            verdict = asyncio.run(run_probe(item.probe, variables))
            assert verdict.ok is passes, verdict.reason


# --- redirect, headers, cors, rate limit, webhook --------------------------------------------------


def redirecting(status: int, location: str) -> Any:
    return lambda method, path, headers: (status, {"Location": location}, b"")


def test_redirect_rules() -> None:
    with http_server(redirecting(301, "https://example.com/")) as url:
        default_target = check({"kind": "redirect", "url": url + "/"})
        assert not default_target.ok and "expected https://127.0.0.1" in default_target.reason
    with http_server(redirecting(302, "https://example.com/")) as url:
        assert check({"kind": "redirect", "url": url}).reason.startswith("answered 302 (a temporary redirect)")
    with http_server(redirecting(301, "http://example.com/")) as url:
        assert check({"kind": "redirect", "url": url}).reason == "redirects to http://example.com/, which is not HTTPS"
    with http_server(ok()) as url:
        assert check({"kind": "redirect", "url": url}).reason.startswith("answered 200 (no redirect)")
    assert "plain http:// URL" in check({"kind": "redirect", "url": "https://example.com"}).reason


def test_redirect_to_the_same_address_over_https() -> None:
    holder: dict[str, str] = {}
    with http_server(lambda m, p, h: (308, {"Location": holder["to"]}, b"")) as url:
        holder["to"] = url.replace("http://", "https://") + "/login"
        # The location is the expected one; the probe then goes there (nothing speaks TLS on that port).
        verdict = check({"kind": "redirect", "url": url + "/login"})
        assert verdict.reason == (
            f"redirects to {holder['to']}, but cannot connect to {holder['to']}: "
            "the server does not speak TLS there (a plain-HTTP port?)"
        )


SECURE = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def test_security_headers_present_missing_and_weak() -> None:
    with http_server(ok(**SECURE)) as url:
        good = check({"kind": "headers", "url": url})
        assert good.ok and good.evidence["headers"]["x-frame-options"] == "DENY"
    with http_server(ok()) as url:
        bare = check({"kind": "headers", "url": url})
        assert bare.reason == (
            "missing or weak: Strict-Transport-Security (HSTS); Content-Security-Policy; X-Content-Type-Options: "
            "nosniff; frame protection (X-Frame-Options or CSP frame-ancestors); Referrer-Policy"
        )
    weak = {**SECURE, "Strict-Transport-Security": "max-age=300", "Referrer-Policy": "unsafe-url"}
    del weak["X-Frame-Options"]
    weak["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    with http_server(ok(**weak)) as url:
        verdict = check({"kind": "headers", "url": url})
        assert verdict.reason == (
            "missing or weak: Strict-Transport-Security max-age ≥ 15552000 (is 300); "
            "Referrer-Policy (unsafe-url is not a safe value)"
        )


def test_security_headers_of_an_error_page_fail() -> None:
    for status in (404, 500):
        with http_server(lambda m, p, h, status=status: (status, SECURE, b"error")) as url:
            verdict = check({"kind": "headers", "url": url})
        assert not verdict.ok
        assert verdict.reason == f"{url} answered {status}: its headers are an error page's, not the site's"
        assert verdict.evidence["status"] == status and verdict.evidence["headers"]["x-frame-options"] == "DENY"


def cors_server(policy: str) -> Any:
    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        origin = headers.get("origin", "")
        out: dict[str, str] = {}
        if policy == "reflect" and origin:
            out = {"Access-Control-Allow-Origin": origin}
        elif policy == "star-credentials":
            out = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "true"}
        elif policy == "strict" and origin == "https://app.example.com":
            out = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return (204 if method == "OPTIONS" else 200), out, b""

    return route


def test_cors_strict_reflecting_and_star_with_credentials() -> None:
    spec = {"kind": "cors", "allowed_origin": "https://app.example.com"}
    with http_server(cors_server("strict")) as url:
        good = check({**spec, "url": url})
        assert good.ok, good.reason
        assert good.reason.endswith("https://app.example.com is allowed")
    with http_server(cors_server("reflect")) as url:
        bad = check({**spec, "url": url})
        assert bad.reason == (
            "GET: echoes the unauthorized origin https://deploybot-probe.invalid; "
            "preflight: echoes the unauthorized origin https://deploybot-probe.invalid"
        )
    with http_server(cors_server("star-credentials")) as url:
        assert "allows any origin (*) with credentials" in check({**spec, "url": url}).reason
    with http_server(cors_server("none")) as url:
        assert "the allowed origin https://app.example.com is not allowed" in check({**spec, "url": url}).reason


def limited_after(count: int, status: int, **headers: str) -> Any:
    hits = {"n": 0}

    def route(method: str, path: str, h: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        hits["n"] += 1
        return (status, headers, b"") if hits["n"] > count else (200, {}, b"")

    return route


def test_rate_limit_must_draw_a_limiting_status_within_its_bounds() -> None:
    with http_server(limited_after(5, 429, **{"Retry-After": "30"})) as url:
        verdict = check({"kind": "rate_limit", "url": url, "max_requests": 20})
        sent = verdict.evidence["requests"]
        assert verdict.ok and verdict.reason == f"429 once 5 requests had got through ({sent} sent), Retry-After 30 s"
        assert verdict.evidence["statuses"] == {"200": 5, "429": sent - 5}
    with http_server(limited_after(3, 503)) as url:  # nginx limit_req's default answer
        verdict = check({"kind": "rate_limit", "url": url, "max_requests": 20})
        sent = verdict.evidence["requests"]
        assert (
            verdict.ok and verdict.reason == f"503 once 3 requests had got through ({sent} sent), no Retry-After header"
        )
        assert verdict.evidence["statuses"] == {"200": 3, "503": sent - 3}
    with http_server(limited_after(2, 503)) as url:
        verdict = check({"kind": "rate_limit", "url": url, "max_requests": 10, "limit_status": [418]})
        assert not verdict.ok
        assert verdict.reason.startswith("no 418 after 10 requests in ")
        assert verdict.reason.endswith(" s (saw 200 ×2, 503 ×8): rate limiting is not working")
        assert verdict.evidence["statuses"] == {"200": 2, "503": 8}
    unlimited = {"n": 0}

    def count(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        unlimited["n"] += 1
        return 200, {}, b""

    with http_server(count) as url:
        verdict = check({"kind": "rate_limit", "url": url, "max_requests": 20})
    assert not verdict.ok and verdict.reason.startswith("no 429 or 503 after 20 requests")
    assert unlimited["n"] == 20  # bounded: not one request more
    with pytest.raises(ValueError, match="less than or equal to 300"):
        SPEC.validate_python({"kind": "rate_limit", "url": "http://x", "max_requests": 100000})


def test_a_burst_keeps_ten_requests_in_flight_and_none_starts_once_limited() -> None:
    lock = threading.Lock()
    seen = {"hits": 0, "in_flight": 0, "most": 0}
    ten_in = threading.Event()

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with lock:
            seen["hits"] += 1
            hit = seen["hits"]
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
            if seen["in_flight"] == 10:
                ten_in.set()
        if hit > 1 and not ten_in.is_set():
            # After the first (alone: it finds out whether the target answers at all), requests are
            # answered once ten are in flight; one at a time, that never happens.
            ten_in.wait(5)
            time.sleep(0.2)  # held together, their times on the wire overlap
        with lock:
            seen["in_flight"] -= 1
        return (429, {}, b"") if hit > 25 else (200, {}, b"")

    with http_server(route) as url:
        started = time.perf_counter()
        verdict = check({"kind": "rate_limit", "url": url, "max_requests": 200})
        took_ms = (time.perf_counter() - started) * 1000
    assert seen["most"] == 10  # ten at once, never more
    sent = verdict.evidence["requests"]
    assert sent == seen["hits"]  # every request sent is counted, each with its status
    # Nothing starts after the first limiting answer is read: the only ones after it were in flight.
    assert 26 <= sent <= 35 and verdict.evidence["statuses"] == {"200": 25, "429": sent - 25}
    assert verdict.ok and verdict.reason == f"429 once 25 requests had got through ({sent} sent), no Retry-After header"
    # Overlapping requests are not added up: the burst reports the span it held the target, within what it took.
    assert verdict.ms <= took_ms, (verdict.ms, took_ms)


def test_webhook_auth() -> None:
    def checking(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return (200, {}, b"") if headers.get("x-signature") else (401, {}, b"")

    with http_server(checking) as url:
        assert check({"kind": "webhook_auth", "url": url}).reason == "an unsigned request is rejected with 401"
    with http_server(ok()) as url:
        assert (
            check({"kind": "webhook_auth", "url": url}).reason
            == "an unsigned request got 200; expected 400, 401 or 403"
        )


def test_webhook_auth_accepts_a_stripe_style_400_and_configured_statuses() -> None:
    with http_server(lambda m, p, h: (400, {}, b"No signatures found matching the expected signature")) as url:
        assert check({"kind": "webhook_auth", "url": url}).reason == "an unsigned request is rejected with 400"
        strict = check({"kind": "webhook_auth", "url": url, "expect_status": [401]})
        assert not strict.ok and strict.reason == "an unsigned request got 400; expected 401"


# --- dns, tcp, postgres, redis ---------------------------------------------------------------------


ZONE = {
    ("app.example.test", "A"): ["192.0.2.10", "192.0.2.11"],
    ("app.example.test", "AAAA"): ["2001:db8::10"],
    ("www.example.test", "CNAME"): ["app.example.test."],
    ("example.test", "MX"): ["10 mail.example.test.", "20 backup.example.test."],
    ("example.test", "TXT"): ['"v=spf1 include:_spf.example.test -all"'],
}


def test_dns_asks_the_given_server_for_each_record_type() -> None:
    with dns_server(ZONE) as server:
        a = check({"kind": "dns", "name": "app.example.test", "server": server, "expect": ["192.0.2.11"]})
        assert a.ok and a.reason == f"app.example.test A → 192.0.2.10, 192.0.2.11 ({server})"
        assert a.evidence == {
            "name": "app.example.test",
            "type": "A",
            "server": server,
            "answers": ["192.0.2.10", "192.0.2.11"],
        }
        aaaa = check({"kind": "dns", "name": "app.example.test", "type": "AAAA", "server": server})
        assert aaaa.ok and aaaa.evidence["answers"] == ["2001:db8::10"]
        cname = {"kind": "dns", "name": "www.example.test", "type": "CNAME", "server": server}
        assert check({**cname, "expect": ["APP.example.test."]}).ok
        mx = check(
            {"kind": "dns", "name": "example.test", "type": "MX", "server": server, "expect": ["mail.example.test"]}
        )
        assert mx.ok and mx.evidence["answers"] == ["10 mail.example.test", "20 backup.example.test"]
        txt = {"kind": "dns", "name": "example.test", "type": "TXT", "server": server}
        assert check({**txt, "expect": ["v=spf1 include:_spf.example.test -all"]}).ok
        wrong = check({"kind": "dns", "name": "app.example.test", "server": server, "expect": ["10.9.9.9"]})
        assert wrong.reason == f"app.example.test A is 192.0.2.10, 192.0.2.11, not 10.9.9.9 ({server})"
        none = check({"kind": "dns", "name": "www.example.test", "server": server})
        assert not none.ok and none.reason == f"www.example.test has no A record ({server})"
        missing = check({"kind": "dns", "name": "nope.example.test", "server": server})
        assert missing.reason == f"nope.example.test does not exist (NXDOMAIN from {server})"


def test_dns_does_not_count_etc_hosts_as_dns() -> None:
    # localhost is in /etc/hosts on every machine; the DNS server does not know it.
    with dns_server(ZONE) as server:
        verdict = check({"kind": "dns", "name": "localhost", "server": server})
    assert not verdict.ok and verdict.reason == f"localhost does not exist (NXDOMAIN from {server})"


def test_dns_server_that_does_not_answer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        server = f"127.0.0.1:{silent.getsockname()[1]}"
        verdict = check({"kind": "dns", "name": "app.example.test", "server": server, "timeout": 0.5})
    assert not verdict.ok and verdict.reason == f"no DNS answer from {server} within 0.5 s"


def test_tcp() -> None:
    with http_server(ok()) as url:
        port = int(url.rsplit(":", 1)[1])
        assert check({"kind": "tcp", "host": "127.0.0.1", "port": port}).ok
    closed = check({"kind": "tcp", "host": "127.0.0.1", "port": free_port()})
    assert not closed.ok and "connection refused" in closed.reason


def postgres_or_skip() -> str:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        if __import__("os").environ.get("DEPLOYBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    return POSTGRES_URL


def test_postgres_select_one_and_secrets_stay_hidden() -> None:
    url = postgres_or_skip()
    with_password = url.replace("postgres@", "postgres:s3cret-password-value@")
    verdict = check({"kind": "postgres", "url": "${env:PROBE_DB}"}, env={"PROBE_DB": with_password})
    assert verdict.ok and verdict.reason.startswith("SELECT 1 answered 1 (PostgreSQL ")
    assert "s3cret" not in repr(verdict)
    missing = check(
        {"kind": "postgres", "url": "${env:PROBE_DB}"},
        env={"PROBE_DB": with_password.rsplit("/", 1)[0] + "/no_such_database"},
    )
    assert not missing.ok and 'database "no_such_database" does not exist' in missing.reason
    assert "s3cret" not in repr(missing)


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            "correct-horse-battery-staple-0123456789",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.02)
    yield port
    process.terminate()
    process.wait(10)


def test_redis_ping_and_password(redis_with_password: int) -> None:
    assert check({"kind": "redis", "url": "redis://127.0.0.1:6379/0"}).reason == "PONG"
    open_redis = check({"kind": "redis", "url": "redis://127.0.0.1:6379/0", "check": "password_required"})
    assert not open_redis.ok and open_redis.reason == "Redis answered PING without a password: no password is set"
    secured = f"redis://:${{env:REDIS_PASSWORD}}@127.0.0.1:{redis_with_password}/0"
    env = {"REDIS_PASSWORD": "correct-horse-battery-staple-0123456789"}
    assert check({"kind": "redis", "url": secured, "check": "password_required"}, env=env).ok
    assert check({"kind": "redis", "url": secured}, env=env).reason == "PONG"
    wrong = check({"kind": "redis", "url": secured}, env={"REDIS_PASSWORD": "nope"})
    assert not wrong.ok and "refused the credentials" in wrong.reason
    closed = check({"kind": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"})
    assert not closed.ok and closed.reason.startswith("cannot connect to 127.0.0.1:")


# --- files -----------------------------------------------------------------------------------------


def test_env_file_secrets(tmp_path: Path) -> None:
    strong = "x" * 40
    (tmp_path / ".env.production").write_text(
        f"JWT_SECRET={strong}\nexport DB_PASSWORD='{'p' * 33}'\nWEBHOOK_SECRET=tiny-value\nAPI_URL=https://api\n"
    )
    (tmp_path / ".env.development").write_text(f"JWT_SECRET={strong}\nDB_PASSWORD=dev\n")
    verdict = check(
        {
            "kind": "env_file",
            "path": str(tmp_path / ".env.production"),
            "development_path": str(tmp_path / ".env.development"),
        }
    )
    assert not verdict.ok
    assert verdict.reason == ("shorter than 32 characters: WEBHOOK_SECRET; same value as development: JWT_SECRET")
    assert strong not in repr(verdict) and "tiny-value" not in repr(verdict)
    (tmp_path / ".env.production").write_text(f"JWT_SECRET={'y' * 40}\nDB_PASSWORD={'z' * 32}\n")
    good = check(
        {
            "kind": "env_file",
            "path": str(tmp_path / ".env.production"),
            "development_path": str(tmp_path / ".env.development"),
        }
    )
    assert good.ok and good.evidence["secret_keys"] == ["DB_PASSWORD", "JWT_SECRET"]
    assert "does not exist" in check({"kind": "env_file", "path": str(tmp_path / "nope")}).reason


def test_gitignored_agrees_with_git(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(".env.production\n*.log\n")
    for path, expected in ((".env.production", True), ("debug.log", True), ("app.py", False)):
        git = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "-q", path]).returncode == 0
        verdict = check({"kind": "gitignored", "repo": str(tmp_path), "path": path})
        assert verdict.ok is git is expected, (path, verdict)
    assert (
        check({"kind": "gitignored", "repo": str(tmp_path), "path": ".env.production"}).reason
        == ".env.production is ignored (.gitignore:1:.env.production)"
    )


# --- variables and concurrency ---------------------------------------------------------------------


def test_unknown_variables_name_the_fix() -> None:
    verdict = check({"kind": "http", "url": "${api_url}/health"})
    assert verdict.reason == (
        "cannot run: ${api_url} is not defined for environment 'staging' in deploybot.yml "
        "(environments › staging › api_url)"
    )
    assert (
        check({"kind": "postgres", "url": "${env:NOPE_URL}"}).reason
        == "cannot run: environment variable NOPE_URL is not set (the probe reads ${env:NOPE_URL})"
    )


def test_probes_of_a_suite_run_at_the_same_time() -> None:
    # The server answers only once all ten requests are in: probes run one after another would never get there.
    everyone = threading.Barrier(10, timeout=5)

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        try:
            everyone.wait()
        except threading.BrokenBarrierError:
            return 503, {}, b"not all probes arrived together"
        return 200, {}, b""

    with http_server(route) as url:
        specs = {f"item-{n}": SPEC.validate_python({"kind": "http", "url": f"{url}/{n}"}) for n in range(10)}
        results = asyncio.run(run_all(specs, Variables("production", {}, {})))
    assert [v.reason.split(" in ")[0] for v in results.values()] == ["200 OK"] * 10


# --- deploybot check -------------------------------------------------------------------------------

BAD_KNOBS = """id: t
title: T
phases:
  - id: p
    title: P
    groups:
      - id: g
        title: G
        items:
          - id: limits
            text: A
            probe: {kind: rate_limit, url: "${api_url}", limit_status: [429, 999]}
          - id: webhook
            text: B
            probe: {kind: webhook_auth, url: "${webhook_url}", expect_status: []}
          - id: record
            text: C
            probe: {kind: dns, name: example.com, type: SRV}
          - id: server
            text: D
            probe: {kind: dns, name: example.com, server: "ns1.example.com:99999"}
          - id: header
            text: E
            probe:
              kind: http
              url: "${api_url}"
              expect_headers: {Cache-Control: "max-age=("}
          - id: follow
            text: F
            probe: {kind: http, url: "${api_url}", follow_redirects: sometimes}
          - id: sni
            text: G
            probe: {kind: headers, url: "${api_url}", server_name: "not a host"}
          - id: redirect
            text: H
            probe:
              {kind: redirect, url: "http://${domain}/", server_name: "${domain}", ca_file: /ca.pem, headers: {X: b}}
          - id: variables
            text: I
            probe: {kind: dns, name: "${domain}", server: "${dns_server}", type: MX}
"""


def test_deploybot_check_names_file_line_and_field_of_every_bad_knob(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BAD_KNOBS)
    result = subprocess.run(
        ["deploybot", "check", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 2
    where = "bad.yml:{} › phases[0] › groups[0] › items[{}] › probe › "
    expected = [
        where.format(12, 0) + "limit_status: 999 is not an HTTP status (100-599)",
        where.format(15, 1) + "expect_status: give at least one HTTP status",
        where.format(18, 2) + "type: Input should be 'A', 'AAAA', 'CNAME', 'MX' or 'TXT'",
        where.format(21, 3) + "server: 'ns1.example.com:99999' has no valid port (1-65535)",
        where.format(27, 4) + "expect_headers: Cache-Control: 'max-age=(' is not a regular expression",
        where.format(30, 5) + "follow_redirects: Input should be a valid boolean",
        where.format(33, 6) + "server_name: 'not a host' is not a host name",
    ]
    for line in expected:
        assert line in result.stderr, result.stderr
    # Only those: redirect takes headers, ca_file and server_name, and ${…} values are checked when they run.
    assert result.stderr.count("bad.yml:") == len(expected), result.stderr


def test_knobs_from_variables_are_checked_when_the_probe_runs() -> None:
    bad = {"s": "bad host"}
    dns = check({"kind": "dns", "name": "example.test", "server": "${s}"}, bad)
    assert dns.reason == "cannot run: server: 'bad host' is not host[:port] (a host name or an IP address)"
    http = check({"kind": "http", "url": "https://127.0.0.1:1/", "server_name": "${s}"}, bad)
    assert http.reason == "cannot run: server_name: 'bad host' is not a host name"
