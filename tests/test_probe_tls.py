"""Certificates and TLS handshakes, as `tls` and every web kind report them: each reason a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.probes import Verdict
from tests.probe_servers import Certificates, http_server, ok
from tests.test_probes import SECURE, check, free_port, redirecting


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


def tls_check(certs: Certificates, state: str, ca_file: str | None) -> Verdict:
    with http_server(ok(), certs.context(state)) as url:
        port = int(url.rsplit(":", 1)[1])
        spec = {"kind": "tls", "host": "127.0.0.1", "server_name": "localhost", "port": port}
        return check({**spec, "ca_file": ca_file} if ca_file else spec)


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def dated(reason: str) -> str:
    """A reason with its dates filled in when the test runs (the certificates are made then), not when collected."""
    return reason.format(yesterday=day(-1), in_two_days=day(2))


@pytest.mark.parametrize(
    ("state", "with_ca", "reason"),
    [
        ("expired", True, "certificate expired on {yesterday} (1 day ago)"),
        ("future", True, "certificate is not yet valid: valid from {in_two_days}"),
        ("self_signed", True, "self-signed certificate (CN=localhost): no authority vouches for it"),
        ("wrong_host", True, "name mismatch: the certificate is for wrong.example, not localhost"),
        ("no_chain", True, "incomplete chain: the server sends only its own certificate, and its issuer OU=Testing CA"),
        ("old_intermediate", True, "intermediate certificate OU=Testing CA #"),
        ("valid", False, "issued by an authority the trust store does not know: OU=Testing CA"),
        ("with_root", False, "issued by an authority the trust store does not know: OU=Testing CA"),
    ],
)
def test_tls_failures_are_told_apart(certs: Certificates, state: str, with_ca: bool, reason: str) -> None:
    verdict = tls_check(certs, state, certs.ca_file if with_ca else None)
    reason = dated(reason)
    assert not verdict.ok
    assert verdict.reason.startswith(reason), verdict.reason
    assert verdict.evidence["server_name"] == "localhost" and verdict.evidence["verify_error"]
    assert verdict.evidence["chain"][0] == verdict.evidence["subject"]


def test_tls_an_unknown_private_ca_is_named_not_called_an_incomplete_chain(certs: Certificates) -> None:
    root = certs.ca._certificate.subject.rfc4514_string()  # what the server's chain leads to
    for state in ("valid", "with_root"):
        verdict = tls_check(certs, state, None)
        assert verdict.reason == (
            f"issued by an authority the trust store does not know: {root} (set ca_file to its certificate)"
        )
        assert "incomplete" not in verdict.reason
    (certs.folder / "other").mkdir(exist_ok=True)
    other = Certificates(certs.folder / "other")
    assert tls_check(certs, "valid", other.ca_file).reason == (
        f"issued by an authority the trust store does not know: {root} (ca_file {other.ca_file} does not hold it)"
    )


def test_tls_an_expired_certificate_from_an_unknown_ca_says_both(certs: Certificates) -> None:
    verdict = tls_check(certs, "expired", None)
    assert verdict.reason.startswith(f"certificate expired on {day(-1)} (1 day ago); issued by an authority")
    assert verdict.evidence["not_after"].startswith(day(-1))
    old_intermediate = tls_check(certs, "old_intermediate", certs.ca_file)
    assert old_intermediate.reason == (
        f"intermediate certificate {certs.intermediate._certificate.subject.rfc4514_string()} "
        f"expired on {day(-1)} (1 day ago)"
    )


def test_handshake_failures_are_told_apart(certs: Certificates) -> None:
    with http_server(ok(), certs.context("old_tls")) as url:
        old = tls_check(certs, "old_tls", certs.ca_file)
        assert old.reason == "the server offers no TLS 1.2 or newer"
        https = url.replace("127.0.0.1", "localhost")
        old_http = check({"kind": "http", "url": https, "ca_file": certs.ca_file})
        assert old_http.reason == f"cannot connect to {https}: the server offers no TLS 1.2 or newer"
    with http_server(ok()) as url:
        port = int(url.rsplit(":", 1)[1])
        plain = check({"kind": "tls", "host": "127.0.0.1", "port": port})
        assert plain.reason == "the server does not speak TLS there (a plain-HTTP port?)"
        https = url.replace("http://", "https://")
        plain_http = check({"kind": "http", "url": https})
        assert (
            plain_http.reason == f"cannot connect to {https}: the server does not speak TLS there (a plain-HTTP port?)"
        )


def test_http_kinds_give_the_tls_reasons_with_evidence(certs: Certificates) -> None:
    with http_server(ok(**SECURE), certs.context("expired")) as url:
        url = url.replace("127.0.0.1", "localhost")
        for kind in ("http", "headers", "cors", "webhook_auth", "rate_limit", "latency"):
            verdict = check({"kind": kind, "url": url, "ca_file": certs.ca_file})
            assert not verdict.ok
            assert verdict.reason == f"{url}: certificate expired on {day(-1)} (1 day ago)", (kind, verdict.reason)
            assert verdict.evidence["not_after"].startswith(day(-1)) and verdict.evidence["url"] == url
    with http_server(ok(), certs.context("valid")) as url:
        unknown = check({"kind": "http", "url": url.replace("127.0.0.1", "localhost")})
        assert "issued by an authority the trust store does not know" in unknown.reason
        assert "CERTIFICATE_VERIFY_FAILED" not in unknown.reason and unknown.evidence["chain"]
        by_address = check({"kind": "http", "url": url, "ca_file": certs.ca_file})
        assert by_address.reason == f"{url}: name mismatch: the certificate is for localhost, not 127.0.0.1"


def test_server_name_is_sent_as_sni_and_host(certs: Certificates) -> None:
    seen: list[str] = []

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        seen.append(headers["host"])
        return 200, SECURE, b"ok"

    with http_server(route, certs.context("valid")) as url:
        port = int(url.rsplit(":", 1)[1])
        named = {"url": url, "ca_file": certs.ca_file, "server_name": "localhost"}
        extra: dict[str, dict[str, Any]] = {"webhook_auth": {"expect_status": [200]}, "latency": {"requests": 2}}
        for kind in ("http", "headers", "webhook_auth", "latency", "cors"):
            seen.clear()
            verdict = check({"kind": kind, **named, **extra.get(kind, {})})
            assert verdict.ok, (kind, verdict.reason)
            assert seen and set(seen) == {f"localhost:{port}"}, kind
        wrong = check({"kind": "http", **named, "server_name": "wrong.example"})
        assert wrong.reason == f"{url}: name mismatch: the certificate is for localhost, not wrong.example"


@pytest.mark.parametrize(
    ("state", "with_ca", "reason"),
    [
        ("valid", True, None),
        ("expired", True, "certificate expired on {yesterday} (1 day ago)"),
        ("valid", False, "issued by an authority the trust store does not know"),
        ("wrong_host", True, "name mismatch: the certificate is for wrong.example, not localhost"),
    ],
)
def test_redirect_checks_the_certificate_it_leads_to(
    certs: Certificates, state: str, with_ca: bool, reason: str | None
) -> None:
    with http_server(ok(), certs.context(state)) as secure:
        target = secure.replace("127.0.0.1", "localhost") + "/"
        with http_server(redirecting(301, target)) as url:
            spec = {"kind": "redirect", "url": url + "/", "to": target, "headers": {"X-Probe": "1"}}
            verdict = check({**spec, "ca_file": certs.ca_file} if with_ca else spec)
    if reason is None:
        assert verdict.ok and verdict.reason == f"301 → {target} (certificate valid; it answers 200)"
        return
    reason = dated(reason)
    assert not verdict.ok and verdict.reason.startswith(f"redirects to {target}, but there: {reason}"), verdict.reason
    assert verdict.evidence["location"] == target and verdict.evidence["target"]["not_after"]


def test_redirect_to_an_https_side_that_is_down() -> None:
    target = f"https://127.0.0.1:{free_port()}/"
    with http_server(redirecting(308, target)) as url:
        verdict = check({"kind": "redirect", "url": url, "to": target})
    assert (
        verdict.reason
        == f"redirects to {target}, but cannot connect to {target}: connection refused: nothing is listening there"
    )


def test_redirect_sends_server_name_as_host() -> None:
    hosts: list[str] = []

    def route(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        hosts.append(headers["host"])
        return 301, {"Location": "https://example.com/"}, b""

    with http_server(route) as url:
        verdict = check({"kind": "redirect", "url": url, "server_name": "example.org", "to": "https://example.net/"})
    port = url.rsplit(":", 1)[1]
    assert (
        hosts == [f"example.org:{port}"]
        and verdict.reason == "redirects to https://example.com/, expected https://example.net/"
    )
