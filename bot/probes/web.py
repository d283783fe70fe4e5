"""HTTP probes: status, latency, HTTPS redirect, security headers, CORS, rate limiting, webhook auth."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.probes import ProbeError, Unreachable, Verdict, clocked, describe_error, tls_failures, uncounted
from bot.probes.specs import (
    CorsProbe,
    HeadersProbe,
    HttpProbe,
    LatencyProbe,
    RateLimitProbe,
    RedirectProbe,
    WebhookAuthProbe,
    WebProbe,
    host_name,
)


@functools.cache
def trust(ca_file: str | None) -> ssl.SSLContext:
    """One TLS context per CA bundle: loading the system's trust store takes tens of ms of CPU each time."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


# Within `shared_clients()`, probes share one client per CA bundle: building an httpx client costs
# about 4 ms of CPU, which twenty probes started at once would otherwise queue for. A pooled connection
# is reused by address alone, so each server name (SNI) gets a client of its own too.
_ClientKey = tuple[str | None, str | None]
_shared: ContextVar[dict[_ClientKey, httpx.AsyncClient] | None] = ContextVar("shared_clients", default=None)


@asynccontextmanager
async def shared_clients() -> AsyncIterator[None]:
    """Let every probe run inside this block (and tasks it starts) share HTTP clients; close them after."""
    clients: dict[_ClientKey, httpx.AsyncClient] = {}
    token = _shared.set(clients)
    try:
        yield
    finally:
        _shared.reset(token)
        for client in clients.values():
            await client.aclose()


def warm_up() -> None:
    """Import what httpx loads on its first request (about 40 ms), before any probe's clock starts."""
    modules = (
        "anyio._backends._asyncio",
        "httpcore._async.connection_pool",
        "httpcore._async.http11",
        "h11",
        "sniffio",
    )
    for module in modules:
        importlib.import_module(module)


def warm_clients(specs: Iterable[object]) -> None:
    """Build the shared client (and trust store) of every CA bundle these probes use, before they start."""
    pool = _shared.get()
    if pool is None:
        return
    for spec in specs:
        if isinstance(getattr(spec, "url", None), str):
            key = (getattr(spec, "ca_file", None), getattr(spec, "server_name", None))
            # An unreadable bundle is left for the probe itself to report, in its verdict.
            with contextlib.suppress(OSError, ssl.SSLError):
                if key not in pool:
                    pool[key] = _new_client(60.0, key[0])


def _new_client(timeout: float, ca_file: str | None) -> httpx.AsyncClient:
    # Redirects are never followed: several probes judge the redirect itself.
    return httpx.AsyncClient(timeout=timeout, verify=trust(ca_file), follow_redirects=False)


