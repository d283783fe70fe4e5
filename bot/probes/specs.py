"""What a `probe:` in checklist YAML may say: one strict model per kind, told apart by `kind`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# Bounds that keep a probe polite to the system it checks, whatever the YAML says.
MAX_LATENCY_REQUESTS = 50
MAX_RATE_LIMIT_REQUESTS = 300
MAX_RATE_LIMIT_SECONDS = 30.0
MAX_TIMEOUT = 60.0


def host_port(text: str, default_port: int) -> tuple[str, int]:
    """Split 'host', 'host:port', '[IPv6]:port' or a bare IPv6 address; the ValueError says what is wrong."""
    host, port = text.strip(), str(default_port)
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"'{text}' is not host[:port]")
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{text}' has no valid port (1-65535)")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{text}' is not host[:port] (an IPv6 address with a port is [address]:port)") from None
    elif not _HOSTNAME.match(host):
        raise ValueError(f"'{text}' is not host[:port] (a host name or an IP address)")
    return host, int(port)


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


def _variable_or(check: Callable[[str], object]) -> Callable[[str], str]:
    # A value holding ${…} is checked when the probe runs, once the variable is known.
    def validate(value: str) -> str:
        if "${" not in value:
            check(value)
        return value

    return validate


def _server(value: str) -> object:
    return host_port(value, 53)


def host_name(value: str) -> str:
    """`value` if it is a host name, else a ValueError saying it is not."""
    if not _HOSTNAME.match(value):
        raise ValueError(f"'{value}' is not a host name")
    return value


def _statuses(values: list[int]) -> list[int]:
    if not values:
        raise ValueError("give at least one HTTP status")
    wrong = [v for v in values if not 100 <= v <= 599]
    if wrong:
        raise ValueError(f"{', '.join(map(str, wrong))} is not an HTTP status (100-599)")
    return values


def _patterns(values: dict[str, str]) -> dict[str, str]:
    for name, pattern in values.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{name}: {pattern!r} is not a regular expression ({exc})") from None
    return values


Statuses = Annotated[list[int], AfterValidator(_statuses)]
ServerName = Annotated[str, AfterValidator(_variable_or(host_name))]


class _Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT)] = 10.0


class WebProbe(_Probe):
    url: str
    ca_file: str | None = None  # trust this CA bundle instead of the system's
    headers: dict[str, str] = {}
    server_name: ServerName | None = None  # sent as SNI and Host, checked against the certificate


class HttpProbe(WebProbe):
    kind: Literal["http"]
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect_status: Statuses = [200]
    # Header name -> regular expression its value must match (searched, case-insensitive).
    expect_headers: Annotated[dict[str, str], AfterValidator(_patterns)] = {}
    follow_redirects: bool = False
    body_contains: str | None = None
    json_field: str | None = None  # dotted path into a JSON body, e.g. "checks.database"
    json_equals: str | int | float | bool | None = None
    max_ms: Annotated[int, Field(gt=0)] | None = None


class LatencyProbe(WebProbe):
    kind: Literal["latency"]
    requests: Annotated[int, Field(ge=1, le=MAX_LATENCY_REQUESTS)] = 10
    p95_ms: Annotated[int, Field(gt=0)] = 500
    p50_ms: Annotated[int, Field(gt=0)] | None = None


class RedirectProbe(WebProbe):
    kind: Literal["redirect"]
    url: str  # the plain-HTTP address
    to: str | None = None  # where it must lead; default: the same address over https


class HeadersProbe(WebProbe):
    kind: Literal["headers"]
    min_hsts_age: int = 15_552_000  # 180 days


class CorsProbe(WebProbe):
    kind: Literal["cors"]
    allowed_origin: str | None = None
    disallowed_origin: str = "https://deploybot-probe.invalid"


class RateLimitProbe(WebProbe):
    kind: Literal["rate_limit"]
    max_requests: Annotated[int, Field(ge=1, le=MAX_RATE_LIMIT_REQUESTS)] = 100
    within: Annotated[float, Field(gt=0, le=MAX_RATE_LIMIT_SECONDS)] = 10.0
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT)] = 40.0
    limit_status: Statuses = [429, 503]  # nginx's limit_req answers 503 unless told otherwise


class WebhookAuthProbe(WebProbe):
    kind: Literal["webhook_auth"]
    body: str = "{}"
    expect_status: Statuses = [400, 401, 403]  # Stripe-style receivers answer 400 to a bad signature


class TlsProbe(_Probe):
    kind: Literal["tls"]
    host: str
    port: int = 443
    server_name: ServerName | None = None  # the name the certificate must carry; default: host
    min_days: int = 14
    ca_file: str | None = None


class DnsProbe(_Probe):
    kind: Literal["dns"]
    name: str
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT"] = "A"
    server: Annotated[str, AfterValidator(_variable_or(_server))] | None = None  # host[:port]; default: the system's
    expect: list[str] = []  # values that must all be among the answers


class TcpProbe(_Probe):
    kind: Literal["tcp"]
    host: str
    port: int


class PostgresProbe(_Probe):
    kind: Literal["postgres"]
    url: str  # SQLAlchemy URL; take it from the environment: "${env:DATABASE_URL}"


class RedisProbe(_Probe):
    kind: Literal["redis"]
    url: str  # redis://[:password@]host:port/db
    check: Literal["ping", "password_required"] = "ping"


class EnvFileProbe(_Probe):
    kind: Literal["env_file"]
    path: str
    development_path: str | None = None
    secret_pattern: str = r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|_KEY$)"
    min_length: int = 32


class GitignoredProbe(_Probe):
    kind: Literal["gitignored"]
    repo: str
    path: str


ProbeSpec = Annotated[
    HttpProbe
    | LatencyProbe
    | RedirectProbe
    | HeadersProbe
    | CorsProbe
    | RateLimitProbe
    | WebhookAuthProbe
    | TlsProbe
    | DnsProbe
    | TcpProbe
    | PostgresProbe
    | RedisProbe
    | EnvFileProbe
    | GitignoredProbe,
    Field(discriminator="kind"),
]

KINDS = [
    "http",
    "latency",
    "redirect",
    "headers",
    "cors",
    "rate_limit",
    "webhook_auth",
    "tls",
    "dns",
    "tcp",
    "postgres",
    "redis",
    "env_file",
    "gitignored",
]
