"""Turns: untimed probes run together; a timed or burst probe runs only while nothing else does."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    """A shared/exclusive gate for one event loop; exclusive turns go in order of rank, then arrival."""

    def __init__(self) -> None:
        self._together = 0
        self._alone = False
        self._waiting: list[tuple[int, int]] = []  # exclusive turns asked for: (rank, arrival)
        self._arrivals = itertools.count()
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def take(self, rank: int) -> AsyncIterator[None]:
        """Hold a turn: rank 0 shares it with other rank-0 holders; any other rank holds it alone."""
        if rank == 0:
            async with self._changed:
                # An untimed probe never waits for queued timed ones: those run after the others.
                await self._changed.wait_for(lambda: not self._alone)
                self._together += 1
        else:
            ticket = (rank, next(self._arrivals))
            async with self._changed:
                self._waiting.append(ticket)
                try:
                    await self._changed.wait_for(
                        lambda: not self._alone and not self._together and min(self._waiting) == ticket
                    )
                finally:  # served or cancelled, the ticket leaves the queue and the next one may go
                    self._waiting.remove(ticket)
                    self._changed.notify_all()
                self._alone = True
        try:
            yield
        finally:
            async with self._changed:
                if rank == 0:
                    self._together -= 1
                else:
                    self._alone = False
                self._changed.notify_all()
