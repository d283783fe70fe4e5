"""What a `probe:` in checklist YAML may say: one strict model per kind, told apart by `kind`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds that keep a probe polite to the system it checks, whatever the YAML says.
MAX_LATENCY_REQUESTS = 50
MAX_RATE_LIMIT_REQUESTS = 300
MAX_RATE_LIMIT_SECONDS = 30.0
MAX_TIMEOUT = 60.0


class _Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT)] = 10.0


class _Web(_Probe):
    url: str
    ca_file: str | None = None  # trust this CA bundle instead of the system's
    headers: dict[str, str] = {}


class HttpProbe(_Web):
    kind: Literal["http"]
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect_status: list[int] = [200]
    body_contains: str | None = None
    json_field: str | None = None  # dotted path into a JSON body, e.g. "checks.database"
    json_equals: str | int | float | bool | None = None
    max_ms: Annotated[int, Field(gt=0)] | None = None


class LatencyProbe(_Web):
    kind: Literal["latency"]
    requests: Annotated[int, Field(ge=1, le=MAX_LATENCY_REQUESTS)] = 10
    p95_ms: Annotated[int, Field(gt=0)] = 500
    p50_ms: Annotated[int, Field(gt=0)] | None = None


class RedirectProbe(_Probe):
    kind: Literal["redirect"]
    url: str  # the plain-HTTP address
    to: str | None = None  # where it must lead; default: the same address over https


class HeadersProbe(_Web):
    kind: Literal["headers"]
    min_hsts_age: int = 15_552_000  # 180 days


class CorsProbe(_Web):
    kind: Literal["cors"]
    allowed_origin: str | None = None
    disallowed_origin: str = "https://deploybot-probe.invalid"


class RateLimitProbe(_Web):
    kind: Literal["rate_limit"]
    max_requests: Annotated[int, Field(ge=1, le=MAX_RATE_LIMIT_REQUESTS)] = 100
    within: Annotated[float, Field(gt=0, le=MAX_RATE_LIMIT_SECONDS)] = 10.0
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT)] = 40.0


class WebhookAuthProbe(_Web):
    kind: Literal["webhook_auth"]
    body: str = "{}"


class TlsProbe(_Probe):
    kind: Literal["tls"]
    host: str
    port: int = 443
    server_name: str | None = None  # the name the certificate must carry; default: host
    min_days: int = 14
    ca_file: str | None = None


class DnsProbe(_Probe):
    kind: Literal["dns"]
    name: str
    expect: list[str] = []  # addresses that must all be among the answers


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