@asynccontextmanager
async def _client(
    timeout: float, ca_file: str | None = None, server_name: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    pool = _shared.get()
    if pool is None:
        async with _new_client(timeout, ca_file) as client:
            yield client
        return
    key = (ca_file, server_name)
    if key not in pool:
        # The probe's own timeout (asyncio.wait_for in run_probe) bounds each request.
        pool[key] = _new_client(60.0, ca_file)  # also in warm_clients
    yield pool[key]


class _Stopwatch:
    """Time a request on the wire, from httpx's trace events."""

    # The sum of the network steps (connect, TLS handshake, sending, receiving the response to its last
    # byte); httpx's own work between them (building the Response, say) is deploybot's time, not the target's.
    _STEPS = ("connect_tcp", "start_tls", "send_request_headers", "send_request_body", "receive_response")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.open: dict[str, float] = {}
        self.total: float | None = None
        self.first: float | None = None  # when the first network step began
        self.last: float | None = None  # when the last one ended

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        step, _, stage = event.rpartition(".")
        if not any(name in step for name in self._STEPS):
            return
        if stage == "started":
            self.open[step] = now
            self.first = now if self.first is None else self.first
        elif step in self.open:
            self.total = (self.total or 0.0) + now - self.open.pop(step)
            self.last = now

    def ms(self) -> float:
        return ((time.perf_counter() - self.started) if self.total is None else self.total) * 1000


async def _send(
    client: httpx.AsyncClient, method: str, url: str, watch: _Stopwatch | None = None, **kwargs: Any
) -> tuple[httpx.Response, float]:
    _require_http_url(url)
    watch = watch or _Stopwatch()
    try:
        extensions = {**kwargs.pop("extensions", {}), "trace": watch.trace}
        response = await client.request(method, url, extensions=extensions, **kwargs)
    except httpx.ConnectError as exc:
        if (rejected := tls_failures.rejection(exc)) is not None:
            raise rejected from None
        raise Unreachable(f"cannot connect to {url}: {describe_error(exc)}") from None
    return response, clocked(watch.ms())


def _require_http_url(url: str) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ProbeError(f"'{url}' is not an http(s) URL")


Spec = TypeVar("Spec", bound=WebProbe)


def _plain_tls(check: Callable[[Spec], Awaitable[Verdict]]) -> Callable[[Spec], Awaitable[Verdict]]:
    """Let a web probe report a refused certificate with the same reasons and evidence as `tls`."""

    @functools.wraps(check)
    async def checked(spec: Spec) -> Verdict:
        try:
            return await check(spec)
        except tls_failures.CertificateRejected as rejected:
            return await _refused(rejected, spec.ca_file)

    return checked


async def _refused(rejected: tls_failures.CertificateRejected, ca_file: str | None, lead: str = "") -> Verdict:
    from bot.probes import certs  # only now: a refused certificate is the exception

    reason, evidence = await certs.explain_rejection(rejected, ca_file)
    return Verdict(False, f"{lead or rejected.url + ':'} {reason}", {"url": rejected.url, **evidence})


def _addressed(spec: WebProbe, url: str, **extra: str) -> tuple[str, dict[str, Any]]:
    """Where to send a request for `url`, and with what, so that the server sees `server_name`."""
    headers = {**spec.headers, **extra}
    parts, given = urlsplit(url), urlsplit(spec.url).hostname or ""
    if spec.server_name is None or parts.hostname not in (given, spec.server_name):
        return url, {"headers": headers}
    try:
        host_name(spec.server_name)  # it may have come from a ${variable}
    except ValueError as exc:
        raise ProbeError(f"server_name: {exc}") from None
    # Connect to the probe's own address, but name the site in SNI and Host (like curl --resolve).
    port = f":{parts.port}" if parts.port else ""
    address = f"[{given}]" if ":" in given else given
    return urlunsplit(parts._replace(netloc=address + port)), {
        "headers": {"Host": spec.server_name + port, **headers},
        "extensions": {"sni_hostname": spec.server_name},
    }


@_plain_tls
async def http(spec: HttpProbe) -> Verdict:
    url, options = _addressed(spec, spec.url)
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        response, ms = await _send(client, spec.method, url, follow_redirects=spec.follow_redirects, **options)
    evidence: dict[str, Any] = {"url": spec.url, "status": response.status_code, "ms": round(ms, 1)}
    if response.history:
        evidence["redirects"] = [str(r.headers.get("location", "")) for r in response.history]
        evidence["final_url"] = str(response.url)
    if response.status_code not in spec.expect_status:
        expected = " or ".join(map(str, spec.expect_status))
        return Verdict(False, f"{spec.url} answered {response.status_code}, expected {expected}", evidence)
    if spec.expect_headers:
        evidence["headers"] = {name: response.headers.get(name) for name in spec.expect_headers}
        if wrong := _header_mismatches(response, spec.expect_headers):
            return Verdict(False, "; ".join(wrong), evidence)
    if spec.body_contains is not None and spec.body_contains not in response.text:
        return Verdict(False, f"the body does not contain {spec.body_contains!r}", evidence)
    if spec.json_field is not None:
        try:
            value: Any = response.json()
            for key in spec.json_field.split("."):
                value = value[key]
        except (ValueError, KeyError, TypeError, IndexError):
            return Verdict(False, f"the JSON body has no field '{spec.json_field}'", evidence)
        evidence["json"] = {spec.json_field: value}
        if spec.json_equals is not None and value != spec.json_equals:
            return Verdict(False, f"{spec.json_field} is {value!r}, expected {spec.json_equals!r}", evidence)
    if spec.max_ms is not None and ms > spec.max_ms:
        return Verdict(False, f"answered in {ms:.0f} ms, over the {spec.max_ms} ms budget", evidence)
    return Verdict(True, f"{response.status_code} {response.reason_phrase} in {ms:.0f} ms", evidence)


def _header_mismatches(response: httpx.Response, expected: dict[str, str]) -> list[str]:
    wrong = []
    for name, pattern in expected.items():
        value = response.headers.get(name)
        if value is None:
            wrong.append(f"no {name} header (expected one matching {pattern!r})")
        elif not re.search(pattern, value, re.IGNORECASE):
            wrong.append(f"{name} is {value!r}, which does not match {pattern!r}")
    return wrong


@_plain_tls
async def latency(spec: LatencyProbe) -> Verdict:
    timings = []
    url, options = _addressed(spec, spec.url)
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        with uncounted():  # the connection and the target's own cold start are not what a user waits for
            await _send(client, "GET", url, **options)
        for _ in range(spec.requests):  # one after another: the budget is about one user's wait
            response, ms = await _send(client, "GET", url, **options)
            if response.status_code >= 400:
                return Verdict(False, f"{spec.url} answered {response.status_code}", {"status": response.status_code})
            timings.append(ms)
    p50 = _percentile(timings, 50)
    p95 = _percentile(timings, 95)
    evidence = {
        "url": spec.url,
        "requests": len(timings),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(timings), 1),
    }
    if p95 > spec.p95_ms:
        return Verdict(False, f"p95 {p95:.0f} ms over the {spec.p95_ms} ms budget ({len(timings)} requests)", evidence)
    if spec.p50_ms is not None and p50 > spec.p50_ms:
        return Verdict(False, f"p50 {p50:.0f} ms over the {spec.p50_ms} ms budget", evidence)
    return Verdict(True, f"p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(timings)} requests", evidence)


