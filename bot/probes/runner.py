"""Run pending probes in the background: claimed from the database, so restarts and replicas lose none."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import db, items
from bot.config import DeployConfig
from bot.models import ItemState, ProbeStatus, Run, RunStatus
from bot.probes import Variables, Verdict, prepare, run_probe, turn
from bot.probes.specs import ProbeSpec
from bot.probes.turns import Turns
from bot.probes.web import shared_clients

log = logging.getLogger(__name__)

# The longest a probe may take, plus slack: then another replica may retry it.
LEASE = timedelta(seconds=90)


class ProbeRunner:
    """Claims pending probes (a lease per item), runs them concurrently, and records each verdict.

    Timed and burst probes wait until nothing else runs, then run one at a time (bursts last).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: DeployConfig,
        env: Mapping[str, str],
        clock: Callable[[], datetime],
        on_change: Callable[[], None],
        *,
        poll_interval: float = 2.0,
        batch: int = 100,
    ):
        self._sessions = sessions
        self._reader = db.read_only(sessions)
        self._config = config
        self._env = env
        self._clock = clock
        self._on_change = on_change
        self._poll_interval = poll_interval
        self._batch = batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        # Claimed here and not yet recorded: a timed probe queued past its lease must not be claimed twice.
        self._inflight: set[tuple[int, str]] = set()
        self._turns = Turns()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look for pending probes now (callable from any thread)."""
        if self._loop is not None and self._wakeup is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(ready)), name="probes", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; probes already running finish (their leases would expire otherwise)."""
        self._stopping = True
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    async def _main(self, ready: threading.Event) -> None:
        await asyncio.to_thread(prepare)
        async with shared_clients():
            await self._serve(ready)

    async def _serve(self, ready: threading.Event) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        while not self._stopping:
            try:
                claimed = await asyncio.to_thread(self._claim, self._clock())
            except Exception:
                log.exception("could not claim probes; retrying")
                claimed = []
            jobs = await asyncio.to_thread(self._prepare_all, claimed) if claimed else []
            # Untimed probes start first, so they hold their turns before a timed one asks for its own.
            for job in sorted(jobs, key=lambda job: turn(job[3])):
                # Each probe runs on its own: a slow one never holds back the others' verdicts.
                task = asyncio.create_task(self._run_one(*job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)
            await asyncio.sleep(0.05)  # every click wakes us: claim at most 20 times a second
            self._wakeup.clear()
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _claim(self, now: datetime) -> list[tuple[int, str]]:
        with self._reader() as session:
            candidates = session.execute(
                select(ItemState.run_id, ItemState.item_id)
                .join(Run, Run.id == ItemState.run_id)
                .where(
                    ItemState.probe_status == ProbeStatus.PENDING,
                    Run.status == RunStatus.ACTIVE,
                    or_(ItemState.probe_lease_until.is_(None), ItemState.probe_lease_until < now),
                )
                .order_by(ItemState.run_id, ItemState.position)
                .limit(self._batch)
            ).all()
        claimed = []
        for run_id, item_id in candidates:
            if (run_id, item_id) in self._inflight:
                continue
            with self._sessions.begin() as session:
                taken = session.execute(
                    update(ItemState)
                    .where(
                        ItemState.run_id == run_id,
                        ItemState.item_id == item_id,
                        ItemState.probe_status == ProbeStatus.PENDING,
                        or_(ItemState.probe_lease_until.is_(None), ItemState.probe_lease_until < now),
                    )
                    .values(probe_lease_until=now + LEASE)
                )
                if taken.rowcount:  # type: ignore[attr-defined]
                    claimed.append((run_id, item_id))
                    self._inflight.add((run_id, item_id))
        return claimed

    async def _run_one(self, run_id: int, item_id: str, kind: str, probe: ProbeSpec, variables: Variables) -> None:
        try:
            # Recording is inside the turn too: its database work would otherwise run beside a timed probe.
            async with self._turns.take(turn(probe)):
                # Its turn may have come long after the claim: renew the lease for the time it runs.
                await asyncio.to_thread(self._renew, run_id, item_id)
                if turn(probe):
                    # Clients of its own: httpcore checks every idle connection of a pool on each request.
                    async with shared_clients():
                        verdict = await run_probe(probe, variables)
                else:
                    verdict = await run_probe(probe, variables)
                await asyncio.to_thread(self._record, run_id, item_id, kind, verdict)
        except Exception:
            log.exception(
                "probe %s of run %s could not be recorded; its lease expires and it runs again", item_id, run_id
            )
        finally:
            self._inflight.discard((run_id, item_id))

    def _renew(self, run_id: int, item_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(ItemState)
                .where(
                    ItemState.run_id == run_id,
                    ItemState.item_id == item_id,
                    ItemState.probe_status == ProbeStatus.PENDING,
                )
                .values(probe_lease_until=self._clock() + LEASE)
            )

    def _prepare_all(self, claimed: list[tuple[int, str]]) -> list[tuple[int, str, str, ProbeSpec, Variables]]:
        jobs = []
        for run_id, item_id in claimed:
            try:
                jobs.append((run_id, item_id, *self._prepare(run_id, item_id)))
            except Exception:
                self._inflight.discard((run_id, item_id))
                log.exception(
                    "probe %s of run %s could not be read; its lease expires and it runs again", item_id, run_id
                )
        return jobs

    def _prepare(self, run_id: int, item_id: str) -> tuple[str, ProbeSpec, Variables]:
        with self._reader() as session:
            run = session.get(Run, run_id)
            assert run is not None
            item = run.template.item(item_id)
            assert item is not None and item.probe is not None
            return (
                item.probe.kind,
                item.probe,
                Variables(run.environment, self._config.variables(run.environment), self._env),
            )

    def _record(self, run_id: int, item_id: str, kind: str, verdict: Verdict) -> None:
        with self._sessions.begin() as session:
            items.record_probe(session, run_id, item_id, verdict, kind, self._clock())
        log.info("probe %s of run %s: %s (%s)", item_id, run_id, "pass" if verdict.ok else "FAIL", verdict.reason)
        self._on_change()
