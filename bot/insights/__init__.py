"""Insights from the record: delivery figures and checklist health, as pure queries taking a session."""

from bot.insights.delivery import Figures, Week, environments, figures, figures_by_environment, weekly
from bot.insights.health import Health, health

__all__ = ["Figures", "Health", "Week", "environments", "figures", "figures_by_environment", "health", "weekly"]