def _percentile(values: list[float], pct: int) -> float:
    """The nearest-rank percentile: the smallest value with at least `pct` % of the values at or below it."""
    ordered = sorted(values)
    rank = -(-pct * len(ordered) // 100)  # ceil(pct/100 × n) in integers: p95 of 20 is the 19th, not the 20th
    return ordered[max(1, rank) - 1]


@_plain_tls
async def redirect(spec: RedirectProbe) -> Verdict:
    parts = urlsplit(spec.url)
    if parts.scheme != "http":
        raise ProbeError(f"redirect probes start from a plain http:// URL, not '{spec.url}'")
    target = spec.to or urlunsplit(("https", *parts[1:]))
    url, options = _addressed(spec, spec.url)
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        response, _ = await _send(client, "GET", url, **options)
    location = response.headers.get("location", "")
    evidence: dict[str, Any] = {"url": spec.url, "status": response.status_code, "location": location}
    if response.status_code not in (301, 308):
        why = "a temporary redirect" if response.status_code in (302, 303, 307) else "no redirect"
        return Verdict(False, f"answered {response.status_code} ({why}); expected 301 or 308 to HTTPS", evidence)
    if not location.startswith("https://"):
        return Verdict(False, f"redirects to {location or 'nowhere'}, which is not HTTPS", evidence)
    if location.rstrip("/") != target.rstrip("/"):
        return Verdict(False, f"redirects to {location}, expected {target}", evidence)
    # A browser goes on to the https:// side: a redirect to a certificate it refuses protects no one.
    url, options = _addressed(spec, location)
    try:
        async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
            landed, _ = await _send(client, "GET", url, **options)
    except tls_failures.CertificateRejected as rejected:
        refused = await _refused(rejected, spec.ca_file, f"redirects to {location}, but there:")
        return Verdict(False, refused.reason, {**evidence, "target": refused.evidence})
    except Unreachable as exc:
        return Verdict(False, f"redirects to {location}, but {exc}", evidence)
    evidence["target_status"] = landed.status_code
    return Verdict(
        True, f"{response.status_code} → {location} (certificate valid; it answers {landed.status_code})", evidence
    )


@_plain_tls
async def headers(spec: HeadersProbe) -> Verdict:
    url, options = _addressed(spec, spec.url)
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        response, _ = await _send(client, "GET", url, **options)
    seen = response.headers
    missing = []
    hsts = seen.get("strict-transport-security", "")
    age = re.search(r"max-age=(\d+)", hsts)
    if not age:
        missing.append("Strict-Transport-Security (HSTS)")
    elif int(age[1]) < spec.min_hsts_age:
        missing.append(f"Strict-Transport-Security max-age ≥ {spec.min_hsts_age} (is {age[1]})")
    csp = seen.get("content-security-policy", "")
    if not csp:
        missing.append("Content-Security-Policy")
    if seen.get("x-content-type-options", "").lower() != "nosniff":
        missing.append("X-Content-Type-Options: nosniff")
    if seen.get("x-frame-options", "").upper() not in ("DENY", "SAMEORIGIN") and "frame-ancestors" not in csp:
        missing.append("frame protection (X-Frame-Options or CSP frame-ancestors)")
    referrer = seen.get("referrer-policy", "").lower()
    if not referrer or referrer == "unsafe-url":
        missing.append("Referrer-Policy" + (" (unsafe-url is not a safe value)" if referrer else ""))
    names = (
        "strict-transport-security",
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    )
    evidence = {"url": spec.url, "status": response.status_code, "headers": {n: seen[n] for n in names if n in seen}}
    if response.status_code >= 400:
        # An error page's headers say nothing about the site's: nginx often adds them only to 2xx and 3xx.
        return Verdict(
            False,
            f"{spec.url} answered {response.status_code}: its headers are an error page's, not the site's",
            evidence,
        )
    if missing:
        return Verdict(False, "missing or weak: " + "; ".join(missing), evidence)
    return Verdict(True, "HSTS, CSP, nosniff, frame protection and Referrer-Policy present", evidence)


@_plain_tls
async def cors(spec: CorsProbe) -> Verdict:
    bad = spec.disallowed_origin
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        get_url, options = _addressed(spec, spec.url, Origin=bad)
        get, _ = await _send(client, "GET", get_url, **options)
        preflight_url, options = _addressed(spec, spec.url, Origin=bad, **{"Access-Control-Request-Method": "GET"})
        preflight, _ = await _send(client, "OPTIONS", preflight_url, **options)
        allowed = None
        if spec.allowed_origin:
            allowed_url, options = _addressed(spec, spec.url, Origin=spec.allowed_origin)
            allowed, _ = await _send(client, "GET", allowed_url, **options)
    evidence: dict[str, Any] = {
        "disallowed_origin": bad,
        "get": _cors_headers(get),
        "preflight": _cors_headers(preflight),
    }
    problems = [f"{name}: {p}" for name, r in (("GET", get), ("preflight", preflight)) if (p := _lets_in(r, bad))]
    if allowed is not None:
        evidence["allowed"] = _cors_headers(allowed)
        granted = allowed.headers.get("access-control-allow-origin")
        if granted not in (spec.allowed_origin, "*"):
            problems.append(f"the allowed origin {spec.allowed_origin} is not allowed (got {granted or 'no header'})")
    if problems:
        return Verdict(False, "; ".join(problems), evidence)
    return Verdict(
        True,
        f"{bad} is refused on GET and preflight"
        + (f"; {spec.allowed_origin} is allowed" if spec.allowed_origin else ""),
        evidence,
    )


def _lets_in(response: httpx.Response, origin: str) -> str | None:
    granted = response.headers.get("access-control-allow-origin")
    credentials = response.headers.get("access-control-allow-credentials", "").lower() == "true"
    if granted == origin:
        return f"echoes the unauthorized origin {origin}"
    if granted == "*" and credentials:
        return "allows any origin (*) with credentials"
    return None


def _cors_headers(response: httpx.Response) -> dict[str, Any]:
    return {
        "status": response.status_code,
        **{k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")},
    }


# A burst keeps this many requests in flight: a limiter counts requests per window, so the burst
# reaches its limit sooner (and within `within` more surely) than one request at a time, while a
# target that is not limiting never has more than this many of deploybot's requests at once.
BURST_CONCURRENCY = 10


@_plain_tls
async def rate_limit(spec: RateLimitProbe) -> Verdict:
    # Bounded by max_requests and `within`; the probe runs once per request, never in a loop.
    started = time.monotonic()
    seen: Counter[int] = Counter()
    watches: list[_Stopwatch] = []
    limited: list[httpx.Response] = []  # the limiting answers, in the order they were read
    url, options = _addressed(spec, spec.url)

    answered = asyncio.Event()

    async def send_until_limited(leading: bool) -> None:
        # A client (so a connection) of its own: httpcore checks every connection of a pool on each
        # request, which with ten busy ones costs more than the burst's requests themselves.
        async with _new_client(spec.timeout, spec.ca_file) as client:
            if not leading:  # an unreachable target or a refused certificate is met on one connection, not ten
                await answered.wait()
            # No request starts once one has been limited: the ones in flight are the only ones after it.
            while not limited and len(watches) < spec.max_requests and time.monotonic() - started < spec.within:
                watches.append(watch := _Stopwatch())
                response, _ = await _send(client, "GET", url, watch, **options)
                answered.set()
                seen[response.status_code] += 1
                if response.status_code in spec.limit_status:
                    limited.append(response)

    with uncounted():  # the requests overlap: their times are not added up, the burst's span is counted
        workers = min(BURST_CONCURRENCY, spec.max_requests)
        await _all_or_none(send_until_limited(leading=n == 0) for n in range(workers))
    clocked(_span_ms(watches))
    sent = seen.total()
    if limited:
        status, retry_after = limited[0].status_code, limited[0].headers.get("retry-after")
        through = sum(n for code, n in seen.items() if code not in spec.limit_status)
        evidence = {"url": spec.url, "requests": sent, "statuses": _counts(seen), "retry_after": retry_after}
        note = f", Retry-After {retry_after} s" if retry_after else ", no Retry-After header"
        return Verdict(True, f"{status} once {through} requests had got through ({sent} sent){note}", evidence)
    took = time.monotonic() - started
    limits = _one_of(spec.limit_status)
    return Verdict(
        False,
        f"no {limits} after {sent} requests in {took:.1f} s (saw {_shown(seen)}): rate limiting is not working",
        {"url": spec.url, "requests": sent, "seconds": round(took, 1), "statuses": _counts(seen)},
    )


async def _all_or_none(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines concurrently; when one fails, cancel the rest and raise its error."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _span_ms(watches: list[_Stopwatch]) -> float:
    """From the first request going out to the last answer read, in ms: the time a burst held the target."""
    firsts = [w.first for w in watches if w.first is not None]
    lasts = [w.last for w in watches if w.last is not None]
    return (max(lasts) - min(firsts)) * 1000 if firsts and lasts else 0.0


def _counts(seen: Counter[int]) -> dict[str, int]:
    return {str(status): n for status, n in sorted(seen.items())}


def _shown(seen: Counter[int]) -> str:
    return ", ".join(f"{status} ×{n}" for status, n in sorted(seen.items())) or "no answer"


@_plain_tls
async def webhook_auth(spec: WebhookAuthProbe) -> Verdict:
    url, options = _addressed(spec, spec.url)
    options["headers"] = {"Content-Type": "application/json", **options["headers"]}
    async with _client(spec.timeout, spec.ca_file, spec.server_name) as client:
        response, _ = await _send(client, "POST", url, content=spec.body, **options)
    evidence = {"url": spec.url, "status": response.status_code}
    if response.status_code in spec.expect_status:
        return Verdict(True, f"an unsigned request is rejected with {response.status_code}", evidence)
    expected = _one_of(spec.expect_status)
    return Verdict(False, f"an unsigned request got {response.status_code}; expected {expected}", evidence)


def _one_of(statuses: list[int]) -> str:
    *rest, last = map(str, statuses)
    return f"{', '.join(rest)} or {last}" if rest else last
