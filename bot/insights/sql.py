"""SQL pieces the figures share: seconds since the epoch on every backend, and percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class epoch(FunctionElement[float]):
    """A timestamp as seconds since 1970 (UTC), so the database subtracts times, not Python."""

    type = Float()
    inherit_cache = True


@compiles(epoch)
def _epoch_postgresql(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps UTC timestamps as text. Whole seconds plus the milliseconds ('%f' is SS.SSS):
    # exact, where julianday()'s floating day would turn 40 minutes into 2400.0000179 seconds.
    at = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {at}) AS REAL) + (strftime('%f', {at}) - strftime('%S', {at})))"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile, interpolated between the closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    """The middle value (the mean of the two middle ones for an even count); None when there is none."""
    return percentile(values, 0.5)
