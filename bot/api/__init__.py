"""The pipeline API under /api/v1/: tokens (auth), routes, JSON (render) and waiting gates (gates)."""

from bot.api.routes import PipelineApi

__all__ = ["PipelineApi"]
