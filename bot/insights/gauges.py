"""The delivery figures as Prometheus gauges, one series per environment, over the last 30 days."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.insights.delivery import Figures, figures_by_environment
from bot.metrics import label_value

GAUGE_PERIOD = timedelta(days=30)
FIGURES: dict[str, Callable[[Figures], float | None]] = {
    "deployments": lambda f: f.deployments,
    "deployment_failures": lambda f: f.failures,
    "deployments_per_week": lambda f: f.deployments_per_week,
    "change_failure_rate": lambda f: f.change_failure_rate,
    "time_to_restore_median_seconds": lambda f: f.time_to_restore_median,
    "run_duration_median_seconds": lambda f: f.run_duration_median,
    "run_duration_p90_seconds": lambda f: f.run_duration_p90,
}


def delivery_gauges(session: Session, now: datetime) -> dict[str, float]:
    """Gauge name (with labels) -> value; a figure undefined for an environment is left out, not zero."""
    gauges: dict[str, float] = {}
    by_environment = sorted(figures_by_environment(session, start=now - GAUGE_PERIOD, end=now).items())
    for name, read in FIGURES.items():  # family by family: the exposition format wants each one together
        for environment, f in by_environment:
            value = read(f)
            if value is not None:
                gauges[f'{name}{{environment="{label_value(environment)}",period="30d"}}'] = float(value)
    return gauges
