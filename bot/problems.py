"""Start-up failures (database, listening port) as one line naming what is wrong and what to change."""

from __future__ import annotations

import errno

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bot.config import ConfigError, masked_url, url_secrets


def database(url: str, exc: DBAPIError) -> ConfigError:
    """Why deploybot cannot use the database at `url` (Settings checked its form), with its password hidden."""
    parsed = make_url(url)
    shown = masked_url(url)
    reason = _first_line(str(exc.orig) if exc.orig is not None else str(exc))
    for secret in url_secrets(url):
        reason = reason.replace(secret, "***")
    hint = ""
    if parsed.get_backend_name() == "sqlite" and "unable to open" in reason:
        hint = " (does the folder exist, and may deploybot write there?)"
    return ConfigError(f"cannot use the database at {shown}: {reason}{hint}; check DATABASE_URL")


def port(host: str, number: int, exc: OSError | ValueError) -> ConfigError:
    """Why `deploybot run` cannot listen on host:port."""
    if isinstance(exc, ValueError):
        return ConfigError(f"cannot listen on {host}:{number}: not an address this machine has; check HOST")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"port {number} on {host} is already in use (another deploybot, or another server); "
            "set PORT to a free port, or stop the other process"
        )
    if exc.errno == errno.EACCES:
        return ConfigError(f"may not listen on port {number} (ports below 1024 need privileges); set PORT above 1023")
    return ConfigError(f"cannot listen on {host}:{number}: {exc.strerror or exc}; check HOST and PORT")


def _first_line(text: str) -> str:
    """The driver's own reason, without SQLAlchemy's background link or libpq's hints on further lines."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "unknown error")
