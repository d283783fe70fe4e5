"""Data store probes: PostgreSQL (connect and SELECT 1) and Redis (PING, and is a password required)."""

from __future__ import annotations

import asyncio

import redis as redis_client
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bot.probes import ProbeError, Verdict
from bot.probes.specs import PostgresProbe, RedisProbe


async def postgres(spec: PostgresProbe) -> Verdict:
    try:
        shown = make_url(spec.url).render_as_string(hide_password=True)
    except ArgumentError:
        raise ProbeError("the url is not a database URL (postgresql+psycopg://user:pass@host/db)") from None
    return await asyncio.to_thread(_select_one, spec.url, shown, spec.timeout)


def _select_one(url: str, shown: str, timeout: float) -> Verdict:
    engine = create_engine(url, connect_args={"connect_timeout": max(1, int(timeout))}, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT 1")).scalar()
            version = conn.execute(text("SHOW server_version")).scalar()
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
        return Verdict(False, f"cannot query {shown}: {detail[0]}", {"url": shown})
    finally:
        engine.dispose()
    return Verdict(value == 1, f"SELECT 1 answered {value} (PostgreSQL {version})", {"url": shown, "version": version})


async def redis(spec: RedisProbe) -> Verdict:
    return await asyncio.to_thread(_redis_check, spec)


def _redis_check(spec: RedisProbe) -> Verdict:
    client = redis_client.Redis.from_url(spec.url, socket_timeout=spec.timeout, socket_connect_timeout=spec.timeout)
    where = "{host}:{port}".format(**{"host": "localhost", "port": 6379, **client.connection_pool.connection_kwargs})
    evidence = {"server": where}
    if spec.check == "password_required":
        # Ask without credentials, whatever the URL carries: the server must refuse.
        client.close()
        kwargs = client.connection_pool.connection_kwargs
        client = redis_client.Redis(
            host=kwargs.get("host", "localhost"),
            port=kwargs.get("port", 6379),
            socket_timeout=spec.timeout,
            socket_connect_timeout=spec.timeout,
        )
    try:
        client.ping()
    except (redis_client.AuthenticationError, redis_client.ResponseError) as exc:
        refused = isinstance(exc, redis_client.AuthenticationError) or "NOAUTH" in str(exc)
        if spec.check == "password_required" and refused:
            return Verdict(True, "an unauthenticated PING is refused (NOAUTH): a password is set", evidence)
        return Verdict(False, f"{where} refused the credentials (wrong or missing password)", evidence)
    except redis_client.ConnectionError as exc:
        return Verdict(False, f"cannot connect to {where}: {str(exc).splitlines()[0]}", evidence)
    finally:
        client.close()
    if spec.check == "password_required":
        return Verdict(False, "Redis answered PING without a password: no password is set", evidence)
    return Verdict(True, "PONG", evidence)
