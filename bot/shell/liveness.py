"""Whether a `deploybot run` is alive to do what the shell cannot (deliver to Slack); if not, probes run here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import func, select

from bot import heartbeat
from bot.models import ItemState, ProbeStatus
from bot.probes.runner import ProbeRunner
from bot.services import Services, utcnow


class Liveness:
    """Reads the replicas' heartbeats; with none alive, runs the probes the shell's changes queue."""

    def __init__(self, services: Services, env: Mapping[str, str], *, now: Callable[[], datetime] = utcnow) -> None:
        self._services = services
        self._env = env
        self._now = now
        self.runner: ProbeRunner | None = None

    def replicas(self) -> list[heartbeat.Replica]:
        with self._services.read() as session:
            return heartbeat.alive(session, self._now())

    def bot_alive(self) -> bool:
        return bool(self.replicas())

    def footer(self) -> str:
        """One line for `status`: who is alive, and who runs the probes."""
        said = heartbeat.described(self.replicas(), self._now())
        if self.runner is not None:
            said += "; probes run in this shell while it is open"
        return said

    def probes_queued(self, run_id: int) -> str | None:
        """Run the run's queued probes here when no deploybot is alive, and say so the first time."""
        with self._services.read() as session:
            pending = session.scalar(
                select(func.count())
                .select_from(ItemState)
                .where(ItemState.run_id == run_id, ItemState.probe_status == ProbeStatus.PENDING)
            )
        if not pending or self.runner is not None or self.bot_alive():
            return None
        self.runner = ProbeRunner(
            self._services.sessions, self._services.config, self._env, self._services.clock, _nothing
        )
        self.runner.start()
        return (
            f"note: no deploybot is running, so this shell runs the {pending} queued probe(s) itself while it is open "
            "('status' shows their verdicts)."
        )

    def stop(self) -> None:
        """Let probes already running here finish and record their verdicts."""
        if self.runner is not None:
            self.runner.stop()


def _nothing() -> None:
    """Nothing to wake: the shell renders when asked."""
