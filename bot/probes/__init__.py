"""Probes: machine checks of checklist items, run concurrently, each with a verdict and its evidence."""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bot.probes.specs import ProbeSpec


@dataclass(frozen=True)
class Verdict:
    """A probe's answer: pass or fail, a line a person understands, and what was seen."""

    ok: bool
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    ms: float = 0.0


class ProbeError(Exception):
    """A probe cannot even start (bad parameters, unknown variable); the text says how to fix it."""


class Unreachable(Exception):
    """The target could not be reached; the text is the failure reason."""


VARIABLE = re.compile(r"\$\{(env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


class Variables:
    """Expands ${name} from deploybot.yml's environment and ${env:NAME} from the process; remembers secrets."""

    def __init__(self, environment: str, values: Mapping[str, str], env: Mapping[str, str]):
        self.environment = environment
        self._values = values
        self._env = env
        self.secrets: set[str] = set()

    def expand(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            from_env, name = match[1], match[2]
            if from_env:
                if name not in self._env:
                    raise ProbeError(f"environment variable {name} is not set (the probe reads ${{env:{name}}})")
                value = self._env[name]
                if value:
                    self.secrets.add(value)
                return value
            if name not in self._values:
                raise ProbeError(
                    f"${{{name}}} is not defined for environment '{self.environment}' in deploybot.yml "
                    f"(environments › {self.environment} › {name})"
                )
            return self.expand(self._values[name])

        return VARIABLE.sub(replace, text)

    def apply(self, spec: BaseModel) -> Any:
        """A copy of `spec` with every string field expanded."""
        return spec.model_copy(update={k: self._expand_any(v) for k, v in spec.__dict__.items()})

    def _expand_any(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.expand(value)
        if isinstance(value, dict):
            return {k: self._expand_any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._expand_any(v) for v in value]
        return value

    def scrub(self, value: Any) -> Any:
        """Replace every secret the expansion used by asterisks, wherever it appears."""
        if isinstance(value, str):
            for secret in sorted(self.secrets, key=len, reverse=True):
                value = value.replace(secret, "****")
            return value
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value


Check = Callable[[Any], Awaitable[Verdict]]


@functools.cache
def _registry() -> dict[str, Check]:
    # Imported on first use: the probe modules import each other's base types from here.
    from bot.probes import files, net, stores, web

    web.warm_up()
    net.warm_up()
    return {
        "http": web.http, "latency": web.latency, "redirect": web.redirect, "headers": web.headers,
        "cors": web.cors, "rate_limit": web.rate_limit, "webhook_auth": web.webhook_auth,
        "tls": net.tls, "dns": net.dns, "tcp": net.tcp,
        "postgres": stores.postgres, "redis": stores.redis,
        "env_file": files.env_file, "gitignored": files.gitignored,
    }  # fmt: skip


# Kinds whose verdict is a time, and kinds that flood the target: each runs alone, after the others,
# so neither the suite's other probes nor a burst can move a measured time.
TIMED, BURST = 1, 2


def turn(spec: ProbeSpec) -> int:
    """0 to run alongside the others; TIMED or BURST to run alone afterwards (bursts last)."""
    if spec.kind == "rate_limit":
        return BURST
    if spec.kind == "latency" or getattr(spec, "max_ms", None) is not None:
        return TIMED
    return 0


# The time each probe spent waiting on its target: the web probes add their requests' timed sections.
_account: ContextVar[list[float] | None] = ContextVar("probe_account", default=None)


def clocked(ms: float) -> float:
    """Count `ms` as time the running probe spent on its target; returns it."""
    account = _account.get()
    if account is not None:
        account.append(ms)
    return ms


@contextmanager
def uncounted() -> Iterator[None]:
    """Keep requests made inside (a warm-up) out of the probe's reported time."""
    token = _account.set(None)
    try:
        yield
    finally:
        _account.reset(token)


def prepare() -> None:
    """Import every probe module and what they load lazily, so no probe's clock pays for it."""
    _registry()


async def run_probe(spec: ProbeSpec, variables: Variables) -> Verdict:
    """Run one probe within its timeout; never raises. Its `ms` is the target's time, not deploybot's."""
    expanded = _expand(spec, variables)
    return expanded if isinstance(expanded, Verdict) else await _run_expanded(expanded, variables)


def _expand(spec: ProbeSpec, variables: Variables) -> ProbeSpec | Verdict:
    """The spec with its variables filled in, or the verdict of a probe that cannot start."""
    try:
        expanded: ProbeSpec = variables.apply(spec)
    except ProbeError as exc:
        return Verdict(False, variables.scrub(f"cannot run: {exc}"))
    except Exception as exc:  # e.g. a variable defined through itself
        return Verdict(False, variables.scrub(describe_error(exc)))
    return expanded


async def _run_expanded(spec: ProbeSpec, variables: Variables) -> Verdict:
    check = _registry()[spec.kind]
    account: list[float] = []
    token = _account.set(account)
    started = time.perf_counter()
    try:
        verdict = await asyncio.wait_for(check(spec), spec.timeout)
    except ProbeError as exc:
        verdict = Verdict(False, f"cannot run: {exc}")
    except Unreachable as exc:
        verdict = Verdict(False, str(exc))
    except TimeoutError:
        account.clear()  # the request cut short is not in it: report the whole wait
        verdict = Verdict(False, f"no answer within {spec.timeout:g} s")
    except Exception as exc:  # a probe reports what went wrong; it never takes the runner down
        verdict = Verdict(False, describe_error(exc))
    finally:
        _account.reset(token)
    # Web probes time their requests on the wire; other kinds (and a request that never got an
    # answer) report the check's own duration.
    ms = round(sum(account) if account else (time.perf_counter() - started) * 1000, 1)
    return Verdict(verdict.ok, variables.scrub(verdict.reason), variables.scrub(verdict.evidence), ms)


def unresolved(specs: Mapping[str, ProbeSpec], variables: Variables) -> list[str]:
    """Why each probe that cannot even start (an undefined variable) cannot, as `name: reason` lines."""
    problems = []
    for name, spec in specs.items():
        expanded = _expand(spec, variables)
        if isinstance(expanded, Verdict):
            problems.append(f"{name}: {expanded.reason.removeprefix('cannot run: ')}")
    return problems


async def run_all(specs: Mapping[str, ProbeSpec], variables: Variables) -> dict[str, Verdict]:
    """Run the suite: untimed probes all at once, then each timed probe alone, then each burst alone."""
    from bot.probes.web import shared_clients, warm_clients

    prepare()
    results: dict[str, Verdict] = {}
    ready: dict[str, ProbeSpec] = {}
    for name, spec in specs.items():  # before any clock starts, not interleaved with running probes
        expanded = _expand(spec, variables)
        if isinstance(expanded, Verdict):
            results[name] = expanded
        else:
            ready[name] = expanded
    together = [name for name, spec in ready.items() if not turn(spec)]
    async with shared_clients():
        warm_clients(ready[name] for name in together)
        verdicts = await asyncio.gather(*(_run_expanded(ready[name], variables) for name in together))
        results.update(zip(together, verdicts, strict=True))
    for name in sorted((n for n in ready if turn(ready[n])), key=lambda n: turn(ready[n])):
        # Clients of its own: httpcore checks each idle connection the others left in a pool on every request.
        async with shared_clients():
            warm_clients([ready[name]])
            results[name] = await _run_expanded(ready[name], variables)
    return {name: results[name] for name in specs}


def describe_error(exc: BaseException) -> str:
    """A failure reason a person understands, from a low-level exception and its causes."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in chain:
        if isinstance(error, ssl.SSLError):
            from bot.probes.tls_failures import handshake_reason

            return handshake_reason(error)
        lowered = str(error).lower()
        if (
            isinstance(error, ConnectionRefusedError)
            or "connection refused" in lowered
            or "connect call failed" in lowered
        ):
            return "connection refused: nothing is listening there"
        if "name or service not known" in lowered or "nodename nor servname" in lowered:
            return "the name does not resolve (DNS)"
    return f"{type(exc).__name__}: {str(exc) or 'no detail'}"[:300]
